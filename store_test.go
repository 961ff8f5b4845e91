package refreshtoken_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// process is one run of a program that keeps its token in a file store.
func process(t *testing.T, srv *refreshtokentest.Server, clock *fakeClock, path, refreshToken string) *refreshtoken.TokenSource {
	t.Helper()
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: refreshToken},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0), refreshtoken.WithStore(filestore.New(path)),
		refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil)))
	t.Cleanup(func() { ts.Close() })
	return ts
}

func stored(t *testing.T, path string) *oauth2.Token {
	t.Helper()
	tok, err := filestore.New(path).Load(context.Background())
	if err != nil || tok == nil {
		t.Fatalf("stored token: %v, %v", tok, err)
	}
	return tok
}

// TestStoreAcrossRestarts: a restarted process uses the stored token while
// it is fresh, with no request, and refreshes with the stored (rotated)
// refresh token, not the one in its configuration.
func TestStoreAcrossRestarts(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token.json")
	configured := srv.NewRefreshToken("openid")

	first := mustToken(t, process(t, srv, clock, path, configured))
	if got := stored(t, path); got.AccessToken != first.AccessToken || got.RefreshToken != first.RefreshToken || got.Extra("id_token") == nil {
		t.Errorf("stored %+v, want the token handed out, with its id_token", got)
	}

	clock.Add(30 * time.Minute) // a restart within the token's lifetime
	if tok := mustToken(t, process(t, srv, clock, path, configured)); tok.AccessToken != first.AccessToken {
		t.Errorf("restarted process got %q, want the stored token", tok.AccessToken)
	}
	if got := srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1: no request at a restart", got)
	}

	for i := range 5 { // restarts after expiry: the rotated token must be used
		clock.Add(time.Hour)
		ts := process(t, srv, clock, path, configured)
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mustToken(t, ts)
			}()
		}
		wg.Wait()
		tok := mustToken(t, ts)
		if got := stored(t, path); got.RefreshToken != tok.RefreshToken || got.AccessToken != tok.AccessToken {
			t.Errorf("restart %d: stored token is not the one in use", i)
		}
	}
	if got := srv.Stats(); got.Refreshes != 6 || got.ReuseEvents != 0 || got.ReplacedSent != 0 {
		t.Errorf("server stats = %+v, want 6 refreshes, no reuse", got)
	}
}

// breakable is a store path whose directory can be replaced by a regular
// file, so that saving there fails for real, and then repaired.
type breakable struct {
	t    *testing.T
	dir  string
	path string
}

func newBreakable(t *testing.T) *breakable {
	dir := filepath.Join(t.TempDir(), "state")
	return &breakable{t: t, dir: dir, path: filepath.Join(dir, "token.json")}
}

func (b *breakable) brk(*http.Request) {
	if err := os.WriteFile(b.dir, nil, 0o600); err != nil {
		b.t.Error(err)
	}
}

func (b *breakable) repair() {
	if err := os.Remove(b.dir); err != nil {
		b.t.Fatal(err)
	}
}

// savesFailAtFirst returns a server, a store path and a source whose first
// refresh loads an empty store, and whose Save of that refresh fails: the
// directory breaks while the request is at the server.
func savesFailAtFirst(t *testing.T, clock *fakeClock) (*refreshtokentest.Server, *breakable, *refreshtoken.TokenSource) {
	b := newBreakable(t)
	var once sync.Once
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, OnTokenRequest: func(r *http.Request) { once.Do(func() { b.brk(r) }) }})
	t.Cleanup(srv.Close)
	return srv, b, process(t, srv, clock, b.path, srv.NewRefreshToken(""))
}

// TestStoreSaveFails: a token that cannot be saved is still used; the
// callers of the refresh get ErrNotSaved; the Save is retried after a
// back-off, with no new request; a later refresh saves its own token.
func TestStoreSaveFails(t *testing.T) {
	clock := newFakeClock(t0)
	srv, b, ts := savesFailAtFirst(t, clock)
	path, repair := b.path, b.repair

	_, err := ts.Token()
	if !errors.Is(err, refreshtoken.ErrNotSaved) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Token() error = %v, want ErrNotSaved wrapping the store's error", err)
	}
	tok := mustToken(t, ts) // in use all the same
	if !errors.Is(ts.Err(), refreshtoken.ErrNotSaved) {
		t.Errorf("Err() = %v, want ErrNotSaved while the Save is pending", ts.Err())
	}
	if got := srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}

	repair()
	clock.Add(time.Second) // past the first back-off (at most 1 s): the Save is retried
	mustToken(t, ts)
	eventually(t, "the retried Save", func() bool {
		got, err := filestore.New(path).Load(context.Background())
		return err == nil && got != nil && got.RefreshToken == tok.RefreshToken
	})
	if got := srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1: retrying a Save sends nothing", got)
	}
	eventually(t, "Err() to clear", func() bool { return ts.Err() == nil })

	clock.Add(time.Hour) // the next refresh is saved as usual
	next := mustToken(t, ts)
	if got := stored(t, path); got.RefreshToken != next.RefreshToken {
		t.Error("the refreshed token was not saved")
	}
	if got := srv.Stats(); got.Refreshes != 2 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want 2 refreshes, no reuse", got)
	}
}

