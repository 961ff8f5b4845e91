package refreshtoken_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// retryAt returns the RetryAt of the RetryError in err, failing the test if
// there is none.
func retryAt(t *testing.T, err error) time.Time {
	t.Helper()
	var re *refreshtoken.RetryError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *RetryError", err)
	}
	return re.RetryAt
}

// ceiling is the documented upper bound of the n-th back-off: 1 s doubling
// to 1 min.
func ceiling(n int) time.Duration {
	if n > 6 {
		return time.Minute
	}
	return min(time.Second<<(n-1), time.Minute)
}

// TestOutage: 100 goroutines call Token continuously through a 503 outage
// that lasts past the token's expiry. The endpoint sees one request per
// back-off step, not per call; callers get the cached token until its real
// expiry, safety margin included (a failed refresh never turns a valid
// token into errors), and the wrapped error after; one request restores
// service.
func TestOutage(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{Lifetime: time.Hour})
	first := mustToken(t, ts)
	expiry := t0.Add(time.Hour)
	outageEnd := t0.Add(70 * time.Minute)
	srv.Inject(-1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})

	var stop atomic.Bool
	var calls, served, failed atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				before := clock.Now()
				tok, err := ts.Token()
				after := clock.Now()
				calls.Add(1)
				switch {
				case err == nil && tok.AccessToken == first.AccessToken:
					if !before.Before(expiry) {
						t.Errorf("served the cached token at %v, past its expiry", before)
					}
					served.Add(1)
				case err == nil: // the outage is over
				default:
					var re *oauth2.RetrieveError
					if !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable {
						t.Errorf("error = %v, want one wrapping the 503", err)
					}
					if after.Before(expiry) {
						t.Errorf("error at %v while the cached token was valid", after)
					}
					failed.Add(1)
				}
				runtime.Gosched()
			}
		}()
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	// waitCalls lets the callers make n more calls.
	waitCalls := func(n int64) {
		target := calls.Load() + n
		eventually(t, "callers to call", func() bool { return calls.Load() >= target })
	}

	clock.Set(t0.Add(58 * time.Minute)) // the window opens: the first attempt
	var prev error
	steps := 0
	for {
		eventually(t, "the attempt to fail", func() bool { return ts.Err() != prev })
		prev = ts.Err()
		steps++
		now := clock.Now()
		next := retryAt(t, prev)
		if wait := next.Sub(now); wait > ceiling(steps) {
			t.Errorf("step %d: back-off %v, over its ceiling %v", steps, wait, ceiling(steps))
		}
		if got := srv.Stats().TokenRequests; got != 1+steps {
			t.Fatalf("step %d: token requests = %d, want %d", steps, got, 1+steps)
		}
		if next.After(now) {
			// Just before the back-off ends: no request, however many calls.
			clock.Set(next.Add(-time.Nanosecond))
			waitCalls(500)
			if got := srv.Stats().TokenRequests; got != 1+steps {
				t.Fatalf("step %d: %d token requests during the back-off, want %d", steps, got, 1+steps)
			}
		}
		if !next.Before(outageEnd) {
			break
		}
		clock.Set(next)
	}
	srv.Heal()
	clock.Set(retryAt(t, prev))
	eventually(t, "service to resume", func() bool { return ts.Err() == nil })
	waitCalls(500)
	if got := srv.Stats(); got.TokenRequests != steps+2 || got.Refreshes != 2 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want %d requests (%d back-off steps, the first and the last), 2 refreshes", got, steps+2, steps)
	}
	if served.Load() == 0 || failed.Load() == 0 {
		t.Errorf("served %d cached tokens and %d errors; want both", served.Load(), failed.Load())
	}
	t.Logf("%d back-off steps over a %v outage, %d calls: %d served from cache, %d errors", steps, outageEnd.Sub(t0.Add(58*time.Minute)), calls.Load(), served.Load(), failed.Load())
}

