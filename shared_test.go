package refreshtoken_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// The tests of the shared-store protocol (lock, load again, compare and
// save) run the sources and the token server on a fake clock, and share a
// MemoryStore between the sources of a fleet. Its leases run on the real
// clock, as Redis's do: a source bounds its request by the lease left on
// the real clock. The leases are long, and a lease that must end is lost
// with the LoseLock fault.

var _ refreshtoken.SharedStore = (*refreshtokentest.MemoryStore)(nil)

// errBroken is the error of a store that is down.
var errBroken = errors.New("test: store unreachable")

// sharedStore returns an empty MemoryStore with leases of lease (30 s if
// 0) on the real clock.
func sharedStore(lease time.Duration) *refreshtokentest.MemoryStore {
	return refreshtokentest.NewMemoryStore(nil, lease)
}

// newServer starts a token server on a new fake clock, closed at the
// test's end.
func newServer(t *testing.T, cfg refreshtokentest.Config) (*fakeClock, *refreshtokentest.Server) {
	t.Helper()
	clock := newFakeClock(t0)
	cfg.Clock = clock.Now
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	return clock, srv
}

// replica is one process of a fleet, simulated in the test process: a
// source on clock that keeps its token in st, which the fleet shares.
func replica(t *testing.T, srv *refreshtokentest.Server, clock *fakeClock, st refreshtoken.Store, refreshToken string, opts ...refreshtoken.Option) *refreshtoken.TokenSource {
	t.Helper()
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(st),
		refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil))}, opts...)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: refreshToken}, opts...)
	t.Cleanup(func() { ts.Close() })
	return ts
}

// sharedRig is a replica with its store, token server and clock.
type sharedRig struct {
	clock *fakeClock
	srv   *refreshtokentest.Server
	st    *refreshtokentest.MemoryStore
	ts    *refreshtoken.TokenSource
}

func newSharedRig(t *testing.T, lease time.Duration) sharedRig {
	t.Helper()
	var r sharedRig
	r.clock, r.srv = newServer(t, refreshtokentest.Config{})
	r.st = sharedStore(lease)
	r.ts = replica(t, r.srv, r.clock, r.st, r.srv.NewRefreshToken("openid"))
	return r
}

// refreshUnsaved gets a token, then has the refresh at its expiry fail to
// save: the new token is in use, its Save pending.
func (r sharedRig) refreshUnsaved(t *testing.T) {
	t.Helper()
	mustToken(t, r.ts)
	r.st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	r.clock.Add(time.Hour)
	if _, err := r.ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() with saves failing = %v, want ErrNotSaved", err)
	}
}

// TestPendingSaveBeforeRefresh: with a shared store, a token whose Save
// failed is saved before any new refresh. Refreshing from its refresh
// token, which the store has never held, would have its Save refused, and
// the rotated token would be lost: the next refresh would be a reuse.
func TestPendingSaveBeforeRefresh(t *testing.T) {
	r := newSharedRig(t, 0)
	clock, srv, st, ts := r.clock, r.srv, r.st, r.ts
	r.refreshUnsaved(t)
	unsaved := mustToken(t, ts) // in use all the same
	ts.InvalidateToken(unsaved) // the API answers 401: a refresh is due
	clock.Add(time.Minute)      // past the back-off of the failed Save
	_, err := ts.Token()
	if !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() after the 401 = %v, want ErrNotSaved: the pending Save must come first", err)
	}
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Fatalf("token requests = %d, want 2: no refresh while a Save is pending", n)
	}

	st.SetFaults(refreshtokentest.StoreFaults{})
	clock.Add(time.Minute) // past the back-off
	tok := mustToken(t, ts)
	if tok.AccessToken == unsaved.AccessToken {
		t.Error("the token rejected by the API was handed out again")
	}
	if stored := st.Stored(); stored == nil || stored.AccessToken != tok.AccessToken {
		t.Errorf("stored %v, want the token in use", stored)
	}
	if s := srv.Stats(); s.ReuseEvents != 0 || s.ReplacedSent != 0 || s.Refreshes != 3 {
		t.Errorf("server: %d refreshes, %d reuse events, %d replaced tokens sent; want 3, 0, 0", s.Refreshes, s.ReuseEvents, s.ReplacedSent)
	}
}

