package refreshtoken_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// setup starts a token server on clock and a TokenSource for one of its
// refresh tokens, with jitter off so that the schedule is exact (and the
// events checked for the server's secrets): with
// one-hour tokens, a token issued at T turns stale at T+58m and expired at
// T+59m50s.
func setup(t *testing.T, clock *fakeClock, cfg refreshtokentest.Config, opts ...refreshtoken.Option) (*refreshtokentest.Server, *refreshtoken.TokenSource) {
	t.Helper()
	cfg.Clock = clock.Now
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	// A test's own observer replaces the secret scan.
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0),
		refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil))}, opts...)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid offline_access")}, opts...)
	t.Cleanup(func() { ts.Close() })
	return srv, ts
}

func mustToken(t *testing.T, ts oauth2.TokenSource) *oauth2.Token {
	t.Helper()
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token() error = %v", err)
	}
	return tok
}

func TestFreshStaleExpired(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{Lifetime: time.Hour})

	first := mustToken(t, ts) // no token yet: the caller waits for the first refresh
	steps := []struct {
		at           time.Duration // after t0
		wantSame     bool          // the same access token as first
		wantRequests int           // token requests so far, once settled
	}{
		{at: 0, wantSame: true, wantRequests: 1},
		{at: 57 * time.Minute, wantSame: true, wantRequests: 1},
		{at: 58*time.Minute - time.Nanosecond, wantSame: true, wantRequests: 1},
		// The window opens: the old token is returned, a refresh starts.
		{at: 58 * time.Minute, wantSame: true, wantRequests: 2},
	}
	for _, st := range steps {
		clock.Set(t0.Add(st.at))
		tok := mustToken(t, ts)
		if (tok.AccessToken == first.AccessToken) != st.wantSame {
			t.Errorf("t0+%v: same token = %v, want %v", st.at, !st.wantSame, st.wantSame)
		}
		eventually(t, "token requests to settle", func() bool { return srv.Stats().TokenRequests == st.wantRequests })
	}
	// The background refresh has landed: the next call gets its token.
	eventually(t, "the refreshed token", func() bool { return mustToken(t, ts).AccessToken != first.AccessToken })
	second := mustToken(t, ts)

	// Past the margin of the second token with early refresh starved: the
	// caller waits for a new token and never sees the expired one.
	clock.Set(t0.Add(58*time.Minute + time.Hour - 10*time.Second))
	third := mustToken(t, ts)
	if third.AccessToken == second.AccessToken {
		t.Errorf("t0+1h57m50s: handed out the second token within its safety margin")
	}
	if got := srv.Stats(); got.TokenRequests != 3 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want 3 requests, no reuse", got)
	}
}

func TestCallerTokenUsedUntilStale(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	tests := []struct {
		name         string
		expiry       time.Time
		wantRequests int
	}{
		{name: "fresh: no request at start-up", expiry: t0.Add(time.Hour), wantRequests: 0},
		{name: "in the window: served, refreshed in background", expiry: t0.Add(time.Minute), wantRequests: 1},
		{name: "within the margin: refreshed before use", expiry: t0.Add(5 * time.Second), wantRequests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Stats().TokenRequests
			caller := &oauth2.Token{AccessToken: "caller-at", RefreshToken: srv.NewRefreshToken(""), Expiry: tt.expiry}
			callerCopy := *caller
			ts := refreshtoken.New(context.Background(), srv.Config(), caller, refreshtoken.WithClock(clock.Now))
			defer ts.Close()
			tok := mustToken(t, ts)
			eventually(t, "requests to settle", func() bool { return srv.Stats().TokenRequests-before == tt.wantRequests })
			if tt.expiry.Sub(t0) > 10*time.Second && tok.AccessToken != "caller-at" {
				t.Errorf("Token() = %q, want the caller's valid token", tok.AccessToken)
			}
			if diff := cmp.Diff(callerCopy, *caller, cmpopts.IgnoreUnexported(oauth2.Token{})); diff != "" {
				t.Errorf("caller's token modified (-before +after):\n%s", diff)
			}
		})
	}
}

