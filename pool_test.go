package refreshtoken_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// keyStores is a Pool's store function over MemoryStores, one per key,
// made on first use and kept: the stores outlive the Pool's sources, as a
// database does.
type keyStores struct {
	clock  func() time.Time
	shared bool // hand out the MemoryStore itself (a SharedStore), else only its Load and Save

	mu    sync.Mutex
	m     map[string]*refreshtokentest.MemoryStore
	calls int // calls of store
}

func newKeyStores(clock func() time.Time, shared bool) *keyStores {
	return &keyStores{clock: clock, shared: shared, m: map[string]*refreshtokentest.MemoryStore{}}
}

func (ks *keyStores) get(key string) *refreshtokentest.MemoryStore {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	st := ks.m[key]
	if st == nil {
		st = refreshtokentest.NewMemoryStore(ks.clock, 0)
		ks.m[key] = st
	}
	return st
}

func (ks *keyStores) store(key string) refreshtoken.Store {
	st := ks.get(key)
	ks.mu.Lock()
	ks.calls++
	ks.mu.Unlock()
	if ks.shared {
		return st
	}
	return struct{ refreshtoken.Store }{st} // Load and Save only
}

// poolRig is a token server on a fake clock and a Pool over its stores.
type poolRig struct {
	clock  *fakeClock
	srv    *refreshtokentest.Server
	stores *keyStores
	pool   *refreshtoken.Pool
}

func newPoolRig(t *testing.T, cfg refreshtokentest.Config, opts ...refreshtoken.Option) *poolRig {
	t.Helper()
	r := &poolRig{clock: newFakeClock(t0)}
	cfg.Clock = r.clock.Now
	r.srv = refreshtokentest.NewServer(cfg)
	t.Cleanup(r.srv.Close)
	r.stores = newKeyStores(r.clock.Now, false)
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(r.clock.Now)}, opts...)
	r.pool = refreshtoken.NewPool(context.Background(), r.srv.Config(), r.stores.store, opts...)
	t.Cleanup(func() {
		if err := r.pool.Close(); err != nil {
			t.Errorf("Pool.Close() = %v", err)
		}
	})
	return r
}

// login gives key a new refresh token of the server's, through SetToken.
func (r *poolRig) login(t *testing.T, key string) {
	t.Helper()
	if err := r.pool.SetToken(context.Background(), key, &oauth2.Token{RefreshToken: r.srv.NewRefreshToken("offline_access")}); err != nil {
		t.Fatalf("SetToken(%q) = %v", key, err)
	}
}

func (r *poolRig) token(t *testing.T, key string) *oauth2.Token {
	t.Helper()
	tok, err := r.pool.Token(context.Background(), key)
	if err != nil {
		t.Fatalf("Token(%q) = %v", key, err)
	}
	return tok
}

// checkNoReuse fails the test if the server saw a retired refresh token.
func (r *poolRig) checkNoReuse(t *testing.T) {
	t.Helper()
	if st := r.srv.Stats(); st.ReuseEvents != 0 {
		t.Errorf("server saw %d reuses of a retired refresh token, want 0", st.ReuseEvents)
	}
}

// TestPoolKeys: each key gets its own token; a key whose store holds
// nothing gets ErrNoToken, sends nothing, and works once SetToken gives
// it a token.
func TestPoolKeys(t *testing.T) {
	r := newPoolRig(t, refreshtokentest.Config{})
	r.login(t, "alice")
	r.login(t, "bob")
	a, b := r.token(t, "alice"), r.token(t, "bob")
	if a.AccessToken == b.AccessToken {
		t.Error("alice and bob got the same access token")
	}
	if got := r.token(t, "alice"); got.AccessToken != a.AccessToken {
		t.Error("alice's second Token() is a new access token, want the cached one")
	}
	before := r.srv.Stats().TokenRequests
	_, err := r.pool.Token(context.Background(), "carol")
	if !errors.Is(err, refreshtoken.ErrNoToken) {
		t.Fatalf("Token(carol), nothing stored = %v, want ErrNoToken", err)
	}
	if got := r.srv.Stats().TokenRequests; got != before {
		t.Errorf("a key with no token sent %d requests, want 0", got-before)
	}
	r.login(t, "carol")
	r.token(t, "carol")
	if got, want := r.srv.Stats().Refreshes, 3; got != want {
		t.Errorf("server refreshes = %d, want %d (one per key)", got, want)
	}
	if got := r.pool.Len(); got != 3 {
		t.Errorf("Len() = %d, want 3", got)
	}
	r.checkNoReuse(t)
}