// TestServerAskedToWait: a 429 (or 503) with Retry-After or
// X-RateLimit-Reset holds back the next request until the given time.
func TestServerAskedToWait(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header http.Header
		wait   time.Duration
	}{
		{name: "429 Retry-After: 7", status: 429, header: http.Header{"Retry-After": {"7"}}, wait: 7 * time.Second},
		{name: "429 with only X-RateLimit-Reset", status: 429, header: http.Header{"X-Ratelimit-Reset": {fmt.Sprint(t0.Add(30 * time.Second).Unix())}}, wait: 30 * time.Second},
		{name: "429 Retry-After as an HTTP date", status: 429, header: http.Header{"Retry-After": {t0.Add(45 * time.Second).Format(http.TimeFormat)}}, wait: 45 * time.Second},
		{name: "503 Retry-After: 20", status: 503, header: http.Header{"Retry-After": {"20"}}, wait: 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, ts := setup(t, clock, refreshtokentest.Config{})
			srv.Inject(1, refreshtokentest.Fault{Status: tt.status, Header: tt.header})
			_, err := ts.Token()
			if got := retryAt(t, err); !got.Equal(t0.Add(tt.wait)) {
				t.Errorf("RetryAt = %v, want t0+%v", got, tt.wait)
			}
			clock.Set(t0.Add(tt.wait - time.Nanosecond))
			for range 20 {
				if _, err := ts.Token(); err == nil {
					t.Fatal("Token() succeeded before the time the server gave")
				}
			}
			if got := srv.Stats().TokenRequests; got != 1 {
				t.Errorf("token requests before t0+%v = %d, want 1", tt.wait, got)
			}
			clock.Set(t0.Add(tt.wait))
			mustToken(t, ts)
			if got := srv.Stats().TokenRequests; got != 2 {
				t.Errorf("token requests = %d, want 2", got)
			}
		})
	}
}

// TestAuth0RateLimit: the server's per-second limit answers 429 with
// X-RateLimit-Reset at the next second, and the source waits for it.
func TestAuth0RateLimit(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, RateLimit: 2})
	defer srv.Close()
	var sources []*refreshtoken.TokenSource
	for range 3 { // three users' sources in one process share the tenant's limit
		ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}, refreshtoken.WithClock(clock.Now))
		defer ts.Close()
		sources = append(sources, ts)
	}
	mustToken(t, sources[0])
	mustToken(t, sources[1])
	_, err := sources[2].Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "too_many_requests" || re.Response.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("third source: %v, want a 429 too_many_requests with X-RateLimit-Remaining: 0", err)
	}
	if got := retryAt(t, err); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("RetryAt = %v, want the next second", got)
	}
	if _, err := sources[2].Token(); err == nil || srv.Stats().TokenRequests != 3 {
		t.Errorf("retried within the rate-limit second: %v, %d requests", err, srv.Stats().TokenRequests)
	}
	clock.Add(time.Second)
	mustToken(t, sources[2])
	if got := srv.Stats(); got.RateLimited != 1 || got.Refreshes != 3 {
		t.Errorf("server stats = %+v, want 1 rate-limited request, 3 refreshes", got)
	}
}

// TestRejected: invalid_grant is permanent: one request, then none until
// SetToken; the cached token is served until it expires.
func TestRejected(t *testing.T) {
	tests := []struct {
		name   string
		reject func(srv *refreshtokentest.Server, current *oauth2.Token)
	}{
		{name: "invalid_grant on demand", reject: func(srv *refreshtokentest.Server, _ *oauth2.Token) {
			srv.Inject(1, refreshtokentest.Fault{Status: http.StatusForbidden, Error: "invalid_grant"})
		}},
		{name: "family revoked", reject: func(srv *refreshtokentest.Server, current *oauth2.Token) {
			if !srv.Revoke(current.RefreshToken) {
				panic("unknown refresh token")
			}
		}},
		{name: "invalid_client with 401", reject: func(srv *refreshtokentest.Server, _ *oauth2.Token) {
			srv.Inject(1, refreshtokentest.Fault{Status: http.StatusUnauthorized, Error: "invalid_client"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, ts := setup(t, clock, refreshtokentest.Config{})
			first := mustToken(t, ts)
			tt.reject(srv, first)

			clock.Set(t0.Add(58 * time.Minute)) // the background refresh is rejected
			mustToken(t, ts)
			eventually(t, "the rejection", func() bool { return errors.Is(ts.Err(), refreshtoken.ErrRefreshRejected) })
			for _, at := range []time.Duration{58 * time.Minute, 59 * time.Minute, time.Hour - 10*time.Second - time.Nanosecond} {
				clock.Set(t0.Add(at))
				if tok := mustToken(t, ts); tok.AccessToken != first.AccessToken {
					t.Errorf("t0+%v: Token() = %q, want the cached token until it expires", at, tok.AccessToken)
				}
			}
			for _, at := range []time.Duration{time.Hour, 2 * time.Hour, 30 * 24 * time.Hour} {
				clock.Set(t0.Add(at))
				_, err := ts.Token()
				var re *oauth2.RetrieveError
				if !errors.Is(err, refreshtoken.ErrRefreshRejected) || !errors.As(err, &re) || re.ErrorCode == "" {
					t.Errorf("t0+%v: Token() error = %v, want ErrRefreshRejected wrapping the RetrieveError", at, err)
				}
			}
			ts.Invalidate() // does not end a rejection
			ts.Token()
			if got := srv.Stats().TokenRequests; got != 2 {
				t.Errorf("token requests = %d, want 2: none after the rejection", got)
			}

			ts.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("")}) // the user signed in again
			if tok := mustToken(t, ts); tok.AccessToken == first.AccessToken {
				t.Error("Token() after SetToken returned the old token")
			}
			if got := srv.Stats().TokenRequests; got != 3 {
				t.Errorf("token requests = %d, want 3", got)
			}
		})
	}
}

