package refreshtokenotel_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	refreshtokenotel "github.com/tokenfresh/refreshtoken/otel"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// secrets collects every token the test has seen.
type secrets struct {
	mu   sync.Mutex
	seen []string
}

func (s *secrets) add(vs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vs {
		if v != "" {
			s.seen = append(s.seen, v)
		}
	}
}

func (s *secrets) onNewToken(_ context.Context, tok *oauth2.Token) error {
	s.add(tok.AccessToken, tok.RefreshToken)
	return nil
}

// find returns the secrets that v holds.
func (s *secrets) find(v string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []string
	for _, sec := range s.seen {
		if strings.Contains(v, sec) {
			found = append(found, sec)
		}
	}
	return found
}

// lockSignal is the shared store of the test, which tells when a source
// asks for its lock.
type lockSignal struct {
	*refreshtokentest.MemoryStore
	asked chan struct{}
}

func (l lockSignal) Lock(ctx context.Context) (time.Time, func(context.Context) error, error) {
	select {
	case l.asked <- struct{}{}:
	default:
	}
	return l.MemoryStore.Lock(ctx)
}

// rig is what a test run needs: the server, the clock, the providers with
// their readers, and the secrets.
type rig struct {
	t       *testing.T
	clock   *refreshtokentest.Clock
	srv     *refreshtokentest.Server
	reader  *sdkmetric.ManualReader
	mp      *sdkmetric.MeterProvider
	spans   *tracetest.SpanRecorder
	tp      *sdktrace.TracerProvider
	secrets *secrets
	// gate, if not nil, holds token requests until it is closed; each
	// request held is reported on arrived first.
	mu      sync.Mutex
	gate    chan struct{}
	arrived chan struct{}
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, clock: refreshtokentest.NewClock(t0), reader: sdkmetric.NewManualReader(),
		spans: tracetest.NewSpanRecorder(), secrets: &secrets{}}
	r.srv = refreshtokentest.NewServer(refreshtokentest.Config{Clock: r.clock.Now, OnTokenRequest: r.hold})
	t.Cleanup(r.srv.Close)
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.secrets.add("test-secret")
	return r
}

func (r *rig) hold(*http.Request) {
	r.mu.Lock()
	gate, arrived := r.gate, r.arrived
	r.mu.Unlock()
	if gate == nil {
		return
	}
	arrived <- struct{}{}
	<-gate
}

func (r *rig) observer(source string) *refreshtokenotel.Observer {
	o, err := refreshtokenotel.New(refreshtokenotel.WithMeterProvider(r.mp), refreshtokenotel.WithTracerProvider(r.tp),
		refreshtokenotel.WithTokenURL(r.srv.TokenURL), refreshtokenotel.WithAttributes(attribute.String("source", source)))
	if err != nil {
		r.t.Fatal(err)
	}
	return o
}

func (r *rig) source(rt string, st refreshtoken.Store, source string) *refreshtoken.TokenSource {
	ts := refreshtoken.New(context.Background(), r.srv.Config(), &oauth2.Token{RefreshToken: rt},
		refreshtoken.WithClock(r.clock.Now), refreshtoken.WithStore(st), refreshtoken.WithObserver(r.observer(source)),
		refreshtoken.WithOnNewToken(r.secrets.onNewToken))
	r.t.Cleanup(func() { ts.Close() })
	return ts
}

// token calls ts.TokenContext in a span of its own named name, which it
// returns with the error.
func (r *rig) token(ts *refreshtoken.TokenSource, name string) (trace.SpanContext, error) {
	ctx, span := r.tp.Tracer("test").Start(context.Background(), name)
	defer span.End()
	tok, err := ts.TokenContext(ctx)
	if tok != nil {
		r.secrets.add(tok.AccessToken, tok.RefreshToken)
	}
	return span.SpanContext(), err
}

// retryAfter moves the clock past the next attempt that err allows.
func (r *rig) retryAfter(err error) {
	r.t.Helper()
	var re *refreshtoken.RetryError
	if !errors.As(err, &re) {
		r.t.Fatalf("error = %v, want a RetryError", err)
	}
	r.clock.Set(re.RetryAt.Add(time.Second))
}

