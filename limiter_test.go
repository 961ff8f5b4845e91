package refreshtoken_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// timerClock is refreshtokentest's fake clock, whose After fires when the
// clock is moved to its time, telling the test of every timer set:
// parked receives the time of each, so that a test knows a refresh waits
// on the clock before it moves the clock.
type timerClock struct {
	*fakeClock
	parked chan time.Time
}

func newTimerClock(t time.Time) *timerClock {
	return &timerClock{fakeClock: newFakeClock(t), parked: make(chan time.Time, 100_000)}
}

func (c *timerClock) After(d time.Duration) <-chan time.Time {
	// Now before After: the clock moves only once parked has told of it.
	at := c.Now().Add(d)
	ch := c.fakeClock.After(d)
	if d > 0 {
		c.parked <- at
	}
	return ch
}

// limitRig is a token server and sources that share a Limiter, on one
// timerClock.
type limitRig struct {
	t       *testing.T
	clock   *timerClock
	srv     *refreshtokentest.Server
	limiter *refreshtoken.Limiter
}

func newLimitRig(t *testing.T, cfg refreshtokentest.Config, rate float64, burst int) *limitRig {
	clock := newTimerClock(t0)
	cfg.Clock = clock.Now
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	return &limitRig{t: t, clock: clock, srv: srv, limiter: refreshtoken.NewLimiter(rate, burst, refreshtoken.LimiterClock(clock))}
}

// source returns a source of a new token family, sharing the rig's
// limiter, that holds tok's access token (none if tok is nil).
func (r *limitRig) source(tok *oauth2.Token, opts ...refreshtoken.Option) *refreshtoken.TokenSource {
	r.t.Helper()
	if tok == nil {
		tok = &oauth2.Token{}
	}
	t := *tok
	t.RefreshToken = r.srv.NewRefreshToken("")
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(r.clock.Now), refreshtoken.WithLimiter(r.limiter),
		refreshtoken.WithRefreshTimeout(time.Minute), refreshtoken.WithJitter(0),
		refreshtoken.WithObserver(scanSecrets(r.t, r.srv.Secrets, nil))}, opts...)
	ts := refreshtoken.New(context.Background(), r.srv.Config(), &t, opts...)
	r.t.Cleanup(func() { ts.Close() })
	return ts
}

// requests returns how many token requests the server has had.
func (r *limitRig) requests() int { return r.srv.Stats().TokenRequests }

// stale is a token the sources are handed until 50 s past t0 (its
// safety margin), and refresh early from t0 on (the default window of 2
// minutes).
func stale() *oauth2.Token {
	return &oauth2.Token{AccessToken: "cached-access", TokenType: "Bearer", Expiry: t0.Add(time.Minute)}
}

// tokenAsync calls ts.Token in a goroutine, for a caller that waits.
func tokenAsync(ts *refreshtoken.TokenSource) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		done <- err
	}()
	return done
}

// TestLimiterServerWordHoldsEverySource: a 429 with Retry-After or
// X-RateLimit-Reset, answered to one source, holds back every source that
// shares its Limiter until then: one whose callers wait sends nothing
// until then, and one refreshing early puts its refresh off, handing out
// its token with no error.
func TestLimiterServerWordHoldsEverySource(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"Retry-After", http.Header{"Retry-After": {"30"}}},
		{"X-RateLimit-Reset", http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(t0.Add(30*time.Second).Unix(), 10)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLimitRig(t, refreshtokentest.Config{}, 10, 10)
			first, waiting, early := r.source(nil), r.source(nil), r.source(stale())
			r.srv.Inject(1, refreshtokentest.Fault{Status: http.StatusTooManyRequests, Header: tc.header})
			if _, err := first.Token(); err == nil {
				t.Fatal("first.Token() = nil error, want the 429")
			}
			if got := r.requests(); got != 1 {
				t.Fatalf("requests = %d, want 1", got)
			}

			// The early refresh is put off to the end of the hold, with
			// no error and no request.
			if tok, err := early.Token(); err != nil || tok.AccessToken != "cached-access" {
				t.Fatalf("early.Token() = %v, %v; want the cached token", tok, err)
			}
			refreshtoken.WaitIdle(early)
			if h := early.Health(); h.Err != nil || h.RefreshIn != 30*time.Second {
				t.Errorf("early.Health() = %+v, want no error, RefreshIn 30s", h)
			}

			// The caller with no token waits for the end of the hold.
			done := tokenAsync(waiting)
			if at := recv(t, "the limiter's timer", r.clock.parked); !at.Equal(t0.Add(30 * time.Second)) {
				t.Fatalf("waiting for a slot at %v, want %v", at, t0.Add(30*time.Second))
			}
			r.clock.Add(29 * time.Second)
			if tok, err := early.Token(); err != nil || tok.AccessToken != "cached-access" {
				t.Fatalf("early.Token() at 29 s = %v, %v; want the cached token", tok, err)
			}
			refreshtoken.WaitIdle(early)
			if got := r.requests(); got != 1 {
				t.Fatalf("requests during the hold = %d, want 1", got)
			}
			r.clock.Add(time.Second)
			if err := recv(t, "the waiting caller", done); err != nil {
				t.Fatalf("waiting.Token() = %v", err)
			}
			// After the hold one request goes, then the steady rate:
			// the early refresh comes a tenth of a second later.
			if _, err := early.Token(); err != nil {
				t.Fatal(err)
			}
			refreshtoken.WaitIdle(early)
			if h := early.Health(); h.Err != nil || h.RefreshIn != 100*time.Millisecond {
				t.Errorf("early.Health() at the end of the hold = %+v, want no error, RefreshIn 100ms", h)
			}
			r.clock.Add(100 * time.Millisecond)
			if _, err := early.Token(); err != nil {
				t.Fatal(err)
			}
			refreshtoken.WaitIdle(early)
			if got := r.requests(); got != 3 {
				t.Errorf("requests after the hold = %d, want 3 (the 429, the waiting caller's, the early refresh's)", got)
			}
			if h := early.Health(); h.RefreshIn < 30*time.Minute {
				t.Errorf("early.Health() = %+v, want a new token", h)
			}
		})
	}
}

