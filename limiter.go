package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// A Limiter is a request budget that the sources of one token endpoint
// share, given to each with [WithLimiter]: a token bucket that lets
// requests through at a steady rate with bursts, and the server's word, so
// that one source's 429 holds back all of them. Auth0 limits its token
// endpoint per tenant (30 requests a second on the free tier), so a
// process that holds a source per user shares one Limiter among them.
//
// A refresh whose callers wait for it (there is no valid token to hand
// out) waits for the next request slot, in the order the refreshes asked,
// as long as the wait fits in the refresh timeout ([WithRefreshTimeout]);
// past that it fails at once, sending nothing, with a [*RetryError] whose
// RetryAt is no earlier than the slot. An early refresh (callers are still
// handed the current token) takes a slot only if one is free at once:
// otherwise it is put off, with no error, to a time of its own, spaced
// from the other early refreshes put off by the steady rate, unless that
// time would come after the token stops being handed out; then it waits
// as the other kind does. So refreshes that cannot wait go first, and
// early ones use what they leave.
//
// An error answer with Retry-After, or a 429 with X-RateLimit-Reset, to
// any source holds back every source of the Limiter until then (at most
// 10 minutes): after it, one request goes, then the steady rate. A 429
// without either header holds back only the source that got it, by its
// own back-off.
//
// A slot is taken before the request, and before a [SharedStore]'s lock:
// a slot taken by a refresh that then finds the store's token fresh is not
// given back, so the Limiter never lets more through than its rate, and
// may let through less. It counts the requests of this process only. An
// early refresh put off, or a wait, is reported by no event of its own: a
// wait is part of the refresh's Duration, a refresh put off shows in
// [TokenSource.Health] as RefreshIn. See docs/ratelimit.md.
//
// The zero Limiter has no budget of its own: it lets every request through
// at once, except while the server's word holds them back. A Limiter is
// safe for concurrent use by multiple goroutines.
type Limiter struct {
	// interval is the time between requests at the steady rate, rounded
	// up to the nanosecond, so that the Limiter never runs faster than
	// its rate; tol is how far a burst may run ahead of the steady
	// schedule, (burst-1) intervals.
	interval, tol time.Duration
	clock         Clock // nil: the real clock

	mu sync.Mutex // guards what follows
	// tat is the bucket as the generic cell rate algorithm keeps it (the
	// "theoretical arrival time"): the next request may go at tat - tol,
	// and the bucket is full when tat is not after now. A slot taken for
	// later moves it on already, so later requests queue behind.
	tat time.Time
	// holds counts the server's words that moved tat on: a refresh that
	// took a slot before one takes a new slot.
	holds uint64
	// later is the time to give the next early refresh put off: each
	// one put off moves it on by interval, so that they come back one
	// after the other, not all at once.
	later time.Time
}

// A Clock is the time a [Limiter] goes by: Now tells the time and After
// returns a channel that receives once d has passed, as [time.After]
// does. It is meant for tests, to run a Limiter on a fake clock that
// moves only when told to; a fake After must fire when the clock is
// moved past its time.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// A LimiterOption configures a [Limiter] made by [NewLimiter].
type LimiterOption func(*Limiter)

// LimiterClock makes the Limiter go by c. By default, and for nil, it
// goes by the real clock. A fake c should also be the sources' clock
// ([WithClock]) and the test server's.
func LimiterClock(c Clock) LimiterOption {
	return func(l *Limiter) { l.clock = c }
}

// maxInterval bounds the time between requests (one in about 70 years),
// and the tolerance of a burst, far from the end of time.Duration's range.
const maxInterval = math.MaxInt64 / 4

