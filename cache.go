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
// meant to be shared: one per refresh token. An idle TokenSource runs no
// goroutine and no timer. The zero value is not usable.
type TokenSource struct {
	// cur is the cached token and its schedule. Token reads it without a
	// lock; it is replaced, never modified.
	cur atomic.Pointer[entry]

	// mu serialises refreshes and SetToken, which both change the refresh
	// token of grant, and guards failures. singleflight alone runs one
	// refresh at a time, but SetToken does not go through it.
	mu       sync.Mutex
	failures int // transient failures in a row; guarded by mu

	// store, if set, keeps the token across processes; shared is store
	// if it is a SharedStore. The rest is guarded by mu: whether the store
	// was read; the entry of the newest token, if its Save failed (its
	// token may hold only a refresh token: it is then never published), the
	// refresh token a shared store must still hold for it to be saved,
	// and whether it is to be saved whatever the store holds (SetToken's,
	// before the store was ever read); failed Saves in a row; the refresh
	// token of the token last loaded from or saved to the store.
	store        Store
	shared       SharedStore
	loaded       bool
	pending      *entry
	pendingFrom  string
	pendingForce bool
	saveFailures int
	storedRT     string
	// held releases the shared store's lock, left held after the Save
	// of a rotated token failed, once that Save succeeds.
	held func()

	// rt is the refresh token the grant sends; mu guards it.
	rt string

	group singleflight.Group
	grant *grant             // the refresh grant, for New
	src   oauth2.TokenSource // the inner source, for Cache
	onNew func(ctx context.Context, tok *oauth2.Token) error

	window window
	// clock is the clock set with WithClock, nil for the default, which
	// fresh can read more cheaply than through a func.
	clock func() time.Time
	// timeout bounds one refresh, and the callback after it. ctx carries
	// the values of New's context, and no cancellation: no caller and not
	// Close may cut off a request the server may already have acted on.
	timeout time.Duration
	ctx     context.Context
	closed  atomic.Bool
}

// entry is one published state of the cache. It is never modified after it
// is stored in TokenSource.cur, except for started.
type entry struct {
	tok       *oauth2.Token // nil when there is no usable access token
	auth      string        // tok's Authorization header value
	issued    time.Time     // when tok was first fetched; zero: not known
	expiry    time.Time     // tok's real expiry; zero: never
	refreshAt time.Time     // stale from then on; zero: never
	expiredAt time.Time     // expired from then on; zero: never
	// err is why the last refresh failed. After a transient failure,
	// refreshAt is the end of the back-off; after a permanent one
	// (rejected), it is zero: no refresh ever starts by itself.
	err      error
	rejected bool
	// dropped marks an entry whose token was invalidated (a 401), and
	// droppedAccess is that access token, which a shared store may still
	// hold; forced marks a token fetched because of that; drops counts such
	// rounds in a row, for the back-off of dropToken.
	dropped, forced bool
	droppedAccess   string
	drops           int
	// started is set by the first caller that sees the entry stale, so
	// that a background refresh is started once per entry, not per call.
	started atomic.Bool
}

const refreshKey = "refresh"

func newTokenSource(ctx context.Context, o options) *TokenSource {
	s := &TokenSource{
		onNew:   o.onNew,
		window:  o.window,
		clock:   o.clock,
		timeout: o.timeout,
		ctx:     context.WithoutCancel(ctx),
		store:   o.store,
	}
	s.shared, _ = o.store.(SharedStore)
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
// When a refresh fails, the cached token is still returned while it is
// valid; once it is not, the error is returned at once: a [*RetryError]
// until its back-off ends, or an error matching [ErrRefreshRejected] until
// [TokenSource.SetToken].
//
// The returned Token is the caller's own copy, which the source never
// touches again. Its Expiry is set for x/oauth2, which treats a token as
// expired 10 s before Expiry: Expiry minus 10 s is when this source wants
// to be asked again, so that [oauth2.ReuseTokenSource] and
// [oauth2.NewClient] pick up early refreshes. It is never later than the
// access token's real expiry. Callers that need the real expiry get it from
// the callback set with [WithOnNewToken].
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	e, now, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	return e.handOut(now), nil
}

