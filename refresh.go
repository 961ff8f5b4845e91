package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// refreshKey is the singleflight key of a source that has a group of its
// own (New, Cache); a Pool's sources use their keys.
const refreshKey = "refresh"

// round is one refresh. Its steps build the next entry's view and the
// callers' error; publish stores the view, in the one place a refresh
// changes what Token hands out.
type round struct {
	s    *TokenSource
	now  time.Time
	base *entry // the entry the round started from
	v    view   // the next entry's view, base's until a step changes it
	// changed reports that a step changed v; replaced, that v holds a
	// token fetched or loaded by this round.
	changed, replaced bool
	err               error // for the callers; nil: hand out the entry

	// from is the refresh token the new token replaces: the one sent, or
	// for Cache the one a shared store was last known to hold.
	from string
	// tok is the token the grant or the inner source returned, and
	// rotated the refresh token the endpoint's answer brought, if any.
	tok     *oauth2.Token
	rotated string
	// unlock releases the shared store's lock: nil if it is not held, or
	// is left to its lease.
	unlock func(context.Context) error
	// after bounds the steps after the answer (the Save, the callback,
	// the unlock), which share one timeout apart from the request's; nil
	// until then.
	after       context.Context
	cancelAfter context.CancelFunc
	// timeout bounds the request: the refresh timeout, and three
	// quarters of the lease left on a shared store's lock.
	timeout time.Duration
	// prep is cancelled by Close: it bounds the steps before the request.
	prep context.Context

	// What the round's events report. id is 0 until the round starts a
	// refresh (and for Flush).
	id      uint64
	reason  Reason
	began   time.Time // real time, for durations
	sent    bool      // the request went out (or the inner source was asked)
	request time.Duration
	locked  time.Time // when the shared lock was taken; zero if not
	status  int       // of the endpoint's answer; 0 if none came
	// accepted: the answer's token is in use (its Save or callback may
	// have failed). replaced alone is not: a token taken from the store
	// before a request that failed also replaces the view.
	accepted bool
	// slot: a slot of the source's Limiter was taken for the request.
	slot bool
	// keepAlive marks a round of KeepAlive: it refreshes a fresh token
	// too, while a keep-alive refresh is due.
	keepAlive bool
}

// refresh is the one refresh in flight, run by singleflight in a goroutine
// of its own so that no caller's context can cancel it. It returns the
// entry to hand out from.
func (s *TokenSource) refresh() (any, error) { return s.runRound(s.group, false) }

// keepAlive is the refresh of KeepAlive, run by singleflight likewise.
func (s *TokenSource) keepAlive() (any, error) { return s.runRound(s.keepAlives, true) }

