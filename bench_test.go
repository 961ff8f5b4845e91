package refreshtoken_test

// Benchmarks against golang.org/x/oauth2, each as sub-benchmarks of one
// benchmark so that one run measures both: compare with
// `benchstat -col /impl` (scripts/bench.sh does it all).

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

var swrCSV = flag.String("swr.csv", "", "write the Token() latencies of BenchmarkStaleWhileRevalidate to this CSV file, for scripts/swrchart")

// benchToken is a token fresh for an hour.
func benchToken() *oauth2.Token {
	return &oauth2.Token{AccessToken: "at-bench-0123456789", TokenType: "Bearer", RefreshToken: "rt-bench", Expiry: time.Now().Add(time.Hour)}
}

// loop runs op b.N times, serially or with b.RunParallel, keeping its
// results alive so that nothing is optimised away.
func loop[T any](b *testing.B, parallel bool, op func() T) {
	b.ReportAllocs()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			var sink T
			for pb.Next() {
				sink = op()
			}
			runtime.KeepAlive(sink)
		})
		return
	}
	var sink T
	for range b.N {
		sink = op()
	}
	runtime.KeepAlive(sink)
}

// BenchmarkToken is the cached Token() path: ours, x/oauth2's
// ReuseTokenSource over the same token, and two floors: a bare clock read,
// and a clock read plus the copy Token() owes its callers. Ours also as a
// source of the token server, with and without WithDPoP: a cached DPoP
// token costs no signature (checked: signs/op is 0).
func BenchmarkToken(b *testing.B) {
	tok := benchToken()
	ours := refreshtoken.Cache(oauth2.StaticTokenSource(tok))
	defer ours.Close()
	if _, err := ours.Token(); err != nil {
		b.Fatal(err)
	}
	reuse := oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(tok))
	if _, err := reuse.Token(); err != nil {
		b.Fatal(err)
	}
	logged := refreshtoken.Cache(oauth2.StaticTokenSource(tok), refreshtoken.WithObserver(infoObserver()))
	defer logged.Close()
	if _, err := logged.Token(); err != nil {
		b.Fatal(err)
	}
	bearer := bearerBenchSource(b)
	dpop, signs := dpopBenchSource(b, newECKey(b))
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		b.Run("mode="+mode+"/impl=floor-clock", func(b *testing.B) {
			loop(b, parallel, time.Now)
		})
		b.Run("mode="+mode+"/impl=floor-clock+copy", func(b *testing.B) {
			loop(b, parallel, func() *oauth2.Token {
				now := time.Now()
				t := new(oauth2.Token)
				*t = *tok
				t.Expiry = now
				return t
			})
		})
		b.Run("mode="+mode+"/impl=refreshtoken", func(b *testing.B) {
			loop(b, parallel, func() *oauth2.Token { t, _ := ours.Token(); return t })
		})
		b.Run("mode="+mode+"/impl=x-oauth2-reuse", func(b *testing.B) {
			loop(b, parallel, func() *oauth2.Token { t, _ := reuse.Token(); return t })
		})
		b.Run("mode="+mode+"/impl=refreshtoken+slog", func(b *testing.B) {
			loop(b, parallel, func() *oauth2.Token { t, _ := logged.Token(); return t })
		})
		b.Run("mode="+mode+"/impl=refreshtoken-New", func(b *testing.B) {
			loop(b, parallel, func() *oauth2.Token { t, _ := bearer.Token(); return t })
		})
		b.Run("mode="+mode+"/impl=refreshtoken-New+DPoP", func(b *testing.B) {
			before := signs.signs.Load()
			loop(b, parallel, func() *oauth2.Token { t, _ := dpop.Token(); return t })
			reportSigns(b, signs, before, 0)
		})
	}
}

// infoObserver is the SlogObserver of a service that logs at Info: the
// cost of observing on the cached path, where no event is emitted.
func infoObserver() refreshtoken.Observer {
	return refreshtoken.SlogObserver(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
}

// answerAtOnce is a base RoundTripper that answers without a network, so
// that only the token path is measured.
type answerAtOnce struct{ resp *http.Response }

func (a answerAtOnce) RoundTrip(*http.Request) (*http.Response, error) { return a.resp, nil }

// fixedToken is the floor of a request's token path: clone the request (a
// RoundTripper must not modify it) and set a fixed header.
type fixedToken struct {
	auth string
	base http.RoundTripper
}

func (f fixedToken) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", f.auth)
	return f.base.RoundTrip(r)
}

