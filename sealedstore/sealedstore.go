// Package sealedstore encrypts what any refreshtoken.Store keeps: a
// backup, a replica or a dump of the store then holds no usable token.
//
// [New] wraps a store. Every token it saves is sealed, as a whole (access
// token, type, refresh token, expiry, ExpiresIn and the extras a source
// relies on), with an authenticated cipher under the current key of a
// [Keyring]; the identity of the token is bound in as associated data, so
// an entry copied from one identity to another fails to open rather than
// hands out the wrong user's token. The inner store is given a token that
// holds only two strings: the sealed entry, as its access token, and the
// SHA-256 of the refresh token, as its refresh token, which a
// [refreshtoken.SharedStore] compares in SaveIfCurrent. Neither is a secret.
// Its Expiry is in 1970, so that a source given the inner store without
// the wrapper does not hand out the sealed entry as an access token.
//
// An entry that cannot be opened (tampered with, copied, sealed under a
// key the Keyring lacks or a wrong one, or not sealed at all) is an error
// of Load, which the source reports to its callers without sending
// anything: errors.Is finds [ErrCannotOpen], [ErrUnknownKey] or
// [ErrNotSealed]. The errors name the identity and the key id, never a
// token nor the entry.
//
// Keys rotate: a Keyring seals with its current key and opens with the
// old ones too, and [Reseal] moves an entry to the current key, or seals
// a store's plain entry. docs/encryption.md, in the repository, says where
// keys come from, how to rotate them, and what not to do.
package sealedstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// Errors of Load (and Reseal) for an entry that does not open. They are
// wrapped with the identity and the key id.
var (
	// ErrCannotOpen is an entry that does not open under its key: it was
	// changed, copied from another identity, cut short, or the key with
	// its id is not the one that sealed it.
	ErrCannotOpen = errors.New("sealedstore: the stored entry cannot be opened")
	// ErrUnknownKey is an entry sealed under a key id that the Keyring
	// does not hold: an old key was dropped too soon, or the Keyring is
	// another's.
	ErrUnknownKey = errors.New("sealedstore: the stored entry is sealed under a key that the keyring does not hold")
	// ErrNotSealed is a plain token in the inner store, such as one
	// saved before encryption was turned on: [Reseal] seals it.
	ErrNotSealed = errors.New("sealedstore: the stored entry is not sealed")
)

const (
	// prefix starts every sealed entry: "sealed.v1.<key id>.<base64url
	// ciphertext>". The version lets a later format be told apart.
	prefix = "sealed.v1."
	// adTag starts the associated data, which binds the format, the key
	// id and the identity: "<adTag><key id>\x00<identity>". A key id has
	// no NUL, and the identity comes last, so no two pairs give the same
	// bytes.
	adTag = "refreshtoken/sealedstore.v1\x00"
	// maxEntry bounds the sealed entry that Load opens and Save writes: a
	// token is a few kilobytes, and a hostile store must not make Load
	// decode and decrypt gigabytes. Yet it is well above what an answer the
	// source takes seals to (the source reads at most 1 MiB of a token
	// endpoint's answer, and base64 adds a third), so that no rotated
	// token is refused here; only tokens made mostly of control
	// characters, whose JSON escapes take six bytes each, could pass it.
	maxEntry = 4 << 20
	// hashPrefix starts the compare value, which names its hash.
	hashPrefix = "sha256."
)

// store is the sealed view of an inner Store.
type store struct {
	inner    refreshtoken.Store
	identity string
	keys     *Keyring
}

// sharedStore is the sealed view of an inner SharedStore: the fleet's lock
// and compare are the inner store's.
type sharedStore struct {
	*store
	shared refreshtoken.SharedStore
}

var _ refreshtoken.SharedStore = (*sharedStore)(nil)

// New returns a Store that seals every token with keys before inner keeps
// it, for identity: the name of the token (a user, a client), which
// differs between the entries sealed with the same keys. The result is a
// [refreshtoken.SharedStore] if and only if inner is one, with inner's
// lock. It is safe for concurrent use as inner is. New panics if inner or
// keys is nil, or keys is not from [NewKeyring]: a store that cannot seal
// must fail where it is made, not at its first Save.
func New(inner refreshtoken.Store, identity string, keys *Keyring) refreshtoken.Store {
	if inner == nil || keys == nil || keys.current == nil {
		panic("sealedstore: New with a nil inner store, or a keyring not made by NewKeyring")
	}
	s := &store{inner: inner, identity: identity, keys: keys}
	if shared, ok := inner.(refreshtoken.SharedStore); ok {
		return &sharedStore{store: s, shared: shared}
	}
	return s
}

// String names the identity, the keys' ids and the inner store's type:
// not the inner store itself, whose fields may hold a token.
func (s *store) String() string {
	return fmt.Sprintf("sealedstore.Store{identity %q, keys %v, inner %T}", s.identity, s.keys, s.inner)
}

// GoString is String.
func (s *store) GoString() string { return s.String() }

// Load returns the stored token, opened, or nil if there is none.
func (s *store) Load(ctx context.Context) (*oauth2.Token, error) {
	raw, err := s.inner.Load(ctx)
	if err != nil || raw == nil {
		return nil, err
	}
	return s.open(ctx, raw)
}

// Save seals tok and stores it.
func (s *store) Save(ctx context.Context, tok *oauth2.Token) error {
	sealed, err := s.seal(ctx, tok)
	if err != nil {
		return err
	}
	return s.inner.Save(ctx, sealed)
}

// SaveIfCurrent seals tok and stores it if the stored refresh token is
// previous: the inner store compares the hashes.
func (s *sharedStore) SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (bool, error) {
	sealed, err := s.seal(ctx, tok)
	if err != nil {
		return false, err
	}
	return s.shared.SaveIfCurrent(ctx, sealed, compareValue(previous))
}