// TestSetTokenRetryKeepsNewerToken: a SetToken whose Save landed but
// reported a failure is retried with a compare, so that it does not
// overwrite the token another process has since refreshed from it.
func TestSetTokenRetryKeepsNewerToken(t *testing.T) {
	r := newSharedRig(t, 0)
	clock, srv, st, a := r.clock, r.srv, r.st, r.ts
	b := replica(t, srv, clock, st, "rt-unused")
	mustToken(t, a)

	signedIn := &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid")} // the user signed in again
	st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken, SaveLands: true})
	if err := a.SetToken(signedIn); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken = %v, want ErrNotSaved", err)
	}
	st.SetFaults(refreshtokentest.StoreFaults{})
	clock.Add(time.Hour)
	btok := mustToken(t, b) // b refreshes from the token SetToken saved
	if err := a.Flush(); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if stored := st.Stored(); stored == nil || stored.AccessToken != btok.AccessToken {
		t.Fatalf("stored %v, want b's token: the retried SetToken must not overwrite it", stored)
	}
	if atok := mustToken(t, a); atok.AccessToken != btok.AccessToken {
		t.Errorf("a got %q, want b's token", atok.AccessToken)
	}
	if s := srv.Stats(); s.ReuseEvents != 0 {
		t.Errorf("reuse events = %d, want 0", s.ReuseEvents)
	}
}

// TestFailedRefreshBurst: callers that arrive while a refresh is in flight
// share it, or one more call, and a refresh that fails with the store down
// sets one back-off, not one per caller.
func TestFailedRefreshBurst(t *testing.T) {
	clock := newFakeClock(t0)
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	var hold atomic.Bool
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, OnTokenRequest: func(*http.Request) {
		if hold.Load() {
			arrived <- struct{}{}
			<-release
		}
	}})
	defer srv.Close()
	st := sharedStore(0)
	ts := replica(t, srv, clock, st, srv.NewRefreshToken("openid"))
	mustToken(t, ts)

	hold.Store(true)
	srv.Inject(1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
	clock.Add(time.Hour)
	loads := st.Stats().Loads
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ts.Token()
			errs <- err
		}()
	}
	recv(t, "the refresh", arrived)
	st.SetFaults(refreshtokentest.StoreFaults{Load: errBroken, Save: errBroken}) // the store goes down
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		var re *refreshtoken.RetryError
		if !errors.As(err, &re) {
			t.Fatalf("Token() = %v, want a RetryError", err)
		}
		if d := re.RetryAt.Sub(clock.Now()); d > time.Second {
			t.Errorf("retry in %v, want at most 1 s: one failure, not one per caller", d)
		}
	}
	if n := st.Stats().Loads - loads; n > 2 {
		t.Errorf("%d loads for one refresh, want at most 2 (before and inside the lock)", n)
	}
}

// TestLockKeptAfterUncertainFailure: a refresh whose request got no answer
// may still be acted on by the server, so its lock is left to the lease;
// a refresh the server refused releases it at once.
func TestLockKeptAfterUncertainFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fault    refreshtokentest.Fault
		wantKept bool
	}{
		{"connection dropped", refreshtokentest.Fault{Drop: true}, true},
		{"503 answer", refreshtokentest.Fault{Status: http.StatusServiceUnavailable}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock, srv := newServer(t, refreshtokentest.Config{})
			st := sharedStore(time.Hour)
			ts := replica(t, srv, clock, st, srv.NewRefreshToken("openid"))
			srv.Inject(1, tc.fault)
			if _, err := ts.Token(); err == nil {
				t.Fatal("Token() succeeded, want the injected failure")
			}
			if kept := st.Locked(); kept != tc.wantKept {
				t.Errorf("lock kept = %v, want %v", kept, tc.wantKept)
			}
		})
	}
}

// counterSource issues a new token with a refresh token at every call, as
// an inner source that rotates would.
type counterSource struct{ n atomic.Int32 }