// transports returns, over base, the request paths compared: the floor, our
// Transport, oauth2.NewClient's transport over ReuseTokenSource, and
// oauth2.NewClient's transport over our source.
func transports(b *testing.B, base http.RoundTripper) []struct {
	name string
	rt   http.RoundTripper
} {
	tok := benchToken()
	ours := refreshtoken.Cache(oauth2.StaticTokenSource(tok))
	b.Cleanup(func() { ours.Close() })
	logged := refreshtoken.Cache(oauth2.StaticTokenSource(tok), refreshtoken.WithObserver(infoObserver()))
	b.Cleanup(func() { logged.Close() })
	return []struct {
		name string
		rt   http.RoundTripper
	}{
		{"floor-fixed-header", fixedToken{auth: "Bearer " + tok.AccessToken, base: base}},
		{"refreshtoken-Transport", &refreshtoken.Transport{Source: ours, Base: base}},
		{"refreshtoken-Transport+slog", &refreshtoken.Transport{Source: logged, Base: base}},
		{"x-oauth2-NewClient", &oauth2.Transport{Source: oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(tok)), Base: base}},
		{"x-oauth2-NewClient-over-refreshtoken", &oauth2.Transport{Source: oauth2.ReuseTokenSource(nil, ours), Base: base}},
	}
}

// BenchmarkRoundTrip is the token path of one request, with a base that
// answers at once.
func BenchmarkRoundTrip(b *testing.B) {
	base := answerAtOnce{resp: &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}}
	req, err := http.NewRequest(http.MethodGet, "http://api.example/v1/things", nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"serial", "parallel"} {
		for _, tr := range transports(b, base) {
			b.Run("mode="+mode+"/impl="+tr.name, func(b *testing.B) {
				loop(b, mode == "parallel", func() *http.Response {
					resp, err := tr.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					return resp
				})
			})
		}
	}
}

// BenchmarkRequest is a whole request to a local server that answers 204.
func BenchmarkRequest(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	base := &http.Transport{MaxIdleConnsPerHost: 64}
	defer base.CloseIdleConnections()
	for _, mode := range []string{"serial", "parallel"} {
		for _, tr := range transports(b, base) {
			client := &http.Client{Transport: tr.rt}
			b.Run("mode="+mode+"/impl="+tr.name, func(b *testing.B) {
				loop(b, mode == "parallel", func() int {
					resp, err := client.Get(srv.URL)
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					return resp.StatusCode
				})
			})
		}
	}
}

// scenario is one source under a scenario: a token server with a slow
// endpoint, and a way to make each implementation's source.
type scenario struct {
	srv *refreshtokentest.Server
}

func newScenario(b *testing.B, cfg refreshtokentest.Config, latency time.Duration) *scenario {
	srv := refreshtokentest.NewServer(cfg)
	b.Cleanup(srv.Close)
	if latency > 0 {
		srv.Inject(-1, refreshtokentest.Fault{Latency: latency})
	}
	return &scenario{srv: srv}
}

// source returns impl's token source for a new refresh token, holding tok's
// access token if it is not nil.
func (sc *scenario) source(b *testing.B, impl string, tok *oauth2.Token, opts ...refreshtoken.Option) oauth2.TokenSource {
	t := &oauth2.Token{RefreshToken: sc.srv.NewRefreshToken("")}
	if tok != nil {
		t.AccessToken, t.Expiry = tok.AccessToken, tok.Expiry
	}
	switch impl {
	case "refreshtoken":
		ts := refreshtoken.New(context.Background(), sc.srv.Config(), t, opts...)
		b.Cleanup(func() { ts.Close() })
		return ts
	case "x-oauth2":
		return sc.srv.Config().TokenSource(context.Background(), t)
	}
	panic("unknown impl " + impl)
}

