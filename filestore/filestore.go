// Package filestore keeps a refreshtoken source's token in a JSON file:
// a [refreshtoken.Store] for a single process, such as a command-line tool
// or a cron job, that must not lose a rotated refresh token at exit nor
// refresh at every start.
//
// The file is written atomically: a temporary file in the same directory
// is written, synced, and renamed over the old one, and the directory is
// synced. Whenever the writing process is killed, the file holds either the
// old token or the new one, never a mix.
//
// The file has mode 0600. Since it holds a refresh token, Load and Save
// refuse anything but a regular file (a directory, a FIFO, a device), a
// file that another user owns, and one that other users can read or write.
// On Windows, which has no such owner and mode, the file's ACL, inherited
// from its directory, protects it, and only its type is checked. Whoever
// else can write to the file's directory can replace or delete the file:
// keep it in a directory that only the user can write to.
//
// If the path is a symbolic link, the Store uses the file the link leads
// to, as with a Kubernetes secret volume or a token kept on another mount:
// Save writes the new file in that file's directory and renames it over
// that file, and the link stays. The Store refuses a link to a file that
// does not exist (Save does not create it), a loop of links, and a link that
// neither the user nor the owner of its directory owns (the rule of Linux's
// fs.protected_symlinks), which another user could have planted in a
// shared directory to direct a Save onto another of the user's files.
//
// A Store does not lock the file against other processes: several processes
// sharing one refresh token need a shared store (see refreshtoken.Store).
package filestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/internal/atomicfile"
)

// Store is a [refreshtoken.Store] in one file. Its methods are safe for
// concurrent use: Saves are serialised, and the file always holds one whole
// token. The order of tokens is the TokenSource's to keep (it saves one at
// a time, in order).
type Store struct {
	path string
	mu   sync.Mutex // serialises Save
}

// New returns a Store that keeps the token in the file at path. The file
// and its directory are created at the first Save (the directory with mode
// 0700).
func New(path string) *Store {
	return &Store{path: path}
}

// record is the file's content: the token's fields, and the extras that
// Token.Extra serves: two response fields and what the source knows of the
// refresh token's lifetime.
type record struct {
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	ExpiresIn    int64     `json:"expires_in,omitempty"` // the lifetime, with which Expiry dates the token
	IDToken      string    `json:"id_token,omitempty"`
	Scope        string    `json:"scope,omitempty"`
	// What the source knows of the refresh token's lifetime: the extras
	// refreshtoken.ExtraRefreshTokenExpiry and ExtraRefreshTokenFamily.
	RefreshExpiry string `json:"refresh_token_expiry,omitempty"`
	RefreshFamily string `json:"refresh_token_family_issued,omitempty"`
	// The thumbprint of the DPoP key the refresh token is bound to: the
	// extra refreshtoken.ExtraDPoPThumbprint.
	DPoPThumbprint string `json:"dpop_jkt,omitempty"`
}

// maxFile bounds what Load reads, and so what Save writes: a file that
// Load would refuse is never written in place of one it reads. A token
// file is a few kilobytes, yet the bound is above what a source can be
// given (it reads at most 1 MiB of a token endpoint's answer), sealed by
// sealedstore (up to 4 MiB) or written with JSON's escapes (up to six
// bytes for one), so that no rotated token is refused here.
const maxFile = 8 << 20