// current returns the entry to serve from at now, without copying: the
// fast path of Token and of Transport.
func (s *TokenSource) current(ctx context.Context) (*entry, time.Time, error) {
	now := s.now()
	e := s.cur.Load()
	if e.tok != nil {
		switch stateAt(now, e.refreshAt, e.expiredAt) {
		case fresh:
			return e, now, nil
		case stale:
			if e.started.CompareAndSwap(false, true) {
				s.group.DoChan(refreshKey, s.refresh)
			}
			return e, now, nil
		}
	}
	return s.wait(ctx, e, now)
}

// wait is the slow path of current: there is no token to hand out.
func (s *TokenSource) wait(ctx context.Context, e *entry, now time.Time) (*entry, time.Time, error) {
	if s.closed.Load() {
		return nil, now, ErrClosed
	}
	if e.backingOff(now) {
		return nil, now, e.err
	}
	if err := ctx.Err(); err != nil {
		return nil, now, fmt.Errorf("refreshtoken: gave up waiting for a token: %w", err)
	}
	// A second round covers a caller that joined a refresh just as it
	// ended, and whose token the caller's clock already finds expired;
	// refresh never returns an expired token of its own.
	for range 2 {
		select {
		case r := <-s.group.DoChan(refreshKey, s.refresh):
			if r.Err != nil {
				return nil, now, r.Err
			}
			e := r.Val.(*entry)
			if now := s.now(); stateAt(now, e.refreshAt, e.expiredAt) != expired {
				return e, now, nil
			}
		case <-ctx.Done():
			return nil, now, fmt.Errorf("refreshtoken: gave up waiting for a token: %w", ctx.Err())
		}
	}
	return nil, now, errors.New("refreshtoken: the new token expired before it could be handed out")
}

// clone returns a copy of e that no caller has seen (started unset).
func (e *entry) clone() *entry {
	return &entry{tok: e.tok, auth: e.auth, issued: e.issued, expiry: e.expiry, refreshAt: e.refreshAt, expiredAt: e.expiredAt,
		err: e.err, rejected: e.rejected, dropped: e.dropped, forced: e.forced, droppedAccess: e.droppedAccess, drops: e.drops}
}

// now reads the source's clock.
func (s *TokenSource) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

// fresh reports whether e's token can be used with nothing to start: the
// per-request check of Transport. With the default clock it reads only the
// monotonic clock (time.Since), half the cost of time.Now on the machines
// measured; for times that carry a monotonic reading, as those derived from
// time.Now do, Go compares by it anyway, so the answer is the same.
func (s *TokenSource) fresh(e *entry) bool {
	if e.tok == nil {
		return false
	}
	until := e.refreshAt
	if until.IsZero() || (!e.expiredAt.IsZero() && e.expiredAt.Before(until)) {
		until = e.expiredAt
	}
	switch {
	case until.IsZero():
		return true
	case s.clock == nil:
		return time.Since(until) < 0
	}
	return s.clock().Before(until)
}

// freshAt reports whether e has a token that is fresh at now: nothing to
// refresh.
func (e *entry) freshAt(now time.Time) bool {
	return e.tok != nil && stateAt(now, e.refreshAt, e.expiredAt) == fresh
}

