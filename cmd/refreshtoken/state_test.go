package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// TestUnboundStateRefused: a token with no record of its server (an
// interrupted new session, or an older state) is not sent anywhere.
func TestUnboundStateRefused(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	if err := os.Remove(e.state + ".meta"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := e.run("", "token", "-refresh")
	if code != 2 || !strings.Contains(errOut, "does not say which server") || !strings.Contains(errOut, "-refresh-token-file") {
		t.Errorf("exit %d, stderr %q; want 2 and how to give the token again", code, errOut)
	}
	oneMessage(t, errOut)
	if got := e.requests(); got != 1 {
		t.Errorf("token requests = %d, want 1 (the first run's)", got)
	}
}

// TestRejectionRecorded: a refresh token the server rejected is not sent
// again: the next run exits 3 without a request, until a new refresh token
// is given. The state keeps a fingerprint, not the token.
func TestRejectionRecorded(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	rt := e.stored()
	e.srv.Revoke(rt)
	for i, want := range []string{"the server rejected the refresh token", "rejected the stored refresh token before"} {
		out, errOut, code := e.run("", "token", "-refresh")
		if code != 3 || out != "" || !strings.Contains(errOut, want) || !strings.Contains(errOut, "Sign in again: run refreshtoken login") || !strings.Contains(errOut, "-refresh-token-file") {
			t.Errorf("run %d: exit %d, stdout %q, stderr %q; want 3 and %q", i+1, code, out, errOut, want)
		}
		oneMessage(t, errOut)
		noSecret(t, errOut, rt, "test-secret")
		if got := e.requests(); got != 2 {
			t.Errorf("run %d: token requests = %d, want 2: the rejected token is sent once", i+1, got)
		}
	}
	// Without -refresh too: the stored access token is not handed out.
	if _, _, code := e.run("", "token"); code != 3 || e.requests() != 2 {
		t.Errorf("exit %d, %d requests; want 3 and no request", code, e.requests())
	}
	meta, err := os.ReadFile(e.state + ".meta")
	if err != nil || !strings.Contains(string(meta), fingerprint(rt)) || strings.Contains(string(meta), rt) {
		t.Errorf("meta file %q (%v): want the fingerprint %s, not the token", meta, err, fingerprint(rt))
	}
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	if got := e.requests(); got != 3 {
		t.Errorf("token requests = %d, want 3: a new refresh token is used", got)
	}
}

// TestRejectionByOtherCodesNotRecorded: only invalid_grant rejects the
// refresh token; after another code the next run tries again.
func TestRejectionByOtherCodesNotRecorded(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	e.srv.Inject(1, refreshtokentest.Fault{Status: 403, Error: "access_denied"})
	if _, errOut, code := e.run("", "token", "-refresh"); code != 1 || !strings.Contains(errOut, "denied access") {
		t.Errorf("exit %d, stderr %q; want 1", code, errOut)
	}
	e.mustRun("", "token", "-refresh")
	if got := e.requests(); got != 3 {
		t.Errorf("token requests = %d, want 3", got)
	}
}

// TestRejectionInEarlyWindowRecorded: a stored token in its early window
// is refreshed, and if the server rejects the refresh token the stored
// access token, still valid, is printed (exit 0) with a warning; the
// rejection is recorded, so the next run sends nothing and exits 3.
func TestRejectionInEarlyWindowRecorded(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	tok := storedToken(t, e.state)
	// By the wall clock the command reads, the early window opens at most
	// DefaultEarlyRefresh less DefaultJitter before expiry, and the token
	// is handed out until 10 s before it: this leaves the run 75 s to
	// start. No ExpiresIn: the lifetime is unknown, the window unclamped.
	stale := *tok
	stale.Expiry = time.Now().Add(refreshtoken.DefaultEarlyRefresh - refreshtoken.DefaultJitter - 5*time.Second)
	stale.ExpiresIn = 0
	if err := filestore.New(e.state).Save(context.Background(), &stale); err != nil {
		t.Fatal(err)
	}
	e.srv.Revoke(tok.RefreshToken)

	out, errOut, code := e.run("", "token")
	if code != 0 || strings.TrimSpace(out) != tok.AccessToken {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and the stored access token", code, out, errOut)
	}
	for _, want := range []string{"refreshtoken token: warning: ", "invalid_grant", "session has ended", "refreshtoken login", "-refresh-token-file"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q: want %q", errOut, want)
		}
	}
	noSecret(t, errOut, tok.RefreshToken, tok.AccessToken, "test-secret")
	if got := e.requests(); got != 2 {
		t.Errorf("token requests = %d, want 2: the session, and the early refresh", got)
	}

	_, errOut, code = e.run("", "token")
	if code != 3 || !strings.Contains(errOut, "rejected the stored refresh token before") || !strings.Contains(errOut, "refreshtoken login") {
		t.Errorf("next run: exit %d, stderr %q; want 3 and how to sign in", code, errOut)
	}
	if got := e.requests(); got != 2 {
		t.Errorf("token requests = %d, want 2: the rejected refresh token is not sent again", got)
	}
}

