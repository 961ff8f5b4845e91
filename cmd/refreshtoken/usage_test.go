package main

import (
	"runtime"
	"strings"
	"testing"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

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
