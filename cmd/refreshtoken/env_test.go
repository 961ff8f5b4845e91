package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

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
	return storedToken(e.t, e.state).RefreshToken
}

// storedToken returns the token in the state file at path, read as the
// command keeps it.
func storedToken(t *testing.T, path string) *oauth2.Token {
	t.Helper()
	tok, err := filestore.New(path).Load(context.Background())
	if err != nil || tok == nil {
		t.Fatalf("reading the state %s: %v, %v", path, tok, err)
	}
	return tok
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
