package refreshtoken

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"golang.org/x/oauth2"
)

// storeSync is the store protocol of one source: reading the store,
// saving new tokens, the retry of a failed Save and the lease of a shared
// store. It reports what it found and leaves what to hand out to the
// refresh. The TokenSource's mu guards it. Its bools come last, packed:
// an idle source keeps one.
type storeSync struct {
	st Store

	// storedRT is the refresh token st was last known to hold: what
	// SaveIfCurrent compares with for a Cache source, which has no
	// refresh token of its own.
	storedRT string
	// stored is the token st was last known to hold (nil if none or not
	// known), whose access token the sources of Audience save again. It
	// is kept only once keepStored is set (the group has a second source):
	// a source alone never reads it, and it would hold a second copy of
	// the access token per idle source.
	stored *oauth2.Token
	// pending is a token whose Save failed, to be saved before anything
	// else; nil if none.
	pending *pendingSave
	// held releases the shared lock kept after the Save of a rotated
	// token failed: the store still holds the refresh token the server
	// has retired, which no other process may send. Nil if none.
	held func(context.Context) error

	// shared reports whether st is a SharedStore, set once by
	// newStoreSync: a bool, not the interface, which would take two
	// words more per source.
	shared bool
	// loaded reports whether st was read, or holds a token older than
	// the source's (SetToken's).
	loaded bool
	// keepStored is set by Audience once the group has a second source:
	// stored is kept from then on.
	keepStored bool
}

// pendingSave is a token whose Save failed.
type pendingSave struct {
	tok *oauth2.Token // the token; it may hold only a refresh token
	// fetched is the token of the source whose Save this is, as its view
	// holds it: tok, but for a sibling of Audience, whose tok holds the
	// primary's access token (groupToken).
	fetched *oauth2.Token
	// from is the refresh token a shared store must still hold for tok to
	// be saved (SaveIfCurrent); force saves it whatever the store holds
	// (a SetToken before the store was ever read).
	from  string
	force bool
	// replaces lists the refresh tokens that SetToken's tok replaced:
	// a shared store that holds one of them (its failed Save did not
	// land, or an earlier one did) gets tok, compared with that one. A
	// token the source does not know may have been refreshed from tok.
	replaces []string
}

func newStoreSync(st Store) *storeSync {
	_, shared := st.(SharedStore)
	return &storeSync{st: st, shared: shared}
}

// due reports whether a refresh must read the store first: once, or at
// every refresh if it is shared (another process may have refreshed).
func (ss *storeSync) due() bool {
	return !ss.loaded || ss.shared
}