// TestStaleServedWhileRefreshing holds the refresh at the server: callers
// in the early window are served at once, and start no second request.
func TestStaleServedWhileRefreshing(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	var requests atomic.Int32 // counted on arrival, before the hold
	srv, ts := setup(t, clock, refreshtokentest.Config{OnTokenRequest: func(r *http.Request) {
		requests.Add(1)
		g.holdWhenArmed(r)
	}})
	first := mustToken(t, ts)
	g.armed.Store(true)
	clock.Set(t0.Add(59 * time.Minute)) // stale, not expired
	for range 100 {
		if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
			t.Fatalf("Token() = %q during the refresh, want the cached token", tok.AccessToken)
		}
	}
	recv(t, "the background refresh", g.arrived)
	if got := requests.Load(); got != 2 {
		t.Errorf("token requests while one was in flight = %d, want 2", got)
	}
	close(g.release)
	eventually(t, "the refreshed token", func() bool { return mustToken(t, ts).AccessToken != first.AccessToken })
	ts.Close() // waits for anything in flight
	if got := srv.Stats().TokenRequests; got != 2 || requests.Load() != 2 {
		t.Errorf("token requests = %d, want 2", got)
	}
}

// TestRefreshStorm: 1000 goroutines ask at once when the token has expired.
func TestRefreshStorm(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	srv, ts := setup(t, clock, refreshtokentest.Config{OnTokenRequest: g.holdWhenArmed})
	mustToken(t, ts)
	g.armed.Store(true)
	clock.Set(t0.Add(time.Hour)) // expired

	const n = 1000
	var started sync.WaitGroup
	started.Add(n)
	tokens := make(chan string, n)
	for range n {
		go func() {
			started.Done()
			tok, err := ts.Token()
			if err != nil {
				t.Errorf("Token() error = %v", err)
				tokens <- ""
				return
			}
			tokens <- tok.AccessToken
		}()
	}
	started.Wait()
	recv(t, "the refresh", g.arrived)
	close(g.release)
	distinct := map[string]int{}
	for range n {
		distinct[recv(t, "a caller", tokens)]++
	}
	if len(distinct) != 1 {
		t.Errorf("callers got %d distinct tokens, want 1: %v", len(distinct), distinct)
	}
	if got := srv.Stats(); got.TokenRequests != 2 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want 2 token requests (start-up and this refresh)", got)
	}
}

// TestCancelledWaiter: a caller whose context ends returns at once; the
// refresh it started goes on for the others.
func TestCancelledWaiter(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	srv, ts := setup(t, clock, refreshtokentest.Config{OnTokenRequest: g.hold})

	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() {
		_, err := ts.TokenContext(ctx)
		cancelled <- err
	}()
	recv(t, "the refresh", g.arrived)
	other := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		other <- err
	}()
	cancel()
	if err := recv(t, "the cancelled caller", cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("TokenContext(cancelled) error = %v, want one wrapping context.Canceled", err)
	}
	close(g.release)
	if err := recv(t, "the other caller", other); err != nil {
		t.Errorf("Token() error = %v", err)
	}
	if got := srv.Stats(); got.TokenRequests != 1 || got.Refreshes != 1 {
		t.Errorf("server stats = %+v, want the one refresh completed", got)
	}
	// Its token is cached: no new request.
	mustToken(t, ts)
	if got := srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

func TestCancelledBeforeAsking(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ts.TokenContext(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("TokenContext(cancelled) error = %v, want context.Canceled", err)
	}
	if got := srv.Stats().TokenRequests; got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
}

// TestCloseWaitsForRefresh: Close does not cut off a refresh the server
// may already have acted on: it waits for the answer, which the callback
// saves, and then no goroutine is left.
func TestCloseWaitsForRefresh(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	saved := make(chan string, 10)
	srv, ts := setup(t, clock, refreshtokentest.Config{OnTokenRequest: g.hold},
		refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
			saved <- tok.RefreshToken
			return nil
		}))

	waiter := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		waiter <- err
	}()
	recv(t, "the refresh", g.arrived) // in flight, held by the server

	closed := make(chan error, 1)
	go func() { closed <- ts.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a refresh was in flight")
	default:
	}
	close(g.release)
	if err := recv(t, "Close", closed); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if rt := recv(t, "the callback", saved); rt == "" {
		t.Error("the rotated refresh token was not passed to the callback")
	}
	if err := recv(t, "the waiter", waiter); err != nil {
		t.Errorf("waiter: %v, want the token of the completed refresh", err)
	}
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrClosed) {
		t.Errorf("Token() after Close = %v, want ErrClosed", err)
	}
	if err := ts.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if got := srv.Stats(); got.Refreshes != 1 {
		t.Errorf("server stats = %+v, want the refresh completed", got)
	}
	eventually(t, "the source's goroutines to end", func() bool { return len(ourGoroutines()) == 0 })
}

