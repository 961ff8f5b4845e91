package redisstore_test

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
	"github.com/tokenfresh/refreshtoken/redisstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// flakyStore is a real redisstore.Store whose saves can be made to fail, or
// to land and then report a failure (a reply lost on the way back), and
// which counts its Loads.
type flakyStore struct {
	*redisstore.Store
	failSaves atomic.Bool // saves fail without reaching Redis
	loseReply atomic.Bool // saves reach Redis, then report a failure
	loads     atomic.Int32
}

var errBroken = errors.New("test: Redis unreachable")

func (f *flakyStore) Load(ctx context.Context) (*oauth2.Token, error) {
	f.loads.Add(1)
	return f.Store.Load(ctx)
}

func (f *flakyStore) Save(ctx context.Context, tok *oauth2.Token) error {
	if f.failSaves.Load() {
		return errBroken
	}
	if err := f.Store.Save(ctx, tok); err != nil || !f.loseReply.Load() {
		return err
	}
	return errBroken
}

func (f *flakyStore) SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (bool, error) {
	if f.failSaves.Load() {
		return false, errBroken
	}
	return f.Store.SaveIfCurrent(ctx, tok, previous)
}

// flakyRig is a replica with a flakyStore, its Redis, token server and
// clock.
type flakyRig struct {
	rs    *redisServer
	clock *fakeClock
	srv   *refreshtokentest.Server
	st    *flakyStore
	ts    *refreshtoken.TokenSource
}

func newFlakyRig(t *testing.T, key string, opts ...redisstore.Option) flakyRig {
	t.Helper()
	r := flakyRig{rs: startRedis(t)}
	r.clock, r.srv = newServer(t, refreshtokentest.Config{})
	r.st = &flakyStore{Store: redisstore.New(r.rs.Client(), key, opts...)}
	r.ts = replicaWith(t, r.srv, r.clock, r.st, r.srv.NewRefreshToken("openid"))
	return r
}

