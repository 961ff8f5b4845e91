package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/redisstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// t0 is the instant the fake clocks of the tests start at.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fakeClock moves only when told to. The sources and the token server of
// a test share one; the leases in Redis run on real time.
type fakeClock = refreshtokentest.Clock

// eventually fails the test if cond does not become true within 10 s: a
// guard against hanging, not a timing claim.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv returns the next value from c, failing the test after 10 s.
func recv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestRoundTrip(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	st := redisstore.New(rs.Client(), "refreshtoken:test:user-1")

	if tok, err := st.Load(ctx); tok != nil || err != nil {
		t.Fatalf("Load of an empty store = %v, %v; want nil, nil", tok, err)
	}
	full := (&oauth2.Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1",
		Expiry: time.Date(2026, 11, 25, 13, 0, 0, 123, time.UTC), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": "id-1", "scope": "openid offline_access",
			"refresh_token_expiry": "2026-12-25T13:00:00.5Z", "refresh_token_family_issued": "2026-11-25T12:00:00Z",
			"dpop_jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
	for _, tc := range []struct {
		name string
		tok  *oauth2.Token
	}{
		{"every field", full},
		{"refresh token only", &oauth2.Token{RefreshToken: "rt-2"}},
		{"access token that never expires", &oauth2.Token{AccessToken: "at-3", TokenType: "Bearer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.Save(ctx, tc.tok); err != nil {
				t.Fatal(err)
			}
			got, err := st.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			opt := cmp.Comparer(func(a, b *oauth2.Token) bool {
				return a.AccessToken == b.AccessToken && a.TokenType == b.TokenType && a.RefreshToken == b.RefreshToken &&
					a.Expiry.Equal(b.Expiry) && a.ExpiresIn == b.ExpiresIn &&
					a.Extra("id_token") == b.Extra("id_token") && a.Extra("scope") == b.Extra("scope") &&
					a.Extra("refresh_token_expiry") == b.Extra("refresh_token_expiry") &&
					a.Extra("refresh_token_family_issued") == b.Extra("refresh_token_family_issued") &&
					a.Extra("dpop_jkt") == b.Extra("dpop_jkt")
			})
			if diff := cmp.Diff(tc.tok, got, opt); diff != "" {
				t.Errorf("Load after Save (-want +got):\n%s", diff)
			}
		})
	}
	if err := st.Save(ctx, &oauth2.Token{TokenType: "Bearer"}); err == nil {
		t.Error("Save of a token with no access and no refresh token succeeded; want an error")
	}
}

func TestLoadRefusesWhatIsNotAToken(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	rdb := rs.Client()
	const secret = "rt-SECRET-in-a-broken-value"
	for _, tc := range []struct {
		name  string
		setup func(key string)
		want  string
	}{
		{"a string", func(key string) { rdb.Set(ctx, key, secret, 0) }, "WRONGTYPE"},
		{"bad expiry", func(key string) { rdb.HSet(ctx, key, "refresh_token", "rt", "expiry", secret) }, "bad expiry"},
		{"bad expires_in", func(key string) { rdb.HSet(ctx, key, "refresh_token", "rt", "expires_in", secret) }, "bad expires_in"},
		{"no token in it", func(key string) { rdb.HSet(ctx, key, "scope", secret) }, "neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "refreshtoken:broken:" + tc.name
			tc.setup(key)
			tok, err := redisstore.New(rdb, key).Load(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, %v; want an error saying %q", tok, err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q quotes the stored value", err)
			}
		})
	}
}

func TestSaveIfCurrent(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		stored    *oauth2.Token // nil: nothing stored
		previous  string
		wantSaved bool
	}{
		{"nothing stored", nil, "rt-0", true},
		{"previous is stored", &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}, "rt-0", true},
		{"a newer token is stored", &oauth2.Token{AccessToken: "at-other", RefreshToken: "rt-other"}, "rt-0", false},
		{"stored token has no refresh token", &oauth2.Token{AccessToken: "at-0"}, "rt-0", true},
		{"the new token is stored already (a retried save)", &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}, "rt-0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := redisstore.New(rs.Client(), "refreshtoken:cas:"+tc.name)
			if tc.stored != nil {
				if err := st.Save(ctx, tc.stored); err != nil {
					t.Fatal(err)
				}
			}
			tok := &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}
			saved, err := st.SaveIfCurrent(ctx, tok, tc.previous)
			if err != nil || saved != tc.wantSaved {
				t.Fatalf("SaveIfCurrent = %v, %v; want %v, nil", saved, err, tc.wantSaved)
			}
			want := tok
			if !saved {
				want = tc.stored
			}
			if got, _ := st.Load(ctx); got == nil || got.RefreshToken != want.RefreshToken || got.AccessToken != want.AccessToken {
				t.Errorf("stored %+v, want %+v", got, want)
			}
		})
	}
}

// TestConformance: two Stores on one key are two handles on one storage.
func TestConformance(t *testing.T) {
	rs := startRedis(t)
	var keys atomic.Int32
	refreshtokentest.TestSharedStore(t, func(*testing.T) (a, b refreshtokentest.SharedStore) {
		key := fmt.Sprintf("refreshtoken:conformance:%d", keys.Add(1))
		return redisstore.New(rs.Client(), key), redisstore.New(rs.Client(), key)
	})
}

