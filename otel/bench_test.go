package refreshtokenotel_test

import (
	"context"
	"net/http"
	"runtime"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	refreshtokenotel "github.com/tokenfresh/refreshtoken/otel"
)

// benchObserver is an Observer that records with the SDK, spans sampled
// always, into a manual reader and no exporter: the adapter's own cost
// and the SDK's.
func benchObserver(b *testing.B) *refreshtokenotel.Observer {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() {
		mp.Shutdown(context.Background())
		tp.Shutdown(context.Background())
	})
	o, err := refreshtokenotel.New(refreshtokenotel.WithMeterProvider(mp), refreshtokenotel.WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	return o
}

// answerAtOnce is a base transport that answers every request at once.
type answerAtOnce struct{}

func (answerAtOnce) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

// BenchmarkCached is the cached path, Token() and a Transport's
// RoundTrip, without an observer and with the adapter, in one run: the
// cached path emits no event, so the two should not differ.
func BenchmarkCached(b *testing.B) {
	tok := &oauth2.Token{AccessToken: "at-bench-0123456789", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}
	req, err := http.NewRequest(http.MethodGet, "http://api.example/v1/things", nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, obs := range []string{"none", "otel"} {
		var opts []refreshtoken.Option
		if obs == "otel" {
			opts = append(opts, refreshtoken.WithObserver(benchObserver(b)))
		}
		ts := refreshtoken.Cache(oauth2.StaticTokenSource(tok), opts...)
		b.Cleanup(func() { ts.Close() })
		if _, err := ts.Token(); err != nil {
			b.Fatal(err)
		}
		b.Run("op=Token/obs="+obs, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var sink *oauth2.Token
				for pb.Next() {
					sink, _ = ts.Token()
				}
				runtime.KeepAlive(sink)
			})
		})
		tr := &refreshtoken.Transport{Source: ts, Base: answerAtOnce{}}
		b.Run("op=RoundTrip/obs="+obs, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var sink *http.Response
				for pb.Next() {
					sink, _ = tr.RoundTrip(req)
				}
				runtime.KeepAlive(sink)
			})
		})
	}
}

// BenchmarkRefreshEvents is the adapter's cost for the events of one
// refresh through a shared store (its start, two loads, the lock's wait
// and hold, a Save, its end), to set against the request's.
func BenchmarkRefreshEvents(b *testing.B) {
	o := benchObserver(b)
	start := time.Now()
	b.ReportAllocs()
	var id uint64
	for b.Loop() {
		id++
		o.Observe(refreshtoken.RefreshStarted{ID: id, Reason: refreshtoken.ReasonEarly, Time: start, Fingerprint: "0123abcd", TimeLeft: 5 * time.Minute})
		o.Observe(refreshtoken.StoreLoaded{Refresh: id, Duration: time.Millisecond, Found: true})
		o.Observe(refreshtoken.LockWaited{Refresh: id, Waited: time.Millisecond})
		o.Observe(refreshtoken.StoreLoaded{Refresh: id, Duration: time.Millisecond, Found: true})
		o.Observe(refreshtoken.StoreSaved{Refresh: id, Result: refreshtoken.SaveOK, Duration: time.Millisecond})
		o.Observe(refreshtoken.LockReleased{Refresh: id, Held: 50 * time.Millisecond})
		o.Observe(refreshtoken.RefreshEnded{ID: id, Reason: refreshtoken.ReasonEarly, Outcome: refreshtoken.OutcomeOK,
			Duration: 60 * time.Millisecond, Sent: true, Request: 40 * time.Millisecond, Fingerprint: "0123abcd",
			Rotated: true, NewFingerprint: "4567ef01", Lifetime: time.Hour, TimeLeft: 5 * time.Minute})
	}
}
