package refreshtoken_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// BenchmarkTenantBudget is the scenario of one tenant's rate limit: users
// (a source each, one refresh token each) whose access tokens were issued
// in one burst, as after a restart that loaded them from a store, come
// due together against a token server that answers 30 requests a second
// (of its clock) and 429 past that. Each user asks for a token once a
// simulated second. With impl=limiter the sources share
// NewLimiter(30, 30); with impl=none each has only its own back-off, as
// before the Limiter. An early window of 10 minutes is long enough for the
// budget (10,000 refreshes take 333 s at 30 a second); the default, 2
// minutes, is not: then some users must wait.
//
// It runs on a fake clock shared by the server and the sources, a second
// at a time, each step once every refresh has ended or waits on the clock:
// minutes of simulated time take seconds. It reports the server's 429s,
// the requests (in all, per user), the users that had to wait for a token
// (a call that found none to hand out) and the longest such wait, in
// simulated seconds. -short runs 300 users (the CI smoke).
func BenchmarkTenantBudget(b *testing.B) {
	users := 10_000
	if testing.Short() {
		users = 300
	}
	for _, early := range []time.Duration{10 * time.Minute, 2 * time.Minute} {
		for _, impl := range []string{"limiter", "none"} {
			b.Run(fmt.Sprintf("users=%d/early=%v/impl=%s", users, early, impl), func(b *testing.B) {
				var res tenantResult
				for range b.N {
					res = runTenant(b, users, early, impl == "limiter")
				}
				b.ReportMetric(float64(res.rateLimited), "429s")
				b.ReportMetric(float64(res.requests), "requests")
				b.ReportMetric(float64(res.requests)/float64(users), "requests/user")
				b.ReportMetric(float64(res.waited), "users-waited")
				b.ReportMetric(res.longestWait.Seconds(), "max-wait-s")
				b.ReportMetric(res.lastRefresh.Seconds(), "done-after-s")
			})
		}
	}
}

type tenantResult struct {
	rateLimited, requests int
	waited                int           // users that had no token to hand out at some call
	longestWait           time.Duration // simulated
	lastRefresh           time.Duration // from the first token coming due to the last new token
}

// tenantUser is one user's source and what the scenario knows of it.
type tenantUser struct {
	ts *refreshtoken.TokenSource
	// busy counts the scenario's goroutines that wait for the source: a
	// caller with no token, or a wait for a background refresh to end.
	busy atomic.Int32
	// waitedFrom is when (UnixNano, by the clock) the user's calls began
	// to find no token, 0 if they do not; waited is the longest such wait
	// that ended, in nanoseconds; everWaited, that one began.
	waitedFrom, waited atomic.Int64
	everWaited         atomic.Bool
}

func runTenant(b *testing.B, users int, early time.Duration, limit bool) tenantResult {
	b.Helper()
	b.StopTimer()
	const life = time.Hour
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, RateLimit: 30, Lifetime: life})
	defer srv.Close()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 1000
	defer transport.CloseIdleConnections()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: transport})
	opts := []refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithEarlyRefresh(early),
		refreshtoken.WithRefreshTimeout(time.Minute)}
	if limit {
		opts = append(opts, refreshtoken.WithLimiter(refreshtoken.NewLimiter(30, 30, refreshtoken.LimiterClock(clock))))
	}
	us := make([]*tenantUser, users)
	for i := range us {
		tok := &oauth2.Token{AccessToken: fmt.Sprintf("at-%d", i), TokenType: "Bearer", Expiry: t0.Add(life),
			RefreshToken: srv.NewRefreshToken("")}
		us[i] = &tenantUser{ts: refreshtoken.New(ctx, srv.Config(), tok, opts...)}
		defer us[i].ts.Close()
	}

	// busy counts the users some goroutine of the scenario waits for.
	var busy atomic.Int64
	hold := func(u *tenantUser) {
		if u.busy.Add(1) == 1 {
			busy.Add(1)
		}
	}
	release := func(u *tenantUser) {
		if u.busy.Add(-1) == 0 {
			busy.Add(-1)
		}
	}
	// quiet waits until every user waited for has a refresh parked on the
	// clock (a Limiter's slot), one timer each, or none.
	quiet := func() {
		deadline := time.Now().Add(time.Minute)
		for busy.Load() != int64(clock.Timers()) {
			if time.Now().After(deadline) {
				b.Fatalf("the scenario did not settle: %d users busy, %d timers", busy.Load(), clock.Timers())
			}
			runtime.Gosched()
		}
	}

	due := t0.Add(life - early)
	clock.Add(due.Sub(t0) - time.Second)
	var wg sync.WaitGroup
	var last time.Time
	b.StartTimer()
	for now := clock.Now(); now.Before(t0.Add(life + 10*time.Minute)); now = clock.Now() {
		done := 0
		for _, u := range us {
			if u.busy.Load() != 0 {
				continue // its caller still waits
			}
			h := u.ts.Health()
			if h.Ready && h.ValidFor > life/2 { // a new token
				done++
				continue
			}
			if !h.Ready {
				// No token to hand out: the caller waits.
				u.waitedFrom.CompareAndSwap(0, now.UnixNano())
				u.everWaited.Store(true)
				hold(u)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer release(u)
					if _, err := u.ts.Token(); err == nil {
						w := clock.Now().UnixNano() - u.waitedFrom.Swap(0)
						u.waited.Store(max(u.waited.Load(), w))
					}
				}()
				continue
			}
			if _, err := u.ts.Token(); err != nil {
				b.Fatalf("Token() with a token in hand = %v", err)
			}
			if h.RefreshIn == 0 {
				// The call started a background refresh.
				hold(u)
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer release(u)
					refreshtoken.WaitIdle(u.ts)
				}()
			}
		}
		quiet()
		if done == users {
			break
		}
		last = now
		clock.Add(time.Second)
	}
	b.StopTimer()
	for _, u := range us {
		u.ts.Close()
	}
	wg.Wait()

	s := srv.Stats()
	res := tenantResult{rateLimited: s.RateLimited, requests: s.TokenRequests, lastRefresh: last.Sub(due)}
	end := clock.Now().UnixNano()
	for _, u := range us {
		if !u.everWaited.Load() {
			continue
		}
		res.waited++
		w := u.waited.Load()
		if from := u.waitedFrom.Load(); from != 0 {
			w = max(w, end-from) // still waiting
		}
		res.longestWait = max(res.longestWait, time.Duration(w))
	}
	return res
}