// TestCloseBoundedByTimeout: a hung endpoint holds Close no longer than the
// refresh timeout.
func TestCloseBoundedByTimeout(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	defer close(g.release)
	_, ts := setup(t, clock, refreshtokentest.Config{OnTokenRequest: g.holdWhenArmed}, refreshtoken.WithRefreshTimeout(50*time.Millisecond))
	mustToken(t, ts)
	g.armed.Store(true)
	clock.Set(t0.Add(59 * time.Minute))
	mustToken(t, ts) // starts the background refresh
	recv(t, "the background refresh", g.arrived)
	closed := make(chan error, 1)
	go func() { closed <- ts.Close() }()
	recv(t, "Close", closed)
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrClosed) {
		t.Errorf("Token() after Close = %v, want ErrClosed", err)
	}
	eventually(t, "the source's goroutines to end", func() bool { return len(ourGoroutines()) == 0 })
}

// hangingStore is a file store whose Save hangs until its context ends,
// and which records the deadline of every Save.
type hangingStore struct {
	refreshtoken.Store
	deadlines chan time.Time
}

func (h hangingStore) Save(ctx context.Context, _ *oauth2.Token) error {
	d, _ := ctx.Deadline()
	h.deadlines <- d
	<-ctx.Done()
	return ctx.Err()
}

// TestCloseBound: Close waits for a refresh whose request has been sent at
// most three refresh timeouts, as documented: the request, then the Save
// and the callback, which share one, then one more try of the failed Save;
// even when every step takes all the time it is given. The bound is checked
// with a second of slack: a guard, not a timing claim.
func TestCloseBound(t *testing.T) {
	const timeout = 200 * time.Millisecond
	clock := newFakeClock(t0)
	arrived := make(chan struct{}, 1)
	st := hangingStore{Store: filestore.New(filepath.Join(t.TempDir(), "token.json")), deadlines: make(chan time.Time, 2)}
	callback := make(chan time.Time, 1)
	srv, ts := setup(t, clock, refreshtokentest.Config{OnTokenRequest: func(*http.Request) { arrived <- struct{}{} }},
		refreshtoken.WithRefreshTimeout(timeout), refreshtoken.WithStore(st),
		refreshtoken.WithOnNewToken(func(ctx context.Context, _ *oauth2.Token) error {
			d, _ := ctx.Deadline()
			callback <- d
			<-ctx.Done()
			return ctx.Err()
		}))
	srv.Inject(1, refreshtokentest.Fault{Latency: timeout * 9 / 10})
	waiter := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		waiter <- err
	}()
	recv(t, "the request", arrived)
	start := time.Now()
	err := ts.Close()
	elapsed := time.Since(start)
	if !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Errorf("Close() = %v, want ErrNotSaved", err)
	}
	if limit := 3*timeout + time.Second; elapsed > limit {
		t.Errorf("Close took %v, over its bound of 3 refresh timeouts (%v with slack)", elapsed, limit)
	}
	saved, cb := recv(t, "the Save", st.deadlines), recv(t, "the callback", callback)
	if !saved.Equal(cb) {
		t.Errorf("Save's deadline %v, callback's %v: want one shared timeout", saved, cb)
	}
	if again := recv(t, "Close's Save", st.deadlines); again.Before(saved) {
		t.Errorf("Close's Save deadline %v is before the refresh's %v", again, saved)
	}
	recv(t, "the waiting caller", waiter)
}

func TestInvalidate(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	first := mustToken(t, ts)
	firstCopy := *first
	ts.Invalidate()
	second := mustToken(t, ts)
	if second.AccessToken == first.AccessToken {
		t.Errorf("Token() after Invalidate returned the dropped token")
	}
	if got := srv.Stats(); got.TokenRequests != 2 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want 2 requests, no reuse", got)
	}
	if diff := cmp.Diff(firstCopy, *first, cmpopts.IgnoreUnexported(oauth2.Token{})); diff != "" {
		t.Errorf("handed-out token modified (-before +after):\n%s", diff)
	}
	mustToken(t, ts)
	if got := srv.Stats().TokenRequests; got != 2 {
		t.Errorf("token requests = %d, want 2: the new token is cached", got)
	}
}

