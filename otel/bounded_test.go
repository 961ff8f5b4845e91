package refreshtokenotel_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	refreshtokenotel "github.com/tokenfresh/refreshtoken/otel"
)

// TestBoundedAttributes gives the Observer the endings a hostile server
// can cause, with every status from 100 to 999 and an error code of its
// own at each, one of them a secret: the metrics keep a handful of series,
// and no span carries the codes.
func TestBoundedAttributes(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewSpanRecorder()
	obs, err := refreshtokenotel.New(
		refreshtokenotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
		refreshtokenotel.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))))
	if err != nil {
		t.Fatal(err)
	}
	sec := &secrets{}
	sec.add("rt-secret-echoed")
	for status := 100; status <= 999; status++ {
		code := fmt.Sprintf("code_%d", status)
		if status == 400 {
			code = "rt-secret-echoed"
		}
		resp := &http.Response{StatusCode: status}
		err := &refreshtoken.RetryError{Err: &oauth2.RetrieveError{Response: resp, ErrorCode: code}, RetryAt: t0.Add(time.Minute)}
		id := uint64(status)
		obs.Observe(refreshtoken.RefreshStarted{ID: id, Reason: refreshtoken.ReasonExpired, Time: t0})
		obs.Observe(refreshtoken.RefreshEnded{ID: id, Reason: refreshtoken.ReasonExpired, Outcome: refreshtoken.OutcomeTransient,
			Err: err, Sent: true, Status: status, ErrorCode: code, RetryAt: t0.Add(time.Minute)})
		obs.Observe(refreshtoken.Waited{Context: context.Background(), Refresh: id, Err: err})
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var n int
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				n = len(d.DataPoints)
			case metricdata.Histogram[float64]:
				n = len(d.DataPoints)
			}
			// error.type _OTHER and the known statuses, each alone or
			// with _OTHER.
			if n > 20 {
				t.Errorf("%s: %d series from one kind of failure, want a handful", m.Name, n)
			}
		}
	}
	if got, _ := points(rm, "refreshtoken.refreshes", kv("error.type", "_OTHER")); got != 900 {
		t.Errorf("refreshes with error.type _OTHER = %v, want 900", got)
	}
	if got, _ := points(rm, "refreshtoken.backoff"); got != 60 {
		t.Errorf("refreshtoken.backoff = %v, want 60 (s)", got)
	}
	for _, s := range spans.Ended() {
		set := attrs(s)
		key := "refreshtoken.oauth.error" // the request's span has error.type alone
		if s.Name() == "POST" {
			key = "error.type"
		}
		if v, _ := set.Value(attribute.Key(key)); v.AsString() != "_OTHER" {
			t.Errorf("span %s: %s = %q, want _OTHER", s.Name(), key, v.AsString())
		}
	}
	if len(spans.Ended()) != 2*900 {
		t.Errorf("%d spans, want 1800 (a refresh and its request, 900 times)", len(spans.Ended()))
	}
	checkSecrets(t, sec, rm, spans.Ended())
}