// TestPoolEvictedComesBackFromStore: beyond the size bound the least
// recently used key is evicted; it comes back from its store with no
// request while its access token is fresh, and with the latest rotation
// once it is due.
func TestPoolEvictedComesBackFromStore(t *testing.T) {
	r := newPoolRig(t, refreshtokentest.Config{}, refreshtoken.WithPoolSize(1))
	r.login(t, "alice")
	a := r.token(t, "alice")
	r.login(t, "bob")
	r.token(t, "bob")
	if got := r.pool.Len(); got != 1 {
		t.Fatalf("Len() = %d after using two keys with WithPoolSize(1), want 1", got)
	}
	requests := r.srv.Stats().TokenRequests
	if got := r.token(t, "alice"); got.AccessToken != a.AccessToken {
		t.Error("alice, evicted with a fresh token, came back with another access token")
	}
	if got := r.srv.Stats().TokenRequests; got != requests {
		t.Errorf("alice came back with %d token requests, want 0 (her token is fresh)", got-requests)
	}
	// Both keys rotate their tokens, evicting each other at every call.
	for range 3 {
		r.clock.Add(time.Hour)
		for _, key := range []string{"alice", "bob"} {
			r.token(t, key)
		}
	}
	if got, want := r.srv.Stats().Refreshes, 2+6; got != want {
		t.Errorf("server refreshes = %d, want %d (one per key per lifetime)", got, want)
	}
	r.checkNoReuse(t)
}

// TestPoolIdle: a key unused for the idle time is evicted at a later call
// of the Pool, by the Pool's clock.
func TestPoolIdle(t *testing.T) {
	r := newPoolRig(t, refreshtokentest.Config{Lifetime: 24 * time.Hour}, refreshtoken.WithPoolIdle(10*time.Minute))
	r.login(t, "alice")
	r.login(t, "bob")
	r.token(t, "alice")
	r.clock.Add(9 * time.Minute)
	r.token(t, "bob")
	if got := r.pool.Len(); got != 2 {
		t.Fatalf("Len() = %d after 9 idle minutes, want 2", got)
	}
	r.clock.Add(2 * time.Minute)
	r.token(t, "bob")
	if got := r.pool.Len(); got != 1 {
		t.Errorf("Len() = %d after alice was idle 11 minutes, want 1", got)
	}
	requests := r.srv.Stats().TokenRequests
	r.token(t, "alice")
	if got := r.srv.Stats().TokenRequests; got != requests {
		t.Errorf("alice came back with %d token requests, want 0", got-requests)
	}
}

