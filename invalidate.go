package refreshtoken

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"golang.org/x/oauth2"
)

// Invalidate drops the cached access token, whichever it is, so that the
// next call to Token refreshes it. Only a back-off after failed refreshes
// or a rejection ([ErrRefreshRejected]) holds that refresh back.
//
// After an API answered 401, prefer [TokenSource.InvalidateToken] with the
// rejected token: Invalidate called late, after another goroutine's 401 has
// already brought a new token, drops that good token too. [Transport] does
// this for you. A client made by [oauth2.NewClient] keeps its own copy of
// the token until its Expiry, and does not see Invalidate.
func (s *TokenSource) Invalidate() {
	s.dropIf(func(*entry) bool { return true }, false)
}

// InvalidateToken reports that an API rejected the access token of
// rejected (HTTP 401): the cached token is dropped if it is still that one,
// since a 401 for a token that has since been replaced needs no refresh.
//
// If the API rejects, in turn, the token fetched to replace a rejected one,
// its cause is not the token's age (audience, scope, clock skew), and a
// refresh per request would not help: the next refresh then waits a
// back-off (half of 1 s to 1 s, doubling to a minute), and callers get a
// [*RetryError] that says so meanwhile. A 401 that comes while the token's
// own refresh is in flight does not count: servers that revoke an access
// token when its refresh token rotates (ory/fosite, Ory Hydra) answer
// requests still in flight with it so.
func (s *TokenSource) InvalidateToken(rejected *oauth2.Token) {
	if rejected == nil {
		return
	}
	s.dropIf(func(e *entry) bool { return e.tok != nil && e.tok.AccessToken == rejected.AccessToken }, true)
}

// invalidate is InvalidateToken for the entry's own token, which Transport
// holds.
func (s *TokenSource) invalidate(tok *oauth2.Token) (dropped bool) {
	return s.dropIf(func(e *entry) bool { return e.tok == tok }, true)
}

// dropIf drops the cached token while match says the entry is the one to
// drop, with a compare-and-swap: a drop never waits for a refresh in
// flight, and a new entry published meanwhile is judged again. It reports
// whether it dropped one.
func (s *TokenSource) dropIf(match func(*entry) bool, after401 bool) (dropped bool) {
	for {
		cur := s.cur.Load()
		if !match(cur) {
			return false
		}
		if s.cur.CompareAndSwap(cur, s.dropped(cur, after401)) {
			return true
		}
	}
}

// errTokenRejected is the failure recorded when an API rejects a token
// that was itself fetched because the one before was rejected.
var errTokenRejected = errors.New("refreshtoken: an API rejected a newly refreshed token too (HTTP 401), after rejecting the one it replaced: the cause is not the token's age (check audience, scope, clocks)")

// dropped returns e without its token, keeping its failure. after401 is
// for a token an API rejected: if it was itself fetched to replace a
// rejected one (forced), the next refresh waits a back-off.
func (s *TokenSource) dropped(e *entry, after401 bool) *entry {
	d := e.drops()
	v := view{fail: e.fail, drop: &drop{access: d.access, rounds: d.rounds, after401: after401}}
	if e.tok != nil {
		v.drop.access = e.tok.AccessToken
	}
	// A forced token rejected once its early refresh has started may be
	// rejected because of that refresh (a server that revokes the
	// previous access token when it rotates), not in turn.
	if now := s.now(); after401 && d.forced && !e.started.Load() && !e.fail.blocked(now) {
		v.drop.rounds++
		at := retryAt(v.drop.rounds, nil, now, time.Time{}, 0.5+rand.Float64()/2)
		v.fail = &failure{err: &RetryError{Err: errTokenRejected, RetryAt: at}, retryAt: at}
	}
	return newEntry(v)
}

// SetToken gives the source a new token, as tok in [New]: its refresh token
// is used from now on (none, if it has none), and its access token, if it
// has one that is still valid, is handed out until it nears its Expiry;
// otherwise the next call refreshes. It ends a rejection
// ([ErrRefreshRejected]) and any back-off: call it once the user has
// signed in again. A refresh token the endpoint has rejected is never sent
// again, even if SetToken brings it back. With a [Store], tok is saved, and
// SetToken returns the error of that Save (tok is in use all the same).
// For a source made by [Cache], only the access token is used. For a
// source of [TokenSource.Audience], see there. SetToken waits for a
// refresh in flight to end. It does nothing after Close.
func (s *TokenSource) SetToken(tok *oauth2.Token) error {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	if s.closed.Load() {
		return nil
	}
	previous := s.own.rt
	if s.obs != nil {
		var rt string
		if tok != nil {
			rt = tok.RefreshToken
		}
		s.observe(TokenSet{Fingerprint: Fingerprint(rt), Recovered: s.cur.Load().failed().permanent})
	}
	if s.grant != nil {
		s.own.rt = ""
		if tok != nil {
			s.own.rt = tok.RefreshToken
		}
		s.startLife(tok, s.now())
		s.startBinding(tok)
	}
	s.recoverSiblings()
	s.policy = policy{}
	s.cur.Store(newEntry(s.tokenView(tok, time.Time{}, s.now(), 0)))
	ss := s.store
	if ss == nil || tok == nil {
		// Nothing to save. A pending Save stays: it may hold a rotated
		// refresh token, without which the store keeps one the server
		// has retired.
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	if ss.shared && !ss.loaded {
		// Learn what tok replaces, so that a retried Save can tell it
		// from a token another process refreshed from tok.
		s.loadStore(ctx, 0)
	}
	// A retried Save must not overwrite a token that another process
	// refreshed from tok, if the failed Save landed after all: it is
	// compared with what the store was last known to hold, or, if the
	// store could not be read, done whatever the store holds.
	p := &pendingSave{from: ss.storedRT, force: !ss.loaded, replaces: []string{ss.storedRT, previous}}
	ss.pending = nil
	ss.loaded = true // the store's token, if any, is older than tok
	if s.primary() {
		s.own.primaryRead = true
	}
	t := *tok
	t.Expiry = boundExpiry(s.now(), t.Expiry)
	if s.grant != nil {
		t = *s.own.stamp(&t, s.grant.life().absolute > 0)
	}
	kept := s.groupToken(&t)
	began := time.Now()
	err := ss.force(ctx, kept)
	s.observe(StoreSaved{Result: saveResult(err == nil, err), Duration: time.Since(began), Err: err})
	if err != nil {
		// Retried by the next refresh, Flush or Close; with a shared
		// store, only if the store does not hold a newer token by then
		// (the failed Save may have landed, and another process refreshed
		// from it).
		p.tok, p.fetched = kept, &t
		ss.pending = p
		return &saveError{err}
	}
	ss.release(ctx) // tok is saved
	return nil
}

// Flush saves, now, a token whose Save failed, instead of waiting for the
// back-off. It returns nil if nothing was pending, and the error wrapping
// [ErrNotSaved] if the Save fails again. A process about to exit calls it
// (Close does) so that a rotated refresh token is not lost silently.
func (s *TokenSource) Flush() error {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	return s.flush()
}

// flush is Flush, called with own.mu held.
func (s *TokenSource) flush() error {
	if s.store == nil || s.store.pending == nil {
		return nil
	}
	base := s.cur.Load()
	r := &round{s: s, now: s.now(), base: base, v: base.view}
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	if _, err := r.flushPending(ctx); err != nil {
		return &saveError{err}
	}
	r.publish()
	return nil
}
