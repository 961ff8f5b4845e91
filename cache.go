package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// ErrClosed is returned by Token and TokenContext after Close.
var ErrClosed = errors.New("refreshtoken: token source closed")

// TokenSource is an [oauth2.TokenSource] that caches an access token and
// refreshes it shortly before it expires: in the background while the old
// token is still handed out, and with one request however many goroutines
// ask. Make one with [New] (the refresh grant) or [Cache] (any other source).
//
// A TokenSource is safe for concurrent use by multiple goroutines, and is
// meant to be shared: one per refresh token. The zero value is not usable.
type TokenSource struct {
	// cur is the cached token and its schedule. Token reads it without a
	// lock; it is replaced, never modified, by refresh, Invalidate and
	// Close.
	cur atomic.Pointer[entry]

	// mu serialises refreshes: it guards fetch's own state (the refresh
	// token of the grant) and failures. singleflight already runs one
	// refresh at a time; mu keeps that true for anything else that touches
	// the grant.
	mu       sync.Mutex
	failures int // refreshes failed in a row; guarded by mu

	group  singleflight.Group
	fetch  func(ctx context.Context) (*oauth2.Token, error)
	onNew  func(ctx context.Context, tok *oauth2.Token) error
	window window
	now    func() time.Time
	// timeout bounds one refresh; ctx, detached from every caller, is
	// cancelled by Close.
	timeout time.Duration
	ctx     context.Context
	cancel  context.CancelFunc
	closed  atomic.Bool
}

// entry is one published state of the cache. It is never modified after it
// is stored in TokenSource.cur, except for started.
type entry struct {
	tok       *oauth2.Token // nil when there is no usable access token
	expiry    time.Time     // tok's real expiry; zero: never
	refreshAt time.Time     // stale from then on; zero: never
	expiredAt time.Time     // expired from then on; zero: never
	// err is why the last refresh failed; while it is set, refreshAt is
	// the end of the back-off, and callers who cannot be served the token
	// get err without a new request.
	err error
	// started is set by the first caller that sees the entry stale, so
	// that a background refresh is started once per entry, not per call.
	started atomic.Bool
}

const refreshKey = "refresh"

func newTokenSource(ctx context.Context, fetch func(context.Context) (*oauth2.Token, error), o options) *TokenSource {
	s := &TokenSource{
		fetch:   fetch,
		onNew:   o.onNew,
		window:  o.window,
		now:     o.now,
		timeout: o.timeout,
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.cur.Store(&entry{})
	return s
}

// Token returns a valid access token, refreshing it if it has expired. It
// is TokenContext with a context that never ends.
//
// The returned Token is the caller's own copy. Its Expiry is not the access
// token's expiry but the time to ask again: see [TokenSource.TokenContext].
func (s *TokenSource) Token() (*oauth2.Token, error) {
	return s.TokenContext(context.Background())
}

// TokenContext returns a valid access token.
//
// A fresh token is returned at once, without a lock. A token inside the
// early window is returned at once too, and the first such call starts one
// refresh in the background. Only when the token is within its safety
// margin of expiry (or there is none) does the caller wait for the refresh,
// which all waiting callers share; if ctx ends first, TokenContext returns an
// error wrapping ctx.Err() while the refresh goes on for the others.
//
// After a failed refresh the cached token is still returned while it is
// valid; once it is not, the error is returned without a new request until
// the back-off (1 s, doubling to 1 min) has passed.
//
// The returned Token is the caller's own copy, which the source never
// touches again. Its Expiry is set for x/oauth2, which treats a token as
// expired 10 s before Expiry: Expiry minus 10 s is when this source wants
// to be asked again, so that [oauth2.ReuseTokenSource] and
// [oauth2.NewClient] pick up early refreshes. It is never later than the
// access token's real expiry. Callers that need the real expiry get it from
// the callback set with [WithOnNewToken].
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	now := s.now()
	e := s.cur.Load()
	if e.tok != nil {
		switch stateAt(now, e.refreshAt, e.expiredAt) {
		case fresh:
			return e.handOut(now), nil
		case stale:
			if e.started.CompareAndSwap(false, true) {
				s.group.DoChan(refreshKey, s.refresh)
			}
			return e.handOut(now), nil
		}
	}
	return s.wait(ctx, e, now)
}

