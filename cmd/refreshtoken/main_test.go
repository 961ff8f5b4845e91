package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	var state struct {
		RefreshToken string `json:"refresh_token"`
	}
	b, _ := os.ReadFile(c.state)
	json.Unmarshal(b, &state)
	c.srv.Revoke(state.RefreshToken)
	out, errOut, code := c.run("", "token", "-refresh")
	if code != 3 || out != "" || !strings.Contains(errOut, "Sign in again") || !strings.Contains(errOut, "invalid_grant") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 3 and what to do", code, out, errOut)
	}
	for _, secret := range []string{rt, state.RefreshToken, "test-secret"} {
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

func TestUsageErrors(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no command", args: nil, wantErr: "usage"},
		{name: "unknown command", args: []string{"print"}, wantErr: "unknown command"},
		{name: "unknown flag", args: []string{"token", "-bogus"}, wantErr: "flag provided but not defined"},
		{name: "refresh token as an argument", args: []string{"token", "rt-abc"}, wantErr: "never given as an argument"},
		{name: "nothing stored yet", args: []string{"token"}, wantErr: "no refresh token stored in " + c.state + " yet: run refreshtoken login (with the same -token-url, -client-id, -audience and -profile), or give a refresh token with -refresh-token-file"},
		{name: "both outputs", args: []string{"token", "-json", "-id-token"}, wantErr: "exclude each other"},
		{name: "no token URL", args: []string{"token", "-token-url", ""}, wantErr: "no token URL"},
		{name: "profile is a path", args: []string{"token", "-profile", "../x"}, wantErr: "-profile must be a name"},
		{name: "timeout not positive", args: []string{"token", "-timeout", "0s"}, wantErr: "-timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := c.run("", tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.wantErr)
			}
		})
	}
	if got := c.srv.Stats().TokenRequests; got != 0 {
		t.Errorf("token requests = %d, want 0", got)
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

// env is the environment of an in-process run: srv's client, state in dir.
type env struct {
	t     *testing.T
	srv   *refreshtokentest.Server
	dir   string
	state string
	vars  map[string]string
}

func newEnv(t *testing.T, cfg refreshtokentest.Config) *env {
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	return &env{t: t, srv: srv, dir: dir, state: filepath.Join(dir, "state.json"), vars: map[string]string{
		"REFRESHTOKEN_TOKEN_URL":     srv.TokenURL,
		"REFRESHTOKEN_CLIENT_ID":     "test-client",
		"REFRESHTOKEN_CLIENT_SECRET": "test-secret",
	}}
}

// run calls run in this process, with -state after "token"; it returns
// stdout, stderr and the exit status.
func (e *env) run(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	return e.runFrom(strings.NewReader(stdin), args...)
}

func (e *env) runFrom(stdin io.Reader, args ...string) (string, string, int) {
	e.t.Helper()
	if len(args) > 0 && args[0] == "token" {
		args = append([]string{"token", "-state", e.state}, args[1:]...)
	}
	var stdout, stderr bytes.Buffer
	code := run(args, stdin, &stdout, &stderr, func(k string) string { return e.vars[k] })
	return stdout.String(), stderr.String(), code
}

// stored returns the refresh token in the state file.
func (e *env) stored() string {
	e.t.Helper()
	var state struct {
		RefreshToken string `json:"refresh_token"`
	}
	b, err := os.ReadFile(e.state)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &state); err != nil {
		e.t.Fatal(err)
	}
	return state.RefreshToken
}

// requests returns the token requests the server has had.
func (e *env) requests() int { return e.srv.Stats().TokenRequests }

// noSecret fails the test if any of secrets shows in output.
func noSecret(t *testing.T, output string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(output, s) {
			t.Errorf("output shows a secret (%.6s...): %q", s, output)
		}
	}
}

// oneMessage fails the test unless errOut is the token command's message,
// with one prefix and none of the library's words for programs.
func oneMessage(t *testing.T, errOut string) {
	t.Helper()
	if !strings.HasPrefix(errOut, "refreshtoken token: ") {
		t.Errorf("stderr %q: want one prefix, refreshtoken token:", errOut)
	}
	for _, w := range []string{"refreshtoken: ", "filestore: ", "SetToken", "WithAllowHTTP", "next attempt not before", "TokenSource"} {
		if strings.Contains(errOut, w) {
			t.Errorf("stderr %q holds %q, meant for a program", errOut, w)
		}
	}
}

