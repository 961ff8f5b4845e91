package refreshtokenotel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenfresh/refreshtoken"
)

// The bounds of what the Observer keeps between events.
const (
	// maxRunning is how many started refreshes it follows: a source runs
	// one at a time, and a refresh whose end never came is dropped when a
	// later one needs its place.
	maxRunning = 4
	// maxBuffered is how many store events of one refresh it keeps for
	// the refresh's span: a refresh has at most eight (a load, the retry
	// of a failed Save and the load after it, the lock's wait, a load, the
	// Save, a load after a refused Save, the lock's release).
	maxBuffered = 10
	// maxEnded is how many ended refreshes' spans it remembers, for the
	// callers that waited for them to link to.
	maxEnded = 8
)

// running is a refresh that started and has not ended.
type running struct {
	id     uint64
	start  time.Time // RefreshStarted.Time: by the source's clock
	n      int
	events [maxBuffered]arrived
}

// arrived is a store event and when it came, by the local clock: when the
// step it reports ended.
type arrived struct {
	e  refreshtoken.Event
	at time.Time
}

// endedRefresh is the span of a refresh that ended.
type endedRefresh struct {
	id uint64
	sc trace.SpanContext
}

// started begins following a refresh.
func (o *Observer) started(e refreshtoken.RefreshStarted) {
	r := &running{id: e.ID, start: e.Time}
	o.mu.Lock()
	defer o.mu.Unlock()
	oldest := 0
	for i, cur := range o.running {
		if cur == nil {
			oldest = i
			break
		}
		if cur.id < o.running[oldest].id {
			oldest = i
		}
	}
	o.running[oldest] = r
}

// buffer keeps a store event for the span of its refresh, if it has one.
func (o *Observer) buffer(id uint64, e refreshtoken.Event, now time.Time) {
	if id == 0 {
		return // SetToken's or Flush's: only counted
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.running {
		if r != nil && r.id == id && r.n < len(r.events) {
			r.events[r.n] = arrived{e, now}
			r.n++
			return
		}
	}
}

// take stops following the refresh id and returns it, or a refresh with
// no events if it was not followed.
func (o *Observer) take(id uint64) *running {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, r := range o.running {
		if r != nil && r.id == id {
			o.running[i] = nil
			return r
		}
	}
	return &running{id: id}
}

// refreshSpan records the span of the refresh that e ends, at now, with
// its store steps and its request as child spans.
func (o *Observer) refreshSpan(e refreshtoken.RefreshEnded, now time.Time) {
	r := o.take(e.ID)
	o.m.recordBackoff(o.attrs, e, r.start)

	failed := e.Outcome == refreshtoken.OutcomeTransient || e.Outcome == refreshtoken.OutcomeRejected ||
		e.Outcome == refreshtoken.OutcomeNotSent
	// The steps' times come from their events' arrival, the refresh's
	// from its duration: a step may seem to start a little before it.
	start := now.Add(-e.Duration)
	for _, a := range r.events[:r.n] {
		_, d, _, _ := step(a.e)
		if at := a.at.Add(-d); at.Before(start) {
			start = at
		}
	}
	ctx, span := o.tracer.Start(context.Background(), "refreshtoken.refresh",
		trace.WithTimestamp(start), trace.WithAttributes(o.attrs...), trace.WithAttributes(refreshAttrs(e, r.start, failed)...))
	if failed {
		span.SetStatus(codes.Error, string(e.Outcome))
	}

	// The request comes after the steps that prepare it (store loads, the
	// retry of a failed Save, the lock) and before the Save of its answer
	// and the lock's release: it starts when the last step before it
	// ended.
	reqStart, after := start, false
	for _, a := range r.events[:r.n] {
		if s, ok := a.e.(refreshtoken.StoreSaved); (ok && !s.Retry) || isRelease(a.e) {
			after = true
		}
		if !after {
			reqStart = a.at
		}
		o.stepSpan(ctx, a)
	}
	if e.Sent {
		end := reqStart.Add(e.Request)
		if end.After(now) {
			end = now
		}
		o.requestSpan(ctx, e, reqStart, end)
	}
	span.End(trace.WithTimestamp(now))

	o.mu.Lock()
	o.ended[e.ID%maxEnded] = endedRefresh{e.ID, span.SpanContext()}
	o.mu.Unlock()
}

func isRelease(e refreshtoken.Event) bool {
	_, ok := e.(refreshtoken.LockReleased)
	return ok
}

// refreshAttrs are the attributes of a refresh's span. The fingerprints are
// not secrets (32 bits of a hash of a token of much more entropy): they
// let a trace be matched with the logs of SlogObserver and with other
// processes that used the same refresh token.
func refreshAttrs(e refreshtoken.RefreshEnded, start time.Time, failed bool) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		idKey.Int64(int64(e.ID)),
		reasonKey.String(string(e.Reason)),
		outcomeKey.String(string(e.Outcome)),
		sentKey.Bool(e.Sent),
		rotatedKey.Bool(e.Rotated),
	}
	if e.Fingerprint != "" {
		attrs = append(attrs, fingerprintKey.String(e.Fingerprint))
	}
	if e.Rotated {
		attrs = append(attrs, newFingerprintKey.String(e.NewFingerprint))
	}
	if e.Status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(e.Status))
	}
	if code := oauthError(e.ErrorCode); code != "" {
		attrs = append(attrs, oauthErrorKey.String(code))
	}
	if failed {
		attrs = errorAttr(attrs, errorType(e.Err))
	}
	if e.Lifetime > 0 {
		attrs = append(attrs, lifetimeKey.Float64(e.Lifetime.Seconds()))
	}
	if e.Reason == refreshtoken.ReasonEarly || e.Reason == refreshtoken.ReasonExpired {
		attrs = append(attrs, timeLeftKey.Float64(e.TimeLeft.Seconds()))
	}
	if !e.RetryAt.IsZero() && !start.IsZero() {
		attrs = append(attrs, backoffKey.Float64(e.RetryAt.Sub(start).Seconds()))
	}
	if e.Waiters > 0 {
		attrs = append(attrs, waitersKey.Int(e.Waiters), longestWaitKey.Float64(e.LongestWait.Seconds()))
	}
	return attrs
}