// unwritable makes dir refuse new files until the test ends, with chmod,
// or, for root, whom modes do not stop, with chattr +i. It skips the test
// if neither works here.
func unwritable(t *testing.T, dir string) {
	t.Helper()
	if os.Getuid() == 0 {
		if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
			t.Skipf("running as root, and chattr +i fails: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", dir).Run() })
	} else {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
	}
	if f, err := os.CreateTemp(dir, "probe"); err == nil {
		f.Close()
		os.Remove(f.Name())
		t.Skip("the directory still takes new files")
	}
}

// TestUnwritableStateDirSendsNothing: if the rotated refresh token could
// not be saved, the run would lose the session; so nothing is sent.
func TestUnwritableStateDirSendsNothing(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.state = filepath.Join(e.dir, "profile", "state.json")
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	rt := e.stored()
	unwritable(t, filepath.Dir(e.state))
	_, errOut, code := e.run("", "token", "-refresh")
	if code != 1 || !strings.Contains(errOut, "cannot keep the state in "+filepath.Dir(e.state)) || !strings.Contains(errOut, "Nothing was sent") {
		t.Errorf("exit %d, stderr %q; want 1 and what to do", code, errOut)
	}
	oneMessage(t, errOut)
	if got := e.requests(); got != 1 {
		t.Errorf("token requests = %d, want 1: nothing sent", got)
	}
	if newest, alive := e.srv.Newest(rt); newest != rt || !alive {
		t.Errorf("the stored refresh token was rotated or revoked: the session is lost")
	}
}

// TestReadOnlyStateFileSendsNothing: a state file the user made read-only
// would be replaced by a rename; it is refused before anything is sent.
func TestReadOnlyStateFileSendsNothing(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	if err := os.Chmod(e.state, 0o400); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := e.run("", "token", "-refresh")
	if code != 1 || !strings.Contains(errOut, "read-only") || !strings.Contains(errOut, "chmod 600 "+e.state) {
		t.Errorf("exit %d, stderr %q; want 1 and the fix", code, errOut)
	}
	if got := e.requests(); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

// TestStateDirCannotBeMade: a state (and lock file) directory that cannot
// be made is a message that says what to do, not a bare system error.
func TestStateDirCannotBeMade(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	file := filepath.Join(e.dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.state = filepath.Join(file, "sub", "state.json")
	_, errOut, code := e.run(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	if code != 1 || !strings.Contains(errOut, "cannot keep the state in "+filepath.Dir(e.state)) || !strings.Contains(errOut, "-state") {
		t.Errorf("exit %d, stderr %q; want 1 and what to do", code, errOut)
	}
	oneMessage(t, errOut)
	if got := e.requests(); got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
}

// TestStateBoundToServer: a stored refresh token is sent only to the
// server it came from; another token URL, client ID or audience sends
// nothing, and says how to use another profile.
func TestStateBoundToServer(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-", "-audience", "api")
	other := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer other.Close()
	tests := []struct {
		name string
		args []string
	}{
		{name: "token URL", args: []string{"-token-url", other.TokenURL, "-audience", "api"}},
		{name: "client ID", args: []string{"-client-id", "test-client-2", "-audience", "api"}},
		{name: "audience", args: []string{"-audience", "other-api"}},
		{name: "no audience", args: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := e.run("", append([]string{"token", "-refresh"}, tt.args...)...)
			if code != 2 || out != "" || !strings.Contains(errOut, "-profile") || !strings.Contains(errOut, "-refresh-token-file") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and how to use another profile", code, out, errOut)
			}
		})
	}
	if got := other.Stats().TokenRequests; got != 0 {
		t.Errorf("the other server got %d requests, want 0", got)
	}
	if got := e.srv.Stats().TokenRequests; got != 1 {
		t.Errorf("the server got %d requests, want 1 (the first run's)", got)
	}
	e.mustRun("", "token", "-refresh", "-audience", "api")
}