// wait is the slow path of TokenContext: there is no token to hand out.
func (s *TokenSource) wait(ctx context.Context, e *entry, now time.Time) (*oauth2.Token, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if e.err != nil && now.Before(e.refreshAt) {
		return nil, e.err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("refreshtoken: gave up waiting for a token: %w", err)
	}
	// A second round covers a caller that joined a refresh just as it
	// ended, and whose token the caller's clock already finds expired;
	// refresh never returns an expired token of its own.
	for range 2 {
		select {
		case r := <-s.group.DoChan(refreshKey, s.refresh):
			if r.Err != nil {
				return nil, r.Err
			}
			e := r.Val.(*entry)
			if now := s.now(); stateAt(now, e.refreshAt, e.expiredAt) != expired {
				return e.handOut(now), nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("refreshtoken: gave up waiting for a token: %w", ctx.Err())
		}
	}
	return nil, errors.New("refreshtoken: the new token expired before it could be handed out")
}

// handOut returns a copy of the cached token for one caller.
func (e *entry) handOut(now time.Time) *oauth2.Token {
	t := *e.tok
	t.Expiry = handOutExpiry(now, e.refreshAt, e.expiry)
	return &t
}

// refresh is the one refresh in flight, run by singleflight in a goroutine
// of its own so that no caller's context can cancel it. It returns the
// entry to hand out from.
func (s *TokenSource) refresh() (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	now := s.now()
	cur := s.cur.Load()
	// A caller may have seen an older entry: the token it wanted may have
	// been refreshed, or a refresh may have failed, since.
	if cur.tok != nil && stateAt(now, cur.refreshAt, cur.expiredAt) == fresh {
		return cur, nil
	}
	if cur.err != nil && now.Before(cur.refreshAt) {
		return nil, cur.err
	}

	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	tok, err := s.fetch(ctx)
	if err == nil && tok.AccessToken == "" {
		err = errors.New("refreshtoken: token source returned no access token")
	}
	var next *entry
	if err == nil {
		next = s.newEntry(tok, now)
		if next.tok == nil {
			err = errors.New("refreshtoken: token source returned a token that has already expired")
		}
	}
	if err != nil {
		s.failures++
		s.fail(err, now.Add(backoff(s.failures)))
		return nil, err
	}
	s.failures = 0

	var hookErr error
	if s.onNew != nil {
		t := *tok
		hookErr = s.onNew(ctx, &t)
	}
	// The token is published even if the hook failed: with rotation the
	// old refresh token is already dead, and this one is all there is.
	s.cur.Store(next)
	if hookErr != nil {
		return nil, fmt.Errorf("refreshtoken: new token is in use, but the OnNewToken callback failed: %w", hookErr)
	}
	return next, nil
}

// newEntry makes the entry for tok, issued (requested) at issued. Its tok is
// nil if tok is already expired.
func (s *TokenSource) newEntry(tok *oauth2.Token, issued time.Time) *entry {
	refreshAt, expiredAt := s.window.schedule(issued, tok.Expiry, rand.Float64())
	e := &entry{tok: tok, expiry: tok.Expiry, refreshAt: refreshAt, expiredAt: expiredAt}
	if stateAt(issued, refreshAt, expiredAt) == expired {
		e.tok = nil
	}
	return e
}

// fail records a failed refresh: the current token, if any, is kept, and
// no refresh starts before retryAt.
func (s *TokenSource) fail(err error, retryAt time.Time) {
	s.update(func(e *entry) *entry {
		return &entry{tok: e.tok, expiry: e.expiry, expiredAt: e.expiredAt, refreshAt: retryAt, err: err}
	})
}

// update replaces the current entry by f of it. It retries if another
// goroutine replaced the entry meanwhile, so that Invalidate is never
// undone.
func (s *TokenSource) update(f func(*entry) *entry) {
	for {
		e := s.cur.Load()
		if s.cur.CompareAndSwap(e, f(e)) {
			return
		}
	}
}

// Err returns the error of the last refresh if it failed, and nil once a
// refresh has succeeded. While it is not nil, the source hands out its
// cached token as long as that is valid, and waits for the back-off to end
// before calling the endpoint again: a health check can report it.
func (s *TokenSource) Err() error {
	return s.cur.Load().err
}

// Invalidate drops the cached access token, so that the next call to Token
// refreshes it. Call it when an API rejects the token (HTTP 401) before it
// expires, for example because the server revoked it. Invalidate does not
// cut short the back-off after a failed refresh.
func (s *TokenSource) Invalidate() {
	s.update(func(e *entry) *entry {
		return &entry{err: e.err, refreshAt: e.refreshAt}
	})
}

// Close stops the source: a refresh in flight is cancelled and waited for,
// and later calls to Token return [ErrClosed]. Close always returns nil; it
// may be called more than once. With [Cache], Close cannot cancel the inner
// source's Token and waits for it to return.
func (s *TokenSource) Close() error {
	s.closed.Store(true)
	s.cancel()
	// Joins the refresh in flight, if any, and waits for it to end; a
	// refresh that starts later sees closed and does nothing.
	<-s.group.DoChan(refreshKey, func() (any, error) { return nil, ErrClosed })
	s.cur.Store(&entry{})
	return nil
}
