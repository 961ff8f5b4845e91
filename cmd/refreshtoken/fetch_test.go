package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// TestClientRejectedIsConfigError: a server that does not accept the
// client has not rejected the refresh token: exit 1, naming the settings
// to check; the refresh token is kept, and used once the setting is fixed.
func TestClientRejectedIsConfigError(t *testing.T) {
	tests := []struct {
		name    string
		cfg     refreshtokentest.Config
		secret  string // REFRESHTOKEN_CLIENT_SECRET
		args    []string
		setting string // named in the message
	}{
		{name: "wrong secret", secret: "wrong-secret", setting: "REFRESHTOKEN_CLIENT_SECRET"},
		{name: "missing secret", secret: "", setting: "-client-secret-file"},
		{name: "secret for a public client", cfg: refreshtokentest.Config{Public: true}, secret: "test-secret", setting: "none for a public client"},
		{name: "wrong client ID", secret: "test-secret", args: []string{"-client-id", "other-client"}, setting: "-client-id"},
		{name: "wrong secret with Basic", secret: "wrong-secret", args: []string{"-basic-auth"}, setting: "-basic-auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.cfg)
			e.vars["REFRESHTOKEN_CLIENT_SECRET"] = tt.secret
			rt := e.srv.NewRefreshToken("")
			out, errOut, code := e.run(rt, append([]string{"token", "-refresh-token-file", "-"}, tt.args...)...)
			if code != 1 || out != "" || !strings.Contains(errOut, "did not accept the client") || !strings.Contains(errOut, tt.setting) || strings.Contains(errOut, "Sign in again") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, tt.setting)
			}
			oneMessage(t, errOut)
			noSecret(t, errOut, rt, tt.secret)
			if got := e.requests(); got != 1 {
				t.Errorf("token requests = %d, want 1: a client error is not retried", got)
			}
			// Nothing was recorded against the refresh token: a second run
			// sends it again (and fails the same way).
			if _, _, code := e.run("", append([]string{"token"}, tt.args...)...); code != 1 || e.requests() != 2 {
				t.Errorf("second run: exit %d, %d requests; want 1 and a request", code, e.requests())
			}
			if _, alive := e.srv.Newest(rt); !alive {
				t.Errorf("the refresh token was revoked")
			}
		})
	}
}