// TestPoolColdKey: many goroutines ask for one cold key at once, whose
// store holds an expired access token: one source, one Load, one refresh,
// and every caller gets its token.
func TestPoolColdKey(t *testing.T) {
	r := newPoolRig(t, refreshtokentest.Config{})
	st := r.stores.get("alice")
	st.Put(&oauth2.Token{AccessToken: "old", TokenType: "Bearer", RefreshToken: r.srv.NewRefreshToken("offline_access"), Expiry: t0.Add(-time.Minute)})
	const n = 64
	start := make(chan struct{})
	tokens := make(chan string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			tok, err := r.pool.Token(context.Background(), "alice")
			if err != nil {
				errs <- err
				return
			}
			tokens <- tok.AccessToken
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	close(tokens)
	for err := range errs {
		t.Errorf("Token() = %v", err)
	}
	seen := map[string]bool{}
	for tok := range tokens {
		seen[tok] = true
	}
	if len(seen) != 1 || seen["old"] {
		t.Errorf("callers got %d distinct access tokens (old one among them: %v), want the one new token", len(seen), seen["old"])
	}
	if got := st.Stats().Loads; got != 1 {
		t.Errorf("store loads = %d, want 1", got)
	}
	if got := r.srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
	if got := r.pool.Len(); got != 1 {
		t.Errorf("Len() = %d, want 1", got)
	}
}

// TestPoolNoEvictionDuringRefresh: a key whose refresh is in flight (in
// the background: no caller inside) is not evicted; once it has ended the
// key is, and comes back from the store with the rotated token: no reuse.
func TestPoolNoEvictionDuringRefresh(t *testing.T) {
	g := newGate()
	r := newPoolRig(t, refreshtokentest.Config{OnTokenRequest: g.holdWhenArmed}, refreshtoken.WithPoolSize(1), refreshtoken.WithJitter(0))
	r.login(t, "alice")
	r.token(t, "alice")
	r.clock.Add(59 * time.Minute) // in the early window
	g.armed.Store(true)
	r.token(t, "alice") // starts the background refresh, which the gate holds
	recv(t, "alice's background refresh", g.arrived)
	g.armed.Store(false)
	r.login(t, "bob") // over the bound
	if got := r.pool.Len(); got != 2 {
		t.Fatalf("Len() = %d with alice's refresh in flight, want 2 (not evicted)", got)
	}
	close(g.release)
	eventually(t, "the refresh to end and alice to be evicted", func() bool {
		r.token(t, "bob")
		return r.pool.Len() == 1
	})
	requests := r.srv.Stats().TokenRequests
	r.token(t, "alice") // back from her store: the rotated token, fresh
	if got := r.srv.Stats().TokenRequests; got != requests {
		t.Errorf("alice came back with %d requests, want 0", got-requests)
	}
	r.clock.Add(time.Hour)
	r.token(t, "alice")
	r.checkNoReuse(t)
}

// countingSaves is a Store that counts its Saves.
type countingSaves struct {
	refreshtoken.Store
	saves atomic.Int32
}

func (c *countingSaves) Save(ctx context.Context, tok *oauth2.Token) error {
	c.saves.Add(1)
	return c.Store.Save(ctx, tok)
}

// TestPoolEvictionSavesNothing: a key whose rotated token could not be
// saved is not evicted, and no call of another key saves it (which would
// make that call wait for the key's store); the key's own next call, after
// the Save's back-off, saves it, and then the key is evicted and comes
// back from the store with that token: nothing lost, no reuse.
func TestPoolEvictionSavesNothing(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	alice := &countingSaves{Store: struct{ refreshtoken.Store }{mem}}
	others := newKeyStores(clock.Now, false)
	p := refreshtoken.NewPool(context.Background(), srv.Config(), func(key string) refreshtoken.Store {
		if key == "alice" {
			return alice
		}
		return others.store(key)
	}, refreshtoken.WithClock(clock.Now), refreshtoken.WithPoolSize(1))
	defer p.Close()
	ctx := context.Background()
	if err := p.SetToken(ctx, "alice", &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Fatal(err)
	}
	mem.SetFaults(refreshtokentest.StoreFaults{Save: errors.New("store down")})
	if _, err := p.Token(ctx, "alice"); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token(alice) with the store down = %v, want ErrNotSaved", err)
	}
	mem.SetFaults(refreshtokentest.StoreFaults{})
	saves := alice.saves.Load()
	if err := p.SetToken(ctx, "bob", &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := p.Token(ctx, "bob"); err != nil {
			t.Fatalf("Token(bob) = %v", err)
		}
	}
	if got := p.Len(); got != 2 {
		t.Errorf("Len() = %d with alice's token unsaved, want 2 (not evicted)", got)
	}
	if got := alice.saves.Load() - saves; got != 0 {
		t.Errorf("bob's calls saved alice's token %d times, want 0", got)
	}
	// Past the Save's back-off, alice's call hands out her token and saves
	// it in the background.
	clock.Add(2 * time.Second)
	if _, err := p.Token(ctx, "alice"); err != nil {
		t.Fatalf("Token(alice) once her store is back = %v", err)
	}
	eventually(t, "alice's Save", func() bool { return alice.saves.Load() > saves })
	eventually(t, "alice evicted by bob's calls", func() bool {
		if _, err := p.Token(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		return p.Len() == 1
	})
	if got := alice.saves.Load() - saves; got != 1 {
		t.Errorf("alice's token was saved %d times, want 1", got)
	}
	rt := mem.Stored().RefreshToken
	if newest, alive := srv.Newest(rt); !alive || newest != rt {
		t.Errorf("alice's store holds a refresh token that is not her newest (alive %v)", alive)
	}
	clock.Add(time.Hour)
	if _, err := p.Token(ctx, "alice"); err != nil {
		t.Fatalf("Token(alice) from her store = %v", err)
	}
	if st := srv.Stats(); st.ReuseEvents != 0 {
		t.Errorf("server saw %d reuses, want 0", st.ReuseEvents)
	}
}

// TestPoolHandles: TokenSource, Transport and Client resolve the key at
// each call, and so keep working across evictions without ever holding an
// evicted source.
func TestPoolHandles(t *testing.T) {
	r := newPoolRig(t, refreshtokentest.Config{}, refreshtoken.WithPoolSize(1))
	r.login(t, "alice")
	r.login(t, "bob")
	ts := r.pool.TokenSource("alice")
	client := r.pool.Client(context.Background(), "alice")
	for i := range 4 {
		if _, err := ts.Token(); err != nil {
			t.Fatalf("round %d: TokenSource.Token() = %v", i, err)
		}
		resp, err := client.Get(r.srv.APIURL)
		if err != nil {
			t.Fatalf("round %d: GET /api = %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("round %d: GET /api = %d, want 200", i, resp.StatusCode)
		}
		r.token(t, "bob") // evicts alice
		r.clock.Add(40 * time.Minute)
	}
	if got := r.srv.Stats().APIRejected; got != 0 {
		t.Errorf("API rejected %d requests, want 0", got)
	}
	r.checkNoReuse(t)
}

// TestPoolErrors: configuration errors and Close.
func TestPoolErrors(t *testing.T) {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	ctx := context.Background()
	nilFunc := refreshtoken.NewPool(ctx, srv.Config(), nil)
	if _, err := nilFunc.Token(ctx, "alice"); err == nil {
		t.Error("Token() of a Pool with a nil store function = nil error")
	}
	nilStore := refreshtoken.NewPool(ctx, srv.Config(), func(string) refreshtoken.Store { return nil })
	if _, err := nilStore.Token(ctx, "alice"); err == nil {
		t.Error("Token() with a nil Store for the key = nil error")
	}
	p := refreshtoken.NewPool(ctx, srv.Config(), newKeyStores(nil, false).store)
	if err := p.SetToken(ctx, "alice", &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, err := p.Token(ctx, "alice"); !errors.Is(err, refreshtoken.ErrClosed) {
		t.Errorf("Token() after Close = %v, want ErrClosed", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	q := refreshtoken.NewPool(ctx, srv.Config(), newKeyStores(nil, false).store)
	defer q.Close()
	if _, err := q.Token(canceled, "nobody"); err == nil {
		t.Error("Token() with a cancelled context and no token = nil error")
	}
}

// ExamplePool: a Pool of users' tokens, each in a store of its own.
func ExamplePool() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	stores := map[string]*refreshtokentest.MemoryStore{"alice": refreshtokentest.NewMemoryStore(nil, 0), "bob": refreshtokentest.NewMemoryStore(nil, 0)}
	// filestore.New(filepath.Join(dir, key)) or redisstore.New(rdb, "tokens:"+key) fit here too.
	pool := refreshtoken.NewPool(context.Background(), srv.Config(), func(key string) refreshtoken.Store { return stores[key] },
		refreshtoken.WithPoolSize(10_000), refreshtoken.WithPoolIdle(time.Hour))
	defer pool.Close()

	// After alice signs in:
	ctx := context.Background()
	if err := pool.SetToken(ctx, "alice", &oauth2.Token{RefreshToken: srv.NewRefreshToken("offline_access")}); err != nil {
		fmt.Println(err)
	}
	resp, err := pool.Client(ctx, "alice").Get(srv.APIURL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("alice:", resp.Status)

	// Bob has not signed in yet.
	_, err = pool.Token(ctx, "bob")
	fmt.Println("bob must sign in:", errors.Is(err, refreshtoken.ErrNoToken))
	// Output:
	// alice: 200 OK
	// bob must sign in: true
}

// TestPoolRevoke: a key signed out with Revoke returns ErrRevoked, also
// once evicted and made again from its store, with nothing sent; the
// other keys are untouched, and SetToken signs the key in again.
func TestPoolRevoke(t *testing.T) {
	r := newPoolRig(t, refreshtokentest.Config{})
	r.pool.Close() // for one with the server's revocation URL
	r.pool = refreshtoken.NewPool(context.Background(), r.srv.Config(), r.stores.store,
		refreshtoken.WithClock(r.clock.Now), refreshtoken.WithPoolSize(1), refreshtoken.WithRevocationURL(r.srv.RevokeURL))
	ctx := context.Background()
	r.login(t, "alice")
	r.login(t, "bob")
	r.token(t, "alice")
	if err := r.pool.Revoke(ctx, "alice"); err != nil {
		t.Fatalf("Revoke(alice) = %v", err)
	}
	if got := r.srv.Stats().Revocations; got != 1 {
		t.Errorf("server revocations = %d, want 1", got)
	}
	requests := r.srv.Stats().TokenRequests
	if _, err := r.pool.Token(ctx, "alice"); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Fatalf("Token(alice) after Revoke = %v, want ErrRevoked", err)
	}
	r.token(t, "bob") // evicts alice
	if _, err := r.pool.Token(ctx, "alice"); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Fatalf("Token(alice) made again from her store = %v, want ErrRevoked", err)
	}
	if got := r.srv.Stats().TokenRequests; got != requests+1 {
		t.Errorf("token requests after the sign-out = %d, want 1 (bob's)", got-requests)
	}
	if err := r.pool.Revoke(ctx, "alice"); err != nil {
		t.Errorf("second Revoke(alice) = %v, want nil", err)
	}
	if got := r.srv.Stats().RevokeRequests; got != 1 {
		t.Errorf("revocation requests = %d, want 1 (the second Revoke sends nothing)", got)
	}
	r.login(t, "alice")
	r.token(t, "alice")
	r.checkNoReuse(t)
}

// TestPoolKeepAlive: a dormant user's refresh token, whose inactivity
// lifetime would end, is kept alive by the Pool's KeepAlive, also once
// evicted (from the store, where its lifetime is kept), with one request
// per keep-alive and none when it is not due.
func TestPoolKeepAlive(t *testing.T) {
	const day = 24 * time.Hour
	r := newPoolRig(t, refreshtokentest.Config{Lifetime: 20 * day, RefreshInactivity: 10 * day},
		refreshtoken.WithPoolSize(1), refreshtoken.WithRefreshTokenLifetime(0, 10*day))
	ctx := context.Background()
	r.login(t, "alice")
	r.login(t, "bob")
	r.token(t, "alice")
	requests := r.srv.Stats().TokenRequests
	if err := r.pool.KeepAlive(ctx, "alice"); err != nil {
		t.Fatalf("KeepAlive(alice) when none is due = %v", err)
	}
	if got := r.srv.Stats().TokenRequests; got != requests {
		t.Errorf("KeepAlive(alice) when none is due sent %d requests, want 0", got-requests)
	}
	// Each round, alice is idle for 9 days (bob, used meanwhile, evicts
	// her), and kept alive from her store.
	for round := range 3 {
		r.clock.Add(9 * day)
		r.login(t, "bob")
		requests := r.srv.Stats().TokenRequests
		if err := r.pool.KeepAlive(ctx, "alice"); err != nil {
			t.Fatalf("round %d: KeepAlive(alice) = %v", round, err)
		}
		// Her access token is fresh: only the keep-alive refreshes.
		if got := r.srv.Stats().TokenRequests - requests; got != 1 {
			t.Errorf("round %d: KeepAlive(alice) sent %d requests, want 1", round, got)
		}
	}
	if st := r.srv.Stats(); st.RefreshExpired != 0 || st.Rejected != 0 || st.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want no expired, rejected or reused refresh token", st)
	}
}

// TestPoolSharesLimiter: a Pool's keys share the Limiter given to it: a
// 429 with Retry-After answered to one key holds back the refresh of
// another until then.
func TestPoolSharesLimiter(t *testing.T) {
	ctx := context.Background()
	r := newLimitRig(t, refreshtokentest.Config{}, 10, 10)
	stores := newKeyStores(r.clock.Now, false)
	for _, key := range []string{"alice", "bob"} {
		stores.get(key).Put(&oauth2.Token{RefreshToken: r.srv.NewRefreshToken("")})
	}
	pool := refreshtoken.NewPool(ctx, r.srv.Config(), stores.store, refreshtoken.WithClock(r.clock.Now),
		refreshtoken.WithLimiter(r.limiter), refreshtoken.WithRefreshTimeout(time.Minute))
	defer pool.Close()
	r.srv.Inject(1, refreshtokentest.Fault{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"30"}}})
	if _, err := pool.Token(ctx, "alice"); err == nil {
		t.Fatal("Token(alice) = nil error, want the 429")
	}
	done := make(chan error, 1)
	go func() {
		_, err := pool.Token(ctx, "bob")
		done <- err
	}()
	if at := recv(t, "the limiter's timer", r.clock.parked); !at.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("bob waits for a slot at %v, want %v", at, t0.Add(30*time.Second))
	}
	if got := r.requests(); got != 1 {
		t.Fatalf("requests during the hold = %d, want 1 (alice's 429)", got)
	}
	r.clock.Add(30 * time.Second)
	if err := recv(t, "bob's Token", done); err != nil {
		t.Fatalf("Token(bob) = %v", err)
	}
	if got := r.requests(); got != 2 {
		t.Errorf("requests = %d, want 2", got)
	}
	if st := r.srv.Stats(); st.ReuseEvents != 0 {
		t.Errorf("server saw %d reuses, want 0", st.ReuseEvents)
	}
}

