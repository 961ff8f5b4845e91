package refreshtoken_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

const day = 24 * time.Hour

// expiringEvents collects the RefreshTokenExpiring events of a source.
type expiringEvents struct {
	mu     sync.Mutex
	events []refreshtoken.RefreshTokenExpiring
}

func (c *expiringEvents) Observe(e refreshtoken.Event) {
	if e, ok := e.(refreshtoken.RefreshTokenExpiring); ok {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.events = append(c.events, e)
	}
}

func (c *expiringEvents) list() []refreshtoken.RefreshTokenExpiring {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]refreshtoken.RefreshTokenExpiring(nil), c.events...)
}

// lifeSource is a source of the refresh token rt, on clock, closed at the
// test's end.
func lifeSource(t *testing.T, srv *refreshtokentest.Server, clock *fakeClock, rt string, opts ...refreshtoken.Option) *refreshtoken.TokenSource {
	t.Helper()
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0),
		refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil))}, opts...)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt}, opts...)
	t.Cleanup(func() { ts.Close() })
	return ts
}

// wantExpired checks that ts's Token fails with ErrRefreshTokenExpired,
// which is a rejection, without a request.
func wantExpired(t *testing.T, srv *refreshtokentest.Server, ts *refreshtoken.TokenSource) {
	t.Helper()
	before := srv.Stats().TokenRequests
	_, err := ts.Token()
	if !errors.Is(err, refreshtoken.ErrRefreshTokenExpired) || !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Fatalf("Token() past the refresh token's expiry = %v, want ErrRefreshTokenExpired and ErrRefreshRejected", err)
	}
	if got := srv.Stats().TokenRequests - before; got != 0 {
		t.Errorf("%d requests with an expired refresh token, want none", got)
	}
	if h := ts.Health(); !h.Rejected {
		t.Errorf("Health() = %+v, want Rejected", h)
	}
}

// TestServerStatedLifetime: the lifetime a server sends with each refresh
// token, under each name, is the source's RefreshTokenExpiry; each
// refresh renews it; a dormant source whose refresh token has expired
// does not send it, and the server would have refused it.
func TestServerStatedLifetime(t *testing.T) {
	for _, field := range []string{"refresh_token_expires_in", "refresh_expires_in", "x_refresh_token_expires_in"} {
		t.Run(field, func(t *testing.T) {
			clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, RefreshInactivity: 2 * time.Hour, RefreshExpiresInField: field})
			rt := srv.NewRefreshToken("offline_access")
			ts := lifeSource(t, srv, clock, rt)
			if got := ts.RefreshTokenExpiry(); !got.IsZero() {
				t.Errorf("RefreshTokenExpiry() before any answer = %v, want zero (not known)", got)
			}
			mustToken(t, ts)
			if got, want := ts.RefreshTokenExpiry(), t0.Add(2*time.Hour); !got.Equal(want) {
				t.Errorf("RefreshTokenExpiry() = %v, want %v", got, want)
			}
			clock.Add(time.Hour)
			mustToken(t, ts) // a refresh renews the inactivity lifetime
			if got, want := ts.RefreshTokenExpiry(), t0.Add(3*time.Hour); !got.Equal(want) {
				t.Errorf("RefreshTokenExpiry() after a refresh = %v, want %v", got, want)
			}
			clock.Add(2 * time.Hour) // dormant: the refresh token expired
			wantExpired(t, srv, ts)
			if st := srv.Stats(); st.RefreshExpired != 0 || st.Rejected != 0 {
				t.Errorf("server stats = %+v, want no expired refresh token sent", st)
			}
		})
	}
}