// TestRun runs two sources sharing a store through refreshes, a 503, a
// 429, a hostile answer, a lock wait, a rejection, SetToken and a 401, and
// checks the metrics and spans they produce, and that none holds a secret.
func TestRun(t *testing.T) {
	r := newRig(t)
	rt0 := r.srv.NewRefreshToken("")
	r.secrets.add(rt0)
	store := refreshtokentest.NewMemoryStore(r.clock.Now, time.Minute)
	a := r.source(rt0, store, "a")
	expire := func() { r.clock.Add(2 * time.Hour) }

	// 1: the first token, for a caller that waits for it.
	firstCaller, err := r.token(a, "first-caller")
	if err != nil {
		t.Fatalf("first Token() = %v", err)
	}
	// 2: a 503, then 3: a 429.
	expire()
	r.srv.Inject(1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
	_, err = r.token(a, "caller")
	r.retryAfter(err)
	r.srv.Inject(1, refreshtokentest.Fault{Status: http.StatusTooManyRequests})
	_, err = r.token(a, "caller")
	r.retryAfter(err)
	// 4: a new token.
	if _, err := r.token(a, "caller"); err != nil {
		t.Fatalf("Token() after the 429 = %v", err)
	}
	// 5: a hostile answer, whose status is not one a server sends and
	// whose error code is the refresh token.
	expire()
	newest, _ := r.srv.Newest(rt0)
	r.srv.Inject(1, refreshtokentest.Fault{Status: 599, Error: newest})
	_, err = r.token(a, "caller")
	r.retryAfter(err)

	// 6: a refresh of a that holds the lock, and one of b, another
	// process, that waits for it and then finds a's token in the store.
	expire()
	shared := lockSignal{store, make(chan struct{}, 1)}
	b := r.source(rt0, shared, "b")
	gate, arrived := make(chan struct{}), make(chan struct{}, 1)
	r.mu.Lock()
	r.gate, r.arrived = gate, arrived
	r.mu.Unlock()
	errA := make(chan error, 1)
	go func() { _, err := r.token(a, "caller"); errA <- err }()
	wait(t, arrived, "a's request")
	type result struct {
		sc  trace.SpanContext
		err error
	}
	resB := make(chan result, 1)
	go func() { sc, err := r.token(b, "b-caller"); resB <- result{sc, err} }()
	wait(t, shared.asked, "b asking for the lock")
	r.mu.Lock()
	r.gate = nil
	r.mu.Unlock()
	close(gate)
	if err := waitFor(t, errA, "a's Token()"); err != nil {
		t.Fatalf("a's Token() = %v", err)
	}
	rb := waitFor(t, resB, "b's Token()")
	if rb.err != nil {
		t.Fatalf("b's Token() = %v", rb.err)
	}

	// 7: a rejection, then SetToken and 8: a new token.
	expire()
	newest, _ = r.srv.Newest(rt0)
	r.srv.Revoke(newest)
	if _, err := r.token(a, "caller"); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Fatalf("Token() after Revoke = %v, want ErrRefreshRejected", err)
	}
	rt1 := r.srv.NewRefreshToken("")
	r.secrets.add(rt1)
	if err := a.SetToken(&oauth2.Token{RefreshToken: rt1}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.token(a, "caller"); err != nil {
		t.Fatalf("Token() after SetToken = %v", err)
	}
	// 9: a 401 from the API, and the refresh it forces.
	r.srv.RevokeAccessTokens()
	ctx, apiSpan := r.tp.Tracer("test").Start(context.Background(), "api-caller")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.srv.APIURL, nil)
	resp, err := refreshtoken.NewClient(ctx, a).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	apiSpan.End()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("API status after a 401 = %d, want 200", resp.StatusCode)
	}

	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, rm)
	checkSpans(t, r.spans.Ended(), firstCaller, rb.sc)
	// The secrets were there to find: the refresh tokens of every
	// rotation, and the access tokens.
	if scanned := checkSecrets(t, r.secrets, rm, r.spans.Ended()); len(r.secrets.seen) < 15 || scanned < 200 {
		t.Errorf("scanned %d attributes for %d secrets: too few for the run", scanned, len(r.secrets.seen))
	}
}

// wait waits for c, failing the test after a deadline.
func wait[T any](t *testing.T, c <-chan T, what string) {
	t.Helper()
	waitFor(t, c, what)
}

func waitFor[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s after 10 s", what)
	}
	panic("unreachable")
}