// TestLimiterHoldLongerThanTimeout: a caller with no token is not held
// past the refresh timeout by a slot that comes later: it gets a
// RetryError at once, with the slot as RetryAt, and nothing is sent. A
// server's word past 10 minutes, however written, holds for 10 minutes.
func TestLimiterHoldLongerThanTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, retryAfter string
		want             time.Duration
	}{
		{"seconds", "120", 2 * time.Minute},
		{"HTTP date", t0.Add(3 * time.Minute).Format(http.TimeFormat), 3 * time.Minute},
		{"past int64", "99999999999999999999999", 10 * time.Minute},
		{"a year as a date", t0.AddDate(1, 0, 0).Format(http.TimeFormat), 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLimitRig(t, refreshtokentest.Config{}, 10, 10)
			first, waiting := r.source(nil), r.source(nil)
			r.srv.Inject(1, refreshtokentest.Fault{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {tc.retryAfter}}})
			if _, err := first.Token(); err == nil {
				t.Fatal("first.Token() = nil error, want the 429")
			}
			_, err := waiting.Token()
			var re *refreshtoken.RetryError
			if !errors.As(err, &re) || !re.RetryAt.Equal(t0.Add(tc.want)) {
				t.Fatalf("waiting.Token() = %v, want a RetryError with RetryAt %v", err, t0.Add(tc.want))
			}
			if got := r.requests(); got != 1 {
				t.Errorf("requests = %d, want 1", got)
			}
			if n := r.clock.Timers(); n != 0 {
				t.Errorf("%d timers set, want none", n)
			}
		})
	}
}

// TestLimiterUrgentFirst: when the budget is short, a refresh whose
// callers wait goes before an early refresh that asked first, which is put
// off, with no error, to the slot after.
func TestLimiterUrgentFirst(t *testing.T) {
	r := newLimitRig(t, refreshtokentest.Config{}, 1, 1) // a slot a second
	spender, early, urgent := r.source(nil), r.source(stale()), r.source(nil)
	if _, err := spender.Token(); err != nil { // takes the slot of t0
		t.Fatal(err)
	}
	if tok, err := early.Token(); err != nil || tok.AccessToken != "cached-access" {
		t.Fatalf("early.Token() = %v, %v; want the cached token", tok, err)
	}
	refreshtoken.WaitIdle(early)
	if h := early.Health(); h.Err != nil || h.RefreshIn != time.Second {
		t.Fatalf("early.Health() = %+v, want no error, RefreshIn 1s", h)
	}
	done := tokenAsync(urgent)
	if at := recv(t, "the limiter's timer", r.clock.parked); !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("urgent waits for %v, want %v", at, t0.Add(time.Second))
	}

	r.clock.Add(time.Second)
	if err := recv(t, "the urgent caller", done); err != nil {
		t.Fatal(err)
	}
	// The early refresh comes back for the slot of t0+1s, which the
	// urgent one took: it is put off to the next.
	if tok, err := early.Token(); err != nil || tok.AccessToken != "cached-access" {
		t.Fatalf("early.Token() at 1 s = %v, %v; want the cached token", tok, err)
	}
	refreshtoken.WaitIdle(early)
	if got := r.requests(); got != 2 {
		t.Fatalf("requests at 1 s = %d, want 2 (spender, urgent)", got)
	}
	if h := early.Health(); h.Err != nil || h.RefreshIn != time.Second {
		t.Fatalf("early.Health() at 1 s = %+v, want no error, RefreshIn 1s", h)
	}

	r.clock.Add(time.Second)
	if _, err := early.Token(); err != nil {
		t.Fatal(err)
	}
	refreshtoken.WaitIdle(early)
	if got := r.requests(); got != 3 {
		t.Errorf("requests at 2 s = %d, want 3", got)
	}
	if tok, _ := early.Token(); tok.AccessToken == "cached-access" {
		t.Error("early still hands out the cached token after its slot")
	}
}

