package refreshtoken

import (
	"cmp"
	"errors"
	"net/url"

	"golang.org/x/oauth2"
)

// A public client's refresh token obtained with DPoP is bound to the key
// that obtained it (RFC 9449 section 5): the source keeps which key, and
// sends it with no other.

// ExtraDPoPThumbprint is the key of [oauth2.Token.Extra] under which a
// token carries the JWK thumbprint (RFC 7638, see [Thumbprint]) of the
// DPoP key its refresh token is bound to. The source sets it on every
// token it saves or passes to the [WithOnNewToken] callback after a
// refresh with [WithDPoP]; a [Store] should keep it, as filestore,
// redisstore and refreshtoken.MemoryStore do, so that the binding survives
// a restart. A token given to [New] or [TokenSource.SetToken] may carry it
// (the key the sign-in used); if it does not, and the source has a DPoP
// key, the token is taken to be bound to that key.
const ExtraDPoPThumbprint = "dpop_jkt"

// ErrDPoPKeyMismatch reports that the refresh token is bound to a DPoP key
// other than the source's, or that the source has none ([WithDPoP]), so
// the source did not send it: the server would refuse it, and the key the
// application gave is the one to fix (load the key that obtained the
// token, or sign in again). Errors that match it also match
// [ErrRefreshRejected], and are handled as a rejection: no request until
// [TokenSource.SetToken]; the stored token is left as it is, for a source
// with the right key.
var ErrDPoPKeyMismatch = errors.New("refreshtoken: refresh token bound to another DPoP key")

// keyMismatchError is the failure of a refresh token bound to another
// key. Thumbprints are hashes of public keys, not secrets.
type keyMismatchError struct{ bound, have string }

func (e *keyMismatchError) Error() string {
	have := "no DPoP key (WithDPoP)"
	if e.have != "" {
		have = "the DPoP key with thumbprint " + e.have
	}
	return "refreshtoken: the refresh token is bound to the DPoP key with thumbprint " + e.bound + ", and the source has " + have +
		": it is not sent (rejected for good: use the key that obtained it, or sign in again, see TokenSource.SetToken)"
}

func (e *keyMismatchError) Is(target error) bool {
	return target == ErrDPoPKeyMismatch || target == ErrRefreshRejected
}

// thumb returns the thumbprint of the source's DPoP key, "" if it has none.
func (g *grant) thumb() string {
	if g == nil || g.dpop == nil {
		return ""
	}
	return g.dpop.thumb
}

// binding returns the thumbprint the refresh tokens that g obtains are
// bound to: its DPoP key's for a public client (RFC 9449 section 5); ""
// for a confidential client, whose refresh tokens are bound to its client
// authentication and not to the key (so that it may change its key, or a
// fleet's processes each have their own), and without DPoP.
func (g *grant) binding() string {
	if g == nil || g.clientSecret != "" || g.assert != nil {
		return ""
	}
	return g.thumb()
}

// boundOf returns the thumbprint tok says its refresh token is bound to,
// "" if none.
func boundOf(tok *oauth2.Token) string {
	th, _ := tok.Extra(ExtraDPoPThumbprint).(string)
	return th
}

// startBinding learns the key the refresh token of tok, given to New or
// SetToken, is bound to: the one tok names, or else the source's own.
// Called with own.mu held (or before the source is shared).
func (s *TokenSource) startBinding(tok *oauth2.Token) {
	s.own.bound = ""
	if s.grant == nil || tok == nil || tok.RefreshToken == "" {
		return
	}
	s.own.bound = cmp.Or(boundOf(tok), s.grant.binding())
}

// adoptBinding learns the key a stored token's refresh token is bound to,
// which replaces (changed) or confirms the group's: what the store kept,
// or, for a new refresh token it kept nothing of, as for SetToken.
// Called with own.mu held.
func (s *TokenSource) adoptBinding(tok *oauth2.Token, changed bool) {
	if th := boundOf(tok); th != "" {
		s.own.bound = th
	} else if changed {
		s.startBinding(tok)
	}
}

// checkBinding returns the error of a refresh token bound to a key the
// source does not have; nil if it may be sent. Called with own.mu held.
func (s *TokenSource) checkBinding() error {
	if have := s.grant.thumb(); s.own.bound != "" && s.own.bound != have {
		return &keyMismatchError{bound: s.own.bound, have: have}
	}
	return nil
}

// putBinding records in raw, the answer's fields behind Token.Extra, the
// key the new refresh token is bound to ("": none), replacing any field of
// that name the server sent: a server cannot bind the token to a key the
// source does not hold.
func putBinding(raw any, thumb string) {
	putExtra(raw, ExtraDPoPThumbprint, thumb)
}

// putExtra sets the string field k of raw to v, or deletes it if v is "".
func putExtra(raw any, k, v string) {
	switch r := raw.(type) {
	case map[string]any:
		delete(r, k)
		if v != "" {
			r[k] = v
		}
	case url.Values:
		r.Del(k)
		if v != "" {
			r.Set(k, v)
		}
	}
}