// percentile returns the p-th percentile (0 to 1) of sorted durations, in
// milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(p*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// BenchmarkRefreshStorm: 1000 goroutines ask at once for a token that has
// expired, from an endpoint that takes 50 ms. Reports token requests per
// storm and the wait per caller.
func BenchmarkRefreshStorm(b *testing.B) {
	const callers = 1000
	for _, impl := range []string{"refreshtoken", "x-oauth2"} {
		b.Run("impl="+impl, func(b *testing.B) {
			sc := newScenario(b, refreshtokentest.Config{}, 50*time.Millisecond)
			var waits []time.Duration
			before := sc.srv.Stats().TokenRequests
			for range b.N {
				ts := sc.source(b, impl, nil) // no access token: expired
				start := make(chan struct{})
				var wg sync.WaitGroup
				got := make([]time.Duration, callers)
				for i := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						t0 := time.Now()
						if _, err := ts.Token(); err != nil {
							b.Error(err)
						}
						got[i] = time.Since(t0)
					}()
				}
				close(start)
				wg.Wait()
				waits = append(waits, got...)
			}
			slices.Sort(waits)
			b.ReportMetric(float64(sc.srv.Stats().TokenRequests-before)/float64(b.N), "requests/storm")
			b.ReportMetric(percentile(waits, 0.5), "wait-p50-ms")
			b.ReportMetric(percentile(waits, 1), "wait-max-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkStaleWhileRevalidate: 8 goroutines call Token continuously
// across the start of the refresh (0.5 s into a 1.5 s run), from an
// endpoint that takes 50 ms. Reports the maximum and 99th-percentile
// latency of Token(), directly and through oauth2.NewClient (the token
// path of a request, with a base that answers at once), over the 200 ms
// from the start of the refresh, and the maximum over the whole run, which
// also holds the machine's own hiccups (GC, the OS). Each caller pauses
// 100 µs between calls, as a service does other work between API calls:
// callers spinning on 2 cores would measure the scheduler's time slices,
// not the source.
func BenchmarkStaleWhileRevalidate(b *testing.B) {
	const (
		callers  = 8
		refresh  = 500 * time.Millisecond // into the run
		duration = 1500 * time.Millisecond
	)
	var csv *os.File
	if *swrCSV != "" {
		var err error
		if csv, err = os.Create(*swrCSV); err != nil {
			b.Fatal(err)
		}
		defer csv.Close()
		fmt.Fprintln(csv, "impl,ms,max_latency_us")
	}
	for _, impl := range []string{"refreshtoken", "x-oauth2"} {
		for _, via := range []string{"Token", "NewClient"} {
			b.Run("impl="+impl+"/via="+via, func(b *testing.B) {
				sc := newScenario(b, refreshtokentest.Config{}, 50*time.Millisecond)
				var all, during []time.Duration // whole runs; the 200 ms from the refresh's start
				var requests int
				for range b.N {
					// A token whose refresh starts `refresh` from now: the
					// early window (ours, jitter off) or x/oauth2's 10 s.
					var ts oauth2.TokenSource
					start := time.Now()
					if impl == "refreshtoken" {
						ts = sc.source(b, impl, &oauth2.Token{AccessToken: "at0", Expiry: start.Add(refreshtoken.DefaultEarlyRefresh + refresh)}, refreshtoken.WithJitter(0))
					} else {
						ts = sc.source(b, impl, &oauth2.Token{AccessToken: "at0", Expiry: start.Add(10*time.Second + refresh)})
					}
					op := ts.Token
					if via == "NewClient" {
						ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: answerAtOnce{resp: &http.Response{StatusCode: 200, Body: http.NoBody}}})
						rt := oauth2.NewClient(ctx, ts).Transport
						req, _ := http.NewRequest(http.MethodGet, "http://api.example/", nil)
						op = func() (*oauth2.Token, error) { _, err := rt.RoundTrip(req); return nil, err }
					}
					before := sc.srv.Stats().TokenRequests
					const bucket = 10 * time.Millisecond
					buckets := make([]atomic.Int64, duration/bucket+1) // max latency per bucket, in ns
					var mu sync.Mutex
					var wg sync.WaitGroup
					for range callers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							type sample struct{ at, d time.Duration }
							mine := make([]sample, 0, 1<<15)
							for {
								t0 := time.Now()
								if t0.Sub(start) >= duration {
									break
								}
								if _, err := op(); err != nil {
									b.Error(err)
									return
								}
								d := time.Since(t0)
								mine = append(mine, sample{t0.Sub(start), d})
								bk := &buckets[t0.Sub(start)/bucket]
								for old := bk.Load(); int64(d) > old && !bk.CompareAndSwap(old, int64(d)); old = bk.Load() {
								}
								time.Sleep(100 * time.Microsecond)
							}
							mu.Lock()
							for _, s := range mine {
								all = append(all, s.d)
								if s.at >= refresh && s.at < refresh+200*time.Millisecond {
									during = append(during, s.d)
								}
							}
							mu.Unlock()
						}()
					}
					wg.Wait()
					requests += sc.srv.Stats().TokenRequests - before
					if csv != nil && via == "Token" {
						for i := range buckets {
							if v := buckets[i].Load(); v > 0 {
								fmt.Fprintf(csv, "%s,%d,%.3f\n", impl, time.Duration(i)*bucket/time.Millisecond, float64(v)/1000)
							}
						}
					}
				}
				slices.Sort(all)
				slices.Sort(during)
				b.ReportMetric(float64(requests)/float64(b.N), "requests/run")
				b.ReportMetric(percentile(during, 0.99), "refresh-p99-ms")
				b.ReportMetric(percentile(during, 1), "refresh-max-ms")
				b.ReportMetric(percentile(all, 1), "run-max-ms")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkOutage: 100 goroutines call Token continuously while the
// endpoint answers 503, for 10 s (1 s with -short), with no valid token.
// Reports the token requests and calls of the run: a back-off schedule does
// not scale with time, so nothing is extrapolated.
func BenchmarkOutage(b *testing.B) {
	duration := 10 * time.Second
	if testing.Short() {
		duration = time.Second
	}
	for _, impl := range []string{"refreshtoken", "x-oauth2"} {
		b.Run(fmt.Sprintf("impl=%s/duration=%s", impl, duration), func(b *testing.B) {
			sc := newScenario(b, refreshtokentest.Config{}, 0)
			sc.srv.Inject(-1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
			before := sc.srv.Stats().TokenRequests
			var calls atomic.Int64
			for range b.N {
				ts := sc.source(b, impl, nil)
				end := time.Now().Add(duration)
				var wg sync.WaitGroup
				for range 100 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for time.Now().Before(end) {
							ts.Token()
							calls.Add(1)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(sc.srv.Stats().TokenRequests-before)/float64(b.N), "requests/run")
			b.ReportMetric(float64(calls.Load())/float64(b.N), "calls/run")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkLongRun: 24 simulated hours of traffic, a call every simulated
// second, on a fake clock shared with the token server. Reports token
// requests per token issued (1 is the floor: no duplicate refresh) and
// refreshes per token lifetime of simulated time (1 is the floor: the
// early window makes short tokens refresh more often), and how many calls
// got a token past its real expiry. x/oauth2 reads the wall clock and
// cannot be run on simulated time.
func BenchmarkLongRun(b *testing.B) {
	tests := []struct {
		lifetime time.Duration
		early    time.Duration // 0: the default
	}{
		{lifetime: 24 * time.Hour},
		{lifetime: 300 * time.Second},
		{lifetime: 300 * time.Second, early: 30 * time.Second},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("impl=refreshtoken/lifetime=%s", tt.lifetime)
		opts := []refreshtoken.Option{}
		if tt.early > 0 {
			name += fmt.Sprintf("/early=%s", tt.early)
			opts = append(opts, refreshtoken.WithEarlyRefresh(tt.early))
		}
		b.Run(name, func(b *testing.B) {
			var requests, tokens, expired int
			var lifetimes float64
			for range b.N {
				clock := newFakeClock(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
				srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, Lifetime: tt.lifetime})
				var mu sync.Mutex
				expiry := map[string]time.Time{} // real expiry of each access token
				ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
					append(opts, refreshtoken.WithClock(clock.Now),
						refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
							mu.Lock()
							defer mu.Unlock()
							expiry[tok.AccessToken] = tok.Expiry
							return nil
						}))...)
				start := clock.Now()
				for clock.Now().Sub(start) < 24*time.Hour {
					tok, err := ts.Token()
					if err != nil {
						b.Fatal(err)
					}
					mu.Lock()
					if !clock.Now().Before(expiry[tok.AccessToken]) {
						expired++
					}
					mu.Unlock()
					// A stale token comes with Expiry at most 10 s ahead
					// (see TokenContext): let its background refresh land
					// before simulated time moves on.
					for deadline := time.Now().Add(5 * time.Second); !tok.Expiry.After(clock.Now().Add(10 * time.Second)); {
						if time.Now().After(deadline) {
							b.Fatal("background refresh did not land")
						}
						runtime.Gosched()
						if tok, err = ts.Token(); err != nil {
							b.Fatal(err)
						}
					}
					clock.Add(time.Second)
				}
				ts.Close()
				st := srv.Stats()
				srv.Close()
				if st.Refreshes != st.TokenRequests || st.ReuseEvents != 0 {
					b.Fatalf("server stats = %+v: a failed or reused refresh", st)
				}
				requests += st.TokenRequests
				tokens += len(expiry)
				lifetimes += float64(24*time.Hour) / float64(tt.lifetime)
			}
			b.ReportMetric(float64(requests)/float64(tokens), "requests/token")
			// The first request of a run gets the first token; the others
			// refresh it.
			b.ReportMetric(float64(requests-b.N)/lifetimes, "refreshes/lifetime")
			b.ReportMetric(float64(expired), "expired-tokens-used")
			b.ReportMetric(0, "ns/op")
		})
	}
}