// TestLock: one holder at a time; a holder whose lease has ended cannot
// release its successor's lock; a waiter gets the lock as soon as it is
// free.
func TestLock(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	key := "refreshtoken:lock:user-1"
	a := redisstore.New(rs.Client(), key, redisstore.WithLease(time.Hour))
	b := redisstore.New(rs.Client(), key, redisstore.WithLease(200*time.Millisecond))

	before := time.Now()
	expires, unlockA, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if expires.Before(before.Add(time.Hour)) || expires.After(time.Now().Add(time.Hour)) {
		t.Errorf("lease ends at %v, want an hour after the call", expires)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, _, err = b.Lock(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("Lock while held = %v; want a deadline error saying it is locked", err)
	}

	// A waiter gets the lock once the holder releases it.
	got := make(chan func(context.Context) error)
	go func() {
		_, unlock, err := b.Lock(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- unlock
	}()
	if err := unlockA(ctx); err != nil {
		t.Fatal(err)
	}
	unlockB := recv(t, "the waiter's lock", got)

	// b's lease (200 ms) runs out; a takes the lock; b's late unlock must
	// leave a's lock alone.
	_, unlockA, err = a.Lock(ctx) // waits for b's lease to end
	if err != nil {
		t.Fatal(err)
	}
	if err := unlockB(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rs.Client().Exists(ctx, key+":lock").Val(); n != 1 {
		t.Fatal("a holder whose lease had ended released its successor's lock")
	}
	if err := unlockA(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rs.Client().Exists(ctx, key+":lock").Val(); n != 0 {
		t.Error("unlock by the holder left the lock")
	}
}

// replica is one process of a fleet, simulated in the test process: a
// source with its own Redis client (its own connections), sharing the key.
func replica(t *testing.T, srv *refreshtokentest.Server, rs *redisServer, clock *fakeClock, key, refreshToken string, opts ...refreshtoken.Option) *refreshtoken.TokenSource {
	t.Helper()
	st := redisstore.New(rs.Client(), key)
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(st)}, opts...)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: refreshToken}, opts...)
	t.Cleanup(func() { ts.Close() })
	return ts
}

// newServer starts a token server on a new fake clock, closed at the
// test's end.
func newServer(t *testing.T, cfg refreshtokentest.Config) (*fakeClock, *refreshtokentest.Server) {
	t.Helper()
	clock := refreshtokentest.NewClock(t0)
	cfg.Clock = clock.Now
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	return clock, srv
}

func mustToken(t *testing.T, ts *refreshtoken.TokenSource) *oauth2.Token {
	t.Helper()
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token() = %v", err)
	}
	return tok
}

// TestRedisDown: while Redis is down a replica hands out its valid token,
// a refresh that comes due fails without a request to the token endpoint,
// and once Redis is back (with its data) refreshing resumes.
func TestRedisDown(t *testing.T) {
	rs := startRedis(t)
	clock, srv := newServer(t, refreshtokentest.Config{})
	ts := replica(t, srv, rs, clock, "refreshtoken:down:user-1", srv.NewRefreshToken("openid"), refreshtoken.WithJitter(0))
	first := mustToken(t, ts)

	rs.Stop()
	clock.Add(time.Hour - time.Minute) // inside the early window
	if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
		t.Fatalf("with Redis down got %q, want the cached token", tok.AccessToken)
	}
	eventually(t, "the refresh to fail", func() bool { return ts.Err() != nil })
	var re *refreshtoken.RetryError
	if !errors.As(ts.Err(), &re) {
		t.Fatalf("Err() = %v, want a RetryError", ts.Err())
	}
	if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
		t.Errorf("after the failed refresh got %q, want the cached token", tok.AccessToken)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("token requests = %d, want 1: nothing is sent without the lock", n)
	}

	rs.Restart()
	clock.Add(re.RetryAt.Sub(clock.Now()))
	mustToken(t, ts) // starts the refresh after the back-off
	eventually(t, "the refresh after the restart", func() bool { return ts.Err() == nil && srv.Stats().Refreshes == 2 })
	if tok := mustToken(t, ts); tok.AccessToken == first.AccessToken {
		t.Error("no new token after Redis came back")
	}
	if st := srv.Stats(); st.ReuseEvents != 0 {
		t.Errorf("reuse events = %d, want 0: Redis kept the rotated refresh token across its restart", st.ReuseEvents)
	}
}

func TestNoSecretInErrorsOrString(t *testing.T) {
	rs := startRedis(t)
	ctx := context.Background()
	st := redisstore.New(rs.Client(), "refreshtoken:secret:user-1")
	tok := &oauth2.Token{AccessToken: "at-SECRET", RefreshToken: "rt-SECRET"}
	if err := st.Save(ctx, tok); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	var errs []error
	_, err := st.Load(ctx)
	errs = append(errs, err, st.Save(ctx, tok))
	_, err = st.SaveIfCurrent(ctx, tok, "rt-SECRET-previous")
	errs = append(errs, err)
	_, _, err = st.Lock(ctx)
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Errorf("call %d succeeded with Redis down", i)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error %q holds a secret", err)
		}
	}
	for _, s := range []string{st.String(), fmt.Sprintf("%v %+v %#v", st, st, st)} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("%q holds a secret", s)
		}
	}
}