// backingOff reports whether, at now, a failed refresh forbids a new one.
func (e *entry) backingOff(now time.Time) bool {
	return e.err != nil && (e.rejected || now.Before(e.refreshAt))
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
func (s *TokenSource) refresh() (v any, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A caller that sees the entry this refresh is about to publish turn
	// stale must start a refresh of its own, not join this one, which may
	// not have returned yet: it would get this refresh's result, and its
	// entry, marked started, would never be refreshed in the background.
	// Callers that come during this refresh join one more call, which waits
	// for mu and finds the entry fresh.
	s.group.Forget(refreshKey)
	// singleflight would re-panic in a goroutine no caller can recover in:
	// a panic of the inner source or of the callback is a failed refresh.
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, s.fail(fmt.Errorf("refreshtoken: panic during refresh: %v", r))
		}
	}()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	now := s.now()
	cur := s.cur.Load()
	// A caller may have seen an older entry: the token it wanted may have
	// been refreshed since.
	if cur.freshAt(now) {
		return cur, nil
	}
	if cur.backingOff(now) {
		return nil, cur.err
	}
	// A shared store is read at every refresh: another process may have
	// refreshed the token already.
	if s.store != nil && (!s.loaded || s.shared != nil) {
		if err := s.load(); err != nil {
			return nil, s.fail(err)
		}
	}
	if cur = s.cur.Load(); cur.freshAt(now) {
		return cur, nil // the store's
	}
	if p := s.pending; p != nil {
		// A Save failed: retry it first.
		err := s.flushLocked()
		if cur = s.cur.Load(); cur.freshAt(now) {
			return cur, nil
		}
		switch {
		case err != nil && cur.tok == p.tok && stateAt(now, p.refreshAt, p.expiredAt) == fresh:
			// Only the Save of the token in use was due.
			return nil, s.saveFailed(p, err, now)
		case err != nil && s.shared != nil:
			// A refresh would send a refresh token the shared store has
			// never held, and its Save would be refused as superseded:
			// the pending token must reach the store first.
			return nil, s.fail(&saveError{err})
		}
		// The token is due, or was dropped: refresh. The Save of the new
		// token supersedes the pending one.
	}

	timeout := s.timeout
	var unlock func() // nil once released, or left to the lease
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	if s.shared != nil {
		expires, release, err := s.lock()
		if err != nil {
			// The wait may have ended while another process was saving
			// the token it refreshed.
			if s.load() == nil {
				if cur = s.cur.Load(); cur.freshAt(now) {
					return cur, nil
				}
			}
			return nil, s.fail(err)
		}
		unlock = release
		now = s.now() // the wait may have been long
		// Another process may have refreshed while this one waited.
		if err := s.load(); err != nil {
			return nil, s.fail(err)
		}
		if cur = s.cur.Load(); cur.freshAt(now) {
			return cur, nil
		}
		// The request must end well before the lease: once it has ended,
		// another process may send the same refresh token.
		timeout = min(timeout, time.Until(expires)*3/4)
	}

	rt := s.refreshToken()
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	tok, err := s.fetch(ctx)
	cancel()
	if err != nil && unlock != nil && s.grant != nil && !errors.As(err, new(*endpointError)) && !errors.As(err, new(unsentError)) {
		// No answer, or an unreadable one: the server may have the request
		// and be acting on it still. The lock is left to its lease, so that
		// no other process sends the same refresh token meanwhile.
		unlock = nil
	}
	var next *entry
	if err == nil {
		next, err = s.newEntry(tok, cur, now)
	}
	if next != nil && cur.dropped {
		next.forced, next.drops = true, cur.drops
	}
	if err != nil {
		if rotated := s.refreshToken(); rotated != rt && rotated != "" {
			// The answer was unusable, but it rotated the refresh token:
			// the new one is all there is, and must be saved.
			t := &oauth2.Token{RefreshToken: rotated}
			saved, saveErr := s.saveNew(t, rt)
			switch {
			case saveErr != nil:
				// Retried by the next refresh, Flush or Close. The lock
				// is left to its lease: the store still holds rt, which
				// the server has retired.
				s.pending, s.pendingFrom, s.pendingForce = &entry{tok: t}, rt, false
				s.held, unlock = unlock, nil
				err = errors.Join(err, &saveError{saveErr})
			case !saved:
				return nil, s.fail(errors.Join(err, errSuperseded))
			}
			s.notify(t)
		}
		return nil, s.fail(err)
	}
	if next.issued.Before(now) {
		// The source handed back the token it had: it renews on its own
		// schedule (a Cache around a caching source). Ask again after a
		// back-off, serving this token meanwhile.
		s.failures++
		next.refreshAt = now.Add(backoff(s.failures, rand.Float64()))
		s.cur.Store(next)
		return next, nil
	}
	s.failures = 0
	// The token is published even if saving it or the callback fails:
	// with rotation the old refresh token is already dead, and this one is
	// all there is.
	saved, saveErr := s.saveNew(tok, rt)
	if saveErr == nil && !saved {
		return s.superseded()
	}
	notifyErr := s.notify(tok)
	if saveErr != nil {
		// The lock is left to its lease: the store still holds rt, which
		// the server has retired, and another process must not send it
		// while this one retries the Save (at its next call after a
		// back-off of up to 1 s, or Flush).
		s.pendingFrom, s.pendingForce = rt, false
		s.held, unlock = unlock, nil
		return nil, errors.Join(s.saveFailed(next, saveErr, now), notifyErr)
	}
	s.pending, s.saveFailures = nil, 0
	s.cur.Store(next)
	if notifyErr != nil {
		return nil, notifyErr
	}
	return next, nil
}