// Lock is the inner store's.
func (s *sharedStore) Lock(ctx context.Context) (time.Time, func(context.Context) error, error) {
	return s.shared.Lock(ctx)
}

// compareValue is what the inner store keeps as the refresh token: its
// SHA-256, "" for none. The hash is unkeyed on purpose: a keyed one would
// change when the key rotates, and a fleet in the middle of a rotation
// would refuse each other's saves. A refresh token is a high-entropy
// secret, so its hash reveals nothing usable, and the hash cannot be sent
// in its place.
func compareValue(refreshToken string) string {
	if refreshToken == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(refreshToken))
	return hashPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// payload is the sealed plaintext: the whole token as a source saves it.
type payload struct {
	AccessToken  string            `json:"access_token,omitempty"`
	TokenType    string            `json:"token_type,omitempty"`
	RefreshToken string            `json:"refresh_token,omitempty"`
	Expiry       time.Time         `json:"expiry,omitzero"`
	ExpiresIn    int64             `json:"expires_in,omitempty"`
	Extra        map[string]string `json:"extra,omitempty"`
}

// keptExtras are the string extras a source relies on, kept sealed
// whatever the inner store keeps.
var keptExtras = []string{"id_token", "scope", refreshtoken.ExtraRefreshTokenExpiry,
	refreshtoken.ExtraRefreshTokenFamily, refreshtoken.ExtraDPoPThumbprint}

// ad is the associated data of an entry sealed under the key kid.
func (s *store) ad(kid string) []byte {
	return []byte(adTag + kid + "\x00" + s.identity)
}

// seal returns what the inner store keeps for tok, sealed with the current
// key.
func (s *store) seal(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
	p := payload{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshToken: tok.RefreshToken,
		Expiry: tok.Expiry, ExpiresIn: tok.ExpiresIn}
	for _, k := range keptExtras {
		if v, ok := tok.Extra(k).(string); ok && v != "" {
			if p.Extra == nil {
				p.Extra = map[string]string{}
			}
			p.Extra[k] = v
		}
	}
	plaintext, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("sealedstore: sealing the entry of %q: %w", s.identity, err)
	}
	key := s.keys.current
	kid := key.ID()
	ciphertext, err := key.Seal(ctx, plaintext, s.ad(kid))
	if err != nil {
		return nil, fmt.Errorf("sealedstore: sealing the entry of %q under key %q: %w", s.identity, kid, err)
	}
	entry := prefix + kid + "." + base64.RawURLEncoding.EncodeToString(ciphertext)
	if len(entry) > maxEntry {
		return nil, fmt.Errorf("sealedstore: the sealed entry of %q is %d bytes, over the %d that Load opens", s.identity, len(entry), maxEntry)
	}
	// Expired: without an Expiry, a source given the inner store
	// unwrapped (a process not yet given the wrapper, or rolled back)
	// would take the sealed entry for an access token that never expires
	// and hand it out. Expired, it tries a refresh, which the server
	// refuses (a hash is no refresh token), and its callers get the error.
	return &oauth2.Token{AccessToken: entry, RefreshToken: compareValue(tok.RefreshToken), Expiry: time.Unix(1, 0)}, nil
}

// open returns the token that the inner store's raw holds.
func (s *store) open(ctx context.Context, raw *oauth2.Token) (*oauth2.Token, error) {
	entry := raw.AccessToken
	if !strings.HasPrefix(entry, prefix) {
		return nil, fmt.Errorf("%w for %q: it is a plain token, perhaps saved before encryption was turned on; seal it with sealedstore.Reseal", ErrNotSealed, s.identity)
	}
	if len(entry) > maxEntry {
		return nil, fmt.Errorf("%w for %q: it is %d bytes, over %d", ErrCannotOpen, s.identity, len(entry), maxEntry)
	}
	kid, encoded, ok := strings.Cut(entry[len(prefix):], ".")
	if !ok || !validID(kid) {
		return nil, fmt.Errorf("%w for %q: it does not name a valid key id", ErrCannotOpen, s.identity)
	}
	fail := func(why string, err error) error {
		if err != nil {
			return fmt.Errorf("%w for %q under key %q: %s: %w", ErrCannotOpen, s.identity, kid, why, err)
		}
		return fmt.Errorf("%w for %q under key %q: %s", ErrCannotOpen, s.identity, kid, why)
	}
	key := s.keys.key(kid)
	if key == nil {
		return nil, fmt.Errorf("%w: %q is sealed under key %q; the keyring is %v", ErrUnknownKey, s.identity, kid, s.keys)
	}
	ciphertext, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fail("it is not base64url", nil)
	}
	plaintext, err := key.Open(ctx, ciphertext, s.ad(kid))
	if err != nil {
		return nil, fail("it was changed, cut short, copied from another identity, or sealed under another key with the same id", err)
	}
	var p payload
	if err := json.Unmarshal(plaintext, &p); err != nil {
		// Not the decoder's error, which may quote the plaintext.
		return nil, fail("it opened, but to no token", nil)
	}
	if compareValue(p.RefreshToken) != raw.RefreshToken {
		// The store's compare value is not the sealed refresh token's:
		// a SharedStore would compare against the wrong token.
		return nil, fail("the refresh token hash beside it is not the sealed refresh token's", nil)
	}
	tok := &oauth2.Token{AccessToken: p.AccessToken, TokenType: p.TokenType, RefreshToken: p.RefreshToken,
		Expiry: p.Expiry, ExpiresIn: p.ExpiresIn}
	extra := make(map[string]any, len(p.Extra))
	for _, k := range keptExtras {
		if v := p.Extra[k]; v != "" {
			extra[k] = v
		}
	}
	return tok.WithExtra(extra), nil
}