// has reports whether set holds every attribute of want.
func has(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// points returns the sum of the counter's points, or the count of the
// histogram's, whose attributes hold want, and whether the metric was
// found.
func points(rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) (n float64, found bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			found = true
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes, want) {
						n += float64(p.Value)
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes, want) {
						n += float64(p.Count)
					}
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes, want) {
						n += p.Value
					}
				}
			}
		}
	}
	return n, found
}

func kv(k, v string) attribute.KeyValue { return attribute.String(k, v) }

func checkMetrics(t *testing.T, rm metricdata.ResourceMetrics) {
	t.Helper()
	a, b := kv("source", "a"), kv("source", "b")
	status := func(c int) attribute.KeyValue { return attribute.Int("http.response.status_code", c) }
	for _, tt := range []struct {
		name   string
		metric string
		attrs  []attribute.KeyValue
		want   float64
	}{
		{"refreshes of a", "refreshtoken.refreshes", []attribute.KeyValue{a}, 9},
		{"ok", "refreshtoken.refreshes", []attribute.KeyValue{a, kv("refreshtoken.outcome", "ok")}, 5},
		{"first", "refreshtoken.refreshes", []attribute.KeyValue{a, kv("refreshtoken.outcome", "ok"), kv("refreshtoken.reason", "no_token")}, 2},
		{"after a 401", "refreshtoken.refreshes", []attribute.KeyValue{a, kv("refreshtoken.outcome", "ok"), kv("refreshtoken.reason", "unauthorized")}, 1},
		{"transient", "refreshtoken.refreshes", []attribute.KeyValue{a, kv("refreshtoken.outcome", "transient")}, 3},
		{"503", "refreshtoken.refreshes", []attribute.KeyValue{a, kv("refreshtoken.outcome", "transient"), status(503), kv("error.type", "server_error")}, 1},
		{"429", "refreshtoken.refreshes", []attribute.KeyValue{a, kv("refreshtoken.outcome", "transient"), status(429), kv("error.type", "too_many_requests")}, 1},
		{"hostile", "refreshtoken.refreshes", []attribute.KeyValue{a, kv("refreshtoken.outcome", "transient"), kv("error.type", "_OTHER")}, 1},
		{"rejected", "refreshtoken.refreshes", []attribute.KeyValue{a, kv("refreshtoken.outcome", "rejected"), status(403), kv("error.type", "invalid_grant")}, 1},
		{"b found a's token", "refreshtoken.refreshes", []attribute.KeyValue{b, kv("refreshtoken.outcome", "stored")}, 1},
		{"refreshes of b", "refreshtoken.refreshes", []attribute.KeyValue{b}, 1},
		{"refresh durations", "refreshtoken.refresh.duration", []attribute.KeyValue{a}, 9},
		{"requests", "refreshtoken.request.duration", []attribute.KeyValue{a}, 9},
		{"requests of b", "refreshtoken.request.duration", []attribute.KeyValue{b}, 0},
		{"time left, tokens in hand", "refreshtoken.token.time_left", []attribute.KeyValue{a}, 6},
		{"waits of a", "refreshtoken.wait.duration", []attribute.KeyValue{a}, 9},
		{"failed waits of a", "refreshtoken.wait.duration", []attribute.KeyValue{a, kv("error.type", "invalid_grant")}, 1},
		{"waits of b", "refreshtoken.wait.duration", []attribute.KeyValue{b}, 1},
		{"lock waits of b", "refreshtoken.lock.wait.duration", []attribute.KeyValue{b}, 1},
		{"lock holds of b", "refreshtoken.lock.hold.duration", []attribute.KeyValue{b, attribute.Bool("refreshtoken.lock.kept", false)}, 1},
		{"loads of b", "refreshtoken.store.loads", []attribute.KeyValue{b, attribute.Bool("refreshtoken.store.found", true)}, 2},
		{"saves of a", "refreshtoken.store.saves", []attribute.KeyValue{a, kv("refreshtoken.save.result", "ok")}, 6},
		{"saves of b", "refreshtoken.store.saves", []attribute.KeyValue{b}, 0},
		{"401s", "refreshtoken.unauthorized", []attribute.KeyValue{a, kv("refreshtoken.unauthorized.result", "retried"), attribute.Bool("refreshtoken.unauthorized.dropped", true)}, 1},
		{"SetToken", "refreshtoken.token.sets", []attribute.KeyValue{a, attribute.Bool("refreshtoken.recovered", true)}, 1},
		{"no back-off after the last refresh", "refreshtoken.backoff", []attribute.KeyValue{a}, 0},
	} {
		got, found := points(rm, tt.metric, tt.attrs...)
		if !found || got != tt.want {
			t.Errorf("%s: %s%v = %v (found %v), want %v", tt.name, tt.metric, tt.attrs, got, found, tt.want)
		}
	}
	// A status no server sends is not an attribute of the metrics.
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "refreshtoken.refreshes" {
				for _, p := range d.DataPoints {
					if v, ok := p.Attributes.Value("http.response.status_code"); ok && v.AsInt64() == 599 {
						t.Errorf("refreshtoken.refreshes has a point with status 599: %v", p.Attributes.ToSlice())
					}
				}
			}
		}
	}
}