// TestStatedLifetimes: the Auth0 case, where the server sends nothing and
// the user states the application's lifetimes: inactivity renewed by
// each refresh, absolute counted from the family's first issue; the
// source stops at the earlier, exactly where the server would refuse.
func TestStatedLifetimes(t *testing.T) {
	const absolute, inactivity = 5 * time.Hour, 90 * time.Minute
	for _, tc := range []struct {
		name   string
		steps  []time.Duration // the clock's moves, each followed by a Token call
		expiry time.Time       // RefreshTokenExpiry after the steps
		after  time.Duration   // from there, the move that expires it
	}{
		{name: "inactivity", steps: []time.Duration{0, time.Hour}, expiry: t0.Add(time.Hour + inactivity), after: inactivity},
		{name: "absolute", steps: []time.Duration{0, time.Hour, time.Hour, time.Hour, time.Hour}, expiry: t0.Add(absolute), after: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, RefreshAbsolute: absolute, RefreshInactivity: inactivity})
			rt := srv.NewRefreshToken("offline_access")
			ts := lifeSource(t, srv, clock, rt, refreshtoken.WithRefreshTokenLifetime(absolute, inactivity))
			if got, want := ts.RefreshTokenExpiry(), t0.Add(inactivity); !got.Equal(want) {
				t.Errorf("RefreshTokenExpiry() of New's token = %v, want %v (inactivity counted from New)", got, want)
			}
			for _, d := range tc.steps {
				clock.Add(d)
				mustToken(t, ts)
			}
			if got := ts.RefreshTokenExpiry(); !got.Equal(tc.expiry) {
				t.Errorf("RefreshTokenExpiry() = %v, want %v", got, tc.expiry)
			}
			// The server still accepts it just before.
			clock.Set(tc.expiry.Add(-time.Second))
			ts.Invalidate()
			mustToken(t, ts)
			if tc.name == "inactivity" {
				return // that refresh renewed it
			}
			clock.Set(tc.expiry)
			ts.Invalidate()
			wantExpired(t, srv, ts)
			if st := srv.Stats(); st.RefreshExpired != 0 || st.Rejected != 0 {
				t.Errorf("server stats = %+v, want no expired refresh token sent", st)
			}
		})
	}
}

// TestInactivityExpiry: a dormant source past its stated inactivity
// lifetime does not send its refresh token, which the server would refuse.
func TestInactivityExpiry(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, RefreshInactivity: 90 * time.Minute})
	rt := srv.NewRefreshToken("offline_access")
	ts := lifeSource(t, srv, clock, rt, refreshtoken.WithRefreshTokenLifetime(0, 90*time.Minute))
	mustToken(t, ts)
	clock.Add(90 * time.Minute)
	wantExpired(t, srv, ts)
	// The server agrees: the refresh token it holds has expired.
	newest, _ := srv.Newest(rt)
	other := lifeSource(t, srv, clock, newest)
	if _, err := other.Token(); !errors.Is(err, refreshtoken.ErrRefreshRejected) || errors.Is(err, refreshtoken.ErrRefreshTokenExpired) {
		t.Errorf("Token() of a source that did not know = %v, want the server's invalid_grant", err)
	}
	if got := srv.Stats().RefreshExpired; got != 1 {
		t.Errorf("server RefreshExpired = %d, want 1 (the other source's)", got)
	}
	// SetToken after a new sign-in: a new family, a new expiry.
	clock.Add(time.Minute)
	if err := ts.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("offline_access")}); err != nil {
		t.Fatal(err)
	}
	if got, want := ts.RefreshTokenExpiry(), clock.Now().Add(90*time.Minute); !got.Equal(want) {
		t.Errorf("RefreshTokenExpiry() after SetToken = %v, want %v", got, want)
	}
	mustToken(t, ts)
}