// TestTokensAreCopies: every call gets its own token, and changing it does
// not change the cache.
func TestTokensAreCopies(t *testing.T) {
	clock := newFakeClock(t0)
	_, ts := setup(t, clock, refreshtokentest.Config{})
	a, b := mustToken(t, ts), mustToken(t, ts)
	if a == b {
		t.Fatal("two calls returned the same *oauth2.Token")
	}
	want := *b
	a.AccessToken = "scribbled"
	a.Expiry = time.Time{}
	if diff := cmp.Diff(want, *mustToken(t, ts), cmpopts.IgnoreUnexported(oauth2.Token{})); diff != "" {
		t.Errorf("cache changed by a caller (-want +got):\n%s", diff)
	}
}

// flakyProxy fronts a token server and answers 503 while failing is set.
type flakyProxy struct {
	failing  atomic.Bool
	requests atomic.Int32 // all requests, failed or passed on
	*httptest.Server
}

func newFlakyProxy(t *testing.T, target string) *flakyProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if p.failing.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"temporarily_unavailable"}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// TestFailedRefresh: while the endpoint fails, the valid cached token is
// served; once it has expired, callers get the error without new requests
// until the back-off has passed.
func TestFailedRefresh(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	proxy := newFlakyProxy(t, srv.URL)
	conf := srv.Config()
	conf.Endpoint.TokenURL = proxy.URL + "/oauth/token"
	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0))
	defer ts.Close()

	first := mustToken(t, ts)
	proxy.failing.Store(true)
	clock.Set(t0.Add(58 * time.Minute)) // stale: a background refresh fails
	if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
		t.Fatalf("Token() = %q, want the cached token", tok.AccessToken)
	}
	eventually(t, "the failed refresh", func() bool { return ts.Err() != nil })
	err1 := ts.Err()
	for range 50 {
		if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
			t.Fatalf("Token() = %q, want the cached token during the back-off", tok.AccessToken)
		}
	}
	if got := proxy.requests.Load(); got != 2 {
		t.Errorf("requests during the 1 s back-off = %d, want 2 (no new request)", got)
	}

	// Past the back-off, one more attempt, in the background again.
	clock.Add(time.Second)
	mustToken(t, ts)
	eventually(t, "the second failed refresh", func() bool { return ts.Err() != err1 })
	if got := proxy.requests.Load(); got != 3 {
		t.Errorf("requests = %d, want 3", got)
	}

	// Expired, and that back-off (2 s) long over: the first caller waits for
	// one more attempt, which fails; the others get its error at once for
	// the next back-off (4 s).
	clock.Set(t0.Add(time.Hour))
	_, err := ts.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Token() error = %v, want the 503 RetrieveError", err)
	}
	for range 50 {
		if _, err := ts.Token(); err == nil {
			t.Fatal("Token() succeeded during the back-off with no valid token")
		}
	}
	if got := proxy.requests.Load(); got != 4 {
		t.Errorf("requests = %d, want 4: one per back-off step, whatever the number of calls", got)
	}

	// The endpoint recovers; after the back-off one request restores service.
	proxy.failing.Store(false)
	clock.Add(4 * time.Second)
	if tok := mustToken(t, ts); tok.AccessToken == first.AccessToken {
		t.Errorf("Token() returned the expired token")
	}
	if got := proxy.requests.Load(); got != 5 {
		t.Errorf("requests = %d, want 5", got)
	}
	if got := srv.Stats(); got.ReuseEvents != 0 || got.Refreshes != 2 {
		t.Errorf("server stats = %+v, want 2 refreshes, no reuse", got)
	}
	if err := ts.Err(); err != nil {
		t.Errorf("Err() after a successful refresh = %v, want nil", err)
	}
}

// TestOnNewTokenError: a failing callback does not lose the new token.
func TestOnNewTokenError(t *testing.T) {
	clock := newFakeClock(t0)
	errDiskFull := errors.New("disk full")
	var calls atomic.Int32
	srv, ts := setup(t, clock, refreshtokentest.Config{}, refreshtoken.WithOnNewToken(func(context.Context, *oauth2.Token) error {
		calls.Add(1)
		return errDiskFull
	}))
	_, err := ts.Token()
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Token() error = %v, want it to wrap the callback's error", err)
	}
	tok := mustToken(t, ts) // the token is in use all the same
	if got := srv.Stats(); got.TokenRequests != 1 {
		t.Errorf("token requests = %d, want 1: the token was kept", got.TokenRequests)
	}
	// Its rotated refresh token is the one used next.
	clock.Set(t0.Add(time.Hour))
	ts.Token()
	if got := srv.Stats(); got.Refreshes != 2 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want the rotated refresh token used (2 refreshes, no reuse)", got)
	}
	if tok.AccessToken == "" {
		t.Error("Token() returned no access token")
	}
	if calls.Load() != 2 {
		t.Errorf("callback calls = %d, want 2", calls.Load())
	}
}