// load reads the stored token: once, at the first refresh, or at every
// refresh from a shared store. A stored refresh token supersedes the one in
// memory: it is the latest rotation, unless a newer token is pending (its
// Save failed). A stored access token replaces the cached one only if it
// expires later (a cached token given to New may be newer than a store
// that holds only a refresh token) and is not one an API rejected. Called
// with mu held. After an error nothing is fetched: the stored refresh token
// may be newer than the one in memory, and sending that one could be a
// reuse.
func (s *TokenSource) load() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	tok, err := s.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("refreshtoken: loading the stored token: %w", err)
	}
	s.loaded = true
	s.storedRT = ""
	if tok != nil {
		s.storedRT = tok.RefreshToken
	}
	if tok == nil || s.pending != nil {
		return nil
	}
	if s.grant != nil && tok.RefreshToken != "" {
		s.rt = tok.RefreshToken
	}
	stored := s.storedEntry(tok)
	s.update(func(cur *entry) *entry {
		if stored.tok == nil || (cur.tok != nil && !laterExpiry(stored.expiry, cur.expiry)) ||
			(cur.dropped && stored.tok.AccessToken == cur.droppedAccess) {
			return cur
		}
		return stored
	})
	return nil
}

// errSuperseded is the failure recorded when a shared store refuses a new
// token because another process saved a newer one first.
var errSuperseded = errors.New("refreshtoken: another process refreshed the same refresh token after this one's lease on the shared store ran out, and saved first; its token is used")

// superseded handles a token the shared store refused: another process
// refreshed the same refresh token after this one's lease ran out (a
// pause between the answer and the Save), and saved first. With rotation,
// the server keeps at most one of the two, and reuse detection makes it
// the later one, which the store holds. The new token is dropped unseen by
// any caller or the callback, and the stored one used. Called with mu held.
func (s *TokenSource) superseded() (any, error) {
	if err := s.load(); err != nil {
		return nil, s.fail(errors.Join(errSuperseded, err))
	}
	if cur := s.cur.Load(); cur.tok != nil && stateAt(s.now(), cur.refreshAt, cur.expiredAt) != expired {
		return cur, nil
	}
	return nil, s.fail(errSuperseded)
}

// lock takes the shared store's refresh lock. It waits at most twice the
// refresh timeout: long enough for a lease somewhat longer than the refresh
// timeout, held by a process that died, to run out. unlock releases the
// lock; if that fails, the lease frees it when it ends. Called with mu held.
func (s *TokenSource) lock() (expires time.Time, unlock func(), err error) {
	ctx, cancel := context.WithTimeout(s.ctx, 2*s.timeout)
	defer cancel()
	expires, release, err := s.shared.Lock(ctx)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("refreshtoken: taking the shared store's refresh lock: %w", err)
	}
	return expires, func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
		defer cancel()
		release(ctx)
	}, nil
}

// laterExpiry reports whether expiry a is later than b; zero is never.
func laterExpiry(a, b time.Time) bool {
	return !b.IsZero() && (a.IsZero() || a.After(b))
}

// save passes tok to the store, if there is one, to replace what it
// holds. Called with mu held.
func (s *TokenSource) save(tok *oauth2.Token) error {
	if s.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	t := *tok
	err := s.store.Save(ctx, &t)
	if err == nil {
		s.storedRT = tok.RefreshToken
	}
	return err
}