func attrs(s sdktrace.ReadOnlySpan) attribute.Set { return attribute.NewSet(s.Attributes()...) }

// refreshSpan returns the span of the source's refresh id.
func refreshSpan(t *testing.T, spans []sdktrace.ReadOnlySpan, source string, id int64) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.Name() == "refreshtoken.refresh" && has(attrs(s), []attribute.KeyValue{kv("source", source), attribute.Int64("refreshtoken.refresh.id", id)}) {
			return s
		}
	}
	t.Fatalf("no span of refresh %d of %s", id, source)
	return nil
}

// children returns the names of the children of parent.
func children(spans []sdktrace.ReadOnlySpan, parent sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var c []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() && s.Parent().TraceID() == parent.SpanContext().TraceID() {
			c = append(c, s)
		}
	}
	return c
}

// names returns the sorted names of spans: children end at about the same
// time (a lock's hold and the load under it), so their order is not
// checked.
func names(spans []sdktrace.ReadOnlySpan) string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name())
	}
	slices.Sort(n)
	return strings.Join(n, " ")
}

// linked reports whether the span sc links to target, and has a wait
// event.
func linked(spans []sdktrace.ReadOnlySpan, sc trace.SpanContext, target sdktrace.ReadOnlySpan) (link, event bool) {
	for _, s := range spans {
		if s.SpanContext().SpanID() != sc.SpanID() {
			continue
		}
		for _, l := range s.Links() {
			link = link || l.SpanContext.Equal(target.SpanContext())
		}
		for _, e := range s.Events() {
			event = event || e.Name == "refreshtoken.wait"
		}
	}
	return link, event
}