// mustRun runs and fails the test unless the run exits 0.
func (e *env) mustRun(stdin string, args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(stdin, args...)
	if code != 0 {
		e.t.Fatalf("refreshtoken %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return strings.TrimSpace(out)
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

// TestArgumentNotEchoed: an argument may be a pasted refresh token: it is
// shown nowhere, and the message says how to give a refresh token.
func TestArgumentNotEchoed(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	const secret = "v1.MSecretRefreshToken0123"
	for _, args := range [][]string{
		{"token", secret},
		{"token", "-json", secret},
		{"token", "-refresh-token-file", "-", secret},
		{secret},
		{"Token-" + secret},
	} {
		out, errOut, code := e.run("", args...)
		if code != 2 || !strings.Contains(errOut, "not shown: it may be a secret") {
			t.Errorf("%d args: exit %d, stderr %q; want 2 and not shown", len(args), code, errOut)
		}
		noSecret(t, out+errOut, secret)
		if args[0] == "token" && !strings.Contains(errOut, "-refresh-token-file -") {
			t.Errorf("stderr %q does not say how to give a refresh token", errOut)
		}
	}
	// A mistyped command is shown, to be corrected.
	if _, errOut, code := e.run("", "tokne"); code != 2 || !strings.Contains(errOut, `unknown command "tokne"`) {
		t.Errorf("exit %d, stderr %q; want the mistyped command shown", code, errOut)
	}
	if got := e.requests(); got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
}

// TestInvalidTokenURL: a token URL that is not an absolute https URL (or
// http to a loopback host) is a usage error; nothing is sent, and the URL,
// which may hold a pasted secret, is not shown.
func TestInvalidTokenURL(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	host := strings.TrimPrefix(e.srv.URL, "http://")
	tests := []struct {
		name, url, wantErr string
	}{
		{name: "relative", url: "oauth/token", wantErr: "not an absolute URL"},
		{name: "no scheme", url: host + "/oauth/token", wantErr: "not an absolute URL"},
		{name: "other scheme", url: "ftp://" + host + "/oauth/token", wantErr: "not an absolute URL"},
		{name: "no host", url: "https:///oauth/token", wantErr: "not an absolute URL"},
		{name: "trailing space", url: e.srv.TokenURL + " ", wantErr: "holds a space or a control character"},
		{name: "space inside", url: "http://" + host + "/oauth/ token", wantErr: "holds a space"},
		{name: "newline", url: e.srv.TokenURL + "\nrt-pasted-secret", wantErr: "control character"},
		{name: "bad escape", url: e.srv.TokenURL + "%zz", wantErr: "does not parse"},
		{name: "password", url: "http://user:pasted-secret@" + host + "/oauth/token", wantErr: "holds a user name or password"},
		{name: "fragment", url: e.srv.TokenURL + "#x", wantErr: "#fragment"},
		{name: "plain http to another host", url: "http://auth.example.com/oauth/token", wantErr: "must use https"},
		{name: "plain http to a name that resolves to loopback", url: "http://127.0.0.1.nip.io/oauth/token", wantErr: "must use https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := e.run(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-", "-token-url", tt.url)
			if code != 2 || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.wantErr)
			}
			oneMessage(t, errOut)
			noSecret(t, out+errOut, "pasted-secret", "/oauth/ token")
		})
	}
	if got := e.requests(); got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
	// http to localhost is accepted, for testing.
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-", "-token-url", "http://localhost:"+e.srv.URL[strings.LastIndex(e.srv.URL, ":")+1:]+"/oauth/token")
}

// TestVersion: refreshtoken version prints the module version, "(devel)"
// from a checkout, and the Go version.
func TestVersion(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	if out := e.mustRun("", "version"); !strings.HasPrefix(out, "refreshtoken ") || !strings.HasSuffix(out, " "+runtime.Version()) {
		t.Errorf("version printed %q", out)
	}
	c := newCLI(t, refreshtokentest.Config{})
	if out := c.mustRun("", "version"); out != "refreshtoken (devel) "+runtime.Version() {
		t.Errorf("the binary printed %q, want (devel) and %s", out, runtime.Version())
	}
	if out := c.mustRun("", "help"); !strings.Contains(out, "refreshtoken version") {
		t.Errorf("usage %q does not list version", out)
	}
}