// saveNew saves tok, fetched with the refresh token previous. A shared
// store keeps it only if it still holds previous; saved reports whether it
// did. Called with mu held.
func (s *TokenSource) saveNew(tok *oauth2.Token, previous string) (saved bool, err error) {
	if s.shared == nil {
		return true, s.save(tok)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	t := *tok
	saved, err = s.shared.SaveIfCurrent(ctx, &t, previous)
	if saved {
		s.storedRT = tok.RefreshToken
	}
	return saved, err
}

// flushLocked saves the pending token, if any, and on success restores its
// entry's own schedule, unless its token has been dropped meanwhile (a 401):
// a rejected token is not brought back. If a shared store already holds a
// newer token, that one is loaded instead. Called with mu held.
func (s *TokenSource) flushLocked() error {
	p := s.pending
	if p == nil {
		return nil
	}
	saved, err := true, error(nil)
	if s.pendingForce {
		err = s.save(p.tok)
	} else {
		saved, err = s.saveNew(p.tok, s.pendingFrom)
	}
	if err != nil {
		return err
	}
	if s.held != nil {
		s.held() // another process may refresh now
		s.held = nil
	}
	s.pending, s.saveFailures = nil, 0
	if cur := s.cur.Load(); cur.tok == p.tok {
		s.cur.Store(p.clone())
	}
	if !saved {
		return s.load()
	}
	return nil
}

// Flush saves, now, a token whose Save failed, instead of waiting for the
// back-off. It returns nil if nothing was pending, and the error wrapping
// [ErrNotSaved] if the Save fails again. A process about to exit calls it
// (Close does) so that a rotated refresh token is not lost silently.
func (s *TokenSource) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return &saveError{err}
	}
	return nil
}

// saveFailed publishes e, whose token could not be saved, so that it is
// handed out but a refresh (which saves again first) comes after a
// back-off, and returns the error for the callers. Called with mu held.
func (s *TokenSource) saveFailed(e *entry, err error, now time.Time) error {
	s.pending = e
	s.saveFailures++
	retry := e.clone()
	if r := now.Add(backoff(s.saveFailures, rand.Float64())); r.Before(retry.refreshAt) || retry.refreshAt.IsZero() {
		retry.refreshAt = r
	}
	retry.err = &saveError{err} // for Err, until a Save succeeds
	s.cur.Store(retry)
	return retry.err
}

// refreshToken is the grant's current refresh token. For Cache, whose
// inner source keeps its own, it is that of the token last loaded from or
// saved to the store, which is what a shared store compares with. Called
// with mu held.
func (s *TokenSource) refreshToken() string {
	if s.grant == nil {
		return s.storedRT
	}
	return s.rt
}

// notify passes a copy of tok to the WithOnNewToken callback, with a
// context of its own: a refresh that ran up to its timeout must not leave
// the callback none. Called with mu held.
func (s *TokenSource) notify(tok *oauth2.Token) error {
	if s.onNew == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	t := *tok
	if err := s.onNew(ctx, &t); err != nil {
		return fmt.Errorf("refreshtoken: new token is in use, but the OnNewToken callback failed: %w", err)
	}
	return nil
}

// fetch gets a new token from the grant or the inner source. Called with mu
// held.
func (s *TokenSource) fetch(ctx context.Context) (*oauth2.Token, error) {
	if s.grant != nil {
		tok, rotated, err := s.grant.token(ctx, s.rt, accessToken(s.cur.Load().tok), s.cur.Load().droppedAccess)
		if rotated != "" {
			s.rt = rotated
		}
		return tok, err
	}
	// An oauth2.TokenSource takes no context: the timeout and Close cannot
	// interrupt it.
	return s.src.Token()
}

// newEntry makes the entry for tok, fetched at now, or says why tok cannot
// be used. A token with the access token of cur keeps the time cur's was
// first fetched, so that its lifetime is not taken for the time it has left.
func (s *TokenSource) newEntry(tok *oauth2.Token, cur *entry, now time.Time) (*entry, error) {
	if tok == nil || tok.AccessToken == "" {
		return nil, errors.New("refreshtoken: token source returned no access token")
	}
	issued := now
	if cur.tok != nil && cur.tok.AccessToken == tok.AccessToken {
		issued = cur.issued
	}
	refreshAt, expiredAt := s.window.schedule(issued, tok.Expiry, rand.Float64())
	if stateAt(now, refreshAt, expiredAt) == expired {
		return nil, errors.New("refreshtoken: token source returned a token that has already expired")
	}
	t := *tok // an inner source may still hold tok: authOf writes to t
	auth := authOf(&t)
	return &entry{tok: &t, auth: auth, issued: issued, expiry: t.Expiry, refreshAt: refreshAt, expiredAt: expiredAt}, nil
}