// TestPoolKeepAliveKeyApart: no key names another's keep-alive refresh:
// a key made of another and a suffix, asked for while that key's
// keep-alive waits for its refresh, is its own key (it has no token), and
// is never handed the other user's access token.
func TestPoolKeepAliveKeyApart(t *testing.T) {
	const day = 24 * time.Hour
	g := newGate()
	r := newPoolRig(t, refreshtokentest.Config{Lifetime: 10 * day, RefreshInactivity: 10 * day, OnTokenRequest: g.holdWhenArmed},
		refreshtoken.WithRefreshTokenLifetime(0, 10*day), refreshtoken.WithEarlyRefresh(2*day), refreshtoken.WithJitter(0))
	ctx := context.Background()
	defer func() { // a failed test must not leave the server holding a request
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	}()
	r.login(t, "alice")
	alice := r.token(t, "alice")
	r.clock.Add(9*day + time.Hour) // stale, and a keep-alive is due
	g.armed.Store(true)
	r.token(t, "alice") // starts alice's background refresh
	recv(t, "alice's refresh request", g.arrived)
	kaDone := make(chan error, 1)
	go func() { kaDone <- r.pool.KeepAlive(ctx, "alice") }()
	eventually(t, "the keep-alive flight waiting for alice's lock", func() bool { return stackHas("(*TokenSource).keepAlive") })

	evil := "alice\x00keep-alive"
	type res struct {
		tok *oauth2.Token
		err error
	}
	evilDone := make(chan res, 1)
	go func() {
		tok, err := r.pool.Token(ctx, evil)
		evilDone <- res{tok, err}
	}()
	// Its own key: no token, at once, while alice's keep-alive still
	// waits. Joined to alice's flight, it would wait for her refresh.
	got := recv(t, "Token of the other key", evilDone)
	close(g.release)
	g.armed.Store(false)
	if err := recv(t, "KeepAlive", kaDone); err != nil {
		t.Fatal(err)
	}
	if got.err == nil {
		now := r.token(t, "alice")
		t.Errorf("Token(%q) = a token, want ErrNoToken; alice's now: %v, alice's old: %v", evil,
			got.tok.AccessToken == now.AccessToken, got.tok.AccessToken == alice.AccessToken)
	} else if !errors.Is(got.err, refreshtoken.ErrNoToken) {
		t.Errorf("Token(evil) = %v", got.err)
	}
}

