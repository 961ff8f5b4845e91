package refreshtoken

import (
	"context"
	"fmt"
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
