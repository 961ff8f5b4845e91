package pgstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// t0 is the instant the fake clocks of the tests start at.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

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

// newServer starts a token server on a new fake clock, closed at the
// test's end.
func newServer(t *testing.T, cfg refreshtokentest.Config) (*refreshtokentest.Clock, *refreshtokentest.Server) {
	t.Helper()
	clock := refreshtokentest.NewClock(t0)
	cfg.Clock = clock.Now
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	return clock, srv
}

// replica is one process of a fleet, simulated in the test process: a
// source with its own pool (its own connections), sharing the key. The
// sources and the token server share a fake clock; the leases run on the
// database's real clock.
func replica(t *testing.T, srv *refreshtokentest.Server, pg *PGServer, clock *refreshtokentest.Clock, key, refreshToken string, opts ...refreshtoken.Option) *refreshtoken.TokenSource {
	t.Helper()
	st := pgstore.New(pg.Pool(), key)
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(st)}, opts...)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: refreshToken}, opts...)
	t.Cleanup(func() { ts.Close() })
	return ts
}

func mustToken(t *testing.T, ts *refreshtoken.TokenSource) *oauth2.Token {
	t.Helper()
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token() = %v", err)
	}
	return tok
}

// TestReplicasRefreshOnce: 6 replicas, each with its own pool, of 8
// goroutines each, all with the token expired at once, over 5 lifetimes,
// against a server that rotates refresh tokens and revokes a family on
// reuse: one refresh per lifetime, every replica handed the same token,
// no reuse.
func TestReplicasRefreshOnce(t *testing.T) {
	pg := startPostgres(t)
	clock, srv := newServer(t, refreshtokentest.Config{})
	rt := srv.NewRefreshToken("openid")
	var fleet []*refreshtoken.TokenSource
	for range 6 {
		fleet = append(fleet, replica(t, srv, pg, clock, "replicas:user-1", rt))
	}

	const lifetimes = 5
	for n := 1; n <= lifetimes; n++ {
		got := make(chan string, 48)
		var wg sync.WaitGroup
		for _, ts := range fleet {
			for range 8 {
				wg.Go(func() {
					tok, err := ts.Token()
					if err != nil {
						t.Error(err)
						return
					}
					got <- tok.AccessToken
				})
			}
		}
		wg.Wait()
		close(got)
		seen := map[string]int{}
		for at := range got {
			seen[at]++
		}
		if len(seen) != 1 {
			t.Errorf("lifetime %d: the replicas were handed %d different tokens, want 1", n, len(seen))
		}
		if s := srv.Stats(); s.Refreshes != n || s.TokenRequests != n {
			t.Fatalf("lifetime %d: %d refreshes in %d token requests, want %d in %d", n, s.Refreshes, s.TokenRequests, n, n)
		}
		clock.Add(time.Hour) // every replica's token has expired
	}
	if s := srv.Stats(); s.ReuseEvents != 0 || s.ReplacedSent != 0 {
		t.Errorf("reuse events %d, replaced tokens sent %d; want 0", s.ReuseEvents, s.ReplacedSent)
	}
}

// TestPostgresRestart: while PostgreSQL is down a replica hands out its
// valid token, a refresh that comes due fails without a request to the
// token endpoint, and once PostgreSQL is back (with its data) refreshing
// resumes, from the rotated refresh token it kept.
func TestPostgresRestart(t *testing.T) {
	pg := startPostgres(t)
	clock, srv := newServer(t, refreshtokentest.Config{})
	ts := replica(t, srv, pg, clock, "down:user-1", srv.NewRefreshToken("openid"), refreshtoken.WithJitter(0))
	first := mustToken(t, ts)

	pg.Stop()
	clock.Add(time.Hour - time.Minute) // inside the early window
	if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
		t.Fatalf("with PostgreSQL down got %q, want the cached token", tok.AccessToken)
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

	pg.Restart()
	clock.Add(re.RetryAt.Sub(clock.Now()))
	mustToken(t, ts) // starts the refresh after the back-off
	eventually(t, "the refresh after the restart", func() bool { return ts.Err() == nil && srv.Stats().Refreshes == 2 })
	second := mustToken(t, ts)
	if second.AccessToken == first.AccessToken {
		t.Error("no new token after PostgreSQL came back")
	}

	// A new process, started after the restart, finds the rotated token.
	other := replica(t, srv, pg, clock, "down:user-1", "rt-from-an-old-deployment")
	if tok := mustToken(t, other); tok.AccessToken != second.AccessToken {
		t.Errorf("a new replica got %q, want the stored token", tok.AccessToken)
	}
	if st := srv.Stats(); st.ReuseEvents != 0 || st.Refreshes != 2 {
		t.Errorf("reuse events = %d, refreshes = %d; want 0, 2", st.ReuseEvents, st.Refreshes)
	}
}