// TestSetTokenWithAccessToken: a token given to SetToken is used as is.
func TestSetTokenWithAccessToken(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	mustToken(t, ts)
	ts.SetToken(&oauth2.Token{AccessToken: "from-login", RefreshToken: srv.NewRefreshToken(""), Expiry: t0.Add(time.Hour)})
	if tok := mustToken(t, ts); tok.AccessToken != "from-login" {
		t.Errorf("Token() = %q, want the token given to SetToken", tok.AccessToken)
	}
	clock.Set(t0.Add(time.Hour))
	mustToken(t, ts)
	if got := srv.Stats(); got.Refreshes != 2 || got.Rejected != 0 {
		t.Errorf("server stats = %+v, want the new refresh token used", got)
	}
}

// TestRotationUnderFaults: the server rotates the refresh token, then the
// connection drops, so the client never sees the new one. The client can
// only send the refresh token it has, which the server has retired: with a
// reuse interval the server accepts it; without, it revokes the family. In
// no case does the client send a refresh token whose replacement it
// received.
func TestRotationUnderFaults(t *testing.T) {
	tests := []struct {
		name          string
		reuseInterval time.Duration
		wantRejected  bool
	}{
		{name: "no reuse interval: family revoked", reuseInterval: 0, wantRejected: true},
		{name: "reuse interval 30 s: recovered", reuseInterval: 30 * time.Second, wantRejected: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, ts := setup(t, clock, refreshtokentest.Config{ReuseInterval: tt.reuseInterval})
			mustToken(t, ts)
			srv.Inject(1, refreshtokentest.Fault{DropAfterRotate: true})
			clock.Set(t0.Add(time.Hour))
			_, err := ts.Token()
			if err == nil {
				t.Fatal("Token() succeeded over a dropped connection")
			}
			clock.Set(retryAt(t, err)) // within a second: inside the reuse interval
			_, err = ts.Token()
			if got := errors.Is(err, refreshtoken.ErrRefreshRejected); got != tt.wantRejected {
				t.Fatalf("Token() error = %v, rejected %v, want %v", err, got, tt.wantRejected)
			}
			if !tt.wantRejected {
				// Rotation goes on from the token the server accepted.
				for i := range 3 {
					clock.Add(time.Hour)
					if _, err := ts.Token(); err != nil {
						t.Fatalf("refresh %d after recovery: %v", i, err)
					}
				}
			}
			got := srv.Stats()
			wantReuse := 0
			if tt.wantRejected {
				wantReuse = 1
			}
			if got.ReuseEvents != wantReuse || got.ReplacedSent != 0 {
				t.Errorf("server stats = %+v, want %d reuse events and no replaced token sent", got, wantReuse)
			}
		})
	}
}

