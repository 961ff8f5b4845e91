package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// binary is the command, built once for the tests: they run it as a user
// would, as a process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "refreshtoken-cmd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "refreshtoken")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs the binary against srv with state in dir.
type cli struct {
	t     *testing.T
	srv   *refreshtokentest.Server
	dir   string
	state string
}

func newCLI(t *testing.T, cfg refreshtokentest.Config) *cli {
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	return &cli{t: t, srv: srv, dir: dir, state: filepath.Join(dir, "state.json")}
}

// run runs the binary with args (and -state), stdin, and the environment
// that configures it; it returns stdout, stderr and the exit status.
func (c *cli) run(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	if len(args) > 0 && args[0] == "token" {
		args = append([]string{"token", "-state", c.state}, args[1:]...)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(),
		"REFRESHTOKEN_TOKEN_URL="+c.srv.TokenURL,
		"REFRESHTOKEN_CLIENT_ID=test-client",
		"REFRESHTOKEN_CLIENT_SECRET=test-secret",
		"XDG_CONFIG_HOME="+c.dir, "HOME="+c.dir)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// mustRun runs the binary and fails the test unless it exits 0.
func (c *cli) mustRun(stdin string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(stdin, args...)
	if code != 0 {
		c.t.Fatalf("refreshtoken %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return strings.TrimSpace(out)
}

func TestTokenCachedAcrossInvocations(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	first := c.mustRun(c.srv.NewRefreshToken("openid"), "token", "-refresh-token-file", "-")
	if !strings.HasPrefix(first, "at-") {
		t.Fatalf("printed %q, want an access token", first)
	}
	if got := c.srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
	for range 3 {
		if got := c.mustRun("", "token"); got != first {
			t.Errorf("second call printed %q, want the stored token %q", got, first)
		}
	}
	if got := c.srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1: calls within the lifetime make none", got)
	}
	fi, err := os.Stat(c.state)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
}

// TestRotationPersisted: every invocation that refreshes saves the rotated
// refresh token, and the next one uses it: no reuse across many runs.
func TestRotationPersisted(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	rtFile := filepath.Join(c.dir, "rt")
	if err := os.WriteFile(rtFile, []byte(c.srv.NewRefreshToken("")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{c.mustRun("", "token", "-refresh-token-file", rtFile): true}
	for range 5 {
		tok := c.mustRun("", "token", "-refresh")
		if seen[tok] {
			t.Errorf("-refresh printed a token seen before")
		}
		seen[tok] = true
	}
	if got := c.srv.Stats(); got.Refreshes != 6 || got.ReuseEvents != 0 || got.ReplacedSent != 0 {
		t.Errorf("server stats = %+v, want 6 refreshes, no reuse", got)
	}
}

func TestRejectedExits3(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	rt := c.srv.NewRefreshToken("")
	c.mustRun(rt, "token", "-refresh-token-file", "-")
	_, stored := c.stored()
	c.srv.Revoke(stored)
	out, errOut, code := c.run("", "token", "-refresh")
	if code != 3 || out != "" || !strings.Contains(errOut, "Sign in again") || !strings.Contains(errOut, "invalid_grant") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 3 and what to do", code, out, errOut)
	}
	for _, secret := range []string{rt, stored, "test-secret"} {
		if strings.Contains(errOut, secret) {
			t.Errorf("stderr holds a secret: %q", errOut)
		}
	}
	// Signing in again restores service.
	c.mustRun(c.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
}

func TestOpenStateFileRefused(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	c.mustRun(c.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	if err := os.Chmod(c.state, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := c.run("", "token")
	if code != 1 || !strings.Contains(errOut, "chmod 600 "+c.state) {
		t.Errorf("exit %d, stderr %q; want 1 and the fix", code, errOut)
	}
}

func TestOutputs(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	access := c.mustRun(c.srv.NewRefreshToken("openid offline_access"), "token", "-refresh-token-file", "-")
	if id := c.mustRun("", "token", "-id-token"); strings.Count(id, ".") != 2 {
		t.Errorf("-id-token printed %q, want a JWT", id)
	}
	var redacted, shown map[string]any
	json.Unmarshal([]byte(c.mustRun("", "token", "-json")), &redacted)
	json.Unmarshal([]byte(c.mustRun("", "token", "-json", "-show-refresh-token")), &shown)
	if redacted["access_token"] != access || redacted["id_token"] == nil || redacted["scope"] != "openid offline_access" || redacted["expiry"] == nil {
		t.Errorf("-json = %v", redacted)
	}
	if rt, _ := redacted["refresh_token"].(string); !strings.Contains(rt, "redacted") {
		t.Errorf("-json shows the refresh token: %v", redacted)
	}
	if rt, _ := shown["refresh_token"].(string); !strings.HasPrefix(rt, "rt-") {
		t.Errorf("-json -show-refresh-token = %v, want the refresh token", shown)
	}
	if got := c.srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

// TestDefaultStatePath: without -state, the state lives under the user's
// configuration directory, per profile.
func TestDefaultStatePath(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	cmd := exec.Command(binary, "token", "-profile", "work", "-refresh-token-file", "-")
	cmd.Env = append(os.Environ(), "REFRESHTOKEN_TOKEN_URL="+c.srv.TokenURL, "REFRESHTOKEN_CLIENT_ID=test-client",
		"REFRESHTOKEN_CLIENT_SECRET=test-secret", "XDG_CONFIG_HOME="+c.dir, "HOME="+c.dir)
	cmd.Stdin = strings.NewReader(c.srv.NewRefreshToken(""))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "refreshtoken", "work.json")); err != nil {
		t.Errorf("state not under XDG_CONFIG_HOME: %v", err)
	}
}

func TestDemoCommand(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	out := c.mustRun("", "demo", "-workers", "4", "-duration", "300ms", "-lifetime", "1h")
	if !strings.Contains(out, "reuse events:             0") || !strings.Contains(out, "ok:") {
		t.Errorf("demo printed %q", out)
	}
}

// TestConcurrentInvocations: invocations at the same moment, each forcing a
// refresh, take turns on the state: every one refreshes with the latest
// refresh token, and none is taken for a reuse.
func TestConcurrentInvocations(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	c.mustRun(c.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	const n = 8
	codes := make(chan int, n)
	for range n {
		go func() {
			_, _, code := c.run("", "token", "-refresh")
			codes <- code
		}()
	}
	for range n {
		if code := <-codes; code != 0 {
			t.Errorf("an invocation exited %d", code)
		}
	}
	if got := c.srv.Stats(); got.ReuseEvents != 0 || got.Refreshes != n+1 {
		t.Errorf("server stats = %+v, want %d refreshes and no reuse", got, n+1)
	}
}