// countingSource is an oauth2.TokenSource that issues a new one-hour token
// per call, as a client-credentials source would.
type countingSource struct {
	clock *fakeClock
	calls atomic.Int32
}

func (s *countingSource) Token() (*oauth2.Token, error) {
	n := s.calls.Add(1)
	return &oauth2.Token{AccessToken: "cc-" + string(rune('a'+n-1)), Expiry: s.clock.Now().Add(time.Hour)}, nil
}

func TestCache(t *testing.T) {
	clock := newFakeClock(t0)
	src := &countingSource{clock: clock}
	ts := refreshtoken.Cache(src, refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0))
	defer ts.Close()
	for range 10 {
		if tok := mustToken(t, ts); tok.AccessToken != "cc-a" {
			t.Fatalf("Token() = %q, want cc-a", tok.AccessToken)
		}
	}
	clock.Set(t0.Add(58 * time.Minute)) // early window: served, refreshed in background
	mustToken(t, ts)
	eventually(t, "the background refresh", func() bool { return mustToken(t, ts).AccessToken == "cc-b" })
	if got := src.calls.Load(); got != 2 {
		t.Errorf("inner source calls = %d, want 2", got)
	}
}

func TestCacheStaticSource(t *testing.T) {
	static := &oauth2.Token{AccessToken: "static"}
	ts := refreshtoken.Cache(oauth2.StaticTokenSource(static))
	defer ts.Close()
	a, b := mustToken(t, ts), mustToken(t, ts)
	if a == static || a == b || a.AccessToken != "static" || b.AccessToken != "static" {
		t.Errorf("Token() = %p %p of %p, want distinct copies of the static token", a, b, static)
	}
}

// TestNewClientEarlyWindow: through oauth2.NewClient, whose ReuseTokenSource
// would ask a source only 10 s before the Expiry it was given, the endpoint
// is still called when the early window opens.
//
// x/oauth2 reads the wall clock, so here the fake clock is placed relative
// to it, by minutes: far more than the test takes to run.
func TestNewClientEarlyWindow(t *testing.T) {
	tests := []struct {
		name        string
		age         time.Duration // age of the first token when the client is used
		wantRefresh bool
	}{
		{name: "57 min into a 1 h token: fresh", age: 57 * time.Minute, wantRefresh: false},
		{name: "58.5 min into a 1 h token: in the window", age: 58*time.Minute + 30*time.Second, wantRefresh: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wall := time.Now()
			clock := newFakeClock(wall.Add(-tt.age))
			var mu sync.Mutex
			var apiTokens []string
			hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.URL.Path == "/api" {
					mu.Lock()
					apiTokens = append(apiTokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
					mu.Unlock()
				}
				return http.DefaultTransport.RoundTrip(r)
			})}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
			srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
			defer srv.Close()
			ts := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
				refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0))
			defer ts.Close()
			client := oauth2.NewClient(ctx, ts)
			get := func() {
				t.Helper()
				resp, err := client.Get(srv.APIURL)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("API answered %s", resp.Status)
				}
			}

			get() // first token, issued tt.age ago
			clock.Set(wall)
			for range 5 {
				get()
			}
			if !tt.wantRefresh {
				if got := srv.Stats().TokenRequests; got != 1 {
					t.Errorf("token requests = %d, want 1", got)
				}
				return
			}
			eventually(t, "the early refresh", func() bool { return srv.Stats().Refreshes == 2 })
			// Once it lands, the client switches to the new token at once.
			eventually(t, "the client to use the new token", func() bool {
				get()
				mu.Lock()
				defer mu.Unlock()
				return apiTokens[len(apiTokens)-1] != apiTokens[0]
			})
			if got := srv.Stats(); got.TokenRequests != 2 || got.APIRejected != 0 {
				t.Errorf("server stats = %+v, want 2 token requests, no rejected call", got)
			}
		})
	}
}

// TestNewClientPerRequest: 50 goroutines build oauth2.NewClient for every
// request over one shared source, across several refreshes. Each NewClient
// wraps the source in a ReuseTokenSource that writes to the tokens it is
// given: under -race this fails if two of them get the same pointer.
func TestNewClientPerRequest(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{Lifetime: time.Hour})
	const lifetimes, goroutines, requests = 4, 50, 5
	for l := range lifetimes {
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range requests {
					client := oauth2.NewClient(context.Background(), ts)
					resp, err := client.Get(srv.APIURL)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		clock.Set(t0.Add(time.Duration(l+1) * time.Hour))
	}
	got := srv.Stats()
	if got.APIRejected != 0 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want no rejected API call and no reuse", got)
	}
	if got.Refreshes != lifetimes || got.APICalls != lifetimes*goroutines*requests {
		t.Errorf("server stats = %+v, want %d refreshes and %d API calls", got, lifetimes, lifetimes*goroutines*requests)
	}
}

