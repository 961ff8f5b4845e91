package refreshtoken

import (
	"errors"
	"time"
)

// Health is what a readiness check needs to know of a [TokenSource], as
// [TokenSource.Health] reports it.
type Health struct {
	// Ready reports that Token hands out a token now, without waiting
	// for a refresh.
	Ready bool
	// ValidFor is how much longer the token in hand is handed out: until
	// its safety margin, or while refreshes fail, its real expiry. Zero
	// if not Ready; -1 if it never expires.
	ValidFor time.Duration
	// RefreshIn is how long until the source refreshes in the background
	// (the token turns stale) or tries again after a failure: zero if
	// that is due now, or if not Ready; -1 if never (a token that never
	// expires, or a rejection: no refresh until SetToken).
	RefreshIn time.Duration
	// Err is the last refresh's error, as [TokenSource.Err]: nil once a
	// refresh has succeeded.
	Err error
	// Rejected reports that the refresh token was rejected for good
	// ([ErrRefreshRejected]): the source needs [TokenSource.SetToken].
	Rejected bool
}

// Health reports whether the source can hand out a token, for how long,
// when it refreshes next, and the last error, by its clock, without a lock
// and without starting a refresh: for a service's readiness endpoint. A
// source that has not fetched its first token yet is not Ready.
func (s *TokenSource) Health() Health {
	e, now := s.cur.Load(), s.now()
	f := e.failed()
	h := Health{Err: f.err, Rejected: errors.Is(f.err, ErrRefreshRejected)}
	if e.at(now) == expired {
		return h
	}
	h.Ready = true
	h.ValidFor = -1
	if until := e.servedUntil(); !until.IsZero() {
		h.ValidFor = until.Sub(now)
	}
	h.RefreshIn = -1
	switch {
	case e.fail.blocked(now) && f.permanent:
		// No refresh until SetToken.
	case e.fail.blocked(now):
		// A stale token is not refreshed before the back-off ends.
		h.RefreshIn = f.retryAt.Sub(now)
	case !e.freshUntil.IsZero():
		h.RefreshIn = max(e.freshUntil.Sub(now), 0)
	}
	return h
}
