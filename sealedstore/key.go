package sealedstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"slices"
	"strings"
)

// A Key seals and opens the entries of a store. [AESKey] makes one from
// key bytes; an application implements Key over a key management service,
// either per call (Seal and Open are requests to the service) or as an
// envelope (a data key that the service unwraps once).
//
// Seal returns ciphertext that Open, given the same additionalData,
// turns back into plaintext; Open must fail if the ciphertext or the
// additional data were changed. Both must be safe for concurrent use by
// multiple goroutines. Errors must not hold the plaintext.
type Key interface {
	// ID names the key in every entry it seals, so that a [Keyring]
	// finds it again: 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'.
	ID() string
	Seal(ctx context.Context, plaintext, additionalData []byte) ([]byte, error)
	Open(ctx context.Context, ciphertext, additionalData []byte) ([]byte, error)
}

// validID reports whether id can name a key: it is written in every
// sealed entry, between dots, so it holds neither dots nor anything that
// needs escaping.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// aesKey is AES-256-GCM with a random 96-bit nonce per Seal, which the
// ciphertext carries in front.
type aesKey struct {
	id   string
	aead cipher.AEAD // safe for concurrent use: it holds no state but the key schedule
}

// AESKey returns the Key id that seals with AES-256-GCM, from the
// standard library, under key, which must be 32 bytes (from crypto/rand,
// not a password). Each Seal draws a random 96-bit nonce: a key may seal
// up to 2^32 entries, which at one save a second is over a century. The
// Key does not keep key's slice; its String names the id only.
func AESKey(id string, key []byte) (Key, error) {
	if !validID(id) {
		return nil, fmt.Errorf("sealedstore: key id %q is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'", id)
	}
	if len(key) != 32 {
		// The length only: a wrong length is often a key given in the
		// wrong encoding, and its bytes are still secret.
		return nil, fmt.Errorf("sealedstore: key %q is %d bytes; AES-256 needs 32", id, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealedstore: key %q: %w", id, err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("sealedstore: key %q: %w", id, err)
	}
	return &aesKey{id: id, aead: aead}, nil
}

func (k *aesKey) ID() string { return k.id }

func (k *aesKey) Seal(_ context.Context, plaintext, additionalData []byte) ([]byte, error) {
	return k.aead.Seal(nil, nil, plaintext, additionalData), nil
}

func (k *aesKey) Open(_ context.Context, ciphertext, additionalData []byte) ([]byte, error) {
	return k.aead.Open(nil, nil, ciphertext, additionalData)
}

// String names the key's id, and not its bytes.
func (k *aesKey) String() string { return fmt.Sprintf("sealedstore.AESKey(%q)", k.id) }

// GoString is String, so that %#v prints no key schedule.
func (k *aesKey) GoString() string { return k.String() }

// Keyring is the keys of a store: the current one seals every new entry,
// and entries sealed under the current or an old one open. A Keyring is
// immutable and safe for concurrent use by multiple goroutines.
type Keyring struct {
	current Key
	byID    map[string]Key // current and old, by ID; never written after NewKeyring
}

// NewKeyring returns the Keyring that seals with current and opens with
// current and old. Every key must be non-nil, with a valid id (see
// [Key]), and the ids must differ.
func NewKeyring(current Key, old ...Key) (*Keyring, error) {
	r := &Keyring{current: current, byID: map[string]Key{}}
	for i, k := range append([]Key{current}, old...) {
		if k == nil {
			return nil, fmt.Errorf("sealedstore: key %d of the keyring is nil", i)
		}
		id := k.ID()
		if !validID(id) {
			return nil, fmt.Errorf("sealedstore: key id %q is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'", id)
		}
		if _, dup := r.byID[id]; dup {
			return nil, fmt.Errorf("sealedstore: two keys of the keyring have the id %q", id)
		}
		r.byID[id] = k
	}
	return r, nil
}

// key returns the key with id, or nil.
func (r *Keyring) key(id string) Key { return r.byID[id] }

// String names the keys' ids, and no key.
func (r *Keyring) String() string {
	var old []string
	for id := range r.byID {
		if id != r.current.ID() {
			old = append(old, fmt.Sprintf("%q", id))
		}
	}
	slices.Sort(old)
	return fmt.Sprintf("sealedstore.Keyring{current %q, old [%s]}", r.current.ID(), strings.Join(old, " "))
}

// GoString is String.
func (r *Keyring) GoString() string { return r.String() }
