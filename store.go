package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Store keeps a source's token where it outlives the process: with
// rotation, a refresh token that exists only in memory is lost at exit,
// and a short-lived process that refreshes at every start ignores the rate
// limits. [WithStore] makes a source use one.
//
// The source calls Load once, at its first use, and uses a stored access
// token that is still fresh as is, with no request. After every refresh it
// calls Save with the new token (access token, real expiry, refresh token,
// and the raw response fields such as id_token, which Save may drop)
// before any caller is handed it. The source never calls Load or Save
// concurrently with itself, and saves tokens in the order it got them.
// A Store should keep ExpiresIn, the lifetime the server gave: with it, a
// loaded token's early refresh window is clamped to its lifetime as for a
// fetched one, which matters for tokens that live minutes, not hours.
//
// A Store shared by several processes (one refresh token, many replicas)
// must also implement [SharedStore]: single flight works only within a
// process, and with rotation two replicas refreshing at once revoke the
// token family.
type Store interface {
	// Load returns the stored token, or nil and no error if there is none.
	Load(ctx context.Context) (*oauth2.Token, error)
	// Save stores tok, replacing what was stored. tok is Save's to keep.
	Save(ctx context.Context, tok *oauth2.Token) error
}

// SharedStore is a [Store] that several processes share, such as
// github.com/tokenfresh/refreshtoken/redisstore. A source given one with
// [WithStore] makes the fleet refresh like one process: when its token
// comes due, it first loads the store, and uses a token another process
// has just refreshed instead of calling the endpoint. Otherwise it takes
// the lock, loads the store again (another process may have refreshed
// while it waited), refreshes, saves with SaveIfCurrent and releases the
// lock. It loads the store at every refresh, not only the first.
//
// The lock is a lease, so that a process that dies holding it does not stop
// the others for longer than the lease. The source bounds its request to
// the token endpoint to the first three quarters of the lease left when it
// got the lock, so that the lease does not run out while its request is in
// flight and another process sends the same refresh token; a request that
// got no answer keeps the lock until the lease ends, since the server may
// still act on it. If the Save of a new token fails, the store still holds
// the refresh token the server has retired: the source keeps the lock until
// a retry of that Save succeeds or the lease ends, and refreshes nothing
// before the Save. A process paused between the answer and its Save (a long
// GC pause, a stopped VM) can still outlive its lease. Another process then
// sends the refresh token it started from, which the server has retired:
// only the server's reuse interval (Auth0's rotation overlap period)
// accepts that, and otherwise the family is revoked. If it was accepted,
// SaveIfCurrent refuses the paused process's token, and the source drops it
// and uses the stored one, the one the server keeps.
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