// stackHas reports whether a goroutine of the package's code has s in its
// stack.
func stackHas(s string) bool {
	for _, g := range ourGoroutines() {
		if strings.Contains(g, s) {
			return true
		}
	}
	return false
}

// TestPoolRejectedAfterEviction: a refresh token the endpoint rejected for
// good is not sent again by the key's next source after an eviction, though
// the store still holds it; a new sign-in ends that.
func TestPoolRejectedAfterEviction(t *testing.T) {
	r := newPoolRig(t, refreshtokentest.Config{}, refreshtoken.WithPoolSize(1))
	ctx := context.Background()
	rt := r.srv.NewRefreshToken("")
	r.pool.SetToken(ctx, "alice", &oauth2.Token{RefreshToken: rt})
	r.login(t, "bob")
	r.srv.Revoke(rt)
	for i := range 3 {
		if _, err := r.pool.Token(ctx, "alice"); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
			t.Fatalf("round %d: Token(alice) = %v", i, err)
		}
		r.token(t, "bob") // evicts alice
	}
	if got := r.srv.Stats().Rejected; got != 1 {
		t.Errorf("the rejected refresh token was sent %d times, want 1", got)
	}
	r.login(t, "alice")
	r.token(t, "alice")
	r.token(t, "bob") // evicts alice
	r.token(t, "alice")
	r.checkNoReuse(t)
}
