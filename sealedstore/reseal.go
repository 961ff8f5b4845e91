package sealedstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/tokenfresh/refreshtoken"
)

// Reseal seals the entry of st, a Store from [New], with the current key
// of its Keyring, if it is sealed under an old key or not sealed at all (a
// plain token, such as the inner store held before encryption was turned
// on). It reports whether it stored anything: false for an empty store or
// an entry already under the current key, which it opens all the same, so
// a damaged entry is an error.
//
// On a [refreshtoken.SharedStore], Reseal saves with SaveIfCurrent over the
// refresh token it loaded, so a rotation saved by a running source in the
// meantime is never overwritten: Reseal then looks again, up to three
// times. On a plain Store, which a single process owns, it loads and
// saves: run it while no source uses the store.
func Reseal(ctx context.Context, st refreshtoken.Store) (resealed bool, err error) {
	var s *store
	switch v := st.(type) {
	case *store:
		s = v
	case *sharedStore:
		s = v.store
	default:
		return false, fmt.Errorf("sealedstore: Reseal of a %T, not a Store from sealedstore.New", st)
	}
	for range 3 {
		raw, err := s.inner.Load(ctx)
		if err != nil || raw == nil {
			return false, err
		}
		tok := raw // a plain token
		if strings.HasPrefix(raw.AccessToken, prefix) {
			if tok, err = s.open(ctx, raw); err != nil {
				return false, err
			}
			if kid, _, _ := strings.Cut(raw.AccessToken[len(prefix):], "."); kid == s.keys.current.ID() {
				return false, nil
			}
		}
		sealed, err := s.seal(ctx, tok)
		if err != nil {
			return false, err
		}
		shared, ok := s.inner.(refreshtoken.SharedStore)
		if !ok {
			if err := s.inner.Save(ctx, sealed); err != nil {
				return false, err
			}
			return true, nil
		}
		// The inner compare value: the hash for a sealed entry, the
		// refresh token itself for a plain one.
		saved, err := shared.SaveIfCurrent(ctx, sealed, raw.RefreshToken)
		if err != nil || saved {
			return saved, err
		}
	}
	return false, fmt.Errorf("sealedstore: Reseal of %q: the entry changed under each of 3 attempts; try again", s.identity)
}