// refreshUnsaved gets a token, then has the refresh at its expiry fail to
// save: the new token is in use, its Save pending.
func (r flakyRig) refreshUnsaved(t *testing.T) {
	t.Helper()
	mustToken(t, r.ts)
	r.st.failSaves.Store(true)
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
	key := "refreshtoken:pending:user-1"
	r := newFlakyRig(t, key)
	rs, clock, srv, st, ts := r.rs, r.clock, r.srv, r.st, r.ts
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

	st.failSaves.Store(false)
	clock.Add(time.Minute) // past the back-off
	tok := mustToken(t, ts)
	if tok.AccessToken == unsaved.AccessToken {
		t.Error("the token rejected by the API was handed out again")
	}
	stored, _ := redisstore.New(rs.Client(), key).Load(context.Background())
	if stored == nil || stored.AccessToken != tok.AccessToken {
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
	key := "refreshtoken:settoken:user-1"
	r := newFlakyRig(t, key)
	rs, clock, srv, st, a := r.rs, r.clock, r.srv, r.st, r.ts
	b := replica(t, srv, rs, clock, key, "rt-unused")
	mustToken(t, a)

	signedIn := &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid")} // the user signed in again
	st.loseReply.Store(true)
	if err := a.SetToken(signedIn); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken = %v, want ErrNotSaved", err)
	}
	st.loseReply.Store(false)
	clock.Add(time.Hour)
	btok := mustToken(t, b) // b refreshes from the token SetToken saved
	if err := a.Flush(); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	stored, _ := redisstore.New(rs.Client(), key).Load(context.Background())
	if stored == nil || stored.AccessToken != btok.AccessToken {
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
// share it, or one more call, and a refresh that fails with Redis down
// sets one back-off, not one per caller.
func TestFailedRefreshBurst(t *testing.T) {
	rs := startRedis(t)
	clock := &fakeClock{now: t0}
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	var hold atomic.Bool
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, OnTokenRequest: func(*http.Request) {
		if hold.Load() {
			arrived <- struct{}{}
			<-release
		}
	}})
	defer srv.Close()
	st := &flakyStore{Store: redisstore.New(rs.Client(), "refreshtoken:burst:user-1")}
	ts := replicaWith(t, srv, clock, st, srv.NewRefreshToken("openid"))
	mustToken(t, ts)

	hold.Store(true)
	srv.Inject(1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
	clock.Add(time.Hour)
	loads := st.loads.Load()
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
	rs.Stop()
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
	if n := st.loads.Load() - loads; n > 2 {
		t.Errorf("%d loads for one refresh, want at most 2 (before and inside the lock)", n)
	}
}

// TestLockKeptAfterUncertainFailure: a refresh whose request got no answer
// may still be acted on by the server, so its lock is left to the lease;
// a refresh the server refused releases it at once.
func TestLockKeptAfterUncertainFailure(t *testing.T) {
	rs := startRedis(t)
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
			key := "refreshtoken:uncertain:" + tc.name
			ts := replicaWith(t, srv, clock, redisstore.New(rs.Client(), key, redisstore.WithLease(time.Hour)), srv.NewRefreshToken("openid"))
			srv.Inject(1, tc.fault)
			if _, err := ts.Token(); err == nil {
				t.Fatal("Token() succeeded, want the injected failure")
			}
			if kept := rs.Client().Exists(context.Background(), key+":lock").Val() == 1; kept != tc.wantKept {
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
	rs := startRedis(t)
	clock := &fakeClock{now: t0}
	key := "refreshtoken:cache:client-1"
	src := &counterSource{}
	ts := refreshtoken.Cache(src, refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(redisstore.New(rs.Client(), key)))
	defer ts.Close()
	for round := 1; round <= 3; round++ {
		tok, err := ts.Token()
		if err != nil {
			t.Fatalf("round %d: Token() = %v", round, err)
		}
		stored, _ := redisstore.New(rs.Client(), key).Load(context.Background())
		if stored == nil || stored.AccessToken != tok.AccessToken {
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
	key := "refreshtoken:settoken-pending:user-1"
	r := newFlakyRig(t, key)
	rs, srv, st, ts := r.rs, r.srv, r.st, r.ts
	r.refreshUnsaved(t)
	signedIn := srv.NewRefreshToken("openid")
	if err := ts.SetToken(&oauth2.Token{RefreshToken: signedIn}); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken = %v, want ErrNotSaved", err)
	}
	st.failSaves.Store(false)
	if err := ts.Flush(); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if stored, _ := redisstore.New(rs.Client(), key).Load(context.Background()); stored == nil || stored.RefreshToken != signedIn {
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
	rs := startRedis(t)
	clock, srv := newServer(t, refreshtokentest.Config{})
	key := "refreshtoken:settoken-first:user-1"
	if err := redisstore.New(rs.Client(), key).Save(context.Background(), &oauth2.Token{RefreshToken: "rt-revoked-long-ago"}); err != nil {
		t.Fatal(err)
	}
	st := &flakyStore{Store: redisstore.New(rs.Client(), key)}
	ts := refreshtoken.New(context.Background(), srv.Config(), nil, refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(st))
	defer ts.Close()
	signedIn := srv.NewRefreshToken("openid")
	st.failSaves.Store(true)
	if err := ts.SetToken(&oauth2.Token{RefreshToken: signedIn}); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken = %v, want ErrNotSaved", err)
	}
	st.failSaves.Store(false)
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() = %v, want a token from the signed-in refresh token", err)
	}
}

// TestLockKeptAfterFailedSave: when the Save of a rotated token fails, the
// store still holds the refresh token the server has retired: the lock is
// left to its lease, so that no other process sends it meanwhile.
func TestLockKeptAfterFailedSave(t *testing.T) {
	key := "refreshtoken:savefails:user-1"
	r := newFlakyRig(t, key, redisstore.WithLease(time.Hour))
	rs, st, ts := r.rs, r.st, r.ts
	st.failSaves.Store(true)
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() = %v, want ErrNotSaved", err)
	}
	if rs.Client().Exists(context.Background(), key+":lock").Val() != 1 {
		t.Error("lock released after a failed Save: another process could send the retired refresh token")
	}
}

// TestLockReleasedWhenNothingWasSent: a refresh that fails before sending
// anything (here: no refresh token at all) releases the lock at once.
func TestLockReleasedWhenNothingWasSent(t *testing.T) {
	rs := startRedis(t)
	clock, srv := newServer(t, refreshtokentest.Config{})
	key := "refreshtoken:unsent:user-1"
	ts := refreshtoken.New(context.Background(), srv.Config(), nil, refreshtoken.WithClock(clock.Now),
		refreshtoken.WithStore(redisstore.New(rs.Client(), key, redisstore.WithLease(time.Hour))))
	defer ts.Close()
	if _, err := ts.Token(); err == nil {
		t.Fatal("Token() without any refresh token succeeded")
	}
	if rs.Client().Exists(context.Background(), key+":lock").Val() != 0 {
		t.Error("lock held after a refresh that sent nothing")
	}
}
