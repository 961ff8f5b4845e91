package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/internal/atomicfile"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// A profile's state is two files and a lock:
//
//	<state>        the token, as package filestore keeps it (mode 0600),
//	               sealed by package sealedstore if a state key is given
//	<state>.meta   the server the token belongs to, and the fingerprint of
//	               a refresh token the server rejected for good
//	<state>.lock   taken by every invocation, so they run one at a time
//
// The token is sent only to the server recorded in the meta file. A new
// session removes the meta file, saves the token, then writes the meta
// file: an invocation interrupted in between leaves a token with no
// server, which is refused, never sent to the wrong server.

// binding is the server a state belongs to: its refresh token is sent to
// this token URL, for this client and audience, and nowhere else.
type binding struct {
	TokenURL string `json:"token_url"`
	ClientID string `json:"client_id"`
	Audience string `json:"audience,omitempty"`
}

// meta is the content of the meta file.
type meta struct {
	Server binding `json:"server"`
	// Rejected is the fingerprint of the refresh token the server
	// rejected for good, "" if none: that token is not sent again.
	Rejected string `json:"rejected,omitempty"`
}

// state is an open (locked) state. Its methods are for one goroutine.
type state struct {
	path   string             // the token file
	store  refreshtoken.Store // the file, sealed or plain (statekey.go)
	unlock func()
}

// maxMeta bounds what is read of a meta file: it is a few hundred bytes.
const maxMeta = 64 << 10

// Errors of a state's check, for the messages in errors.go.
var (
	errNoToken  = errors.New("no refresh token stored")
	errUnbound  = errors.New("the stored token does not say which server it belongs to")
	errRejected = errors.New("the stored refresh token was rejected before")
)

// mismatchError is a state that belongs to another server.
type mismatchError struct {
	path           string
	field          string // the setting that differs: "token URL", "client ID" or "audience"
	stored, wanted string
}

func (e *mismatchError) Error() string {
	return fmt.Sprintf("%s belongs to another server: its %s is %q, not %q", e.path, e.field, e.stored, e.wanted)
}

// statePath returns the state file: file if it is set (-state), else the
// profile's under the user's configuration directory.
func statePath(file, profile string) (string, error) {
	if file != "" {
		return file, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no configuration directory (%v): set -state", err)
	}
	return filepath.Join(dir, "refreshtoken", profile+".json"), nil
}

// openState opens the state at path: it creates its directory (mode 0700)
// if needed, waits for the lock, and checks that the token can be saved
// there, before any refresh token is sent, so that a rotated one is not
// lost. With keys, the token is sealed for the server b (see statekey.go);
// without, a sealed one is refused. Close releases the lock.
func openState(path string, keys *sealedstore.Keyring, b binding) (*state, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &stateDirError{dir: dir, err: err}
	}
	unlock, err := lock(path + ".lock")
	if err != nil {
		return nil, &stateDirError{dir: dir, err: err}
	}
	s := &state{path: path, store: newStateStore(path, keys, b), unlock: unlock}
	if err := s.writable(); err != nil {
		unlock()
		return nil, err
	}
	return s, nil
}

// Close releases the state's lock.
func (s *state) Close() { s.unlock() }

// stateDirError is a state directory in which the state cannot be kept.
type stateDirError struct {
	dir string
	err error
}

func (e *stateDirError) Error() string {
	return fmt.Sprintf("cannot keep the state in %s: %v", e.dir, unwrapPath(e.err))
}

func (e *stateDirError) Unwrap() error { return e.err }

// unwrapPath returns the system error of a *fs.PathError, whose path the
// message gives already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// writable checks that a token can be saved: filestore replaces the file
// by renaming a new one over it, so the directory must take a new file; a
// file the user made read-only is refused too, rather than replaced.
func (s *state) writable() error {
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".check-*")
	if err != nil {
		return &stateDirError{dir: dir, err: err}
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return &stateDirError{dir: dir, err: err}
	}
	for _, p := range []string{s.path, s.metaPath()} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o200 == 0 {
			return fmt.Errorf("%s is read-only, so a new refresh token could not be saved; nothing was sent. Run: chmod 600 %s", p, p)
		}
	}
	return nil
}

func (s *state) metaPath() string { return s.path + ".meta" }

