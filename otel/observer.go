// Package refreshtokenotel turns the events of a [refreshtoken.TokenSource]
// into OpenTelemetry metrics and spans: give [New]'s Observer to
// [refreshtoken.WithObserver].
//
// The metrics count refreshes by outcome and time them, show how close to
// expiry refreshes run, how long callers waited, the back-off in effect, and
// the store's and the shared lock's work (README.md lists them, with what to
// alert on). Each refresh is a span, with the token request as a child span
// that follows the HTTP client conventions and the store's steps as child
// spans; a caller whose span is in the context it gave to Token and that had
// to wait gets a link to the refresh it waited for.
//
// No attribute holds a secret: tokens appear only as their
// [refreshtoken.Fingerprint], on spans and never on metrics, and what the
// endpoint sends (an OAuth error code, an HTTP status) is kept to a known
// set on metrics, and the error code on spans too, so that a hostile or
// broken server can neither write into the attributes nor make the number
// of metric series grow.
package refreshtokenotel

import (
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenfresh/refreshtoken"
)

// scope is the instrumentation scope of the meter and the tracer.
const scope = "github.com/tokenfresh/refreshtoken/otel"

// An Option configures [New].
type Option func(*options)

type options struct {
	mp       metric.MeterProvider
	tp       trace.TracerProvider
	attrs    []attribute.KeyValue
	tokenURL string
}

// WithMeterProvider makes the Observer record its metrics with mp. By
// default it uses the global one, [otel.GetMeterProvider], as it is when
// New is called.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.mp = mp }
}

// WithTracerProvider makes the Observer record its spans with tp. By
// default it uses the global one, [otel.GetTracerProvider], as it is when
// New is called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithAttributes adds attrs to every metric the Observer records and every
// span it starts: to tell the sources of one process apart (a name of the
// API or of the tenant), or to label them. Their number of values is the
// caller's to bound. By default there are none.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(o *options) { o.attrs = append(o.attrs, attrs...) }
}

// WithTokenURL gives the token endpoint's URL (the oauth2.Config's
// Endpoint.TokenURL), which the events do not carry, for the token
// request's span: server.address, server.port and url.full, without its
// query, fragment or user information. By default the span has none of
// them.
func WithTokenURL(tokenURL string) Option {
	return func(o *options) { o.tokenURL = tokenURL }
}

// Observer is a [refreshtoken.Observer] that records OpenTelemetry metrics
// and spans. Use one Observer for one TokenSource: it matches events by the
// refresh's number, which each source counts on its own. It is safe for
// concurrent use, and Observe does not block beyond a short mutex and the
// providers' own recording.
type Observer struct {
	m       instruments
	tracer  trace.Tracer
	attrs   []attribute.KeyValue // WithAttributes
	request []attribute.KeyValue // of the token request's span: method, server, URL

	mu      sync.Mutex
	running [maxRunning]*running // mu guards running and ended
	ended   [maxEnded]endedRefresh
}

// New returns an Observer that records with the providers of opts. It
// fails only if an instrument cannot be created.
func New(opts ...Option) (*Observer, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.mp == nil {
		o.mp = otel.GetMeterProvider()
	}
	if o.tp == nil {
		o.tp = otel.GetTracerProvider()
	}
	obs := &Observer{
		tracer:  o.tp.Tracer(scope),
		attrs:   slices.Clip(o.attrs),
		request: requestAttrs(o.tokenURL),
	}
	var err error
	obs.m, err = newInstruments(o.mp.Meter(scope))
	if err != nil {
		return nil, err
	}
	return obs, nil
}

// requestAttrs are the attributes of the token request's span that come
// from the configuration.
func requestAttrs(tokenURL string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodPost}
	u, err := url.Parse(tokenURL)
	if tokenURL == "" || err != nil || u.Host == "" {
		return attrs
	}
	attrs = append(attrs, semconv.ServerAddress(u.Hostname()))
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		switch u.Scheme {
		case "https":
			port = 443
		case "http":
			port = 80
		}
	}
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	clean := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return append(attrs, semconv.URLFull(clean.String()))
}

// Observe records e. It is the source's to call.
func (o *Observer) Observe(e refreshtoken.Event) {
	// now is taken once, on arrival: an event's duration ends at it.
	now := time.Now()
	switch e := e.(type) {
	case refreshtoken.RefreshStarted:
		o.started(e)
	case refreshtoken.RefreshEnded:
		o.m.refreshEnded(o.attrs, e)
		o.refreshSpan(e, now)
	case refreshtoken.StoreLoaded:
		o.m.storeLoaded(o.attrs, e)
		o.buffer(e.Refresh, e, now)
	case refreshtoken.StoreSaved:
		o.m.storeSaved(o.attrs, e)
		o.buffer(e.Refresh, e, now)
	case refreshtoken.LockWaited:
		o.m.lockWaited(o.attrs, e)
		o.buffer(e.Refresh, e, now)
	case refreshtoken.LockReleased:
		o.m.lockReleased(o.attrs, e)
		o.buffer(e.Refresh, e, now)
	case refreshtoken.Waited:
		o.m.waited(o.attrs, e)
		o.link(e)
	case refreshtoken.Unauthorized:
		o.m.unauthorized(o.attrs, e)
		unauthorizedEvent(e)
	case refreshtoken.TokenSet:
		o.m.tokenSet(o.attrs, e)
	case refreshtoken.Revoked:
		o.m.revoked(o.attrs, e)
	}
}

var _ refreshtoken.Observer = (*Observer)(nil)