// TestClientFixedKeepsSession: once the secret is fixed, the stored
// refresh token works: invalid_client did not cost a sign-in.
func TestClientFixedKeepsSession(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.vars["REFRESHTOKEN_CLIENT_SECRET"] = "wrong-secret"
	if _, _, code := e.run(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-"); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	e.vars["REFRESHTOKEN_CLIENT_SECRET"] = "test-secret"
	e.mustRun("", "token")
}

// TestRetries: a failure that leaves the refresh token unused (no
// connection, 429, 503) is tried again within -timeout; one that may have
// used it up, or that retrying cannot fix, is not. The waits derive from
// -timeout (2 s: 100 ms, then 200 ms at most), so the test waits little.
func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		reason   string
		fault    refreshtokentest.Fault
		n        int // requests that get the fault
		wantCode int
		wantReqs int
		wantErr  string
	}{
		{name: "503 twice", fault: refreshtokentest.Fault{Status: 503}, n: 2, wantCode: 0, wantReqs: 3},
		{name: "429 without Retry-After", fault: refreshtokentest.Fault{Status: 429}, n: 1, wantCode: 0, wantReqs: 2},
		{name: "503 every time", fault: refreshtokentest.Fault{Status: 503}, n: -1, wantCode: 1, wantReqs: maxAttempts,
			wantErr: "answered HTTP 503 Service Unavailable"},
		{name: "500", reason: "the server may have rotated before failing", fault: refreshtokentest.Fault{Status: 500}, n: 1, wantCode: 1, wantReqs: 1,
			wantErr: "Not tried again: the server may have used up the refresh token"},
		{name: "502", reason: "a gateway may have passed the request on", fault: refreshtokentest.Fault{Status: 502}, n: 1, wantCode: 1, wantReqs: 1,
			wantErr: "answered HTTP 502 Bad Gateway"},
		{name: "Retry-After past the timeout", fault: refreshtokentest.Fault{Status: 503, Header: http.Header{"Retry-After": {"3600"}}}, n: 1, wantCode: 1, wantReqs: 1,
			wantErr: "asks to wait 1h0m0s"},
		{name: "rate limit reset past the timeout", fault: refreshtokentest.Fault{Status: 429, Header: http.Header{"X-Ratelimit-Reset": {"99999999999"}}}, n: 1, wantCode: 1, wantReqs: 1,
			wantErr: "limiting requests (HTTP 429), and asks to wait"},
		{name: "connection lost after sending", fault: refreshtokentest.Fault{Drop: true}, n: 1, wantCode: 1, wantReqs: 1,
			wantErr: "Not tried again: the server may have used up the refresh token"},
		{name: "malformed success", fault: refreshtokentest.Fault{Truncate: true}, n: 1, wantCode: 1, wantReqs: 1,
			wantErr: "Not tried again"},
		{name: "400 invalid_request", fault: refreshtokentest.Fault{Status: 400}, n: 1, wantCode: 1, wantReqs: 1,
			wantErr: "answered HTTP 400 Bad Request (\"invalid_request\": \"Injected fault.\").\nCheck -token-url"},
		{name: "404", fault: refreshtokentest.Fault{Status: 404}, n: 1, wantCode: 1, wantReqs: 1,
			wantErr: "answered HTTP 404 Not Found"},
		{name: "invalid_grant", fault: refreshtokentest.Fault{Status: 400, Error: "invalid_grant"}, n: 1, wantCode: 3, wantReqs: 1,
			wantErr: "Sign in again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, refreshtokentest.Config{})
			e.srv.Inject(tt.n, tt.fault)
			rt := e.srv.NewRefreshToken("")
			out, errOut, code := e.run(rt, "token", "-refresh-token-file", "-", "-timeout", "2s")
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if got := e.requests(); got != tt.wantReqs {
				t.Errorf("token requests = %d, want %d", got, tt.wantReqs)
			}
			if code == 0 && !strings.HasPrefix(out, "at-") {
				t.Errorf("stdout %q, want an access token", out)
			}
			if code != 0 {
				oneMessage(t, errOut)
			}
			noSecret(t, out+errOut, rt, "test-secret")
			if st := e.srv.Stats(); st.ReuseEvents != 0 {
				t.Errorf("server stats %+v: a refresh token was sent again after a rotation", st)
			}
		})
	}
}

// TestRetriesConnectionRefused: a server that is not there is tried again,
// then the message says so.
func TestRetriesConnectionRefused(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	rt := e.srv.NewRefreshToken("")
	e.srv.Close()
	_, errOut, code := e.run(rt, "token", "-refresh-token-file", "-", "-timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "could not connect to the token server") || !strings.Contains(errOut, "tried 4 times") {
		t.Errorf("exit %d, stderr %q; want 1, and tried 4 times", code, errOut)
	}
	oneMessage(t, errOut)
}

// TestServerTextEscaped: what a hostile server sends in its error answer
// is quoted, not written to the terminal as is.
func TestServerTextEscaped(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.srv.Inject(1, refreshtokentest.Fault{Status: 400, Error: "bad\x1b[2J\r\nrefreshtoken token: all is well"})
	_, errOut, code := e.run(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	if code != 1 || strings.ContainsAny(errOut, "\x1b\r") || strings.Contains(errOut, "\nrefreshtoken") || !strings.Contains(errOut, `\x1b[2J\r\n`) {
		t.Errorf("exit %d, stderr %q; want 1 and the server's text quoted", code, errOut)
	}
}

// TestVerbose: -v logs the refreshes on standard error (a failure to be
// retried at Warn, the refresh that then succeeds at Debug), and no token
// or secret the server issued.
func TestVerbose(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	e.srv.Inject(1, refreshtokentest.Fault{Status: 503})
	rt := e.srv.NewRefreshToken("openid offline_access")
	out, errOut, code := e.run(rt, "token", "-v", "-refresh-token-file", "-", "-timeout", "2s")
	if code != 0 || !strings.HasPrefix(out, "at-") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and an access token", code, out, errOut)
	}
	for _, want := range []string{"level=WARN", "outcome=transient", "status=503", "level=DEBUG", "outcome=ok", "rt_fingerprint=" + refreshtoken.Fingerprint(rt)} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	noSecret(t, errOut, e.srv.Secrets()...)
	// Without -v, nothing but errors reaches standard error.
	if _, errOut, code := e.run("", "token", "-refresh"); code != 0 || errOut != "" {
		t.Errorf("without -v: exit %d, stderr %q; want 0 and nothing", code, errOut)
	}
}