// requestSpan records the token request, a child of the refresh's span,
// by the semantic conventions of an HTTP client span. Its start is
// estimated: when the step before it ended.
func (o *Observer) requestSpan(ctx context.Context, e refreshtoken.RefreshEnded, start, end time.Time) {
	attrs := o.request
	if e.Status != 0 {
		attrs = append(attrs[:len(attrs):len(attrs)], semconv.HTTPResponseStatusCode(e.Status))
	}
	// The request failed if the refresh failed after sending it; a refresh
	// whose Save failed got its answer all the same.
	failed := e.Outcome == refreshtoken.OutcomeTransient || e.Outcome == refreshtoken.OutcomeRejected
	if failed {
		attrs = errorAttr(attrs[:len(attrs):len(attrs)], errorType(e.Err))
	}
	_, span := o.tracer.Start(ctx, "POST", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start),
		trace.WithAttributes(o.attrs...), trace.WithAttributes(attrs...))
	if failed {
		span.SetStatus(codes.Error, "")
	}
	span.End(trace.WithTimestamp(end))
}

// step describes a store step: its span's name, duration, error and
// attributes; name is "" for an event that is no store step.
func step(e refreshtoken.Event) (name string, d time.Duration, err error, attrs []attribute.KeyValue) {
	switch e := e.(type) {
	case refreshtoken.StoreLoaded:
		return "refreshtoken.store.load", e.Duration, e.Err, []attribute.KeyValue{foundKey.Bool(e.Found)}
	case refreshtoken.StoreSaved:
		return "refreshtoken.store.save", e.Duration, e.Err, []attribute.KeyValue{saveKey.String(string(e.Result)), retryKey.Bool(e.Retry)}
	case refreshtoken.LockWaited:
		return "refreshtoken.lock.wait", e.Waited, e.Err, nil
	case refreshtoken.LockReleased:
		return "refreshtoken.lock.hold", e.Held, nil, []attribute.KeyValue{keptKey.Bool(e.Kept)}
	}
	return "", 0, nil, nil
}

// stepSpan records a store step, a child of the refresh's span, ending
// when its event came.
func (o *Observer) stepSpan(ctx context.Context, a arrived) {
	name, d, err, attrs := step(a.e)
	if name == "" {
		return
	}
	attrs = errorAttr(attrs, errorType(err))
	_, span := o.tracer.Start(ctx, name, trace.WithTimestamp(a.at.Add(-d)),
		trace.WithAttributes(o.attrs...), trace.WithAttributes(attrs...))
	if err != nil {
		span.SetStatus(codes.Error, "")
	}
	span.End(trace.WithTimestamp(a.at))
}

// link links the span of a caller that waited, if its context holds one,
// to the span of the refresh it waited for, and records the wait as an
// event of the caller's span.
func (o *Observer) link(e refreshtoken.Waited) {
	if e.Context == nil {
		return
	}
	caller := trace.SpanFromContext(e.Context)
	if !caller.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{idKey.Int64(int64(e.Refresh)), waitKey.Float64(e.Duration.Seconds())}
	attrs = errorAttr(attrs, errorType(e.Err))
	o.mu.Lock()
	r := o.ended[e.Refresh%maxEnded]
	o.mu.Unlock()
	if e.Refresh != 0 && r.id == e.Refresh {
		caller.AddLink(trace.Link{SpanContext: r.sc, Attributes: attrs[:1]})
	}
	caller.AddEvent("refreshtoken.wait", trace.WithAttributes(attrs...))
}

// unauthorizedEvent records a 401 that the Transport met as an event of
// the caller's span, if its context holds one.
func unauthorizedEvent(e refreshtoken.Unauthorized) {
	if e.Context == nil {
		return
	}
	span := trace.SpanFromContext(e.Context)
	if !span.IsRecording() {
		return
	}
	span.AddEvent("refreshtoken.unauthorized", trace.WithAttributes(
		resultKey.String(unauthorizedResult(e)), droppedKey.Bool(e.Dropped)))
}