// load reads the stored token. It returns nil if there is none, or if a
// pending token is newer than anything the store can hold.
func (ss *storeSync) load(ctx context.Context) (*oauth2.Token, error) {
	var tok *oauth2.Token
	err := safely(func() (err error) {
		tok, err = ss.st.Load(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("refreshtoken: loading the stored token: %w", err)
	}
	ss.loaded = true
	ss.storedRT = ""
	ss.remember(tok)
	if tok != nil {
		ss.storedRT = tok.RefreshToken
	}
	if ss.pending != nil {
		return nil, nil
	}
	return tok, nil
}

// save stores tok, fetched with the refresh token from. A shared store
// keeps it only if it still holds from; saved reports whether it did.
func (ss *storeSync) save(ctx context.Context, tok *oauth2.Token, from string) (saved bool, err error) {
	t := *tok // the store's to keep
	err = safely(func() (err error) {
		if !ss.shared {
			err = ss.st.Save(ctx, &t)
			saved = err == nil
		} else {
			saved, err = ss.st.(SharedStore).SaveIfCurrent(ctx, &t, from)
		}
		return err
	})
	if saved {
		ss.storedRT = tok.RefreshToken
		ss.remember(tok)
	}
	return saved, err
}

// remember records tok as what st holds, if the group needs it.
func (ss *storeSync) remember(tok *oauth2.Token) {
	if ss.keepStored {
		ss.stored = tok
	}
}

// force stores tok whatever the store holds.
func (ss *storeSync) force(ctx context.Context, tok *oauth2.Token) error {
	t := *tok
	err := safely(func() error { return ss.st.Save(ctx, &t) })
	if err == nil {
		ss.storedRT = tok.RefreshToken
		ss.remember(tok)
	}
	return err
}

// keep records p as pending, and keeps the shared lock, if unlock holds
// it, until p is saved.
func (ss *storeSync) keep(p *pendingSave, unlock func(context.Context) error) {
	ss.pending = p
	if unlock != nil {
		ss.held = unlock
	}
}

// flush saves the pending token, if any. saved is false if a shared store
// refused it because it holds a newer token, which the caller then loads.
// On success the lock kept for it is released.
func (ss *storeSync) flush(ctx context.Context) (saved bool, err error) {
	p := ss.pending
	if p == nil {
		return true, nil
	}
	from := p.from
	if ss.shared && len(p.replaces) > 0 {
		if _, err := ss.load(ctx); err != nil {
			return false, err
		}
		if slices.Contains(p.replaces, ss.storedRT) {
			from = ss.storedRT
		}
	}
	if p.force {
		saved, err = true, ss.force(ctx, p.tok)
	} else {
		saved, err = ss.save(ctx, p.tok, from)
	}
	if err != nil {
		return false, err
	}
	ss.pending = nil
	ss.release(ctx)
	return saved, nil
}

// release releases the lock kept for a pending Save, if any: another
// process may refresh now. If that fails, the lease frees the lock when it
// ends.
func (ss *storeSync) release(ctx context.Context) {
	if ss.held != nil {
		ss.held(ctx)
		ss.held = nil
	}
}

// lock takes the shared store's refresh lock, waiting until ctx ends. It
// returns when the lease ends and the function that releases the lock.
func (ss *storeSync) lock(ctx context.Context) (expires time.Time, unlock func(context.Context) error, err error) {
	expires, unlock, err = ss.st.(SharedStore).Lock(ctx)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("refreshtoken: taking the shared store's refresh lock: %w", err)
	}
	return expires, unlock, nil
}

// safely calls f, a call into the store, and turns a panic into an error:
// a panicking store must not skip the recording of a pending Save.
func safely(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("refreshtoken: panic in the store: %v", p)
		}
	}()
	return f()
}

// The steps of a round that read and lock the store.

// syncStore reads the store, when due, and retries a pending Save. It
// reports whether a refresh is still needed. After a failed load nothing
// is fetched: the stored refresh token may be newer than the one in
// memory, and sending that one could be a reuse.
func (r *round) syncStore() bool {
	ss := r.s.store
	if ss == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(r.prep, r.s.timeout)
	defer cancel()
	if r.storeDue() && !r.load(ctx) {
		return false
	}
	if r.done() {
		return false // the store's
	}
	p := ss.pending
	if p == nil {
		return r.settled()
	}
	loaded, err := r.flushPending(ctx)
	if err == nil {
		return loaded && !r.done()
	}
	switch {
	case r.holds(p.fetched) && stateAt(r.now, r.v.sched.refreshAt, r.v.sched.expiredAt) == fresh:
		// Only the Save of the token in use was due.
		r.saveFailed(err)
		return false
	case ss.shared:
		// A refresh would send a refresh token the shared store has
		// never held, and its Save would be refused as superseded: the
		// pending token must reach the store first.
		r.fail(&saveError{err})
		return false
	}
	// The token is due: the Save of the new token supersedes this one.
	return true
}

// flushPending saves the pending token. On success the failed Save of the
// token in hand is cleared, and if a shared store refused the token as
// superseded, the newer one it holds is loaded; loaded is false if that
// load failed (and is recorded as a failure).
func (r *round) flushPending(ctx context.Context) (loaded bool, err error) {
	p := r.s.store.pending
	began := time.Now()
	saved, err := r.s.store.flush(ctx)
	r.s.observe(StoreSaved{Refresh: r.id, Result: saveResult(saved, err), Retry: true, Duration: time.Since(began), Err: err})
	if err != nil {
		return false, err
	}
	r.s.policy.saves = 0
	if r.holds(p.fetched) && r.v.fail.saveOnly() {
		r.v.fail, r.changed = nil, true
	}
	return saved || r.load(ctx), nil
}

