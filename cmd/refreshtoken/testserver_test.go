//go:build unix

package main

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestTestServer runs the testserver command as a person would, takes the
// token URL and the refresh token it prints, gets an access token with
// the token command that its /api accepts, and stops it with SIGINT.
func TestTestServer(t *testing.T) {
	dir := t.TempDir()
	env := append(os.Environ(), "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	srv := start(t, env, true, "testserver", "-addr", "127.0.0.1:0", "-lifetime", "10m")
	tokenURL := strings.TrimSpace(strings.TrimPrefix(srv.line("token URL:"), "  token URL:"))
	echo := strings.Fields(srv.line("echo rt-"))
	srv.line("Stop with Ctrl-C.")
	if !strings.HasPrefix(tokenURL, "http://127.0.0.1:") || !strings.HasSuffix(tokenURL, "/oauth/token") || len(echo) < 2 {
		t.Fatalf("token URL %q, echo line %q", tokenURL, echo)
	}
	cmd := exec.Command(binary, "token", "-profile", "testserver", "-refresh-token-file", "-")
	cmd.Env = append(env, "REFRESHTOKEN_TOKEN_URL="+tokenURL, "REFRESHTOKEN_CLIENT_ID=test-client")
	cmd.Stdin = strings.NewReader(echo[1])
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(tokenURL, "/oauth/token")+"/api", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(out)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/api with the token: %s, want 200", resp.Status)
	}

	// A login of the public client, into a profile of its own.
	login := start(t, cmd.Env, false, "login", "-no-browser", "-profile", "other")
	if status, page := browse(t, strings.TrimSpace(login.line("/authorize?"))); status != http.StatusOK {
		t.Errorf("the browser got %d %q, want 200", status, page)
	}
	if code := login.wait(); code != 0 {
		t.Fatalf("login exited %d; output:\n%s", code, login.out())
	}
	cmd = exec.Command(binary, "token", "-profile", "other")
	cmd.Env = login.cmd.Env
	if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "at-") {
		t.Errorf("token after login: %v, %q", err, out)
	}

	if err := srv.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := srv.wait(); code != 0 {
		t.Errorf("testserver exited %d after SIGINT, want 0; output:\n%s", code, srv.out())
	}
	if _, err := http.Get(tokenURL); err == nil {
		t.Error("the server still answers after it exited")
	}
}