// TestMalformedAnswers: every fault yields a clear, transient error (no
// panic), costs no refresh token, and the next attempt after the back-off
// succeeds.
func TestMalformedAnswers(t *testing.T) {
	tests := []struct {
		name    string
		fault   refreshtokentest.Fault
		timeout time.Duration // the refresh timeout, if not the default
		wantErr string
	}{
		{name: "dropped connection", fault: refreshtokentest.Fault{Drop: true}, wantErr: "token request failed"},
		{name: "truncated body", fault: refreshtokentest.Fault{Truncate: true}, wantErr: "not a JSON object"},
		{name: "HTML instead of JSON", fault: refreshtokentest.Fault{NonJSON: true}, wantErr: `not a JSON object`},
		{name: "body over 1 MiB", fault: refreshtokentest.Fault{Huge: true}, wantErr: "larger than 1048576 bytes"},
		{name: "500", fault: refreshtokentest.Fault{Status: 500}, wantErr: `500 Internal Server Error: "server_error"`},
		{name: "502", fault: refreshtokentest.Fault{Status: 502}, wantErr: "502 Bad Gateway"},
		{name: "503", fault: refreshtokentest.Fault{Status: 503}, wantErr: "503 Service Unavailable"},
		{name: "429", fault: refreshtokentest.Fault{Status: 429}, wantErr: `429 Too Many Requests: "too_many_requests"`},
		{name: "slow answer past the refresh timeout", fault: refreshtokentest.Fault{Latency: 10 * time.Second}, timeout: 50 * time.Millisecond, wantErr: "context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, ts := setup(t, clock, refreshtokentest.Config{}, refreshtoken.WithRefreshTimeout(tt.timeout))
			srv.Inject(1, tt.fault)
			_, err := ts.Token()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "refreshtoken: ") {
				t.Fatalf("Token() error = %v, want one starting with refreshtoken: and containing %q", err, tt.wantErr)
			}
			if errors.Is(err, refreshtoken.ErrRefreshRejected) {
				t.Errorf("Token() error = %v is permanent, want transient", err)
			}
			clock.Set(retryAt(t, err))
			mustToken(t, ts)
			if got := srv.Stats(); got.Refreshes != 1 || got.ReuseEvents != 0 {
				t.Errorf("server stats = %+v, want 1 refresh and no reuse", got)
			}
		})
	}
}

// TestInvalidateDuringBackoff: a 401 storm during a back-off does not
// become a refresh storm.
func TestInvalidateDuringBackoff(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	mustToken(t, ts)
	srv.Inject(-1, refreshtokentest.Fault{Status: 503})
	ts.Invalidate()
	_, err := ts.Token()
	next := retryAt(t, err)
	for range 100 {
		ts.Invalidate()
		if _, err := ts.Token(); err == nil {
			t.Fatal("Token() succeeded during an outage")
		}
	}
	if got := srv.Stats().TokenRequests; got != 2 {
		t.Errorf("token requests = %d, want 2: Invalidate must not bypass the back-off", got)
	}
	srv.Heal()
	clock.Set(next)
	mustToken(t, ts)
}

func TestTokenURLMustBeHTTPS(t *testing.T) {
	tests := []struct {
		url       string
		allowHTTP bool
		wantSent  bool
	}{
		{url: "https://auth.example.com/oauth/token", wantSent: true},
		{url: "http://auth.example.com/oauth/token", wantSent: false},
		{url: "http://auth.example.com/oauth/token", allowHTTP: true, wantSent: true},
		{url: "http://127.0.0.1:8080/oauth/token", wantSent: true},
		{url: "http://127.9.9.9/oauth/token", wantSent: true},
		{url: "http://localhost:8080/oauth/token", wantSent: true},
		{url: "http://[::1]:8080/oauth/token", wantSent: true},
		{url: "http://10.0.0.1/oauth/token", wantSent: false},
		{url: "ftp://auth.example.com/oauth/token", wantSent: false},
		{url: "auth.example.com/oauth/token", wantSent: false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s allowHTTP=%v", tt.url, tt.allowHTTP), func(t *testing.T) {
			var sent atomic.Bool
			// No network: the transport only records that a request was sent.
			hc := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				sent.Store(true)
				return nil, errors.New("no network in tests")
			})}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
			var opts []refreshtoken.Option
			if tt.allowHTTP {
				opts = append(opts, refreshtoken.WithAllowHTTP())
			}
			ts := refreshtoken.New(ctx, &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: tt.url}}, &oauth2.Token{RefreshToken: "rt"}, opts...)
			defer ts.Close()
			_, err := ts.Token()
			if sent.Load() != tt.wantSent {
				t.Errorf("request sent = %v, want %v (error %v)", sent.Load(), tt.wantSent, err)
			}
			if !tt.wantSent && (err == nil || !strings.Contains(err.Error(), "https")) {
				t.Errorf("Token() error = %v, want one that asks for https", err)
			}
		})
	}
}