// callerEntry makes the entry for a token the caller brought (to New or
// SetToken): its lifetime is not known, and it is not used if it has no
// access token or has expired.
func (s *TokenSource) callerEntry(tok *oauth2.Token) *entry {
	if tok == nil {
		return &entry{}
	}
	return s.entryFor(tok, time.Time{}, 0)
}

// storedEntry makes the entry for a token loaded from the store. Its
// lifetime is known if the store kept ExpiresIn (Expiry counts from the
// request). Its refresh is placed at random in the jitter, so that the
// processes that load one token do not all come due at the same moment.
func (s *TokenSource) storedEntry(tok *oauth2.Token) *entry {
	var issued time.Time
	if tok.ExpiresIn > 0 && !tok.Expiry.IsZero() {
		issued = tok.Expiry.Add(-time.Duration(tok.ExpiresIn) * time.Second)
	}
	return s.entryFor(tok, issued, rand.Float64())
}

// entryFor makes the entry for a copy of tok, issued at issued (zero: not
// known), with r placing its refresh in the jitter. It has no token if tok
// has no access token or has expired.
func (s *TokenSource) entryFor(tok *oauth2.Token, issued time.Time, r float64) *entry {
	if tok.AccessToken == "" {
		return &entry{}
	}
	t := *tok
	refreshAt, expiredAt := s.window.schedule(issued, t.Expiry, r)
	if stateAt(s.now(), refreshAt, expiredAt) == expired {
		return &entry{}
	}
	auth := authOf(&t)
	return &entry{tok: &t, auth: auth, issued: issued, expiry: t.Expiry, refreshAt: refreshAt, expiredAt: expiredAt}
}

// authOf returns the Authorization header value for t, and points
// t.AccessToken into it, so that an entry holds the access token once: a
// JWT access token is often a kilobyte, and a process may hold a source per
// user. t must be the entry's own copy.
func authOf(t *oauth2.Token) string {
	auth := t.Type() + " " + t.AccessToken
	t.AccessToken = auth[len(auth)-len(t.AccessToken):]
	return auth
}

// fail records a failed refresh and returns the error callers get for it.
// The current token, if any, is kept. Called with mu held.
func (s *TokenSource) fail(err error) error {
	now := s.now()
	var retryAt time.Time
	rejected := permanent(err)
	if rejected {
		err = &rejectedError{err}
	} else {
		s.failures++
		retryAt = now.Add(backoff(s.failures, rand.Float64()))
		if t := serverWait(err, now); t.After(retryAt) {
			retryAt = t
		}
		err = &RetryError{Err: err, RetryAt: retryAt}
	}
	s.update(func(e *entry) *entry {
		n := e.clone()
		n.refreshAt, n.err, n.rejected = retryAt, err, rejected
		return n
	})
	return err
}

// update replaces the current entry by f of it. It retries if another
// goroutine replaced the entry meanwhile, so that an Invalidate is never
// undone.
func (s *TokenSource) update(f func(*entry) *entry) {
	for {
		e := s.cur.Load()
		if s.cur.CompareAndSwap(e, f(e)) {
			return
		}
	}
}

// Err returns the error of the last refresh if it failed (or if its token
// could not be saved: [ErrNotSaved]), and nil once a refresh has succeeded.
// While it is not nil, the source hands out its cached token as long as
// that is valid: a health check can report it.
func (s *TokenSource) Err() error {
	return s.cur.Load().err
}

// Invalidate drops the cached access token, whichever it is, so that the
// next call to Token refreshes it. Invalidate does not cut short a back-off
// or end a rejection, so a burst of 401s during an outage cannot turn into
// a burst of refreshes.
//
// After an API answered 401, prefer [TokenSource.InvalidateToken] with the
// rejected token: Invalidate called late, after another goroutine's 401 has
// already brought a new token, drops that good token too. [Transport] does
// this for you. A client made by [oauth2.NewClient] keeps its own copy of
// the token until its Expiry, and does not see Invalidate.
func (s *TokenSource) Invalidate() {
	s.update(s.dropToken)
}

// InvalidateToken drops the cached access token if it is still rejected's
// (same access token): a 401 for a token that has since been replaced
// needs no refresh. Otherwise it is Invalidate.
func (s *TokenSource) InvalidateToken(rejected *oauth2.Token) {
	if rejected == nil {
		return
	}
	for {
		cur := s.cur.Load()
		if cur.tok == nil || cur.tok.AccessToken != rejected.AccessToken || s.cur.CompareAndSwap(cur, s.dropToken(cur)) {
			return
		}
	}
}

