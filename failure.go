package refreshtoken

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// The failure policy: which failures are worth another attempt, and when.

// ErrRefreshRejected reports that the token endpoint rejected the refresh
// for good: the refresh token is unknown, expired, revoked or reused
// (invalid_grant), or the client is not allowed to use it (invalid_client,
// unauthorized_client, access_denied, unsupported_grant_type,
// invalid_scope). Retrying cannot help, so the source makes no more
// requests: every call returns the error, which also wraps the
// *oauth2.RetrieveError, until [TokenSource.SetToken] gives it a new refresh
// token (after the user signs in again, or the configuration is fixed). A
// cached access token that is still valid is served until it expires.
//
// Test for it with errors.Is(err, refreshtoken.ErrRefreshRejected).
var ErrRefreshRejected = errors.New("refreshtoken: refresh rejected for good")

// RetryError is returned after a transient failure (HTTP 429 or 5xx, an
// error answer with any other code, a network error, a timeout, a malformed
// or oversized body). The source makes no request before RetryAt, however
// many goroutines call; until then callers get the cached token if it is
// still valid, and otherwise this error at once.
type RetryError struct {
	// Err is the failure. It wraps an *oauth2.RetrieveError when the
	// endpoint answered with an error.
	Err error
	// RetryAt is the earliest time of the next attempt, by the source's
	// clock.
	RetryAt time.Time
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("%v (next attempt not before %s)", e.Err, e.RetryAt.UTC().Format(time.RFC3339))
}

func (e *RetryError) Unwrap() error { return e.Err }

// rejectedError is a permanent failure: errors.Is finds ErrRefreshRejected,
// errors.As the *oauth2.RetrieveError.
type rejectedError struct{ err error }

func (e *rejectedError) Error() string {
	return e.err.Error() + " (rejected for good: the source needs a new refresh token, see TokenSource.SetToken)"
}

func (e *rejectedError) Is(target error) bool { return target == ErrRefreshRejected }

func (e *rejectedError) Unwrap() error { return e.err }

// permanent reports whether err, from a refresh, is not worth another
// attempt. The OAuth error code decides, not the HTTP status: Auth0 has
// answered invalid_grant with 400, 401 and 403. Anything else, including an
// error answer with no or an unknown code, is transient: the refresh token
// was not used up by a rejected request, so sending it again is safe.
func permanent(err error) bool {
	if errors.Is(err, ErrRefreshRejected) {
		return true
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return false
	}
	switch re.ErrorCode {
	case "invalid_grant", "invalid_client", "unauthorized_client", "access_denied", "unsupported_grant_type", "invalid_scope":
		return true
	}
	return false
}

const (
	backoffBase = time.Second
	backoffCap  = time.Minute
	// maxServerWait bounds how long a Retry-After or X-RateLimit-Reset can
	// hold the source back, so that a bad header cannot stop it for days.
	maxServerWait = 10 * time.Minute
)

// policy is the failure policy's memory: failures in a row, which set the
// back-off. The TokenSource's mu guards it. The counts are int32, so that
// a Pool's member fits a smaller size class, and saturate (one more): the
// back-off is capped long before.
type policy struct {
	refreshes int32 // failed refreshes (and inner tokens handed back) in a row
	saves     int32 // failed Saves in a row
}

// oneMore counts one more failure in a row in *n, and returns the count.
func oneMore(n *int32) int {
	if *n < math.MaxInt32 {
		*n++
	}
	return int(*n)
}

// retryAt returns when the next attempt may run after the n-th failure in
// a row at now, with r in [0, 1) drawing the back-off: the one place that
// applies it. An answer's Retry-After or X-RateLimit-Reset (err's) holds
// the attempt back at least that long, as does the slot a Limiter could
// not give within the refresh timeout (a limitedError). Otherwise the attempt comes no later
// than latest, if that is still ahead: the instant from which callers would have
// to wait for it, so that a failed early refresh is tried again while the
// cached token is still handed out.
func retryAt(n int, err error, now, latest time.Time, r float64) time.Time {
	t := now.Add(backoff(n, r))
	if latest.After(now) && latest.Before(t) {
		t = latest
	}
	if w := serverWait(err, now); w.After(t) {
		t = w
	}
	if le := (*limitedError)(nil); errors.As(err, &le) && now.Add(le.wait).After(t) {
		t = now.Add(le.wait) // the slot the Limiter had
	}
	return t
}