// lease takes a shared store's lock and reads the store again: another
// process may have refreshed while this one waited. It reports whether a
// refresh is still needed.
func (r *round) lease() bool {
	ss := r.s.store
	if ss == nil || !ss.shared {
		return true
	}
	// The wait is long enough for a lease somewhat longer than the refresh
	// timeout, held by a process that died, to run out.
	ctx, cancel := context.WithTimeout(r.prep, 2*r.s.timeout)
	waitBegan := time.Now()
	expires, unlock, err := ss.lock(ctx)
	cancel()
	r.s.observe(LockWaited{Refresh: r.id, Waited: time.Since(waitBegan), Err: err})
	ctx, cancel = context.WithTimeout(r.prep, r.s.timeout)
	defer cancel()
	if err != nil {
		// The wait may have ended while another process was saving the
		// token it refreshed.
		if tok, loadErr := r.s.loadStore(ctx, r.id); loadErr == nil {
			if !r.adopt(tok) || r.done() {
				return false
			}
		}
		r.fail(err)
		return false
	}
	r.unlock, r.locked = unlock, time.Now()
	r.now = r.s.now() // the wait may have been long
	if !r.load(ctx) || r.done() {
		return false
	}
	// The request must end well before the lease: once it has ended,
	// another process may send the same refresh token.
	r.timeout = min(r.timeout, time.Until(expires)*3/4)
	return true
}

// load reads the store and adopts its token. It reports whether the load
// succeeded, and records the failure if not, and whether the round goes
// on (see adopt).
func (r *round) load(ctx context.Context) bool {
	tok, err := r.s.loadStore(ctx, r.id)
	if err != nil {
		r.fail(err)
		return false
	}
	if r.s.primary() {
		r.s.own.primaryRead = true
	}
	return r.adopt(tok)
}

// loadStore reads the store, for the refresh numbered id (0 for SetToken),
// and reports the read.
func (s *TokenSource) loadStore(ctx context.Context, id uint64) (*oauth2.Token, error) {
	began := time.Now()
	tok, err := s.store.load(ctx)
	s.observe(StoreLoaded{Refresh: id, Duration: time.Since(began), Found: tok != nil, Err: err})
	return tok, err
}

// adopt takes a stored token. Its refresh token replaces the source's: it
// is the latest rotation (a pending Save, which is newer, makes load return
// nil), unless the endpoint has rejected it. Its access token replaces the
// cached one if it expires later (a token given to New may be newer than a
// store that holds only a refresh token) and is not one that was dropped;
// only the primary of a group takes it (see Audience). A sign-out (Revoke
// or Forget, maybe in another process) signs the source out, and adopt
// reports that the round ends there.
func (r *round) adopt(tok *oauth2.Token) (goOn bool) {
	if tok == nil {
		return true
	}
	s := r.s
	if tok.RefreshToken == signedOut {
		r.v, r.changed, r.replaced, r.err = s.signedOut(r.v), true, true, ErrRevoked
		return false
	}
	if s.grant != nil && tok.RefreshToken != "" && tok.RefreshToken != s.rejected {
		s.adoptLife(tok, r.now, tok.RefreshToken != s.own.rt)
		s.adoptBinding(tok, tok.RefreshToken != s.own.rt)
		s.own.rt = tok.RefreshToken
	}
	if !s.primary() {
		return true // the stored access token is the primary's audience's
	}
	stored := s.tokenView(tok, storedIssued(tok), r.now, rand.Float64())
	if stored.tok == nil || (r.v.tok != nil && !laterExpiry(stored.tok.Expiry, r.v.tok.Expiry)) ||
		stored.tok.AccessToken == r.v.drops().access {
		return true
	}
	r.v, r.changed, r.replaced = stored, true, true
	return true
}