// Load returns the stored token, or nil if there is nothing at the path.
// It returns an error for a file that the Store refuses (see the package
// documentation).
func (s *Store) Load(context.Context) (*oauth2.Token, error) {
	path, fi, err := s.file()
	if err != nil || fi == nil {
		return nil, err
	}
	// Checked before Open, since opening a FIFO would block, and after,
	// since the file opened is the one read.
	if err := check(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	if err := check(path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	var r record
	if len(b) > maxFile || json.Unmarshal(b, &r) != nil {
		// Not the content, nor the decoder's error, which may quote it.
		return nil, fmt.Errorf("filestore: %s is not a token file (%d bytes); remove it and sign in again", path, len(b))
	}
	tok := &oauth2.Token{AccessToken: r.AccessToken, TokenType: r.TokenType, RefreshToken: r.RefreshToken, Expiry: r.Expiry, ExpiresIn: r.ExpiresIn}
	extra := map[string]any{}
	if r.IDToken != "" {
		extra["id_token"] = r.IDToken
	}
	if r.Scope != "" {
		extra["scope"] = r.Scope
	}
	if r.RefreshExpiry != "" {
		extra["refresh_token_expiry"] = r.RefreshExpiry
	}
	if r.RefreshFamily != "" {
		extra["refresh_token_family_issued"] = r.RefreshFamily
	}
	if r.DPoPThumbprint != "" {
		extra["dpop_jkt"] = r.DPoPThumbprint
	}
	return tok.WithExtra(extra), nil
}

// Save replaces the stored token with tok, atomically. It returns an error
// for a file that the Store refuses (see the package documentation).
func (s *Store) Save(_ context.Context, tok *oauth2.Token) error {
	r := record{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry, ExpiresIn: tok.ExpiresIn}
	r.IDToken, _ = tok.Extra("id_token").(string)
	r.Scope, _ = tok.Extra("scope").(string)
	r.RefreshExpiry, _ = tok.Extra("refresh_token_expiry").(string)
	r.RefreshFamily, _ = tok.Extra("refresh_token_family_issued").(string)
	r.DPoPThumbprint, _ = tok.Extra("dpop_jkt").(string)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	if len(b)+1 > maxFile {
		return fmt.Errorf("filestore: refusing to save a token file of %d bytes, over the %d that Load reads", len(b)+1, maxFile)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path, fi, err := s.file()
	if err != nil {
		return err
	}
	if fi != nil {
		if err := check(path, fi); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("filestore: saving %s: %w", path, err)
	}
	return nil
}

// file returns the file the Store uses, the path or the end of a symbolic
// link there, and its FileInfo, nil if there is nothing at the path.
func (s *Store) file() (string, fs.FileInfo, error) {
	fi, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s.path, nil, nil
	case err != nil:
		return "", nil, fmt.Errorf("filestore: %w", err)
	case fi.Mode().Type() != fs.ModeSymlink:
		return s.path, fi, nil
	}
	if err := checkLink(s.path, fi); err != nil {
		return "", nil, err
	}
	target, err := filepath.EvalSymlinks(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		dest, _ := os.Readlink(s.path)
		return "", nil, fmt.Errorf("filestore: %s is a symbolic link to %s, which does not exist", s.path, dest)
	}
	if err != nil {
		return "", nil, fmt.Errorf("filestore: following the symbolic link %s: %w", s.path, err)
	}
	if fi, err = os.Lstat(target); err != nil {
		return "", nil, fmt.Errorf("filestore: %w", err)
	}
	return target, fi, nil
}

// checkLink refuses a symbolic link that neither this user nor the owner of
// its directory owns.
func checkLink(path string, fi fs.FileInfo) error {
	uid, ok := owner(fi)
	if !ok || uid == os.Getuid() {
		return nil
	}
	if di, err := os.Stat(filepath.Dir(path)); err == nil {
		if dirUID, ok := owner(di); ok && dirUID == uid {
			return nil
		}
	}
	return fmt.Errorf("filestore: %s is a symbolic link owned by another user (uid %d); refusing to follow it", path, uid)
}

// check refuses a file that the Store must neither read nor replace.
func check(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("filestore: %s is not a regular file", path)
	}
	if uid, ok := owner(fi); ok && uid != os.Getuid() {
		return fmt.Errorf("filestore: %s is owned by another user (uid %d, not %d); a token file must be the user's own", path, uid, os.Getuid())
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return fmt.Errorf("filestore: %s holds a refresh token but has mode %#o, open to other users; run: chmod 600 %s", path, perm, path)
	}
	return nil
}
