package refreshtoken

import (
	"context"
	"errors"
	"fmt"

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
//
// A Store shared by several processes (one refresh token, many replicas)
// needs more than Load and Save, because single flight works only within a
// process: a lock (a lease, so that a process that dies holding it does not
// stop the others) taken around each refresh; a second Load inside the
// lock, so that a process whose token another process has just refreshed
// uses that token instead of sending a retired refresh token; and a Save
// that compares the stored refresh token with the one the refresh started
// from, so that a process whose lease ran out during a slow refresh cannot
// overwrite a newer token.
type Store interface {
	// Load returns the stored token, or nil and no error if there is none.
	Load(ctx context.Context) (*oauth2.Token, error)
	// Save stores tok, replacing what was stored. tok is Save's to keep.
	Save(ctx context.Context, tok *oauth2.Token) error
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