// runRound runs a round, under the source's flightKey in group.
func (s *TokenSource) runRound(group *singleflight.Group, keepAlive bool) (any, error) {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	// A caller that sees the entry this refresh is about to publish turn
	// stale must start a refresh of its own, not join this one, which may
	// not have returned yet: it would get this refresh's result, and its
	// entry, marked started, would never be refreshed in the background.
	// Callers that come during this refresh join one more call, which waits
	// for mu and finds the entry fresh.
	group.Forget(s.flightKey)
	// Close sets closed, then calls stopping: it stops this refresh, or
	// this refresh sees closed.
	prep, stop := context.WithCancel(s.ctx)
	defer stop()
	s.stopping.Store(&stop)
	defer s.stopping.Store(nil)
	if s.closed.Load() {
		return nil, ErrClosed
	}
	base := s.cur.Load()
	r := &round{s: s, now: s.now(), base: base, v: base.view, timeout: s.timeout, prep: prep, keepAlive: keepAlive}
	r.run()
	r.release()
	e, err := r.publish()
	if r.id != 0 {
		s.observe(r.ended())
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

// release releases the shared lock, if the round still holds it, within
// the timeout of the steps after the answer: if that fails, the lease frees
// the lock when it ends.
func (r *round) release() {
	if r.after == nil {
		r.after, r.cancelAfter = context.WithTimeout(r.s.ctx, r.s.timeout)
	}
	defer r.cancelAfter()
	held := r.unlock != nil
	if held {
		r.unlock(r.after)
	}
	if !r.locked.IsZero() {
		r.s.observe(LockReleased{Refresh: r.id, Held: time.Since(r.locked), Kept: !held})
	}
}

// run runs the steps of the round, each of which reports whether the
// round goes on. singleflight would re-panic in a goroutine no caller can
// recover in: a panic of the inner source or of the callback is a failed
// refresh.
func (r *round) run() {
	defer func() {
		if p := recover(); p != nil {
			r.fail(fmt.Errorf("refreshtoken: panic during refresh: %v", p))
		}
	}()
	if !r.check() || !r.mayStartEarly() {
		return
	}
	r.start()
	if r.syncStore() && r.awaitSlot() && r.lease() {
		r.fetch()
		r.heed()
		r.save()
	}
}

// start numbers the refresh and reports that it starts.
func (r *round) start() {
	s := r.s
	s.refreshes++
	r.id, r.reason, r.began = s.refreshes, reason(r.base, r.now), time.Now()
	if r.keepAliveDue() && r.base.at(r.now) == fresh {
		r.reason = ReasonKeepAlive
	}
	s.latest.Store(r.id)
	if s.obs != nil {
		s.warnRefreshToken(r.now)
		s.observe(RefreshStarted{ID: r.id, Reason: r.reason, Time: r.now, Fingerprint: Fingerprint(s.own.rt), TimeLeft: timeLeft(r.base, r.now)})
	}
}

// ended is the event of the round's end.
func (r *round) ended() RefreshEnded {
	e := RefreshEnded{ID: r.id, Reason: r.reason, Err: r.err, Duration: time.Since(r.began), Sent: r.sent, Request: r.request,
		Fingerprint: Fingerprint(r.from), TimeLeft: timeLeft(r.base, r.now)}
	e.Status, e.ErrorCode = r.status, errorCode(r.err)
	if r.rotated != "" && r.rotated != r.from {
		// The answer's, not s.own.rt: a shared store may have replaced it
		// since (superseded).
		e.Rotated, e.NewFingerprint = true, Fingerprint(r.rotated)
	}
	switch {
	case errors.Is(r.err, ErrRevoked):
		e.Outcome = OutcomeRevoked
	case errors.Is(r.err, ErrRefreshRejected):
		e.Outcome = OutcomeRejected
	case r.sent && (r.err == nil || r.accepted):
		// A new token (its Save or callback may have failed: Err).
		e.Outcome = OutcomeOK
		if exp := r.v.expiry(); r.replaced && !exp.IsZero() {
			e.Lifetime = exp.Sub(r.now)
		}
	case r.err == nil:
		e.Outcome = OutcomeStored
	case !r.sent:
		e.Outcome = OutcomeNotSent
		e.RetryAt = r.v.failed().retryAt
	default:
		e.Outcome = OutcomeTransient
		e.RetryAt = r.v.failed().retryAt
	}
	e.Waiters, e.LongestWait = r.s.waiting.count()
	return e
}

// check reports whether a refresh is still needed and allowed: the caller
// that started it may have seen an older entry.
func (r *round) check() bool {
	if r.done() {
		return false
	}
	if r.v.fail.blocked(r.now) {
		r.err = r.v.fail.err // blocked: not nil
		return false
	}
	return true
}

// done reports whether the round has nothing left to do: the token is
// fresh, and no keep-alive refresh is due.
func (r *round) done() bool {
	return r.v.at(r.now) == fresh && !r.keepAliveDue()
}

// fetch asks the grant or the inner source for a new token. A refresh
// token the endpoint returned becomes the source's at once, whatever the
// rest of the answer: the server has retired the one sent.
func (r *round) fetch() {
	s := r.s
	if s.src != nil {
		if s.store != nil {
			r.from = s.store.storedRT
		}
		// An oauth2.TokenSource takes no context: the timeout and Close
		// cannot interrupt it.
		began := time.Now()
		r.tok, r.err = s.src.Token()
		r.sent, r.request = true, time.Since(began)
		return
	}
	r.from = s.own.rt
	if s.closed.Load() {
		r.err = unsentError{ErrClosed} // Close came before the request
		return
	}
	if s.own.rt != "" && s.own.rt == s.rejected {
		r.err = &rejectedError{errors.New("refreshtoken: the endpoint rejected this refresh token before: it is not sent again")}
		return
	}
	if err := s.own.expired(r.now); err != nil {
		r.err = err
		return
	}
	if err := s.checkBinding(); err != nil {
		r.err = err
		return
	}
	// The access tokens the source holds or dropped last are secrets too,
	// which a server may echo.
	cached := []string{r.base.drops().access}
	if r.base.tok != nil {
		cached = append(cached, r.base.tok.AccessToken)
	}
	ctx, cancel := context.WithTimeout(s.ctx, r.timeout)
	defer cancel()
	began := time.Now()
	tok, rotated, status, err := s.grant.token(ctx, s.own.rt, s.own.family(), cached...)
	r.sent, r.request, r.status = !errors.As(err, new(unsentError)), time.Since(began), status
	if rotated != "" {
		s.own.rt = rotated
	}
	if tok != nil || rotated != "" {
		s.renewLife(tok, r.now)
		// The server took the refresh token with this key's proof (or
		// with none, and it was not bound): a public client's new one is
		// bound so.
		s.own.bound = s.grant.binding()
	}
	r.tok, r.rotated, r.err = tok, rotated, err
	if err != nil && rotated == "" && r.unlock != nil && !errors.As(err, new(*endpointError)) && !errors.As(err, new(unsentError)) {
		// No answer, or an unreadable one: the server may have the
		// request and be acting on it still. The lock is left to its
		// lease, so that no other process sends the same refresh token
		// meanwhile.
		r.unlock = nil
	}
}

// publish stores the round's view as the next entry, if a step changed it,
// and returns what the callers get. A drop (Invalidate, a 401) that came
// during the round is kept, unless the round got a new token: a token
// dropped meanwhile is not brought back.
func (r *round) publish() (*entry, error) {
	e := r.base
	for r.changed {
		cur := r.s.cur.Load()
		next := r.v
		if cur != r.base && !r.replaced {
			next = cur.view
			if cur.fail.same(r.base.fail) { // else the drop set its own: keep it
				next.fail = r.v.fail
			}
		}
		e = newEntry(next)
		if r.s.cur.CompareAndSwap(cur, e) {
			break
		}
	}
	if r.err != nil {
		// While refreshes fail, a token is handed out until its real
		// expiry: to the callers of this refresh too. A failed Save or
		// callback is theirs to hear of.
		if r.err == r.v.failed().err && !errors.Is(r.err, ErrNotSaved) && !errors.As(r.err, new(*callbackError)) && e.at(r.s.now()) != expired {
			return e, nil
		}
		return nil, r.err
	}
	return e, nil
}

// laterExpiry reports whether expiry a is later than b; zero is never.
func laterExpiry(a, b time.Time) bool {
	return !b.IsZero() && (a.IsZero() || a.After(b))
}