// TestConnectionsKilled: with every connection of the pool ended by the
// server (a backend crash, a proxy's restart), a statement fails at most
// once and the pool reconnects; the data is there.
func TestConnectionsKilled(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	st := pgstore.New(pg.Pool(), "killed:user-1")
	if err := st.Save(ctx, &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}); err != nil {
		t.Fatal(err)
	}
	pg.KillConnections()
	var failures int
	for range 3 {
		tok, err := st.Load(ctx)
		if err != nil {
			failures++
			continue
		}
		if tok == nil || tok.RefreshToken != "rt-0" {
			t.Fatalf("Load after the connections were killed = %v; want the stored token", tok)
		}
	}
	if failures > 1 {
		t.Errorf("%d of 3 Loads failed after the connections were killed; want at most 1", failures)
	}
	_, unlock, err := st.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestHungDatabase: a statement that the database does not answer (here,
// blocked by another transaction's lock on the row) ends with its
// context's deadline, and the store works once the database answers.
func TestHungDatabase(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	pool := pg.Pool()
	const key = "hung:user-1"
	st := pgstore.New(pool, key)
	if err := st.Save(ctx, &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}); err != nil {
		t.Fatal(err)
	}
	tx, err := pg.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM refreshtoken_tokens WHERE key = $1 FOR UPDATE`, key); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(context.Context) error{
		"Save": func(ctx context.Context) error {
			return st.Save(ctx, &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"})
		},
		"SaveIfCurrent": func(ctx context.Context) error {
			_, err := st.SaveIfCurrent(ctx, &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}, "rt-0")
			return err
		},
		"Lock": func(ctx context.Context) error { _, _, err := st.Lock(ctx); return err },
	} {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := call(short)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s on a row locked by another transaction = %v; want an error wrapping context.DeadlineExceeded", name, err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if tok, err := st.Load(ctx); err != nil || tok.RefreshToken != "rt-0" {
		t.Errorf("Load after the hang = %v, %v; want the token stored before", tok, err)
	}
}

// pausingStore is a Store whose first SaveIfCurrent waits for release: a
// process paused between the token endpoint's answer and its save (a long
// GC pause, a stopped VM).
type pausingStore struct {
	*pgstore.Store
	paused, release chan struct{}
	once            sync.Once
}

func (p *pausingStore) SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (bool, error) {
	p.once.Do(func() {
		p.paused <- struct{}{}
		<-p.release
	})
	return p.Store.SaveIfCurrent(ctx, tok, previous)
}

// TestPausedPastLease: a process paused between the answer and its save
// for longer than its lease cannot save over the token another process
// refreshed meanwhile (the compare on the refresh token's hash); it drops
// its own and uses the stored one. The second refresh reuses the refresh
// token the first one rotated, which only the server's reuse interval
// accepts: the limit docs/stores.md states.
func TestPausedPastLease(t *testing.T) {
	pg := startPostgres(t)
	clock, srv := newServer(t, refreshtokentest.Config{ReuseInterval: time.Minute})
	rt := srv.NewRefreshToken("openid")
	const key = "paused:user-1"
	paused := &pausingStore{Store: pgstore.New(pg.Pool(), key, pgstore.WithLease(300*time.Millisecond)),
		paused: make(chan struct{}), release: make(chan struct{})}
	a := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(paused))
	t.Cleanup(func() { a.Close() })
	b := replica(t, srv, pg, clock, key, rt)

	atok := make(chan *oauth2.Token, 1)
	go func() {
		tok, err := a.Token()
		if err != nil {
			t.Error(err)
		}
		atok <- tok
	}()
	select {
	case <-paused.paused:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a's refresh to reach its save")
	}
	eventually(t, "a's lease to end", func() bool { return !pg.LeaseHeld(key) })
	btok := mustToken(t, b)
	close(paused.release)
	select {
	case got := <-atok:
		if got == nil || got.AccessToken != btok.AccessToken {
			t.Errorf("a got %v, want b's token: a's own was refused by the store", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a's token")
	}
	if got, err := paused.Load(context.Background()); err != nil || got == nil || got.AccessToken != btok.AccessToken {
		t.Errorf("stored %v, %v; want b's token: the late writer must not overwrite it", got, err)
	}
	if s := srv.Stats(); s.Refreshes != 2 || s.ReuseEvents != 0 || s.ReuseTolerated != 1 {
		t.Errorf("server saw %d refreshes, %d reuse events, %d tolerated; want 2, 0, 1", s.Refreshes, s.ReuseEvents, s.ReuseTolerated)
	}
}

// TestOddScopeKeepsTheRotation: a token server whose answer holds a
// scope PostgreSQL's text cannot hold (a NUL byte, which JSON allows as
// \u0000) has rotated the refresh token all the same: the store keeps the
// new refresh token (without that scope, a field Save may drop), so that
// no other process sends the retired one.
func TestOddScopeKeepsTheRotation(t *testing.T) {
	pg := startPostgres(t)
	clock, srv := newServer(t, refreshtokentest.Config{})
	rt := srv.NewRefreshToken("openid odd\x00scope")
	const key = "odd-scope:user-1"
	a := replica(t, srv, pg, clock, key, rt)
	tok := mustToken(t, a)
	if tok.RefreshToken == rt {
		t.Fatal("the server did not rotate the refresh token")
	}
	if s, _ := tok.Extra("scope").(string); s != "openid odd\x00scope" {
		t.Fatalf("scope %q; want the odd one the server sent", s)
	}
	stored, err := pgstore.New(pg.Pool(), key).Load(context.Background())
	if err != nil || stored == nil || stored.RefreshToken != tok.RefreshToken || stored.AccessToken != tok.AccessToken {
		t.Fatalf("stored %v, %v; want the rotated token", stored, err)
	}
	if s := stored.Extra("scope"); s != nil {
		t.Errorf("stored scope %q; want none", s)
	}
	if id, _ := stored.Extra("id_token").(string); id == "" {
		t.Error("stored no id_token; want the one the server sent")
	}
}