// TestRefreshTimeout: a refresh that hangs is ended by its own timeout, not
// by a caller, and the error says so.
func TestRefreshTimeout(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	defer close(g.release)
	_, ts := setup(t, clock, refreshtokentest.Config{OnTokenRequest: g.hold}, refreshtoken.WithRefreshTimeout(20*time.Millisecond))
	errc := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		errc <- err
	}()
	recv(t, "the refresh", g.arrived)
	if err := recv(t, "the timeout", errc); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Token() error = %v, want one wrapping context.DeadlineExceeded", err)
	}
}

// panicSource panics, or returns nothing, as a broken inner source might.
type panicSource struct{ nilToken bool }

func (s panicSource) Token() (*oauth2.Token, error) {
	if s.nilToken {
		return nil, nil
	}
	panic("inner source broke")
}

// TestBrokenInnerSource: a panic or a nil token from the inner source, or a
// panic in the callback, is an error for the callers, not a crash of the
// process.
func TestBrokenInnerSource(t *testing.T) {
	tests := []struct {
		name    string
		ts      func() *refreshtoken.TokenSource
		wantErr string
	}{
		{name: "inner source panics", ts: func() *refreshtoken.TokenSource { return refreshtoken.Cache(panicSource{}) }, wantErr: "panic during refresh: inner source broke"},
		{name: "inner source returns nil, nil", ts: func() *refreshtoken.TokenSource { return refreshtoken.Cache(panicSource{nilToken: true}) }, wantErr: "no access token"},
		{name: "callback panics", ts: func() *refreshtoken.TokenSource {
			return refreshtoken.Cache(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "a"}),
				refreshtoken.WithOnNewToken(func(context.Context, *oauth2.Token) error { panic("store broke") }))
		}, wantErr: "panic during refresh: store broke"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := tt.ts()
			defer ts.Close()
			if _, err := ts.Token(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Token() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestInvalidateToken: a 401 for a token that was already replaced drops
// nothing.
func TestInvalidateToken(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	old := mustToken(t, ts)
	ts.InvalidateToken(old) // the first 401: a refresh
	current := mustToken(t, ts)
	for range 20 { // late 401s for the old token
		ts.InvalidateToken(old)
	}
	if tok := mustToken(t, ts); tok.AccessToken != current.AccessToken {
		t.Error("a late InvalidateToken dropped the new token")
	}
	if got := srv.Stats().TokenRequests; got != 2 {
		t.Errorf("token requests = %d, want 2", got)
	}
	ts.InvalidateToken(nil)
	// The new token, itself fetched because of a 401, is rejected too: a
	// refresh waits a back-off (at most 1 s) instead of following at once.
	ts.InvalidateToken(current)
	if _, err := ts.Token(); err == nil || srv.Stats().TokenRequests != 2 {
		t.Errorf("Token() right after a second rejection = %v with %d requests, want an error and no request", err, srv.Stats().TokenRequests)
	}
	clock.Add(time.Second)
	mustToken(t, ts)
	if got := srv.Stats().TokenRequests; got != 3 {
		t.Errorf("token requests = %d, want 3", got)
	}
}

// TestNoMissedBackgroundRefresh: a token that turns stale the moment its
// refresh has published it (a short lifetime, a clock that moves on at
// once) still gets a background refresh. A caller that joined the
// finishing refresh instead of starting one marked the entry started and
// got nothing: about one refresh in a thousand was missed, and callers then
// waited at expiry. 3000 rounds caught it in every run of the old code.
func TestNoMissedBackgroundRefresh(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{Lifetime: 4 * time.Second})
	for range 3000 {
		old := mustToken(t, ts).AccessToken
		clock.Add(2 * time.Second) // stale: the next call starts a background refresh
		for deadline := time.Now().Add(2 * time.Second); mustToken(t, ts).AccessToken == old; {
			if time.Now().After(deadline) {
				t.Fatalf("background refresh missed after %d refreshes", srv.Stats().Refreshes)
			}
			runtime.Gosched()
		}
	}
}
