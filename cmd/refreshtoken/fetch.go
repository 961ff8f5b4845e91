package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// maxAttempts bounds the refreshes of one invocation: the first and its
// retries after failures that may pass.
const maxAttempts = 4

// fetch gets a token for the token command, from an open state whose
// token belongs to conf's server: the stored one while it is valid,
// otherwise a refreshed one, saved in the state.
type fetch struct {
	conf    *oauth2.Config
	opts    []refreshtoken.Option // what conf does not say: audience, JSON body
	st      *state
	force   bool // refresh even if the stored token is valid
	timeout time.Duration
	// ended reports, after token, that the server rejected the refresh
	// token while the token returned was still valid: the session has
	// ended, and the rejection is recorded.
	ended error
}

// token tries up to maxAttempts times within the timeout. A failure is
// tried again only if the request surely did not use up the refresh token
// (see retryable); the waits grow from a twentieth of the timeout, or
// are what the server asked for.
func (f *fetch) token() (*oauth2.Token, error) {
	deadline := time.Now().Add(f.timeout)
	pause := f.timeout / 20
	for n := 1; ; n++ {
		tok, failed, err := f.attempt(time.Until(deadline))
		if err == nil {
			if refreshTokenRejected(failed) {
				f.recordRejection()
				f.ended = failed
			}
			return f.asStored(tok), nil
		}
		if refreshTokenRejected(err) {
			f.recordRejection()
			return nil, err
		}
		asked, ok := retryable(err, time.Now())
		if !ok {
			return nil, err
		}
		// Full jitter over a doubling pause, so that invocations that
		// failed together do not come back together.
		wait := max(asked, time.Duration(rand.Float64()*float64(pause<<(n-1))))
		if n == maxAttempts || time.Until(deadline)-wait < pause {
			return nil, &gaveUpError{err: err, attempts: n, timeout: f.timeout, asked: asked}
		}
		time.Sleep(wait)
	}
}

// recordRejection records that the server rejected the stored refresh
// token for good. The lock is held: the stored refresh token is the one
// sent. Not recording it only costs a request next time.
func (f *fetch) recordRejection() {
	if stored, err := f.st.Stored(); err == nil && stored != nil {
		f.st.RecordRejection(stored.RefreshToken)
	}
}

// refreshTokenRejected reports whether err is the server's rejection of
// the refresh token itself (invalid_grant); the other rejections are
// about the client or the request.
func refreshTokenRejected(err error) bool {
	return errors.Is(err, refreshtoken.ErrRefreshRejected) && rejectCode(err) == "invalid_grant"
}

// attempt runs one refresh, if one is needed, with a source of its own:
// one source makes no request before the back-off it computes, which the
// command replaces with its own within the deadline. The state's lock is
// held, so no other invocation sends the same refresh token meanwhile.
// failed is the error of a refresh that failed while the stored token,
// still valid, was returned.
func (f *fetch) attempt(timeout time.Duration) (tok *oauth2.Token, failed, err error) {
	var fetched atomic.Bool
	opts := slices.Concat(f.opts, []refreshtoken.Option{
		refreshtoken.WithStore(f.st.store),
		refreshtoken.WithRefreshTimeout(timeout),
		refreshtoken.WithOnNewToken(func(context.Context, *oauth2.Token) error {
			fetched.Store(true) // -refresh needs no second refresh
			return nil
		}),
	})
	ts := refreshtoken.New(context.Background(), f.conf, &oauth2.Token{}, opts...)
	tok, err = ts.Token()
	if err == nil && f.force && !fetched.Load() {
		ts.InvalidateToken(tok)
		tok, err = ts.Token()
	}
	// A new token that could not be saved is saved again, a few times:
	// the process is about to exit, and with rotation its refresh token
	// is the only valid one.
	for i := 0; errors.Is(err, refreshtoken.ErrNotSaved) && i < 3; i++ {
		time.Sleep(f.timeout / 20)
		if err = ts.Flush(); err == nil {
			tok, err = ts.Token()
		}
	}
	// A stored token in its early window is refreshed by the first
	// Token, as the source starts empty; if that refresh fails, Token
	// still returns the stored token, and only Err tells. It is read
	// before Close, which empties the source.
	if err == nil {
		failed = ts.Err()
	}
	// Close waits for a refresh started in the background, so that the
	// token it brings is saved before the process exits, and saves once
	// more a token whose Save failed.
	if cerr := ts.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return tok, failed, err
}

// asStored returns the token as stored, with its real expiry and its ID
// token, if tok is the stored one.
func (f *fetch) asStored(tok *oauth2.Token) *oauth2.Token {
	if stored, err := f.st.Stored(); err == nil && stored != nil && stored.AccessToken == tok.AccessToken {
		return stored
	}
	return tok
}

// gaveUpError is a failure that may pass, after the last attempt.
type gaveUpError struct {
	err      error
	attempts int
	timeout  time.Duration
	asked    time.Duration // the wait the server asked for last, if any
}

func (e *gaveUpError) Error() string { return e.err.Error() }

func (e *gaveUpError) Unwrap() error { return e.err }

// retryable reports whether a refresh that failed with err may be tried
// again at once, and how long the server asked to wait. Only failures that
// leave the refresh token unused are: the server could not be reached
// (nothing was sent), or it answered 429 or 503, which refuse a request
// before it is served. An answer lost after the request was sent, a
// malformed success, or another 5xx (a 500 from the server, a 502 or 504
// from a gateway that passed the request on) may come after the server
// rotated the refresh token: sending it again would be taken for a reuse.
func retryable(err error, now time.Time) (asked time.Duration, ok bool) {
	var re *refreshtoken.RetryError
	if !errors.As(err, &re) {
		return 0, false
	}
	var answer *oauth2.RetrieveError
	if errors.As(err, &answer) {
		if answer.Response == nil {
			return 0, false
		}
		status := answer.Response.StatusCode
		if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
			return 0, false
		}
		return serverWait(answer.Response, now), true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) && !dns.IsTemporary {
		return 0, false // a name that does not exist stays so
	}
	var op *net.OpError
	return 0, errors.As(err, &op) && op.Op == "dial"
}

// serverWait is how long resp asks not to be called again: Retry-After
// (seconds or an HTTP date), or X-RateLimit-Reset (UNIX seconds) on a 429;
// zero if it asks nothing. A wait longer than the timeout ends the
// attempts, so no bound is needed here.
func serverWait(resp *http.Response, now time.Time) time.Duration {
	var until time.Time
	if v := strings.TrimSpace(resp.Header.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
			until = now.Add(time.Duration(secs) * time.Second)
		} else if t, err := http.ParseTime(v); err == nil {
			until = t
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if secs, err := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("X-RateLimit-Reset")), 10, 64); err == nil && secs < 1<<40 {
			until = later(until, time.Unix(secs, 0))
		}
	}
	return max(until.Sub(now), 0)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// rejectCode returns the OAuth error code of a rejection, "" if it has none.
func rejectCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}
