package refreshtokenotel

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tokenfresh/refreshtoken"
)

// The bucket boundaries, in seconds: of durations (those the semantic
// conventions give http.client.request.duration, and 30 s, a refresh's
// default timeout), and of the time left on a token at a refresh, from
// expired (at or below 0) to two hours.
var (
	durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30}
	timeLeftBuckets = []float64{0, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200}
)

// instruments are the Observer's metrics; README.md describes them.
type instruments struct {
	refreshes         metric.Int64Counter
	refreshDuration   metric.Float64Histogram
	requestDuration   metric.Float64Histogram
	timeLeft          metric.Float64Histogram
	backoff           metric.Float64Gauge
	waitDuration      metric.Float64Histogram
	loads             metric.Int64Counter
	saves             metric.Int64Counter
	storeDuration     metric.Float64Histogram
	lockWait          metric.Float64Histogram
	lockHold          metric.Float64Histogram
	unauthorizedCount metric.Int64Counter
	tokenSets         metric.Int64Counter
	signOuts          metric.Int64Counter
}

func newInstruments(m metric.Meter) (instruments, error) {
	var i instruments
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, buckets []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	i.refreshes = counter("refreshtoken.refreshes", "{refresh}", "Refreshes that started, by how they ended.")
	i.refreshDuration = histogram("refreshtoken.refresh.duration", "Duration of refreshes, store and lock included.", durationBuckets)
	i.requestDuration = histogram("refreshtoken.request.duration", "Duration of the requests to the token endpoint.", durationBuckets)
	i.timeLeft = histogram("refreshtoken.token.time_left", "Time the token in hand had before its expiry when a refresh of it ended; 0 or less: it had expired.", timeLeftBuckets)
	var err error
	i.backoff, err = m.Float64Gauge("refreshtoken.backoff", metric.WithUnit("s"),
		metric.WithDescription("Back-off set by the last refresh: from its start to the next attempt after a transient or not-sent failure; 0 after any other end."))
	errs = append(errs, err)
	i.waitDuration = histogram("refreshtoken.wait.duration", "Time callers waited for a refresh, having no token to be handed.", durationBuckets)
	i.loads = counter("refreshtoken.store.loads", "{load}", "Reads of the store.")
	i.saves = counter("refreshtoken.store.saves", "{save}", "Saves to the store, by result.")
	i.storeDuration = histogram("refreshtoken.store.duration", "Duration of the store's loads and saves.", durationBuckets)
	i.lockWait = histogram("refreshtoken.lock.wait.duration", "Time waited for the shared store's refresh lock.", durationBuckets)
	i.lockHold = histogram("refreshtoken.lock.hold.duration", "Time the shared store's refresh lock was held.", durationBuckets)
	i.unauthorizedCount = counter("refreshtoken.unauthorized", "{response}", "401 answers met by the Transport, by what it did.")
	i.tokenSets = counter("refreshtoken.token.sets", "{call}", "Calls of SetToken.")
	i.signOuts = counter("refreshtoken.signouts", "{call}", "Calls of Revoke and Forget.")
	return i, errors.Join(errs...)
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// with appends attrs to base, which is never written to: it is shared by
// the goroutines that record.
func with(base []attribute.KeyValue, attrs ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(append(base[:len(base):len(base)], attrs...)...)
}

func (i *instruments) refreshEnded(base []attribute.KeyValue, e refreshtoken.RefreshEnded) {
	attrs := []attribute.KeyValue{outcomeKey.String(string(e.Outcome)), reasonKey.String(string(e.Reason))}
	opt := with(base, attrs...)
	i.refreshDuration.Record(context.Background(), seconds(e.Duration), opt)
	attrs = statusAttr(attrs, e.Status)
	if e.Outcome != refreshtoken.OutcomeOK && e.Outcome != refreshtoken.OutcomeStored {
		attrs = errorAttr(attrs, errorType(e.Err))
	}
	i.refreshes.Add(context.Background(), 1, with(base, attrs...))
	if e.Sent {
		i.requestDuration.Record(context.Background(), seconds(e.Request), with(base, statusAttr(nil, e.Status)...))
	}
	// Only a token that was in hand has time left: not at start-up, nor
	// after Invalidate or a 401 dropped it.
	if e.Reason == refreshtoken.ReasonEarly || e.Reason == refreshtoken.ReasonExpired {
		i.timeLeft.Record(context.Background(), seconds(e.TimeLeft), with(base, reasonKey.String(string(e.Reason))))
	}
}

// recordBackoff sets the back-off gauge at the end of a refresh that
// started at start, by the source's clock.
func (i *instruments) recordBackoff(base []attribute.KeyValue, e refreshtoken.RefreshEnded, start time.Time) {
	var d time.Duration
	if !e.RetryAt.IsZero() && !start.IsZero() {
		d = max(e.RetryAt.Sub(start), 0)
	}
	i.backoff.Record(context.Background(), seconds(d), with(base))
}

func (i *instruments) storeLoaded(base []attribute.KeyValue, e refreshtoken.StoreLoaded) {
	attrs := errorAttr(nil, errorType(e.Err))
	if e.Err == nil {
		attrs = append(attrs, foundKey.Bool(e.Found))
	}
	i.loads.Add(context.Background(), 1, with(base, attrs...))
	i.storeDuration.Record(context.Background(), seconds(e.Duration), with(base, opKey.String("load")))
}

func (i *instruments) storeSaved(base []attribute.KeyValue, e refreshtoken.StoreSaved) {
	i.saves.Add(context.Background(), 1, with(base, saveKey.String(string(e.Result)), retryKey.Bool(e.Retry)))
	i.storeDuration.Record(context.Background(), seconds(e.Duration), with(base, opKey.String("save")))
}

func (i *instruments) lockWaited(base []attribute.KeyValue, e refreshtoken.LockWaited) {
	i.lockWait.Record(context.Background(), seconds(e.Waited), with(base, errorAttr(nil, errorType(e.Err))...))
}

func (i *instruments) lockReleased(base []attribute.KeyValue, e refreshtoken.LockReleased) {
	i.lockHold.Record(context.Background(), seconds(e.Held), with(base, keptKey.Bool(e.Kept)))
}

func (i *instruments) waited(base []attribute.KeyValue, e refreshtoken.Waited) {
	i.waitDuration.Record(context.Background(), seconds(e.Duration), with(base, errorAttr(nil, errorType(e.Err))...))
}

func (i *instruments) unauthorized(base []attribute.KeyValue, e refreshtoken.Unauthorized) {
	i.unauthorizedCount.Add(context.Background(), 1, with(base, resultKey.String(unauthorizedResult(e)), droppedKey.Bool(e.Dropped)))
}

func (i *instruments) tokenSet(base []attribute.KeyValue, e refreshtoken.TokenSet) {
	i.tokenSets.Add(context.Background(), 1, with(base, recoveredKey.Bool(e.Recovered)))
}

func (i *instruments) revoked(base []attribute.KeyValue, e refreshtoken.Revoked) {
	attrs := statusAttr([]attribute.KeyValue{revokeKey.Bool(!e.Local), signedOutKey.Bool(e.Dropped)}, e.Status)
	i.signOuts.Add(context.Background(), 1, with(base, errorAttr(attrs, errorType(e.Err))...))
}
