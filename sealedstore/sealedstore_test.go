package sealedstore_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// newKey returns a new AES key with id, from crypto/rand, and its bytes.
func newKey(t testing.TB, id string) (sealedstore.Key, []byte) {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	k, err := sealedstore.AESKey(id, b)
	if err != nil {
		t.Fatal(err)
	}
	return k, b
}

// ring returns the Keyring of current and old.
func ring(t testing.TB, current sealedstore.Key, old ...sealedstore.Key) *sealedstore.Keyring {
	t.Helper()
	r, err := sealedstore.NewKeyring(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// secretToken is a token whose secrets are easy to look for.
func secretToken() *oauth2.Token {
	return (&oauth2.Token{AccessToken: "at-SECRET-access", TokenType: "Bearer", RefreshToken: "rt-SECRET-refresh",
		Expiry: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": "id-SECRET-idtoken", "scope": "openid offline_access"})
}

var secrets = []string{"at-SECRET-access", "rt-SECRET-refresh", "id-SECRET-idtoken"}

// leaks returns the secrets that text holds.
func leaks(text string, secrets ...string) []string {
	var found []string
	for _, s := range secrets {
		if strings.Contains(text, s) || strings.Contains(text, hex.EncodeToString([]byte(s))) ||
			strings.Contains(text, base64.RawURLEncoding.EncodeToString([]byte(s))) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(s))) {
			found = append(found, s)
		}
	}
	return found
}

func TestConformanceMemoryStore(t *testing.T) {
	k, _ := newKey(t, "k1")
	keys := ring(t, k)
	refreshtokentest.TestSharedStore(t, func(t *testing.T) (a, b refreshtokentest.SharedStore) {
		inner := refreshtokentest.NewMemoryStore(nil, 0)
		// Two wrappers, as two processes have them.
		return sealedstore.New(inner, "user-1", keys).(refreshtoken.SharedStore),
			sealedstore.New(inner, "user-1", keys).(refreshtoken.SharedStore)
	})
}

func TestConformanceFileStore(t *testing.T) {
	k, _ := newKey(t, "k1")
	keys := ring(t, k)
	refreshtokentest.TestStore(t, func(t *testing.T) refreshtokentest.Store {
		return sealedstore.New(filestore.New(filepath.Join(t.TempDir(), "token.json")), "user-1", keys)
	})
}

// TestSharedIfInnerShared: the wrapper of a SharedStore is one, with its
// lock; the wrapper of a plain Store is not, so a source does not take it
// for a fleet's.
func TestSharedIfInnerShared(t *testing.T) {
	k, _ := newKey(t, "k1")
	keys := ring(t, k)
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	shared, ok := sealedstore.New(mem, "u", keys).(refreshtoken.SharedStore)
	if !ok {
		t.Fatal("New(a MemoryStore) is not a SharedStore")
	}
	_, unlock, err := shared.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !mem.Locked() {
		t.Error("Lock of the wrapper did not take the inner store's lock")
	}
	unlock(context.Background())
	if _, ok := sealedstore.New(filestore.New(filepath.Join(t.TempDir(), "t.json")), "u", keys).(refreshtoken.SharedStore); ok {
		t.Error("New(a filestore) is a SharedStore; want a plain Store")
	}
}

// TestInnerHoldsNoSecret: what the inner store keeps holds none of the
// token's secrets, in memory and in a file.
func TestInnerHoldsNoSecret(t *testing.T) {
	ctx := context.Background()
	k, _ := newKey(t, "k1")
	keys := ring(t, k)

	mem := refreshtokentest.NewMemoryStore(nil, 0)
	if err := sealedstore.New(mem, "user-1", keys).Save(ctx, secretToken()); err != nil {
		t.Fatal(err)
	}
	got := mem.Stored()
	if l := leaks(fmt.Sprintf("%#v %v", got, got.Extra("id_token")), secrets...); len(l) > 0 {
		t.Errorf("the MemoryStore holds %q", l)
	}
	if !strings.HasPrefix(got.AccessToken, "sealed.v1.k1.") || !strings.HasPrefix(got.RefreshToken, "sha256.") {
		t.Errorf("the MemoryStore holds access token %.20q…, refresh token %.10q…; want a sealed entry and a hash", got.AccessToken, got.RefreshToken)
	}

	path := filepath.Join(t.TempDir(), "token.json")
	if err := sealedstore.New(filestore.New(path), "user-1", keys).Save(ctx, secretToken()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if l := leaks(string(b), secrets...); len(l) > 0 {
		t.Errorf("the token file holds %q", l)
	}
	if !strings.Contains(string(b), "sealed.v1.k1.") {
		t.Errorf("the token file holds no sealed entry: %d bytes", len(b))
	}
}

// sealedEntry returns the inner token that a Save of secretToken stores
// for identity under keys.
func sealedEntry(t *testing.T, identity string, keys *sealedstore.Keyring) *oauth2.Token {
	t.Helper()
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	if err := sealedstore.New(mem, identity, keys).Save(context.Background(), secretToken()); err != nil {
		t.Fatal(err)
	}
	return mem.Stored()
}

// TestOpenErrors: an entry that cannot be opened is an error of Load that
// errors.Is finds as its sentinel, and that names no secret.
func TestOpenErrors(t *testing.T) {
	k1, _ := newKey(t, "k1")
	wrongK1, _ := newKey(t, "k1")
	k2, _ := newKey(t, "k2")
	keys := ring(t, k1)
	good := sealedEntry(t, "alice", keys)
	body := strings.TrimPrefix(good.AccessToken, "sealed.v1.k1.")
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		t.Fatal(err)
	}
	withEntry := func(entry string) *oauth2.Token {
		return &oauth2.Token{AccessToken: entry, RefreshToken: good.RefreshToken}
	}
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)/2] ^= 1
	for _, tc := range []struct {
		name     string
		stored   *oauth2.Token
		identity string               // of the reader; "alice" if ""
		keys     *sealedstore.Keyring // of the reader; keys if nil
		want     error
	}{
		{name: "tampered ciphertext", stored: withEntry("sealed.v1.k1." + base64.RawURLEncoding.EncodeToString(flipped)), want: sealedstore.ErrCannotOpen},
		{name: "entry of another identity", stored: good, identity: "bob", want: sealedstore.ErrCannotOpen},
		{name: "wrong key with the right id", stored: good, keys: ring(t, wrongK1), want: sealedstore.ErrCannotOpen},
		{name: "unknown key id", stored: good, keys: ring(t, k2), want: sealedstore.ErrUnknownKey},
		{name: "key id changed", stored: withEntry("sealed.v1.k2." + body), keys: ring(t, k1, k2), want: sealedstore.ErrCannotOpen},
		{name: "truncated", stored: withEntry("sealed.v1.k1." + body[:len(body)/2]), want: sealedstore.ErrCannotOpen},
		{name: "shorter than a nonce", stored: withEntry("sealed.v1.k1.AAAA"), want: sealedstore.ErrCannotOpen},
		{name: "empty ciphertext", stored: withEntry("sealed.v1.k1."), want: sealedstore.ErrCannotOpen},
		{name: "huge", stored: withEntry("sealed.v1.k1." + strings.Repeat("A", 5<<20)), want: sealedstore.ErrCannotOpen},
		{name: "not base64url", stored: withEntry("sealed.v1.k1." + body[:8] + "!+/=" + body[12:]), want: sealedstore.ErrCannotOpen},
		{name: "no key id", stored: withEntry("sealed.v1."), want: sealedstore.ErrCannotOpen},
		{name: "invalid key id", stored: withEntry("sealed.v1.k 1/x." + body), want: sealedstore.ErrCannotOpen},
		{name: "hash of another refresh token", stored: &oauth2.Token{AccessToken: good.AccessToken, RefreshToken: "sha256.AAAA"}, want: sealedstore.ErrCannotOpen},
		{name: "hash missing", stored: &oauth2.Token{AccessToken: good.AccessToken}, want: sealedstore.ErrCannotOpen},
		{name: "plain token", stored: secretToken(), want: sealedstore.ErrNotSealed},
		{name: "plain refresh token only", stored: &oauth2.Token{RefreshToken: "rt-SECRET-refresh"}, want: sealedstore.ErrNotSealed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			identity, readKeys := cmpOr(tc.identity, "alice"), tc.keys
			if readKeys == nil {
				readKeys = keys
			}
			mem := refreshtokentest.NewMemoryStore(nil, 0)
			mem.Put(tc.stored)
			tok, err := sealedstore.New(mem, identity, readKeys).Load(context.Background())
			if !errors.Is(err, tc.want) {
				t.Fatalf("Load of a %s = %v, %v; want an error wrapping %v", tc.name, tok, err, tc.want)
			}
			if tok != nil {
				t.Errorf("Load of a %s returned a token with its error", tc.name)
			}
			msg := err.Error()
			if l := leaks(msg, append(secrets, good.AccessToken, body[:16])...); len(l) > 0 {
				t.Errorf("error %q holds %q", msg, l)
			}
			if len(msg) > 400 {
				t.Errorf("error is %d bytes; want a short message", len(msg))
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestKeyErrors: bad keys and keyrings are refused, with no key bytes in
// the message.
func TestKeyErrors(t *testing.T) {
	k1, _ := newKey(t, "k1")
	k1again, _ := newKey(t, "k1")
	short := []byte("0123456789abcdef0123456789abcde") // 31 bytes
	if _, err := sealedstore.AESKey("k1", short); err == nil || strings.Contains(err.Error(), string(short)) {
		t.Errorf("AESKey of a 31-byte key = %v; want an error without the key", err)
	}
	for _, id := range []string{"", "k.1", "k 1", "ключ", strings.Repeat("k", 65), "k\x00"} {
		if _, err := sealedstore.AESKey(id, make([]byte, 32)); err == nil {
			t.Errorf("AESKey(%q, ...) = nil error; want the id refused", id)
		}
	}
	if _, err := sealedstore.AESKey(strings.Repeat("k", 64), make([]byte, 32)); err != nil {
		t.Errorf("AESKey with a 64-character id = %v", err)
	}
	for name, keys := range map[string][]sealedstore.Key{
		"a nil current key":    {nil},
		"a nil old key":        {k1, nil},
		"two keys with one id": {k1, k1again},
		"a key with a bad id":  {k1, badIDKey{k1}},
	} {
		if _, err := sealedstore.NewKeyring(keys[0], keys[1:]...); err == nil {
			t.Errorf("NewKeyring with %s = nil error", name)
		}
	}
	// A Keyring not made by NewKeyring has no key to seal with: New
	// refuses it at once, not at the first Save of a rotated token.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("New with a zero Keyring did not panic")
			}
		}()
		sealedstore.New(refreshtokentest.NewMemoryStore(nil, 0), "user-1", &sealedstore.Keyring{})
	}()
}

// badIDKey is a key whose id has a dot, as an application's key might.
type badIDKey struct{ sealedstore.Key }

func (badIDKey) ID() string { return "kms.key.1" }

// TestNoKeyInStrings: printing a key, a keyring or a store shows ids, no
// key bytes, and not the inner store's token.
func TestNoKeyInStrings(t *testing.T) {
	k1, b1 := newKey(t, "k1")
	k2, b2 := newKey(t, "k2")
	keys := ring(t, k2, k1)
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	st := sealedstore.New(mem, "user-1", keys)
	if err := st.Save(context.Background(), secretToken()); err != nil {
		t.Fatal(err)
	}
	for _, v := range []any{k1, keys, st} {
		for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
			s := fmt.Sprintf(format, v)
			if l := leaks(s, string(b1), string(b2)); len(l) > 0 {
				t.Errorf("%s of a %T holds key bytes: %s", format, v, s)
			}
			if l := leaks(s, append(secrets, mem.Stored().AccessToken)...); len(l) > 0 {
				t.Errorf("%s of a %T holds %q", format, v, l)
			}
		}
	}
	if got, want := fmt.Sprint(keys), `sealedstore.Keyring{current "k2", old ["k1"]}`; got != want {
		t.Errorf("Keyring = %s, want %s", got, want)
	}
}

// TestLargestTokenSeals: a token as large as a source can be given (it
// reads at most 1 MiB of a token endpoint's answer) seals, saves and
// opens, in memory and in a file: the bounds of sealedstore and filestore
// refuse no rotated token.
func TestLargestTokenSeals(t *testing.T) {
	k1, _ := newKey(t, "k1")
	keys := ring(t, k1)
	tok := &oauth2.Token{AccessToken: strings.Repeat("e", 1<<20), RefreshToken: "rt-large"}
	for name, inner := range map[string]refreshtoken.Store{
		"MemoryStore": refreshtokentest.NewMemoryStore(nil, 0),
		"filestore":   filestore.New(filepath.Join(t.TempDir(), "token.json")),
	} {
		st := sealedstore.New(inner, "user-1", keys)
		if err := st.Save(context.Background(), tok); err != nil {
			t.Fatalf("%s: Save of a 1 MiB token = %v", name, err)
		}
		if got, err := st.Load(context.Background()); err != nil || got.AccessToken != tok.AccessToken {
			t.Errorf("%s: Load of a sealed 1 MiB token = %v, %v; want it", name, got != nil, err)
		}
	}
}
