package refreshtoken

import (
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// entry is one published state of the cache: what Token hands out. Its view
// is never modified once the entry is stored in TokenSource.cur; the next
// state is a new entry built from a copy of the view.
type entry struct {
	view
	// freshUntil is the view's, computed once for the lock-free read path.
	freshUntil time.Time
	// started is set by the first caller that sees the entry stale, so
	// that a background refresh is started once per entry, not per call.
	started atomic.Bool
}

// view is the content of an entry, copied as a value. Its failure and
// drop are pointers, nil in the common case (the last refresh succeeded,
// nothing was dropped), so that an idle source's entry stays small; like
// the entry, they are never modified once stored: a new one replaces them.
type view struct {
	tok   *oauth2.Token // nil when there is no usable access token
	auth  string        // tok's Authorization header value
	sched schedule
	fail  *failure // nil after a success
	drop  *drop    // nil if nothing was dropped
}

// schedule is when a token was issued and when it turns stale and expired.
// A zero time is "not known" for issued and "never" for the others. The
// token's real expiry is its Expiry (view.expiry).
type schedule struct {
	issued    time.Time // when its request was sent
	refreshAt time.Time // stale from then on
	expiredAt time.Time // not handed out from then on, unless a refresh failed
}

// failure is why the last refresh (or Save) failed, and when the next may
// run. A nil *failure is a success.
type failure struct {
	err error // for callers and Err; nil after a success
	// retryAt is when the next attempt may run: no refresh starts before
	// then, and a token in hand turns stale then.
	retryAt   time.Time
	permanent bool // rejected for good: no refresh starts until SetToken
}

// drop is what an entry remembers of access tokens dropped by Invalidate,
// InvalidateToken or a 401.
type drop struct {
	// access is the access token dropped last: a shared store may still
	// hold it, and a load must not bring it back.
	access string
	// after401 marks an entry whose token an API rejected (a 401): the
	// token fetched to replace it is forced.
	after401 bool
	// forced marks a token fetched because an API rejected the one
	// before; rounds counts such tokens rejected in a row, for the guard
	// against an API that rejects every token.
	forced bool
	rounds int
}

// newEntry returns the entry that publishes v.
func newEntry(v view) *entry {
	return &entry{view: v, freshUntil: v.freshUntil()}
}

// failed returns v's failure; the zero failure after a success.
func (v *view) failed() failure {
	if v.fail == nil {
		return failure{}
	}
	return *v.fail
}

// drops returns what v remembers of dropped tokens; the zero drop if
// nothing was dropped.
func (v *view) drops() drop {
	if v.drop == nil {
		return drop{}
	}
	return *v.drop
}

// expiry is the real expiry of v's token; zero if it has none or it never
// expires.
func (v *view) expiry() time.Time {
	if v.tok == nil {
		return time.Time{}
	}
	return v.tok.Expiry
}

// freshUntil is the first instant at which v is not fresh: its token turns
// stale or expired, or a failed attempt is to be retried. Zero is never.
func (v *view) freshUntil() time.Time {
	var until time.Time
	for _, t := range []time.Time{v.sched.refreshAt, v.sched.expiredAt, v.failed().retryAt} {
		if !t.IsZero() && (until.IsZero() || t.Before(until)) {
			until = t
		}
	}
	return until
}

// at reports what a caller does with v at now: hand the token out (fresh),
// hand it out and start a refresh (stale), or wait for one (expired).
func (v *view) at(now time.Time) state {
	if v.tok == nil {
		return expired
	}
	return stateAt(now, v.freshUntil(), v.servedUntil())
}

// at is view.at with freshUntil computed once.
func (e *entry) at(now time.Time) state {
	if e.tok == nil {
		return expired
	}
	return stateAt(now, e.freshUntil, e.servedUntil())
}

// servedUntil is when v's token stops being handed out: the start of its
// safety margin, or, while refreshes fail, its real expiry. The margin
// guards against using a token too late in normal operation, not against
// serving it during an outage. Zero is never.
func (v *view) servedUntil() time.Time {
	if v.fail != nil {
		return v.expiry()
	}
	return v.sched.expiredAt
}

// same reports whether f and g are the same failure (nil: a success).
func (f *failure) same(g *failure) bool {
	return f == g || (f != nil && g != nil && *f == *g)
}

// blocked reports whether, at now, the last failure forbids a refresh. A
// failed Save forbids none: its retryAt is when the Save is tried again,
// and a refresh tries it first. A nil f (a success) forbids none.
func (f *failure) blocked(now time.Time) bool {
	return f != nil && !f.saveOnly() && (f.permanent || now.Before(f.retryAt))
}

// saveOnly reports whether the failure is a failed Save of the token in
// hand, not of a refresh.
func (f *failure) saveOnly() bool {
	if f == nil {
		return false
	}
	_, ok := f.err.(*saveError)
	return ok
}

// handOut returns a copy of the cached token for one caller.
func (v *view) handOut(now time.Time) *oauth2.Token {
	t := *v.tok
	t.Expiry = handOutExpiry(now, v.sched.refreshAt, v.tok.Expiry)
	return &t
}

// tokenView makes the view of a copy of tok, issued at issued (zero: not
// known), with r in [0, 1) placing its refresh in the jitter. Its expiry is
// bounded to maxLifetime from now, so that every store can keep it. The
// view has no token if tok has no access token or has expired at now.
func (s *TokenSource) tokenView(tok *oauth2.Token, issued, now time.Time, r float64) view {
	if tok == nil || tok.AccessToken == "" {
		return view{}
	}
	t := *tok
	t.Expiry = boundExpiry(now, t.Expiry)
	refreshAt, expiredAt := s.window.schedule(issued, t.Expiry, r)
	if stateAt(now, refreshAt, expiredAt) == expired {
		return view{}
	}
	auth := authOf(&t)
	return view{tok: &t, auth: auth, sched: schedule{issued: issued, refreshAt: refreshAt, expiredAt: expiredAt}}
}

// storedIssued is when a token loaded from a store was issued, if the
// store kept ExpiresIn (Expiry counts from the request), and zero
// otherwise.
func storedIssued(tok *oauth2.Token) time.Time {
	if tok.ExpiresIn > 0 && !tok.Expiry.IsZero() {
		return tok.Expiry.Add(-time.Duration(tok.ExpiresIn) * time.Second)
	}
	return time.Time{}
}

// authOf returns the Authorization header value for t, and points
// t.AccessToken into it, so that an entry holds the access token once: a
// JWT access token is often a kilobyte, and a process may hold a source per
// user. A DPoP token's type, case-insensitive as every token type (RFC 6749
// section 5.1), is spelled DPoP, as Transport and servers look for it. t
// must be the entry's own copy.
func authOf(t *oauth2.Token) string {
	if strings.EqualFold(t.TokenType, "DPoP") {
		t.TokenType = "DPoP"
	}
	auth := t.Type() + " " + t.AccessToken
	t.AccessToken = auth[len(auth)-len(t.AccessToken):]
	return auth
}

// fresh reports whether e's token can be used with nothing to start: the
// per-request check of Transport, equal to e.at(now) == fresh. With the
// default clock it reads only the monotonic clock (time.Since), half the
// cost of time.Now on the machines measured; for times that carry a
// monotonic reading, as those derived from time.Now do, Go compares by it
// anyway, so the answer is the same.
func (s *TokenSource) fresh(e *entry) bool {
	switch {
	case e.tok == nil:
		return false
	case e.freshUntil.IsZero():
		return true
	case s.clock == nil:
		return time.Since(e.freshUntil) < 0
	}
	return s.clock().Before(e.freshUntil)
}
