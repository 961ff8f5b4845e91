package main

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// logout runs logout on e's state, with args.
func (e *env) logout(args ...string) (string, string, int) {
	e.t.Helper()
	return e.run("", append([]string{"logout", "-state", e.state}, args...)...)
}

// signIn stores a new session in e's state and returns its refresh
// token, rotated by a first refresh.
func (e *env) signIn() string {
	e.t.Helper()
	rt := e.srv.NewRefreshToken("openid offline_access")
	e.mustRun(rt, "token", "-refresh-token-file", "-")
	return rt
}

// gone fails the test unless the state's token and meta files are gone.
func (e *env) gone() {
	e.t.Helper()
	for _, p := range []string{e.state, e.state + ".meta"} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			e.t.Errorf("%s is still there (%v)", p, err)
		}
	}
}

// TestLogout: logout revokes the stored (rotated) refresh token and
// removes the session; a second logout sends nothing.
func TestLogout(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  refreshtokentest.Config
		args []string
	}{
		{name: "secret in body"},
		{name: "HTTP Basic", args: []string{"-basic-auth"}},
		{name: "JSON body", args: []string{"-json-body"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			first := e.signIn()
			stored := e.stored()
			out, errOut, code := e.logout(tc.args...)
			if code != 0 || !strings.Contains(out, "Signed out. The server revoked the refresh token") {
				t.Fatalf("logout: exit %d, stdout %q, stderr %q; want 0 and signed out", code, out, errOut)
			}
			noSecret(t, out+errOut, e.srv.Secrets()...)
			e.gone()
			if newest, alive := e.srv.Newest(first); alive || newest != stored {
				t.Errorf("family alive %v; want revoked, the stored token its newest", alive)
			}
			s := e.srv.Stats()
			if s.Revocations != 1 || s.RevokeRequests != 1 || s.ReplacedSent != 0 {
				t.Errorf("stats %+v; want one revocation, of the current token", s)
			}

			out, _, code = e.logout(tc.args...)
			if code != 0 || !strings.Contains(out, "Not signed in") {
				t.Errorf("second logout: exit %d, stdout %q; want 0 and not signed in", code, out)
			}
			if got := e.srv.Stats().RevokeRequests; got != 1 {
				t.Errorf("revocation requests = %d after a second logout, want 1", got)
			}
			if _, errOut, code := e.run("", "token"); code != exitUsage || !strings.Contains(errOut, "no refresh token stored") {
				t.Errorf("token after logout: exit %d, stderr %q; want 2, nothing stored", code, errOut)
			}
		})
	}
}

// TestLogoutServerFails: a revocation that fails keeps the session,
// unless -force, which removes it and says the token stays valid; both
// exit 1.
func TestLogoutServerFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault refreshtokentest.Fault
		want  string
	}{
		{"unreachable", refreshtokentest.Fault{Drop: true}, "the refresh token was not revoked"},
		{"503", refreshtokentest.Fault{Status: 503}, "HTTP 503 Service Unavailable"},
		{"client refused", refreshtokentest.Fault{Status: 401, Error: "invalid_client"}, `"invalid_client"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, refreshtokentest.Config{})
			first := e.signIn()
			stored := e.stored()
			e.srv.InjectRevoke(1, tc.fault)
			out, errOut, code := e.logout()
			if code != exitError || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "The session is kept") || !strings.Contains(errOut, "-force") {
				t.Errorf("logout: exit %d, stderr %q; want 1, %q, the session kept, -force", code, errOut, tc.want)
			}
			noSecret(t, out+errOut, e.srv.Secrets()...)
			if e.stored() != stored {
				t.Fatal("the stored refresh token changed")
			}
			e.mustRun("", "token") // the session still works

			e.srv.InjectRevoke(1, tc.fault)
			out, errOut, code = e.logout("-force")
			if code != exitError || !strings.Contains(errOut, "Removed the session") || !strings.Contains(errOut, "stays valid") {
				t.Errorf("logout -force: exit %d, stderr %q; want 1, removed, stays valid", code, errOut)
			}
			noSecret(t, out+errOut, e.srv.Secrets()...)
			e.gone()
			if _, alive := e.srv.Newest(first); !alive {
				t.Error("the family was revoked")
			}
		})
	}
}

// TestLogoutRejected: a session whose refresh token the server rejected
// is removed with nothing sent.
func TestLogoutRejected(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	first := e.signIn()
	e.srv.Revoke(first)
	e.run("", "token", "-refresh") // rejected: recorded
	out, errOut, code := e.logout()
	if code != 0 || !strings.Contains(out, "rejected the stored refresh token already") {
		t.Errorf("logout: exit %d, stdout %q, stderr %q; want 0, rejected already", code, out, errOut)
	}
	e.gone()
	if got := e.srv.Stats().RevokeRequests; got != 0 {
		t.Errorf("revocation requests = %d, want 0", got)
	}
}

// TestLogoutOtherServer: a session of another server is not sent to this
// one, and is kept; one with no server is removed only with -force.
func TestLogoutOtherServer(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.signIn()
	stored := e.stored()
	_, errOut, code := e.logout("-client-id", "other-client")
	if code != exitUsage || !strings.Contains(errOut, "belongs to another server") {
		t.Errorf("logout for another client: exit %d, stderr %q; want 2, another server", code, errOut)
	}
	if e.stored() != stored {
		t.Fatal("the session changed")
	}

	if err := os.Remove(e.state + ".meta"); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := e.logout(); code != exitUsage || !strings.Contains(errOut, "-force") {
		t.Errorf("logout of a session with no server: exit %d, stderr %q; want 2 and -force", code, errOut)
	}
	if e.stored() != stored {
		t.Fatal("the session changed")
	}
	if _, errOut, code := e.logout("-force"); code != exitError || !strings.Contains(errOut, "not sent anywhere") {
		t.Errorf("logout -force of a session with no server: exit %d, stderr %q; want 1, not sent", code, errOut)
	}
	e.gone()
	if got := e.srv.Stats().RevokeRequests; got != 0 {
		t.Errorf("revocation requests = %d, want 0", got)
	}
}

// TestLogoutUsage: the revocation URL must be derivable or given, and
// https (http only to a loopback host); nothing is sent otherwise.
func TestLogoutUsage(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.signIn()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"not derivable", []string{"-token-url", e.srv.URL + "/token"}, "does not end in /oauth/token"},
		{"plain http", []string{"-revoke-url", "http://auth.example.com/oauth/revoke"}, "must use https"},
		{"argument", []string{"rt-pasted"}, "not shown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := e.logout(tc.args...)
			if code != exitUsage || !strings.Contains(errOut, tc.wantErr) || !strings.HasPrefix(errOut, "refreshtoken logout: ") {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.wantErr)
			}
			noSecret(t, out+errOut, "rt-pasted")
		})
	}
	if got := e.srv.Stats().RevokeRequests; got != 0 {
		t.Errorf("revocation requests = %d, want 0", got)
	}
}