// Token returns the stored token, if it belongs to b and its refresh token
// was not rejected. Otherwise it returns errNoToken, errUnbound,
// errRejected or a *mismatchError, and the refresh token must not be sent.
func (s *state) Token(b binding) (*oauth2.Token, error) {
	tok, err := s.store.Load(context.Background())
	if err != nil {
		return nil, s.loadError(err, b)
	}
	if tok == nil || tok.RefreshToken == "" {
		return nil, fmt.Errorf("%w in %s", errNoToken, s.path)
	}
	m, err := s.readMeta()
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errUnbound
	}
	if err := m.Server.match(s.path, b); err != nil {
		return nil, err
	}
	if m.Rejected != "" && m.Rejected == fingerprint(tok.RefreshToken) {
		return nil, errRejected
	}
	return tok, nil
}

// match returns a *mismatchError if b is not the server stored.
func (stored binding) match(path string, b binding) error {
	for _, f := range []struct{ name, stored, wanted string }{
		{"token URL", stored.TokenURL, b.TokenURL},
		{"client ID", stored.ClientID, b.ClientID},
		{"audience", stored.Audience, b.Audience},
	} {
		if f.stored != f.wanted {
			if f.name == "token URL" {
				f.stored, f.wanted = redactURL(f.stored), redactURL(f.wanted)
			}
			return &mismatchError{path: path, field: f.name, stored: f.stored, wanted: f.wanted}
		}
	}
	return nil
}

// redactURL hides a password in a URL's user information, if any.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an invalid URL)"
	}
	return u.Redacted()
}

// NewSession stores tok, a new session's token (a refresh token, and an
// access token with its real Expiry if there is one), bound to the server
// b, in place of whatever the state held, for whichever server: the one
// entry point for a refresh token given by the user or got by signing in.
// It clears any recorded rejection.
func (s *state) NewSession(b binding, tok *oauth2.Token) error {
	if tok == nil || tok.RefreshToken == "" {
		return errors.New("the new session has no refresh token")
	}
	// The order keeps a token from being bound to the wrong server if
	// this is interrupted: no meta file (a token refused) until the new
	// token is saved.
	if err := os.Remove(s.metaPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := s.store.Save(context.Background(), tok); err != nil {
		return stateError(err)
	}
	return s.writeMeta(&meta{Server: b})
}

// RecordRejection records that the server rejected refreshToken for good,
// by its fingerprint, so that it is not sent again.
func (s *state) RecordRejection(refreshToken string) error {
	m, err := s.readMeta()
	if err != nil {
		return err
	}
	if m == nil {
		return errUnbound
	}
	m.Rejected = fingerprint(refreshToken)
	return s.writeMeta(m)
}

// Stored returns the stored token as it is, without checks, or nil.
func (s *state) Stored() (*oauth2.Token, error) {
	tok, err := s.store.Load(context.Background())
	if err != nil {
		if kerr := keyError(s.path, err); kerr != nil {
			return nil, kerr
		}
		return nil, stateError(err)
	}
	return tok, nil
}

// loadError explains a failed Load of a state that should belong to b. A
// state that cannot be read with the key given (or without one) is first
// checked against the server recorded beside it: a state of another
// server is a mismatch, which login -replace may replace.
func (s *state) loadError(err error, b binding) error {
	kerr := keyError(s.path, err)
	if kerr == nil {
		return stateError(err)
	}
	if m, merr := s.readMeta(); merr == nil && m != nil {
		if err := m.Server.match(s.path, b); err != nil {
			return err
		}
	}
	return kerr
}

// fingerprint identifies a refresh token without revealing it: the first 8
// hex digits of its SHA-256.
func fingerprint(refreshToken string) string {
	sum := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(sum[:4])
}

// readMeta returns the meta file's content, nil if there is none.
func (s *state) readMeta() (*meta, error) {
	p := s.metaPath()
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		// Not opened: a FIFO would block.
		return nil, fmt.Errorf("%s is not a regular file: remove it, and give the refresh token again", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMeta+1))
	if err != nil {
		return nil, err
	}
	var m meta
	if len(b) > maxMeta || json.Unmarshal(b, &m) != nil || m.Server.TokenURL == "" {
		return nil, fmt.Errorf("%s is damaged: remove it, and give the refresh token again", p)
	}
	return &m, nil
}

// writeMeta replaces the meta file, atomically and durably.
func (s *state) writeMeta(m *meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.metaPath(), append(b, '\n'))
}

// stateError drops the "filestore: " prefix of a filestore error: the
// command's messages have one prefix, and filestore's say what to do.
func stateError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "filestore: "))
}
