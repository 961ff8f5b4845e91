package refreshtoken_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// The first promise of the library: a rotated refresh token is never lost,
// a retired one never sent, a valid token never turned into an error. Each
// test here is a way it was found broken (issue 10), and fails on the code
// before the fix.

// lastToken records the tokens passed to WithOnNewToken.
type lastToken struct {
	mu  sync.Mutex
	tok *oauth2.Token
	n   int
}

func (l *lastToken) option() refreshtoken.Option {
	return refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.tok, l.n = tok, l.n+1
		return nil
	})
}

func (l *lastToken) get() (*oauth2.Token, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tok, l.n
}

// TestReissuedAccessTokenRotation (defect 1): a server that answers a
// refresh with the same, still valid, access token and a new refresh token
// has rotated all the same. The new refresh token reaches the callback and
// the store, the source does not keep asking for the token's remaining half
// hour, and a restarted process uses the rotated refresh token.
func TestReissuedAccessTokenRotation(t *testing.T) {
	clock := newFakeClock(t0)
	var cb lastToken
	path := filepath.Join(t.TempDir(), "token.json")
	srv, ts := setup(t, clock, refreshtokentest.Config{}, cb.option(), refreshtoken.WithStore(filestore.New(path)),
		refreshtoken.WithEarlyRefresh(time.Hour)) // half the lifetime: from t0+30m
	first := mustToken(t, ts)

	srv.Inject(1, refreshtokentest.Fault{ReissueAccessToken: true})
	clock.Set(t0.Add(31 * time.Minute))
	mustToken(t, ts) // starts the early refresh
	waitRefresh(t, ts)
	second := mustToken(t, ts)
	if second.AccessToken != first.AccessToken {
		t.Fatalf("the server did not re-issue the access token")
	}
	got, n := cb.get()
	if n != 2 || got.RefreshToken == first.RefreshToken {
		t.Errorf("callback called %d times, last refresh token rotated = %v; want 2 calls, the rotated one", n, got.RefreshToken != first.RefreshToken)
	}
	if st := stored(t, path); st.RefreshToken != got.RefreshToken {
		t.Error("the store does not hold the rotated refresh token")
	}
	for range 60 { // a simulated minute, one call a second
		clock.Add(time.Second)
		mustToken(t, ts)
	}
	if got := srv.Stats().TokenRequests; got != 2 {
		t.Errorf("token requests = %d, want 2: the re-issued token has half an hour left", got)
	}
	ts.Close()

	clock.Add(time.Hour) // a restart once the token has expired
	restarted := process(t, srv, clock, path, first.RefreshToken)
	mustToken(t, restarted)
	if got := srv.Stats(); got.Refreshes != 3 || got.ReplacedSent != 0 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want 3 refreshes and no retired refresh token sent", got)
	}
}

// TestSetTokenWithoutRefreshTokenAfterRejection (defect 4): a SetToken
// that brings no refresh token does not bring back the one the endpoint
// rejected, neither from memory nor from the store.
func TestSetTokenWithoutRefreshTokenAfterRejection(t *testing.T) {
	tests := []struct {
		name  string
		tok   *oauth2.Token
		store bool
	}{
		{name: "nil", tok: nil},
		{name: "access token only", tok: &oauth2.Token{AccessToken: "at-from-elsewhere", Expiry: t0.Add(2 * time.Hour)}},
		{name: "nil, with a store", tok: nil, store: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			var opts []refreshtoken.Option
			if tt.store {
				opts = append(opts, refreshtoken.WithStore(filestore.New(filepath.Join(t.TempDir(), "token.json"))))
			}
			srv, ts := setup(t, clock, refreshtokentest.Config{}, opts...)
			mustToken(t, ts)
			srv.Inject(1, refreshtokentest.Fault{Status: http.StatusBadRequest, Error: "invalid_grant"})
			clock.Add(time.Hour)
			if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
				t.Fatalf("Token() error = %v, want ErrRefreshRejected", err)
			}
			before := srv.Stats().TokenRequests

			if err := ts.SetToken(tt.tok); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				ts.Token()
				clock.Add(2 * time.Hour) // past any back-off, and the access token's expiry
			}
			if got := srv.Stats().TokenRequests; got != before {
				t.Errorf("token requests = %d after SetToken, want %d: the rejected refresh token was sent again", got, before)
			}
		})
	}
}

// TestInvalidateTwice (defect 6): an explicit Invalidate always makes the
// next call refresh; the guard against an API that rejects every token is
// for 401s only.
func TestInvalidateTwice(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	mustToken(t, ts)
	ts.Invalidate()
	ts.Invalidate()
	mustToken(t, ts)
	ts.Invalidate()
	mustToken(t, ts) // a token fetched after an Invalidate, invalidated in turn
	ts.Invalidate()
	mustToken(t, ts)
	if got := srv.Stats().TokenRequests; got != 4 {
		t.Errorf("token requests = %d, want 4: one per Invalidate and the first", got)
	}
	if err := ts.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
}

// TestNoErrorWhileTokenValid (defect 11): with short tokens, as an Ory Hydra
// setup gives (4 s), and transient failures of the refresh, no caller gets
// an error while the source holds a token that is still valid. Requests are
// answered at random with 503, dropped connections or success; the clock
// moves in 50 ms steps over 40 token lifetimes.
func TestNoErrorWhileTokenValid(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		clock := newFakeClock(t0)
		var cb lastToken
		srv, ts := setup(t, clock, refreshtokentest.Config{Lifetime: 4 * time.Second}, cb.option())
		mustToken(t, ts)
		rng := rand.New(rand.NewPCG(seed, 0))
		for range 1000 {
			switch rng.IntN(3) {
			case 0:
				srv.Inject(1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
			case 1:
				srv.Inject(1, refreshtokentest.Fault{Drop: true})
			default:
				srv.Inject(1, refreshtokentest.Fault{})
			}
		}
		var served, whileValid, afterExpiry int
		for range 40 * 4 * 20 {
			clock.Add(50 * time.Millisecond)
			now := clock.Now()
			held, _ := cb.get()
			_, err := ts.Token()
			switch {
			case err == nil:
				served++
			case now.Before(held.Expiry):
				whileValid++
				if whileValid < 5 {
					t.Errorf("seed %d: error at %v with a token valid until %v: %v", seed, now.Sub(t0), held.Expiry.Sub(t0), err)
				}
			default:
				afterExpiry++
			}
			waitRefresh(t, ts)
		}
		if whileValid > 0 {
			t.Errorf("seed %d: %d errors while a valid token was held", seed, whileValid)
		}
		st := srv.Stats()
		if st.Refreshes < 20 || st.ReplacedSent != 0 {
			t.Errorf("seed %d: server stats = %+v, want refreshes to keep up, no retired token sent", seed, st)
		}
		t.Logf("seed %d: %d served, %d errors after expiry, %d token requests", seed, served, afterExpiry, st.TokenRequests)
	}
}

// waitRefresh returns once no background refresh of ts is running, so
// that the test's clock does not race it.
func waitRefresh(t *testing.T, ts *refreshtoken.TokenSource) {
	t.Helper()
	refreshtoken.WaitIdle(ts)
}
