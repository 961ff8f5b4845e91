package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Store keeps a source's token where it outlives the process, so that a
// rotated refresh token is not lost at exit and a restarted process reuses
// a fresh access token. [WithStore] makes a source use one.
//
// The source calls Load at its first refresh and uses a stored access
// token that is still fresh, with no request. If Load fails, the source
// sends nothing, since the stored refresh token may be newer than the one
// it holds and sending that one could be a reuse: callers get the error,
// and Load is tried again after a back-off. It calls Save with every new
// token (access token, real expiry, refresh token, ExpiresIn, and the raw
// fields such as id_token, which Save may drop, and what is known of the
// refresh token's lifetime, which Save should keep: the Extra keys
// [ExtraRefreshTokenExpiry] and [ExtraRefreshTokenFamily]) before any
// caller is handed it. It never calls Load or Save concurrently with itself, and
// saves tokens in the order it got them. A Store should keep ExpiresIn: a
// loaded token's early window is then clamped to its lifetime, as a
// fetched one's is. Every token the source saves has an Expiry within a
// year, or none.
//
// [TokenSource.Revoke] and [TokenSource.Forget] save, in place of the
// token, a sign-out: a token whose refresh token is
// "refreshtoken:signed-out" and which holds nothing else (no secret). A
// source that loads it is signed out ([ErrRevoked]), and a shared store's
// SaveIfCurrent refuses a token refreshed from any other refresh token
// over it. A Store needs nothing special for it: it keeps it as any token
// with a refresh token only.
//
// A Store shared by several processes must implement [SharedStore].
// Package refreshtokentest has a conformance suite for stores,
// [github.com/tokenfresh/refreshtoken/refreshtokentest.TestStore].
type Store interface {
	// Load returns the stored token, or nil and no error if there is none.
	Load(ctx context.Context) (*oauth2.Token, error)
	// Save stores tok, replacing what was stored. tok is Save's to keep.
	Save(ctx context.Context, tok *oauth2.Token) error
}

// SharedStore is a [Store] that several processes share, such as
// github.com/tokenfresh/refreshtoken/redisstore: with it the fleet
// refreshes once per token, as one process would. Before each refresh the
// source loads the store and uses a token another process has just
// refreshed; otherwise it takes the lock, loads again, refreshes, saves
// with SaveIfCurrent and releases the lock. docs/stores.md, in the
// repository, says how leases, failed Saves and paused processes are
// handled.
type SharedStore interface {
	Store
	// Lock takes the lock on refreshing the stored token, waiting while
	// another holder has it, until ctx ends. It returns when the lease ends
	// (on the local clock, no later than the store will free it) and a
	// function that releases the lock if this holder still has it.
	Lock(ctx context.Context) (expires time.Time, unlock func(context.Context) error, err error)
	// SaveIfCurrent stores tok, as Save does, if the stored refresh token
	// is previous, or if nothing is stored; it reports whether it stored
	// tok. A token refreshed from a refresh token that is no longer the
	// stored one must not replace the newer token that replaced it.
	SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (saved bool, err error)
}

// ErrNotSaved is wrapped by the error Token returns, to the callers of a
// refresh, when its new token could not be saved in the [Store]. The new
// token is in use all the same: with rotation the old refresh token is
// already dead, so reverting would lose everything. The source saves it
// again at the next opportunity: the first call to Token after a back-off
// (up to 1 s, doubling to up to 1 min).
var ErrNotSaved = errors.New("refreshtoken: new token not saved")

// saveError is a failed Save: errors.Is finds ErrNotSaved, errors.As the
// store's own error.
type saveError struct{ err error }

func (e *saveError) Error() string {
	return fmt.Sprintf("refreshtoken: new token is in use, but saving it failed (retried on a later call): %v", e.err)
}

func (e *saveError) Is(target error) bool { return target == ErrNotSaved }

func (e *saveError) Unwrap() error { return e.err }