// TestLimiterWaitOutsideFleetLock: a replica of a fleet that waits for a
// slot does not hold the shared store's lock meanwhile, so another
// process refreshes; when the wait ends, the replica reads the store again
// under the lock and takes that token: it never sends the refresh token it
// held before the wait, which the other process has rotated (a reuse that
// would revoke the family).
func TestLimiterWaitOutsideFleetLock(t *testing.T) {
	r := newLimitRig(t, refreshtokentest.Config{}, 1, 1)
	st := sharedStore(0)
	rt := r.srv.NewRefreshToken("")
	waiting := r.source(nil, refreshtoken.WithStore(st))
	waiting.SetToken(&oauth2.Token{RefreshToken: rt})
	// Another process of the fleet, with no limiter of this process.
	other := refreshtoken.New(context.Background(), r.srv.Config(), &oauth2.Token{RefreshToken: rt},
		refreshtoken.WithClock(r.clock.Now), refreshtoken.WithStore(st))
	t.Cleanup(func() { other.Close() })
	if _, err := r.source(nil).Token(); err != nil { // takes the slot of t0
		t.Fatal(err)
	}

	done := tokenAsync(waiting)
	recv(t, "the limiter's timer", r.clock.parked)
	// Were the lock held during the wait, this would wait for it.
	if err := recv(t, "the other process's refresh", tokenAsync(other)); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(time.Second)
	if err := recv(t, "the waiting caller", done); err != nil {
		t.Fatal(err)
	}
	got, want := mustToken(t, waiting), mustToken(t, other)
	if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken {
		t.Error("the replica that waited does not hold the token the other process saved")
	}
	if s := r.srv.Stats(); s.TokenRequests != 2 || s.ReuseEvents != 0 || s.ReplacedSent != 0 {
		t.Errorf("server: %d requests, %d reuse events, %d replaced tokens sent; want 2, 0, 0", s.TokenRequests, s.ReuseEvents, s.ReplacedSent)
	}
}

// TestLimiterCloseDuringWait: Close stops a refresh that waits for a slot:
// its caller gets ErrClosed, and nothing is sent.
func TestLimiterCloseDuringWait(t *testing.T) {
	r := newLimitRig(t, refreshtokentest.Config{}, 1, 1)
	if _, err := r.source(nil).Token(); err != nil { // takes the slot of t0
		t.Fatal(err)
	}
	ts := r.source(nil)
	done := tokenAsync(ts)
	recv(t, "the limiter's timer", r.clock.parked)
	if err := ts.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := recv(t, "the waiting caller", done); !errors.Is(err, refreshtoken.ErrClosed) {
		t.Errorf("Token() = %v, want ErrClosed", err)
	}
	if got := r.requests(); got != 1 {
		t.Errorf("requests = %d, want 1", got)
	}
}

// TestLimiterPutOffAfterFailure: an early refresh that failed, put off
// when its retry comes, hands out the token with no error meanwhile; and
// if the token is then dropped (Invalidate), callers wait for a refresh
// instead of getting the old failure at once.
func TestLimiterPutOffAfterFailure(t *testing.T) {
	r := newLimitRig(t, refreshtokentest.Config{}, 1, 1)
	early, spender := r.source(stale()), r.source(nil)
	r.srv.Inject(1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
	if _, err := early.Token(); err != nil {
		t.Fatal(err)
	}
	refreshtoken.WaitIdle(early)
	if early.Err() == nil {
		t.Fatal("the early refresh did not fail")
	}
	// Past the back-off of the first failure; spender takes the slot of
	// t0+1s.
	r.clock.Add(time.Second)
	if _, err := spender.Token(); err != nil {
		t.Fatal(err)
	}
	if tok, err := early.Token(); err != nil || tok.AccessToken != "cached-access" {
		t.Fatalf("early.Token() = %v, %v; want the cached token", tok, err)
	}
	refreshtoken.WaitIdle(early)
	if h := early.Health(); h.RefreshIn != time.Second {
		t.Fatalf("early.Health() = %+v, want RefreshIn 1s (put off)", h)
	}
	if got := r.requests(); got != 2 {
		t.Fatalf("requests = %d, want 2", got)
	}

	early.Invalidate()
	done := tokenAsync(early)
	if at := recv(t, "the limiter's timer", r.clock.parked); !at.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("waiting for a slot at %v, want %v", at, t0.Add(2*time.Second))
	}
	r.clock.Add(time.Second)
	if err := recv(t, "the caller", done); err != nil {
		t.Errorf("Token() after Invalidate = %v", err)
	}
	if got := r.requests(); got != 3 {
		t.Errorf("requests = %d, want 3", got)
	}
}