// NewLimiter returns a Limiter that lets through rate requests a second on
// average, and up to burst at once (a burst below 1 is 1). It panics if
// rate is not a positive finite number of at least one request in 70
// years. For a server that counts requests per calendar second, as the
// refreshtokentest server does, a burst of 1 never lets through more than
// rate in one second; a larger burst lets through up to burst + rate - 1
// in one.
func NewLimiter(rate float64, burst int, opts ...LimiterOption) *Limiter {
	f := math.Ceil(float64(time.Second) / rate)
	if !(rate > 0) || math.IsInf(rate, 0) || f > maxInterval {
		panic(fmt.Sprintf("refreshtoken: NewLimiter with a rate of %v requests a second", rate))
	}
	interval := time.Duration(f)
	// A burst is cut to maxInterval's worth: more would overflow.
	bursts := min(int64(max(burst, 1)-1), maxInterval/int64(interval))
	l := &Limiter{interval: interval, tol: time.Duration(bursts) * interval}
	for _, opt := range opts {
		opt(l)
	}
	return l
}

func (l *Limiter) now() time.Time {
	if l.clock != nil {
		return l.clock.Now()
	}
	return time.Now()
}

func (l *Limiter) after(d time.Duration) <-chan time.Time {
	if l.clock != nil {
		return l.clock.After(d)
	}
	return time.After(d)
}

// next returns the earliest slot at now: called with mu held.
func (l *Limiter) next(now time.Time) time.Time {
	if at := l.tat.Add(-l.tol); at.After(now) {
		return at
	}
	return now
}

// take takes the slot at at, which is not before next: called with mu
// held.
func (l *Limiter) take(at time.Time) {
	l.tat = laterOf(l.tat, at).Add(l.interval)
}

// limitedError is a refresh not sent because the Limiter's next slot is
// more than the refresh timeout away.
type limitedError struct{ wait time.Duration }

func (e *limitedError) Error() string {
	return fmt.Sprintf("refreshtoken: no request slot in the shared limiter for %v", e.wait.Round(time.Millisecond))
}

// wait takes a slot for a refresh whose callers are waiting, and waits for
// it, until ctx ends. A slot more than limit away is not taken: wait returns
// a *limitedError at once. A server's word that comes during the wait
// voids the slot, and a new one is taken. A slot whose wait was cut short
// is not given back.
func (l *Limiter) wait(ctx context.Context, limit time.Duration) error {
	for {
		l.mu.Lock()
		now := l.now()
		at := l.next(now)
		if d := at.Sub(now); d > limit {
			l.mu.Unlock()
			return &limitedError{d}
		}
		l.take(at)
		holds := l.holds
		l.mu.Unlock()
		if !at.After(now) {
			return nil
		}
		select {
		case <-l.after(at.Sub(now)):
		case <-ctx.Done():
			return fmt.Errorf("refreshtoken: gave up waiting for a request slot: %w", ctx.Err())
		}
		l.mu.Lock()
		void := l.holds != holds
		l.mu.Unlock()
		if !void {
			return nil
		}
	}
}

// allow takes a slot for an early refresh if one is free now. If not, it
// returns when to come back, and unless that is past deadline (after
// which the early refresh cannot wait; zero is never) books that time,
// so that the next early refresh put off comes back after it. in is
// counted from now by the Limiter's clock.
func (l *Limiter) allow(deadline time.Duration) (ok bool, in time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	at := l.next(now)
	if !at.After(now) {
		l.take(now)
		return true, 0
	}
	back := laterOf(l.later, at)
	in = back.Sub(now)
	if deadline == 0 || in < deadline {
		l.later = back.Add(l.interval)
	}
	return false, in
}

// holdFor holds back every request for d from now, the server's word: then
// one request goes, and then the steady rate.
func (l *Limiter) holdFor(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tat := l.now().Add(d + l.tol); tat.After(l.tat) {
		l.tat = tat
		l.holds++
	}
}

// laterOf returns the later of a and b.
func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// The steps of a round that use the source's Limiter.

