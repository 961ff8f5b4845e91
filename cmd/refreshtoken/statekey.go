package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// An encrypted state keeps its token sealed by package sealedstore, with a
// key from a file (-key-file) or the environment (REFRESHTOKEN_STATE_KEY):
// base64 of 32 random bytes, which keygen writes. Not the OS keyring: it
// needs a D-Bus Secret Service (or the macOS keychain, or Windows'
// credential store) that servers, containers, CI runners and SSH
// sessions lack, and a dependency; a key file works wherever the command
// does, and a secret manager can provide the variable.
//
// The sealed token's identity is the server it belongs to (token URL,
// client ID, audience, as in the meta file): its refresh token opens only
// for the server it was issued by, even if the meta file were changed, and
// a state copied to a profile of another server fails to open. The key's
// id is derived from the key, so a wrong key is named as such.

// maxKeyFile bounds what is read of a key file: a key is 45 bytes.
const maxKeyFile = 4 << 10

// stateKeys returns the keyring of the state key, from -key-file or the
// environment, nil if neither is set; and, with oldKeyFile, that key as an
// old one, for encrypt to move the state from.
func (c *common) stateKeys(getenv func(string) string, oldKeyFile string) (*sealedstore.Keyring, error) {
	var (
		key sealedstore.Key
		err error
	)
	switch {
	case c.keyFile != "":
		key, err = readKey(c.keyFile)
	case getenv("REFRESHTOKEN_STATE_KEY") != "":
		key, err = parseKey(getenv("REFRESHTOKEN_STATE_KEY"), "REFRESHTOKEN_STATE_KEY")
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var old []sealedstore.Key
	if oldKeyFile != "" {
		k, err := readKey(oldKeyFile)
		if err != nil {
			return nil, err
		}
		if k.ID() != key.ID() {
			old = append(old, k)
		}
	}
	return sealedstore.NewKeyring(key, old...)
}

// readKey reads a key file, which only its owner may read.
func readKey(path string) (sealedstore.Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the state key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the state key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &usageError{fmt.Sprintf("the state key %s is not a regular file", path)}
	}
	if ownedByOther(fi) {
		return nil, &usageError{fmt.Sprintf("the state key %s belongs to another user; make your own with refreshtoken keygen", path)}
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, &usageError{fmt.Sprintf("the state key %s has mode %#o, open to other users; run: chmod 600 %s", path, perm, path)}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading the state key: %w", err)
	}
	if len(b) > maxKeyFile {
		return nil, &usageError{fmt.Sprintf("the state key %s is not a key (over %d bytes); make one with refreshtoken keygen", path, maxKeyFile)}
	}
	return parseKey(string(b), path)
}

// parseKey decodes a key, base64 of 32 bytes, from where. Its id is the
// first 8 hex digits of a hash of it, which reveals nothing of it.
func parseKey(s, where string) (sealedstore.Key, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		// Neither the content nor the decoder's error, which may quote it.
		return nil, &usageError{fmt.Sprintf("the state key in %s is not base64 of 32 bytes; make one with refreshtoken keygen", where)}
	}
	sum := sha256.Sum256(append([]byte("refreshtoken state key id\x00"), b...))
	return sealedstore.AESKey("k"+hex.EncodeToString(sum[:4]), b)
}

// newStateStore returns the store of the token file at path: sealed with
// keys for the server b, or, with no keys, plain, refusing a sealed file.
func newStateStore(path string, keys *sealedstore.Keyring, b binding) refreshtoken.Store {
	if keys == nil {
		return plainStore{filestore.New(path)}
	}
	identity, _ := json.Marshal(b) // of strings: it cannot fail
	return sealedstore.New(filestore.New(path), string(identity), keys)
}

// errEncrypted is an encrypted state read without a key.
var errEncrypted = errors.New("the state is encrypted")

// plainStore is a state file without encryption. It refuses a sealed
// entry, whose "refresh token" is a hash that must not be sent.
type plainStore struct{ *filestore.Store }

func (s plainStore) Load(ctx context.Context) (*oauth2.Token, error) {
	tok, err := s.Store.Load(ctx)
	// sealedstore's entries start so (its format, version 1).
	if err == nil && tok != nil && strings.HasPrefix(tok.AccessToken, "sealed.") {
		return nil, errEncrypted
	}
	return tok, err
}

// keyStateError is a state that cannot be read with the key given (or
// without one): a usage error, whose cause errors.Is finds, and which
// login may replace (see saveLogin).
type keyStateError struct {
	usage *usageError
	cause error
}

func (e *keyStateError) Error() string   { return e.usage.msg }
func (e *keyStateError) Unwrap() []error { return []error{e.usage, e.cause} }