// invalidate drops tok if it is still the current token: a 401 for a token
// that has since been replaced needs no refresh.
func (s *TokenSource) invalidate(tok *oauth2.Token) {
	for {
		cur := s.cur.Load()
		if cur.tok != tok || s.cur.CompareAndSwap(cur, s.dropToken(cur)) {
			return
		}
	}
}

// errTokenRejected is the failure recorded when an API rejects a token
// that was itself fetched because the one before was rejected.
var errTokenRejected = errors.New("refreshtoken: the API rejected a newly refreshed token too (HTTP 401): its cause is not the token's age (check audience, scope, clocks)")

// dropToken returns e without its token, keeping its failure state. A token
// that replaced a dropped one (forced) and is dropped in turn shows that the
// API rejects tokens for another reason: a refresh cannot help, so the next
// one waits a back-off (at least half of 1 s, doubling to 1 min), and a
// 401 from every request cannot become a refresh per request.
func (s *TokenSource) dropToken(e *entry) *entry {
	n := &entry{err: e.err, rejected: e.rejected, refreshAt: e.refreshAt, dropped: true, droppedAccess: e.droppedAccess, drops: e.drops}
	if e.tok != nil {
		n.droppedAccess = e.tok.AccessToken
	}
	if e.forced && !e.backingOff(s.now()) {
		n.drops++
		retryAt := s.now().Add(backoff(n.drops, 0.5+rand.Float64()/2))
		n.err, n.refreshAt = &RetryError{Err: errTokenRejected, RetryAt: retryAt}, retryAt
	}
	return n
}

// SetToken gives the source a new token, as tok in [New]: its refresh token
// is used from now on, and its access token, if it has one that is still
// valid, is handed out until it nears its Expiry; otherwise the next call
// refreshes. It ends a rejection ([ErrRefreshRejected]) and any back-off:
// call it once the user has signed in again. With a [Store], tok is saved,
// and SetToken returns the error of that Save (tok is in use all the same).
// For a source made by [Cache], only the access token is used. SetToken
// waits for a refresh in flight to end. It does nothing after Close.
func (s *TokenSource) SetToken(tok *oauth2.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	// A retried Save must not overwrite a token that another process
	// refreshed from tok, if the failed Save landed after all: it is
	// compared with what the store was last known to hold, or, if the
	// store was never read, done whatever the store holds.
	previous, force := s.storedRT, !s.loaded
	if s.grant != nil && tok != nil {
		s.rt = tok.RefreshToken
	}
	s.failures, s.pending, s.saveFailures = 0, nil, 0
	s.loaded = true // the store's token, if any, is older than tok
	s.cur.Store(s.callerEntry(tok))
	if tok == nil {
		return nil
	}
	t := *tok
	defer func() {
		if s.pending == nil && s.held != nil {
			s.held() // tok is saved: another process may refresh now
			s.held = nil
		}
	}()
	if err := s.save(&t); err != nil {
		// Retried by the next refresh, Flush or Close; with a shared
		// store, only if the store does not hold a newer token by then
		// (the failed Save may have landed, and another process refreshed
		// from it).
		s.pending, s.pendingFrom, s.pendingForce = &entry{tok: &t}, previous, force
		return &saveError{err}
	}
	return nil
}

// Close stops the source. A refresh in flight is not cancelled but waited
// for, at most the refresh timeout (plus up to twice that waiting for the
// lock of a [SharedStore]): the server may already have rotated the
// refresh token, and the answer must be read and passed to the
// [WithOnNewToken] callback and the [Store]. A token whose Save failed is
// saved once more, and Close returns that error (wrapping [ErrNotSaved]);
// otherwise it returns nil. Later calls to Token return [ErrClosed]. Close
// may be called more than once. With [Cache], the inner source's Token
// cannot be bounded, and Close waits for it to return.
func (s *TokenSource) Close() error {
	s.closed.Store(true)
	// Flush takes mu, which a refresh in flight holds throughout: it
	// waits for the refresh to end. A refresh that starts later sees
	// closed and does nothing.
	err := s.Flush()
	s.cur.Store(&entry{})
	return err
}