// TestLimiterSaveRetryNotPutOff: the retry of a failed Save, which sends
// no request, is not put off when the budget is short.
func TestLimiterSaveRetryNotPutOff(t *testing.T) {
	r := newLimitRig(t, refreshtokentest.Config{}, 1, 1)
	st := sharedStore(0)
	ts, spender := r.source(nil, refreshtoken.WithStore(st)), r.source(nil)
	st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() with saves failing = %v, want ErrNotSaved", err)
	}
	st.SetFaults(refreshtokentest.StoreFaults{})
	// Past the Save's back-off; spender takes the slot of now.
	r.clock.Add(time.Minute)
	if _, err := spender.Token(); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	refreshtoken.WaitIdle(ts)
	if err := ts.Err(); err != nil {
		t.Errorf("Err() after the retried Save = %v, want nil", err)
	}
	if got, stored := mustToken(t, ts), st.Stored(); stored == nil || stored.AccessToken != got.AccessToken {
		t.Error("the store does not hold the token in use")
	}
	if got := r.requests(); got != 2 {
		t.Errorf("requests = %d, want 2", got)
	}
}

// The sources of one tenant share one Limiter: their requests keep within
// its budget together.
func ExampleWithLimiter() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{RateLimit: 30})
	defer srv.Close()
	limiter := refreshtoken.NewLimiter(25, 25) // the tenant's budget, less a margin
	for user := range 3 {
		ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
			refreshtoken.WithLimiter(limiter))
		defer ts.Close()
		tok, err := ts.Token()
		fmt.Println("user", user, tok.Valid(), err)
	}
	fmt.Println("rate limited:", srv.Stats().RateLimited)
	// Output:
	// user 0 true <nil>
	// user 1 true <nil>
	// user 2 true <nil>
	// rate limited: 0
}

// TestLimiterKeepAliveYields: a keep-alive refresh of a fresh token can
// wait, as an early refresh can: with the budget spent by a refresh whose
// callers wait, it sends nothing and fails at once with a *RetryError at
// the slot it would take, instead of queuing with them; once that slot has
// come, it refreshes.
func TestLimiterKeepAliveYields(t *testing.T) {
	const day = 24 * time.Hour
	ctx := context.Background()
	r := newLimitRig(t, refreshtokentest.Config{Lifetime: 20 * day, RefreshInactivity: 10 * day}, 1, 1)
	ts := r.source(nil, refreshtoken.WithRefreshTokenLifetime(0, 10*day))
	other := r.source(nil)
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(9 * day) // ts's keep-alive is due; the bucket is full again
	if _, err := other.Token(); err != nil {
		t.Fatal(err)
	}
	requests := r.requests()
	err := ts.KeepAlive(ctx)
	var re *refreshtoken.RetryError
	if !errors.As(err, &re) || !re.RetryAt.After(r.clock.Now()) || re.RetryAt.After(r.clock.Now().Add(time.Second)) {
		t.Fatalf("KeepAlive() with the budget spent = %v, want a *RetryError within the next second", err)
	}
	if got := r.requests(); got != requests {
		t.Fatalf("KeepAlive() with the budget spent sent %d requests, want 0", got-requests)
	}
	r.clock.Set(re.RetryAt)
	if err := ts.KeepAlive(ctx); err != nil {
		t.Fatalf("KeepAlive() once its slot has come = %v", err)
	}
	if got := r.requests(); got != requests+1 {
		t.Errorf("KeepAlive() sent %d requests, want 1", got-requests)
	}
	if st := r.srv.Stats(); st.RefreshExpired != 0 || st.ReuseEvents != 0 || st.RateLimited != 0 {
		t.Errorf("server stats = %+v, want no expiry, reuse or 429", st)
	}
}