// keyError explains a state that cannot be read with the key given (or
// without one), for the server b, or returns nil if err is not one.
func keyError(path string, err error) error {
	msg := keyMessage(path, err)
	if msg == "" {
		return nil
	}
	return &keyStateError{usage: &usageError{msg}, cause: err}
}

// keyMessage is keyError's message, "" if err is not a key error.
func keyMessage(path string, err error) string {
	const how = " (-key-file FILE, or REFRESHTOKEN_STATE_KEY)"
	switch {
	case errors.Is(err, errEncrypted):
		return fmt.Sprintf("%s is encrypted: give its key%s; nothing was sent", path, how)
	case errors.Is(err, sealedstore.ErrNotSealed):
		return fmt.Sprintf("%s is not encrypted, but a state key was given%s; nothing was sent.\nEncrypt it with: refreshtoken encrypt (with the same settings and key), or run without the key", path, how)
	case errors.Is(err, sealedstore.ErrUnknownKey):
		return fmt.Sprintf("%s is encrypted with another key than the one given%s; nothing was sent.\nGive the key it was encrypted with (or, to move it to the new key: refreshtoken encrypt -old-key-file OLD)", path, how)
	case errors.Is(err, sealedstore.ErrCannotOpen):
		return fmt.Sprintf("%s cannot be decrypted for this server (-token-url, -client-id, -audience) with the key given: it was changed, or copied from another server's state; nothing was sent.\n%s", path, signInAgain)
	}
	return ""
}

// keygen writes a new state key to a new file, mode 0600.
func keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("refreshtoken keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("key-file", "", "the new key file (required; not overwritten)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if *file == "" || fs.NArg() > 0 {
		return report(stderr, "keygen", &usageError{"usage: refreshtoken keygen -key-file FILE"})
	}
	key := make([]byte, 32)
	rand.Read(key)
	f, err := os.OpenFile(*file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return report(stderr, "keygen", &usageError{fmt.Sprintf("%s exists: keygen does not replace a key, which would make its state unreadable", *file)})
	}
	if err != nil {
		return report(stderr, "keygen", err)
	}
	_, err = fmt.Fprintln(f, base64.StdEncoding.EncodeToString(key))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*file)
		return report(stderr, "keygen", err)
	}
	fmt.Fprintf(stdout, "Wrote a new state key to %s (mode 0600).\nUse it with -key-file %s on login, token, logout and encrypt. Keep a copy apart from the state and its backups (a password manager): without it the state cannot be read.\n", *file, *file)
	return 0
}

// encrypt seals the stored session with the state key: a plain state, to
// turn encryption on, or one sealed with -old-key-file, to change keys.
func encrypt(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var c common
	fs := flag.NewFlagSet("refreshtoken encrypt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs, getenv, "unused by encrypt")
	oldKeyFile := fs.String("old-key-file", "", "the key the state is encrypted with now, to move it to the new key (-key-file or REFRESHTOKEN_STATE_KEY)")
	c.timeout = time.Minute // the command sends nothing
	if err := c.parse(fs, args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return report(stderr, "encrypt", err)
	}
	if err := c.encrypt(stdout, getenv, *oldKeyFile); err != nil {
		return report(stderr, "encrypt", err)
	}
	return 0
}

func (c *common) encrypt(stdout io.Writer, getenv func(string) string, oldKeyFile string) error {
	keys, err := c.stateKeys(getenv, oldKeyFile)
	if err != nil {
		return err
	}
	if keys == nil {
		return &usageError{"no state key to encrypt with: give -key-file FILE (make one with refreshtoken keygen) or REFRESHTOKEN_STATE_KEY"}
	}
	path, err := statePath(c.state, c.profile)
	if err != nil {
		return err
	}
	b := c.binding()
	st, err := openState(path, keys, b)
	if err != nil {
		return err
	}
	defer st.Close()
	// The session is sealed for its server: it must be the one named.
	m, err := st.readMeta()
	switch {
	case err != nil:
		return err
	case m == nil:
		if tok, err := st.Stored(); err == nil && tok == nil {
			return fmt.Errorf("%w in %s", errNoToken, path)
		}
		return errUnbound
	}
	if err := m.Server.match(path, b); err != nil {
		return err
	}
	resealed, err := sealedstore.Reseal(context.Background(), st.store)
	if err != nil {
		return st.loadError(err, b)
	}
	if !resealed {
		if tok, err := st.Stored(); err == nil && tok == nil {
			return fmt.Errorf("%w in %s", errNoToken, path)
		}
		fmt.Fprintf(stdout, "%s is encrypted with this key already.\n", path)
		return nil
	}
	fmt.Fprintf(stdout, "Encrypted the session in %s. From now on, give the key to login, token and logout (-key-file, or REFRESHTOKEN_STATE_KEY).\n", path)
	return nil
}