func checkSpans(t *testing.T, spans []sdktrace.ReadOnlySpan, firstCaller, bCaller trace.SpanContext) {
	t.Helper()
	var refreshes, requests int
	for _, s := range spans {
		switch s.Name() {
		case "refreshtoken.refresh":
			refreshes++
		case "POST":
			requests++
		}
	}
	if refreshes != 10 || requests != 9 {
		t.Errorf("%d refresh spans and %d POST spans, want 10 and 9", refreshes, requests)
	}

	type want struct {
		id       int64
		outcome  string
		status   int // 0: none
		code     string
		children string
	}
	for _, w := range []want{
		{1, "ok", 0, "", "POST refreshtoken.lock.hold refreshtoken.lock.wait refreshtoken.store.load refreshtoken.store.load refreshtoken.store.save"},
		{2, "transient", 503, "server_error", "POST refreshtoken.lock.hold refreshtoken.lock.wait refreshtoken.store.load refreshtoken.store.load"},
		{3, "transient", 429, "too_many_requests", "POST refreshtoken.lock.hold refreshtoken.lock.wait refreshtoken.store.load refreshtoken.store.load"},
		{5, "transient", 599, "_OTHER", "POST refreshtoken.lock.hold refreshtoken.lock.wait refreshtoken.store.load refreshtoken.store.load"},
		{7, "rejected", 403, "invalid_grant", "POST refreshtoken.lock.hold refreshtoken.lock.wait refreshtoken.store.load refreshtoken.store.load"},
	} {
		s := refreshSpan(t, spans, "a", w.id)
		set := attrs(s)
		wantAttrs := []attribute.KeyValue{kv("refreshtoken.outcome", w.outcome), attribute.Bool("refreshtoken.sent", true)}
		if w.status != 0 {
			wantAttrs = append(wantAttrs, attribute.Int("http.response.status_code", w.status), kv("refreshtoken.oauth.error", w.code), kv("error.type", w.code))
		}
		if !has(set, wantAttrs) {
			t.Errorf("refresh %d: attributes %v, want %v", w.id, set.ToSlice(), wantAttrs)
		}
		if w.status != 0 && s.Status().Code != codes.Error || w.status == 0 && s.Status().Code != codes.Unset {
			t.Errorf("refresh %d: status %v", w.id, s.Status())
		}
		kids := children(spans, s)
		if got := names(kids); got != w.children {
			t.Errorf("refresh %d: children %q, want %q", w.id, got, w.children)
		}
		for _, k := range kids {
			if k.StartTime().Before(s.StartTime()) || k.EndTime().After(s.EndTime()) || k.EndTime().Before(k.StartTime()) {
				t.Errorf("refresh %d: child %s from %v to %v, outside its parent, from %v to %v",
					w.id, k.Name(), k.StartTime(), k.EndTime(), s.StartTime(), s.EndTime())
			}
			if k.Name() != "POST" {
				continue
			}
			reqWant := []attribute.KeyValue{kv("http.request.method", "POST"), kv("server.address", "127.0.0.1")}
			if w.status != 0 {
				reqWant = append(reqWant, attribute.Int("http.response.status_code", w.status), kv("error.type", w.code))
			}
			if ka := attrs(k); !has(ka, reqWant) || !ka.HasValue("server.port") || k.SpanKind() != trace.SpanKindClient {
				t.Errorf("refresh %d: request span %v %v, want %v, server.port", w.id, k.SpanKind(), ka.ToSlice(), reqWant)
			}
		}
	}
	first := refreshSpan(t, spans, "a", 1)
	fa := attrs(first)
	if fp, _ := fa.Value("refreshtoken.fingerprint"); fp.AsString() == "" || !has(fa, []attribute.KeyValue{attribute.Bool("refreshtoken.rotated", true)}) ||
		!fa.HasValue("refreshtoken.new_fingerprint") || !has(fa, []attribute.KeyValue{attribute.Int("refreshtoken.waiters", 1)}) {
		t.Errorf("first refresh: attributes %v, want a fingerprint, rotated, a new fingerprint, 1 waiter", fa.ToSlice())
	}
	if link, event := linked(spans, firstCaller, first); !link || !event {
		t.Errorf("first caller: link to the refresh %v, wait event %v; want both", link, event)
	}
	fromB := refreshSpan(t, spans, "b", 1)
	if ba := attrs(fromB); !has(ba, []attribute.KeyValue{kv("refreshtoken.outcome", "stored"), attribute.Bool("refreshtoken.sent", false)}) {
		t.Errorf("b's refresh: attributes %v, want outcome stored, not sent", ba.ToSlice())
	}
	if got, want := names(children(spans, fromB)), "refreshtoken.lock.hold refreshtoken.lock.wait refreshtoken.store.load refreshtoken.store.load"; got != want {
		t.Errorf("b's refresh: children %q, want %q", got, want)
	}
	if link, event := linked(spans, bCaller, fromB); !link || !event {
		t.Errorf("b's caller: link to b's refresh %v, wait event %v; want both", link, event)
	}
	var api sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "api-caller" {
			api = s
		}
	}
	if api == nil || len(api.Events()) == 0 || api.Events()[len(api.Events())-1].Name != "refreshtoken.unauthorized" {
		t.Errorf("api caller's span: no refreshtoken.unauthorized event")
	}
}

