package refreshtoken_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// TestReplicasRefreshOnce: 8 replicas of 10 goroutines each, all with
// the token expired at once, over 5 lifetimes: one refresh per lifetime,
// and every replica ends up with the same token.
func TestReplicasRefreshOnce(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	rt := srv.NewRefreshToken("openid")
	st := sharedStore(0)
	var fleet []*refreshtoken.TokenSource
	for range 8 {
		fleet = append(fleet, replica(t, srv, clock, st, rt))
	}

	const lifetimes = 5
	for n := 1; n <= lifetimes; n++ {
		got := make(chan string, 80)
		var wg sync.WaitGroup
		for _, ts := range fleet {
			for range 10 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tok, err := ts.Token()
					if err != nil {
						t.Error(err)
						return
					}
					got <- tok.AccessToken
				}()
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

// TestReplicaUsesStoredToken: a replica whose token comes due after
// another has refreshed it takes the stored token and sends nothing, in the
// early window (background) and after a 401 alike.
func TestReplicaUsesStoredToken(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	rt := srv.NewRefreshToken("openid")
	st := sharedStore(0)
	a := replica(t, srv, clock, st, rt, refreshtoken.WithJitter(0))
	b := replica(t, srv, clock, st, rt, refreshtoken.WithJitter(0))

	first := mustToken(t, a)
	if tok := mustToken(t, b); tok.AccessToken != first.AccessToken {
		t.Fatalf("b got %q, want a's token from the store", tok.AccessToken)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Fatalf("token requests = %d, want 1", n)
	}

	clock.Add(time.Hour - 2*time.Minute) // the early window opens for both
	mustToken(t, a)                      // starts a's background refresh
	eventually(t, "a's background refresh", func() bool { return srv.Stats().Refreshes == 2 })
	eventually(t, "a's new token", func() bool { return mustToken(t, a).AccessToken != first.AccessToken })
	second := mustToken(t, a)
	mustToken(t, b) // starts b's refresh, which finds a's token in the store
	eventually(t, "b to take a's token", func() bool { return mustToken(t, b).AccessToken == second.AccessToken })
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Errorf("token requests = %d, want 2: b must use a's token", n)
	}

	// A 401 for the shared token: a refreshes, and b, told of the same 401,
	// takes a's new token instead of refreshing again or going back to the
	// rejected one.
	a.InvalidateToken(second)
	third := mustToken(t, a)
	b.InvalidateToken(second)
	if tok := mustToken(t, b); tok.AccessToken != third.AccessToken {
		t.Errorf("after the 401, b got %q, want a's new token", tok.AccessToken)
	}
	if n := srv.Stats().TokenRequests; n != 3 {
		t.Errorf("token requests = %d, want 3", n)
	}
}

// pausingStore is a shared store whose first SaveIfCurrent waits for
// release: a process paused between the answer and its Save (a long GC
// pause, a stopped VM).
type pausingStore struct {
	*refreshtokentest.MemoryStore
	paused, release chan struct{}
	once            sync.Once
}

func (p *pausingStore) SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (bool, error) {
	p.once.Do(func() {
		p.paused <- struct{}{}
		<-p.release
	})
	return p.MemoryStore.SaveIfCurrent(ctx, tok, previous)
}

// TestLeaseShorterThanRefresh: a refresh that outlives its lease neither
// sends a refresh token another process is sending, nor overwrites the
// newer token another process saved.
func TestLeaseShorterThanRefresh(t *testing.T) {
	t.Run("slow endpoint", func(t *testing.T) {
		// The source bounds its request by the lease left on the real
		// clock: this lease runs out, on the real clock, during the test.
		const lease = 300 * time.Millisecond
		clock, srv := newServer(t, refreshtokentest.Config{})
		rt := srv.NewRefreshToken("openid")
		st := sharedStore(lease)
		opts := []refreshtoken.Option{refreshtoken.WithRefreshTimeout(time.Minute)}
		a := replica(t, srv, clock, st, rt, opts...)
		b := replica(t, srv, clock, st, rt, opts...)

		// a's request hangs; a gives it up within its lease, before
		// another process could take the lock and send the same token.
		srv.Inject(1, refreshtokentest.Fault{Latency: time.Hour})
		_, err := a.Token()
		var re *refreshtoken.RetryError
		if !errors.As(err, &re) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a: Token() = %v; want a RetryError for the request cut short at the lease", err)
		}
		btok := mustToken(t, b)
		clock.Add(re.RetryAt.Sub(clock.Now()))
		if atok := mustToken(t, a); atok.AccessToken != btok.AccessToken {
			t.Errorf("a got %q after its back-off, want b's token from the store", atok.AccessToken)
		}
		s := srv.Stats()
		if s.TokenRequests != 2 || s.Refreshes != 1 || s.ReuseEvents != 0 || s.ReuseTolerated != 0 {
			t.Errorf("server saw %d requests, %d refreshes, %d reuse events, %d tolerated; want 2, 1, 0, 0", s.TokenRequests, s.Refreshes, s.ReuseEvents, s.ReuseTolerated)
		}
	})

	t.Run("pause before the save", func(t *testing.T) {
		// b's refresh is a reuse of the token a has just used: Auth0's
		// reuse interval tolerates it, and keeps b's (the later) token.
		clock, srv := newServer(t, refreshtokentest.Config{ReuseInterval: time.Minute})
		rt := srv.NewRefreshToken("openid")
		st := sharedStore(0)
		paused := &pausingStore{MemoryStore: st, paused: make(chan struct{}), release: make(chan struct{})}
		a := replica(t, srv, clock, paused, rt)
		b := replica(t, srv, clock, st, rt)

		st.SetFaults(refreshtokentest.StoreFaults{LoseLock: true}) // a's lease ends while it is paused
		atok := make(chan *oauth2.Token)
		go func() {
			tok, err := a.Token()
			if err != nil {
				t.Error(err)
			}
			atok <- tok
		}()
		recv(t, "a's refresh to reach its Save", paused.paused)
		st.SetFaults(refreshtokentest.StoreFaults{})
		btok := mustToken(t, b)
		close(paused.release)
		if got := recv(t, "a's token", atok); got == nil || got.AccessToken != btok.AccessToken {
			t.Errorf("a got %v, want b's token: a's own was refused by the store", got)
		}
		if got := st.Stored(); got == nil || got.AccessToken != btok.AccessToken {
			t.Errorf("stored %v, want b's token: the late writer must not overwrite it", got)
		}

		// The fleet goes on from b's refresh token.
		clock.Add(time.Hour)
		next := mustToken(t, a)
		if tok := mustToken(t, b); tok.AccessToken != next.AccessToken {
			t.Errorf("after expiry b got %q, a %q; want the same token", tok.AccessToken, next.AccessToken)
		}
		s := srv.Stats()
		if s.Refreshes != 3 || s.ReuseEvents != 0 || s.ReuseTolerated != 1 {
			t.Errorf("server saw %d refreshes, %d reuse events, %d tolerated; want 3, 0, 1", s.Refreshes, s.ReuseEvents, s.ReuseTolerated)
		}
	})
}