func (c *counterSource) Token() (*oauth2.Token, error) {
	n := c.n.Add(1)
	return &oauth2.Token{AccessToken: fmt.Sprintf("at-%d", n), RefreshToken: fmt.Sprintf("rt-%d", n), Expiry: t0.Add(time.Duration(n) * time.Hour)}, nil
}

// TestCacheWithSharedStore: Cache compares with the refresh token of the
// token it last loaded or saved, and keeps sharing its tokens after the
// first.
func TestCacheWithSharedStore(t *testing.T) {
	clock := newFakeClock(t0)
	st := sharedStore(0)
	ts := refreshtoken.Cache(&counterSource{}, refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(st))
	defer ts.Close()
	for round := 1; round <= 3; round++ {
		tok, err := ts.Token()
		if err != nil {
			t.Fatalf("round %d: Token() = %v", round, err)
		}
		if stored := st.Stored(); stored == nil || stored.AccessToken != tok.AccessToken {
			t.Fatalf("round %d: stored %v, want the token handed out (%s)", round, stored, tok.AccessToken)
		}
		clock.Add(time.Hour)
	}
}

// TestSetTokenRetryAfterPendingRefresh: a SetToken whose Save fails while a
// refreshed token's Save is pending is retried against what the store
// holds, not against the unsaved refresh token in memory, and the
// signed-in token ends up in the store and in use.
func TestSetTokenRetryAfterPendingRefresh(t *testing.T) {
	r := newSharedRig(t, 0)
	srv, st, ts := r.srv, r.st, r.ts
	r.refreshUnsaved(t)
	signedIn := srv.NewRefreshToken("openid")
	if err := ts.SetToken(&oauth2.Token{RefreshToken: signedIn}); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken = %v, want ErrNotSaved", err)
	}
	st.SetFaults(refreshtokentest.StoreFaults{})
	if err := ts.Flush(); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if stored := st.Stored(); stored == nil || stored.RefreshToken != signedIn {
		t.Fatalf("stored %v, want the signed-in refresh token", stored)
	}
	mustToken(t, ts)
	if s := srv.Stats(); s.ReuseEvents != 0 || s.ReplacedSent != 0 {
		t.Errorf("reuse events %d, replaced tokens sent %d; want 0", s.ReuseEvents, s.ReplacedSent)
	}
}

// TestSetTokenBeforeFirstLoad: a source that has never read the store
// saves SetToken's token whatever the store holds, when the first Save
// fails and is retried.
func TestSetTokenBeforeFirstLoad(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	st := sharedStore(0)
	st.Put(&oauth2.Token{RefreshToken: "rt-revoked-long-ago"})
	ts := refreshtoken.New(context.Background(), srv.Config(), nil, refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(st))
	defer ts.Close()
	signedIn := srv.NewRefreshToken("openid")
	st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	if err := ts.SetToken(&oauth2.Token{RefreshToken: signedIn}); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken = %v, want ErrNotSaved", err)
	}
	st.SetFaults(refreshtokentest.StoreFaults{})
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() = %v, want a token from the signed-in refresh token", err)
	}
}

// TestLockKeptAfterFailedSave: when the Save of a rotated token fails, the
// store still holds the refresh token the server has retired: the lock is
// left to its lease, so that no other process sends it meanwhile.
func TestLockKeptAfterFailedSave(t *testing.T) {
	r := newSharedRig(t, time.Hour)
	st, ts := r.st, r.ts
	st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() = %v, want ErrNotSaved", err)
	}
	if !st.Locked() {
		t.Error("lock released after a failed Save: another process could send the retired refresh token")
	}
}

// TestLockReleasedWhenNothingWasSent: a refresh that fails before sending
// anything (here: no refresh token at all) releases the lock at once.
func TestLockReleasedWhenNothingWasSent(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	st := sharedStore(time.Hour)
	ts := refreshtoken.New(context.Background(), srv.Config(), nil, refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(st))
	defer ts.Close()
	if _, err := ts.Token(); err == nil {
		t.Fatal("Token() without any refresh token succeeded")
	}
	if st.Locked() {
		t.Error("lock held after a refresh that sent nothing")
	}
}