// TestRefreshExpiryRestart: what the source knows of the refresh token's
// expiry is saved with the token, and a restarted source, which would
// otherwise count the stated inactivity lifetime from its own start,
// knows it: past it, nothing is sent.
func TestRefreshExpiryRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T, clock *fakeClock) refreshtoken.Store
		field string // the server's, or "" for the stated lifetime
	}{
		{name: "filestore, stated", store: func(t *testing.T, _ *fakeClock) refreshtoken.Store {
			return filestore.New(filepath.Join(t.TempDir(), "token.json"))
		}},
		{name: "filestore, server's", field: "refresh_token_expires_in", store: func(t *testing.T, _ *fakeClock) refreshtoken.Store {
			return filestore.New(filepath.Join(t.TempDir(), "token.json"))
		}},
		{name: "shared MemoryStore, stated", store: func(_ *testing.T, clock *fakeClock) refreshtoken.Store {
			return refreshtokentest.NewMemoryStore(clock.Now, 0)
		}},
		{name: "plain MemoryStore, server's", field: "refresh_expires_in", store: func(_ *testing.T, clock *fakeClock) refreshtoken.Store {
			return plainStore{refreshtokentest.NewMemoryStore(clock.Now, 0)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, RefreshInactivity: 2 * time.Hour, RefreshExpiresInField: tc.field})
			st := tc.store(t, clock)
			opts := []refreshtoken.Option{refreshtoken.WithStore(st), refreshtoken.WithRefreshTokenLifetime(0, 2*time.Hour)}
			rt := srv.NewRefreshToken("offline_access")
			first := lifeSource(t, srv, clock, rt, opts...)
			mustToken(t, first)
			want := first.RefreshTokenExpiry()
			if !want.Equal(t0.Add(2 * time.Hour)) {
				t.Fatalf("RefreshTokenExpiry() = %v, want %v", want, t0.Add(2*time.Hour))
			}
			first.Close()

			clock.Add(3 * time.Hour) // the process was down while it expired
			second := lifeSource(t, srv, clock, rt, opts...)
			wantExpired(t, srv, second)
			if got := second.RefreshTokenExpiry(); !got.Equal(want) {
				t.Errorf("RefreshTokenExpiry() after the restart = %v, want %v (the stored one)", got, want)
			}
		})
	}
}

// TestRefreshTokenExpiringEvent: the observer is told once per refresh
// token, by the first call within the warning window (a day, or half the
// lifetime), with whether a keep-alive refresh would help.
func TestRefreshTokenExpiringEvent(t *testing.T) {
	for _, tc := range []struct {
		name          string
		cfg           refreshtokentest.Config
		warnAt        time.Duration // from t0
		wantKeepAlive bool
	}{
		{name: "inactivity, server's", cfg: refreshtokentest.Config{RefreshInactivity: 10 * day, RefreshExpiresInField: "refresh_token_expires_in"},
			warnAt: 9 * day, wantKeepAlive: true},
		{name: "absolute, server's", cfg: refreshtokentest.Config{RefreshAbsolute: 10 * day, RefreshExpiresInField: "refresh_token_expires_in"},
			warnAt: 9 * day, wantKeepAlive: true},
		{name: "short lifetime: half of it", cfg: refreshtokentest.Config{RefreshInactivity: 10 * time.Hour, RefreshExpiresInField: "refresh_expires_in"},
			warnAt: 5 * time.Hour, wantKeepAlive: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Lifetime = 30 * day // the access token stays fresh: Token calls take the cached path
			clock, srv := newServer(t, tc.cfg)
			events := &expiringEvents{}
			ts := lifeSource(t, srv, clock, srv.NewRefreshToken("offline_access"), refreshtoken.WithObserver(events))
			mustToken(t, ts)
			clock.Set(t0.Add(tc.warnAt - time.Second))
			mustToken(t, ts)
			if got := events.list(); len(got) != 0 {
				t.Fatalf("events before the window = %+v, want none", got)
			}
			clock.Set(t0.Add(tc.warnAt))
			for range 3 {
				mustToken(t, ts)
			}
			got := events.list()
			if len(got) != 1 {
				t.Fatalf("events in the window = %d, want 1", len(got))
			}
			e := got[0]
			if !e.Expiry.Equal(ts.RefreshTokenExpiry()) || e.TimeLeft != ts.RefreshTokenExpiry().Sub(t0.Add(tc.warnAt)) || e.Fingerprint == "" || e.KeepAlive != tc.wantKeepAlive {
				t.Errorf("event = %+v, want expiry %v, KeepAlive %v", e, ts.RefreshTokenExpiry(), tc.wantKeepAlive)
			}
			if !ts.KeepAliveAt().Equal(t0.Add(tc.warnAt)) {
				t.Errorf("KeepAliveAt() = %v, want %v", ts.KeepAliveAt(), t0.Add(tc.warnAt))
			}
		})
	}
}