// TestStoreLoadFails: when the store cannot be read, nothing is sent: the
// stored refresh token may be newer than the configured one, and sending
// the configured one could be a reuse.
func TestStoreLoadFails(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token.json")
	if err := filestore.New(path).Save(context.Background(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := process(t, srv, clock, path, "rt-configured")
	if _, err := ts.Token(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("Token() error = %v, want the store's error naming the fix", err)
	}
	if got := srv.Stats().TokenRequests; got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
	// Fixed, and past the back-off: the stored refresh token is used.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Second)
	mustToken(t, ts)
	if got := srv.Stats(); got.Refreshes != 1 || got.Rejected != 0 {
		t.Errorf("server stats = %+v, want one refresh with the stored token", got)
	}
}

// TestSetTokenSaves: a token set after a new sign-in is saved, and
// supersedes what was stored.
func TestSetTokenSaves(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token.json")
	old := srv.NewRefreshToken("")
	ts := process(t, srv, clock, path, old)
	mustToken(t, ts)
	srv.Revoke(stored(t, path).RefreshToken)
	fresh := srv.NewRefreshToken("")
	if err := ts.SetToken(&oauth2.Token{RefreshToken: fresh}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, path).RefreshToken; got != fresh {
		t.Errorf("stored refresh token is not the one set")
	}
	tok := mustToken(t, ts)
	if got := stored(t, path).RefreshToken; got != tok.RefreshToken {
		t.Errorf("stored refresh token is not the rotated one")
	}
}

// TestStoreKeepsNewerCachedToken: a store that holds only a refresh token
// does not take away the valid access token New was given.
func TestStoreKeepsNewerCachedToken(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token.json")
	if err := filestore.New(path).Save(context.Background(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Fatal(err)
	}
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{AccessToken: "at-given", RefreshToken: "rt-configured", Expiry: t0.Add(time.Hour)},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0), refreshtoken.WithStore(filestore.New(path)))
	defer ts.Close()
	srv.Inject(1, refreshtokentest.Fault{Status: 503})
	clock.Set(t0.Add(59 * time.Minute)) // stale: the refresh loads the store, then fails
	mustToken(t, ts)
	eventually(t, "the failed refresh", func() bool { return ts.Err() != nil })
	if tok := mustToken(t, ts); tok.AccessToken != "at-given" {
		t.Errorf("Token() = %q, want the given token, still valid", tok.AccessToken)
	}
	clock.Add(2 * time.Second) // past the back-off: the stored refresh token is used
	eventually(t, "the refresh", func() bool { return mustToken(t, ts).AccessToken != "at-given" })
	if got := srv.Stats(); got.Refreshes != 1 || got.Rejected != 1 {
		t.Errorf("server stats = %+v, want one failed and one good refresh with the stored token", got)
	}
}

// TestPendingSaveDoesNotRestoreRejectedToken: a token dropped after a 401
// while its Save was pending is saved, but not handed out again.
func TestPendingSaveDoesNotRestoreRejectedToken(t *testing.T) {
	clock := newFakeClock(t0)
	_, b, ts := savesFailAtFirst(t, clock)
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() error = %v, want ErrNotSaved", err)
	}
	rejected := mustToken(t, ts)
	b.repair()
	ts.InvalidateToken(rejected) // the API answered 401
	clock.Add(time.Second)
	if tok := mustToken(t, ts); tok.AccessToken == rejected.AccessToken {
		t.Error("the rejected token was handed out again")
	}
	if got := stored(t, b.path); got.AccessToken == rejected.AccessToken {
		t.Error("the store holds the rejected token, not the new one")
	}
	if err := ts.Close(); err != nil {
		t.Errorf("Close() = %v, want nil: nothing pending", err)
	}
}

// TestCloseReportsUnsavedToken: Close tries a pending Save once more and
// says if it fails.
func TestCloseReportsUnsavedToken(t *testing.T) {
	clock := newFakeClock(t0)
	_, b, ts := savesFailAtFirst(t, clock)
	ts.Token()
	if err := ts.Close(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Errorf("Close() = %v, want ErrNotSaved", err)
	}
	if err := ts.Flush(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Errorf("Flush() after Close = %v, want ErrNotSaved: still pending", err)
	}
	b.repair()
	if err := ts.Flush(); err != nil {
		t.Errorf("Flush() once the store is repaired = %v", err)
	}
	if got := stored(t, b.path); got.RefreshToken == "" {
		t.Error("the token was not saved")
	}
}

// TestSetTokenSaveFails: a token given to SetToken that cannot be saved is
// saved later, by Flush.
func TestSetTokenSaveFails(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	b := newBreakable(t)
	b.brk(nil)
	ts := process(t, srv, clock, b.path, "")
	rt := srv.NewRefreshToken("")
	if err := ts.SetToken(&oauth2.Token{RefreshToken: rt}); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken() = %v, want ErrNotSaved", err)
	}
	b.repair()
	if err := ts.Flush(); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	if got := stored(t, b.path).RefreshToken; got != rt {
		t.Error("the refresh token given to SetToken was not saved")
	}
	mustToken(t, ts)
}

// TestStoredTokenKeepsLifetime: a restarted process knows the lifetime of
// a stored short-lived token (the store keeps expires_in), so its early
// window is clamped to half that lifetime as for a fetched token, and a
// 60 s token stored 5 s ago is fresh, not due at once.
func TestStoredTokenKeepsLifetime(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, Lifetime: time.Minute})
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token.json")
	rt := srv.NewRefreshToken("")
	first := mustToken(t, process(t, srv, clock, path, rt))
	if got := stored(t, path).ExpiresIn; got != 60 {
		t.Errorf("stored ExpiresIn = %d, want 60", got)
	}

	clock.Add(5 * time.Second)
	if tok := mustToken(t, process(t, srv, clock, path, rt)); tok.AccessToken != first.AccessToken {
		t.Errorf("restarted process got %q, want the stored token", tok.AccessToken)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("token requests = %d, want 1: the stored token is fresh for 25 s more", n)
	}
}