// checkSecrets scans every attribute of the metrics and spans, and the
// spans' names, events, links and status, for the secrets.
// It returns how many attributes it scanned.
func checkSecrets(t *testing.T, sec *secrets, rm metricdata.ResourceMetrics, spans []sdktrace.ReadOnlySpan) (scanned int) {
	t.Helper()
	scan := func(where string, kvs ...attribute.KeyValue) {
		for _, kv := range kvs {
			scanned++
			for _, s := range [...]string{string(kv.Key), kv.Value.Emit()} {
				if found := sec.find(s); len(found) > 0 {
					t.Errorf("%s: attribute %s holds a secret", where, kv.Key)
				}
			}
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					scan(m.Name, p.Attributes.ToSlice()...)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					scan(m.Name, p.Attributes.ToSlice()...)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					scan(m.Name, p.Attributes.ToSlice()...)
				}
			default:
				t.Errorf("metric %s: data of type %T not scanned", m.Name, m.Data)
			}
		}
	}
	for _, s := range spans {
		scan(s.Name(), s.Attributes()...)
		scan(s.Name()+" name", attribute.String("name", s.Name()), attribute.String("status", s.Status().Description))
		for _, e := range s.Events() {
			scan(s.Name()+" event "+e.Name, append(e.Attributes, attribute.String("name", e.Name))...)
		}
		for _, l := range s.Links() {
			scan(s.Name()+" link", l.Attributes...)
		}
	}
	return scanned
}

// TestSharedObserver: one Observer shared by two sources, against its
// documented use, neither fails nor loses a count: each source's refreshes
// are counted and each gets a span, though the two number theirs alike.
func TestSharedObserver(t *testing.T) {
	r := newRig(t)
	obs := r.observer("shared")
	const rounds = 20
	var wg sync.WaitGroup
	for range 2 {
		ts := refreshtoken.New(context.Background(), r.srv.Config(), &oauth2.Token{RefreshToken: r.srv.NewRefreshToken("openid")},
			refreshtoken.WithClock(r.clock.Now), refreshtoken.WithObserver(obs))
		t.Cleanup(func() { ts.Close() })
		wg.Go(func() {
			for range rounds {
				if _, err := r.token(ts, "caller"); err != nil {
					t.Errorf("Token() = %v", err)
					return
				}
				ts.Invalidate()
			}
		})
	}
	wg.Wait()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if n, _ := points(rm, "refreshtoken.refreshes", kv("refreshtoken.outcome", "ok")); n != 2*rounds {
		t.Errorf("refreshes ok = %v, want %d", n, 2*rounds)
	}
	var spans int
	for _, s := range r.spans.Ended() {
		if s.Name() == "refreshtoken.refresh" {
			spans++
		}
	}
	if spans != 2*rounds {
		t.Errorf("%d refresh spans, want %d", spans, 2*rounds)
	}
}

// TestSignOutMetric: Revoke and Forget are counted, with whether the
// server was asked, whether the source was signed out, the status and
// the error.
func TestSignOutMetric(t *testing.T) {
	r := newRig(t)
	rt := r.srv.NewRefreshToken("")
	ts := refreshtoken.New(context.Background(), r.srv.Config(), &oauth2.Token{RefreshToken: rt},
		refreshtoken.WithClock(r.clock.Now), refreshtoken.WithRevocationURL(r.srv.RevokeURL),
		refreshtoken.WithObserver(r.observer("a")))
	ctx := context.Background()
	r.srv.InjectRevoke(1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
	if err := ts.Revoke(ctx); err == nil {
		t.Fatal("Revoke() with the endpoint answering 503 = nil, want an error")
	}
	if err := ts.Revoke(ctx); err != nil {
		t.Fatalf("Revoke() = %v", err)
	}
	if err := ts.Forget(ctx); err != nil { // signed out already
		t.Fatalf("Forget() = %v", err)
	}
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	a := kv("source", "a")
	for _, tt := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  float64
	}{
		{"all", []attribute.KeyValue{a}, 3},
		{"failed", []attribute.KeyValue{a, attribute.Bool("refreshtoken.signout.revoke", true), attribute.Bool("refreshtoken.signout.dropped", false),
			attribute.Int("http.response.status_code", 503), kv("error.type", "server_error")}, 1},
		{"revoked", []attribute.KeyValue{a, attribute.Bool("refreshtoken.signout.revoke", true), attribute.Bool("refreshtoken.signout.dropped", true),
			attribute.Int("http.response.status_code", 200)}, 1},
		{"forgotten, signed out already", []attribute.KeyValue{a, attribute.Bool("refreshtoken.signout.revoke", false), attribute.Bool("refreshtoken.signout.dropped", false)}, 1},
	} {
		if got, found := points(rm, "refreshtoken.signouts", tt.attrs...); !found || got != tt.want {
			t.Errorf("%s: refreshtoken.signouts%v = %v (found %v), want %v", tt.name, tt.attrs, got, found, tt.want)
		}
	}
}