// TestKeepAlive: a dormant user's refresh token kept alive by KeepAlive,
// which refreshes only when due, even with a fresh access token, and not
// when a refresh would not push the expiry back (the absolute lifetime
// binds, or the server's lifetime did not slide).
func TestKeepAlive(t *testing.T) {
	ctx := context.Background()
	t.Run("inactivity", func(t *testing.T) {
		clock, srv := newServer(t, refreshtokentest.Config{Lifetime: 20 * day, RefreshInactivity: 10 * day})
		ts := lifeSource(t, srv, clock, srv.NewRefreshToken("offline_access"), refreshtoken.WithRefreshTokenLifetime(0, 10*day))
		tok := mustToken(t, ts)
		if got, want := ts.KeepAliveAt(), t0.Add(9*day); !got.Equal(want) {
			t.Fatalf("KeepAliveAt() = %v, want %v", got, want)
		}
		clock.Set(t0.Add(9*day - time.Second))
		requests := srv.Stats().TokenRequests
		if err := ts.KeepAlive(ctx); err != nil || srv.Stats().TokenRequests != requests {
			t.Fatalf("KeepAlive() before it is due = %v, %d requests; want nil, none", err, srv.Stats().TokenRequests-requests)
		}
		for round := range 3 {
			clock.Set(t0.Add(time.Duration(round)*9*day + 9*day))
			if err := ts.KeepAlive(ctx); err != nil {
				t.Fatalf("round %d: KeepAlive() = %v", round, err)
			}
			if got := srv.Stats().TokenRequests - requests; got != round+1 {
				t.Fatalf("round %d: %d keep-alive requests, want %d", round, got, round+1)
			}
			if got, want := ts.RefreshTokenExpiry(), clock.Now().Add(10*day); !got.Equal(want) {
				t.Errorf("round %d: RefreshTokenExpiry() = %v, want %v", round, got, want)
			}
			if err := ts.KeepAlive(ctx); err != nil || srv.Stats().TokenRequests-requests != round+1 {
				t.Errorf("round %d: a second KeepAlive() = %v and refreshed again, want nil and no request", round, err)
			}
		}
		if got := mustToken(t, ts); got.AccessToken == tok.AccessToken {
			t.Error("the keep-alive refreshes did not bring new access tokens")
		}
		if st := srv.Stats(); st.RefreshExpired != 0 || st.Rejected != 0 || st.ReuseEvents != 0 {
			t.Errorf("server stats = %+v, want no failure", st)
		}
	})
	t.Run("keep-alive events", func(t *testing.T) {
		clock, srv := newServer(t, refreshtokentest.Config{Lifetime: 20 * day})
		var mu sync.Mutex
		var reasons []refreshtoken.Reason
		obs := refreshtoken.ObserverFunc(func(e refreshtoken.Event) {
			if e, ok := e.(refreshtoken.RefreshStarted); ok {
				mu.Lock()
				defer mu.Unlock()
				reasons = append(reasons, e.Reason)
			}
		})
		ts := lifeSource(t, srv, clock, srv.NewRefreshToken("offline_access"), refreshtoken.WithRefreshTokenLifetime(0, 10*day), refreshtoken.WithObserver(obs))
		mustToken(t, ts)
		clock.Set(t0.Add(9 * day))
		if err := ts.KeepAlive(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(reasons) != 2 || reasons[1] != refreshtoken.ReasonKeepAlive {
			t.Errorf("refresh reasons = %v, want [no_token keep_alive]", reasons)
		}
	})
	t.Run("absolute binds", func(t *testing.T) {
		clock, srv := newServer(t, refreshtokentest.Config{Lifetime: 20 * day})
		ts := lifeSource(t, srv, clock, srv.NewRefreshToken("offline_access"), refreshtoken.WithRefreshTokenLifetime(5*day, 10*day))
		mustToken(t, ts)
		clock.Set(t0.Add(4*day + 12*time.Hour))
		requests := srv.Stats().TokenRequests
		if at := ts.KeepAliveAt(); !at.IsZero() {
			t.Errorf("KeepAliveAt() = %v, want zero: a refresh cannot push an absolute lifetime back", at)
		}
		if err := ts.KeepAlive(ctx); err != nil || srv.Stats().TokenRequests != requests {
			t.Errorf("KeepAlive() = %v with %d requests, want nil, none", err, srv.Stats().TokenRequests-requests)
		}
	})
	t.Run("server's lifetime does not slide", func(t *testing.T) {
		clock, srv := newServer(t, refreshtokentest.Config{Lifetime: 20 * day, RefreshAbsolute: 10 * day, RefreshExpiresInField: "refresh_token_expires_in"})
		ts := lifeSource(t, srv, clock, srv.NewRefreshToken("offline_access"))
		mustToken(t, ts)
		clock.Set(t0.Add(9 * day))
		requests := srv.Stats().TokenRequests
		if err := ts.KeepAlive(ctx); err != nil {
			t.Fatal(err)
		}
		if got := srv.Stats().TokenRequests - requests; got != 1 {
			t.Fatalf("%d requests, want 1: whether the server's lifetime slides is known only by trying", got)
		}
		if at := ts.KeepAliveAt(); !at.IsZero() || !ts.RefreshTokenExpiry().Equal(t0.Add(10*day)) {
			t.Errorf("KeepAliveAt() = %v, RefreshTokenExpiry() = %v, want zero, %v: the refresh did not push the expiry back", at, ts.RefreshTokenExpiry(), t0.Add(10*day))
		}
		clock.Add(12 * time.Hour)
		if err := ts.KeepAlive(ctx); err != nil || srv.Stats().TokenRequests-requests != 1 {
			t.Errorf("KeepAlive() = %v, %d requests, want nil and no more", err, srv.Stats().TokenRequests-requests-1)
		}
	})
}

// TestRefreshExpiryAudiences: the expiry is the refresh token's, shared by
// the sources of its audiences: once it passes, every source knows.
func TestRefreshExpiryAudiences(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, RefreshInactivity: 2 * time.Hour, RefreshExpiresInField: "refresh_token_expires_in"})
	srcs := newGroup(t, srv, clock, srv.NewRefreshToken("offline_access"), []string{apiA, apiB})
	mustToken(t, srcs[0])
	clock.Add(30 * time.Minute)
	mustToken(t, srcs[1]) // B's refresh renews the group's refresh token
	want := t0.Add(30*time.Minute + 2*time.Hour)
	for i, ts := range srcs {
		if got := ts.RefreshTokenExpiry(); !got.Equal(want) {
			t.Errorf("source %d: RefreshTokenExpiry() = %v, want %v", i, got, want)
		}
	}
	clock.Set(want)
	wantExpired(t, srv, srcs[0])
	if h := srcs[1].Health(); !h.Rejected || !errors.Is(srcs[1].Err(), refreshtoken.ErrRefreshTokenExpired) {
		t.Errorf("B: Health() = %+v, Err() = %v, want rejected: the refresh token expired", h, srcs[1].Err())
	}
}