// backoff is the wait after the n-th transient failure in a row (n >= 1):
// full jitter (r in [0, 1)) over 1 s doubling to a cap of 1 minute, so that
// many clients that failed together do not come back together.
func backoff(n int, r float64) time.Duration {
	ceiling := backoffCap
	if n <= 6 {
		ceiling = min(backoffBase<<(n-1), backoffCap)
	}
	return time.Duration(r * float64(ceiling))
}

// serverWait returns the time before which the server asked, in err's
// response, not to be called again: Retry-After (seconds or an HTTP date)
// on any error answer, and X-RateLimit-Reset (UNIX seconds) on a 429, the
// later of them if both are given, at most maxServerWait after now. A
// number too large for an int64 is a long wait, capped like any other. It
// returns the zero time if the server asked nothing, or nothing after now,
// or sent a value that is not of that form (such as -5, +5 or 5.5).
func serverWait(err error, now time.Time) time.Time {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return time.Time{}
	}
	h := re.Response.Header
	ceiling := now.Add(maxServerWait)
	var until time.Time
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, ok := digits(v); ok {
			until = ceiling
			if secs < int64(maxServerWait/time.Second) {
				until = now.Add(time.Duration(secs) * time.Second)
			}
		} else if t, err := http.ParseTime(v); err == nil {
			until = t
		}
	}
	if re.Response.StatusCode == http.StatusTooManyRequests {
		if secs, ok := digits(h.Get("X-RateLimit-Reset")); ok {
			// Compared before time.Unix, which would overflow.
			t := ceiling
			if secs <= ceiling.Unix() {
				t = time.Unix(secs, 0)
			}
			if t.After(until) {
				until = t
			}
		}
	}
	if until.After(ceiling) {
		until = ceiling
	}
	if !until.After(now) {
		return time.Time{}
	}
	return until
}

// digits reads v, less surrounding spaces, as a decimal number of one or
// more digits (RFC 9110's 1*DIGIT, as in Retry-After); a number too large
// for an int64 is MaxInt64. ok is false for anything else.
func digits(v string) (n int64, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return math.MaxInt64, true // all digits: the only error left is the range
	}
	return n, true
}

// fail records a failed refresh: the token in hand, if any, is kept, with
// the failure and when the next attempt may run.
func (r *round) fail(err error) {
	s := r.s
	var f *failure
	if permanent(err) {
		if !errors.Is(err, ErrRefreshRejected) {
			err = &rejectedError{err}
		}
		f = &failure{err: err, permanent: true}
		if s.grant != nil && r.from != "" {
			s.rejected = r.from
			s.rejectSiblings(r.from, err)
		}
	} else {
		at := retryAt(oneMore(&s.policy.refreshes), err, s.now(), r.latest(), rand.Float64())
		f = &failure{err: &RetryError{Err: err, RetryAt: at}, retryAt: at}
	}
	r.v.fail, r.changed, r.err = f, true, f.err
}

// saveFailed records that the token in hand could not be saved: it is
// handed out, and the Save is retried after a back-off, no later than the
// token comes due anyway.
func (r *round) saveFailed(err error) {
	s := r.s
	at := retryAt(oneMore(&s.policy.saves), nil, r.now, r.v.sched.refreshAt, rand.Float64())
	r.v.fail = &failure{err: &saveError{err}, retryAt: at}
	r.changed, r.err = true, r.v.fail.err
}

// latest is the latest time for the next attempt after a failure: the
// start of the safety margin of the token in hand, from which callers
// would wait for a refresh; zero if there is no token.
func (r *round) latest() time.Time {
	if r.v.tok == nil {
		return time.Time{}
	}
	return r.v.sched.expiredAt
}