// mayStartEarly takes a slot of the source's Limiter for an early refresh
// (its callers are still handed the token in hand) before the refresh
// starts, or puts the refresh off, with no error, if no slot is free: it
// then reports false. A refresh whose callers wait, or that could not be
// put off to a time before the token stops being handed out, goes on to
// wait for a slot (awaitSlot).
func (r *round) mayStartEarly() bool {
	l := r.s.limiter
	if l != nil && r.keepAlive && r.v.at(r.now) == fresh {
		return r.mayKeepAlive(l)
	}
	if l == nil || r.v.at(r.now) != stale {
		return true
	}
	if stateAt(r.now, r.v.sched.refreshAt, r.v.sched.expiredAt) == fresh {
		// Stale only for the retry of a failed Save: the round saves,
		// and sends nothing unless the store shows the token is due.
		return true
	}
	var deadline time.Duration // zero: the token is handed out for ever
	if e := r.v.sched.expiredAt; !e.IsZero() {
		if deadline = e.Sub(r.now); deadline <= 0 {
			// Handed out past its margin while refreshes fail: not
			// for long.
			return true
		}
	}
	ok, in := l.allow(deadline)
	switch {
	case ok:
		r.slot = true
		return true
	case deadline != 0 && in >= deadline:
		return true
	}
	r.putOff(r.now.Add(in))
	return false
}

// mayKeepAlive takes a slot of l for a keep-alive refresh of a fresh
// token, which can wait as an early refresh can: if none is free it does
// not wait behind the refreshes whose callers do, but fails with a
// *RetryError at the slot it would take, with nothing sent and the view
// unchanged, unless that slot comes after the refresh token expires.
func (r *round) mayKeepAlive(l *Limiter) bool {
	var deadline time.Duration
	if exp := r.s.RefreshTokenExpiry(); !exp.IsZero() {
		if deadline = exp.Sub(r.now); deadline <= 0 {
			return true // expired: the round fails without a request
		}
	}
	ok, in := l.allow(deadline)
	switch {
	case ok:
		r.slot = true
		return true
	case deadline != 0 && in >= deadline:
		return true // waits for a slot, as a refresh whose callers wait
	}
	r.err = &RetryError{Err: errors.New("refreshtoken: keep-alive put off: the shared request budget has no slot free before the refresh token expires"),
		RetryAt: r.now.Add(in)}
	return false
}

// putOff makes the view fresh until at, which is before it stops being
// handed out: the early refresh comes back then, through the next call
// that finds the token stale. A failure in the view stays, as its error,
// but its retryAt, which has passed, goes: moved to at instead, it would
// forbid refreshes until then, and publish keeps the round's failure on a
// view that a drop (Invalidate, a 401) replaced meanwhile, whose callers
// would get the error at once instead of a refresh.
func (r *round) putOff(at time.Time) {
	r.v.sched.refreshAt = laterOf(r.v.sched.refreshAt, at)
	if f := r.v.fail; f != nil {
		next := *f
		next.retryAt = time.Time{}
		r.v.fail = &next
	}
	r.changed = true
}

// awaitSlot waits for a slot of the source's Limiter, unless the round
// took one already, within the refresh timeout and until Close. It reports
// whether the request may go; if not, the round failed with nothing sent,
// and is tried again once the slot it did not take has come.
//
// It runs after the store is read (a token another process saved needs no
// slot) and before a shared store's lock is taken: a wait under the lock
// would spend the lease, which bounds the request, on this process's own
// budget, and hold back the other processes meanwhile. Nothing is sent
// before the wait ends, and the refresh token sent is read after it (lease
// loads the store again under the lock), so a wait can neither send a
// refresh token twice nor lose a rotated one.
func (r *round) awaitSlot() bool {
	l := r.s.limiter
	if l == nil || r.slot {
		return true
	}
	ctx, cancel := context.WithTimeout(r.prep, r.s.timeout)
	defer cancel()
	err := l.wait(ctx, r.timeout)
	r.now = r.s.now() // the wait may have been long
	if err != nil {
		if r.s.closed.Load() {
			err = ErrClosed
		}
		r.fail(unsentError{err})
		return false
	}
	return true
}

// heed passes the server's word in a failed answer (Retry-After, or a
// 429's X-RateLimit-Reset) to the source's Limiter, which holds back every
// source that shares it.
func (r *round) heed() {
	l := r.s.limiter
	if l == nil || r.err == nil || !r.sent {
		return
	}
	now := r.s.now()
	if until := serverWait(r.err, now); !until.IsZero() {
		l.holdFor(until.Sub(now))
	}
}
