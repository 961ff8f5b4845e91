package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// loginEnv is the environment of a login against c's server.
func (c *cli) loginEnv() []string {
	return append(os.Environ(),
		"REFRESHTOKEN_TOKEN_URL="+c.srv.TokenURL,
		"REFRESHTOKEN_CLIENT_ID=test-client",
		"REFRESHTOKEN_CLIENT_SECRET=test-secret",
		"REFRESHTOKEN_SCOPES=", "REFRESHTOKEN_AUDIENCE=",
		"XDG_CONFIG_HOME="+c.dir, "HOME="+c.dir)
}

// startLogin runs login -no-browser with c's state in the background.
func (c *cli) startLogin(args ...string) *proc {
	return start(c.t, c.loginEnv(), false, append([]string{"login", "-no-browser", "-state", c.state}, args...)...)
}

// authorizeURL reads the URL that login prints for the browser.
func authorizeURL(t *testing.T, p *proc) *url.URL {
	t.Helper()
	u, err := url.Parse(strings.TrimSpace(p.line("/authorize?")))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// browse GETs u, following redirects as a browser does, and returns the
// status and page of the last answer.
func browse(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stored returns the access and refresh tokens in the state file.
func (c *cli) stored() (access, refresh string) {
	c.t.Helper()
	tok := storedToken(c.t, c.state)
	return tok.AccessToken, tok.RefreshToken
}

// checkSession: after a login, token prints the login's access token
// with no request, and the stored refresh token works.
func checkSession(t *testing.T, c *cli, p *proc) {
	t.Helper()
	if code := p.wait(); code != 0 {
		t.Fatalf("login exited %d; output:\n%s", code, p.out())
	}
	access, refresh := c.stored()
	if access == "" || refresh == "" {
		t.Fatalf("state holds access %v, refresh %v; want both", access != "", refresh != "")
	}
	for _, secret := range []string{access, refresh, "test-secret"} {
		if strings.Contains(p.out(), secret) {
			t.Errorf("login printed a secret:\n%s", p.out())
		}
	}
	if !strings.Contains(p.out(), "Signed in. Stored a refresh token and an access token") || !strings.Contains(p.out(), "refreshtoken token") {
		t.Errorf("login did not say what it stored and what to run next:\n%s", p.out())
	}
	if got := c.mustRun("", "token"); got != access {
		t.Errorf("token printed %q, want the login's access token %q", got, access)
	}
	if got := c.srv.Stats(); got.Logins != 1 || got.Refreshes != 0 {
		t.Errorf("after token: server stats %+v, want 1 login, no refresh", got)
	}
	if got := c.mustRun("", "token", "-refresh"); got == access || got == "" {
		t.Errorf("token -refresh printed %q, want a new access token", got)
	}
	if got := c.srv.Stats(); got.Refreshes != 1 || got.ReuseEvents != 0 {
		t.Errorf("after token -refresh: server stats %+v, want 1 refresh, no reuse", got)
	}
}

// TestLoginBrowser: login prints the authorization URL; the test, as the
// browser, follows it to the command's loopback listener, which answers
// once the code is exchanged.
func TestLoginBrowser(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	p := c.startLogin("-scopes", "openid")
	u := authorizeURL(t, p)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("scope") != "openid offline_access" || !strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") {
		t.Errorf("authorization URL %s: want S256 PKCE, offline_access added, a loopback redirect", u)
	}
	if status, page := browse(t, u.String()); status != http.StatusOK || !strings.Contains(page, "Signed in") {
		t.Errorf("the browser got %d %q, want 200 and Signed in", status, page)
	}
	checkSession(t, c, p)
	if !strings.Contains(p.out(), "offline_access too") {
		t.Errorf("login did not say it added offline_access:\n%s", p.out())
	}
}

// TestLoginDevice: login -device prints the verification URI; the test,
// as the person, visits the complete one; login gets the token. Each poll
// moves the server's clock by the interval, so that the jitter of the
// command's real ticker never reads as polling too fast.
func TestLoginDevice(t *testing.T) {
	clock := refreshtokentest.NewClock(time.Now())
	c := newCLI(t, refreshtokentest.Config{Clock: clock.Now, DeviceInterval: time.Second,
		OnTokenRequest: func(*http.Request) { clock.Add(time.Second) }})
	p := c.startLogin("-device")
	var complete string
	for _, f := range strings.Fields(p.line("user_code=")) {
		if strings.HasPrefix(f, "http") {
			complete = f
		}
	}
	if status, page := browse(t, complete); status != http.StatusOK || !strings.Contains(page, "approved") {
		t.Fatalf("verification page %q: %d %q", complete, status, page)
	}
	checkSession(t, c, p)
}

// TestLoginStateMismatch: a redirect that does not carry the login's state
// (a forged one, or a tab left from an earlier login) is refused, its code
// not exchanged, and does not end the login: the real answer that follows
// signs in.
func TestLoginStateMismatch(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	p := c.startLogin()
	u := authorizeURL(t, p)
	for _, state := range []string{"not-the-state", ""} {
		forged := u.Query().Get("redirect_uri") + "?" + url.Values{"code": {"code-forged"}, "state": {state}}.Encode()
		if status, page := browse(t, forged); status != http.StatusBadRequest || !strings.Contains(page, "ignored") {
			t.Errorf("the redirect with state %q got %d %q, want 400 and ignored", state, status, page)
		}
	}
	if got := c.srv.Stats().TokenRequests; got != 0 {
		t.Errorf("token requests = %d, want 0: no forged code exchanged", got)
	}
	if status, page := browse(t, u.String()); status != http.StatusOK || !strings.Contains(page, "Signed in") {
		t.Errorf("the browser got %d %q after the forged redirects, want 200 and Signed in", status, page)
	}
	checkSession(t, c, p)
}

// TestLoginAccessDenied: the server's error redirect ends the login, and
// its words reach the terminal quoted, escape sequences and all.
func TestLoginAccessDenied(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	p := c.startLogin()
	u := authorizeURL(t, p)
	denied := u.Query().Get("redirect_uri") + "?" + url.Values{"error": {"access_denied"},
		"error_description": {"User said no \x1b[2J"}, "state": {u.Query().Get("state")}}.Encode()
	if status, _ := browse(t, denied); status != http.StatusBadRequest {
		t.Errorf("the error redirect got %d, want 400", status)
	}
	if code := p.wait(); code != 1 || !strings.Contains(p.out(), `"access_denied"`) {
		t.Errorf("login exited %d, want 1 and the error; output:\n%s", code, p.out())
	}
	if strings.Contains(p.out(), "\x1b") {
		t.Errorf("login wrote the server's escape sequence to the terminal:\n%q", p.out())
	}
	if got := c.srv.Stats().TokenRequests; got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
}

// TestLoginTimeout: nobody answers; login gives up at -timeout.
func TestLoginTimeout(t *testing.T) {
	for _, flow := range [][]string{nil, {"-device"}} {
		c := newCLI(t, refreshtokentest.Config{DeviceInterval: time.Second})
		p := c.startLogin(append(flow, "-timeout", "1s")...)
		if code := p.wait(); code != 1 || !strings.Contains(p.out(), "within 1s") {
			t.Errorf("login %v exited %d, want 1 and the timeout; output:\n%s", flow, code, p.out())
		}
	}
}

// TestLoginDeviceServerSilent: a device authorization URL that never
// answers ends login -device at -timeout, not never.
func TestLoginDeviceServerSilent(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	stop := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer silent.Close()
	defer close(stop)
	p := c.startLogin("-device", "-device-auth-url", silent.URL+"/oauth/device/code", "-timeout", "1s")
	if code := p.wait(); code != 1 || !strings.Contains(p.out(), "did not answer within 1s") {
		t.Errorf("login -device exited %d, want 1 and the timeout; output:\n%s", code, p.out())
	}
}

// TestLoginKeepsOtherServersSession: a state holding another server's
// session is not replaced, and nobody is asked to sign in for nothing,
// unless -replace.
func TestLoginKeepsOtherServersSession(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	c.mustRun(c.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	_, before := c.stored()
	other := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer other.Close()
	first := c.srv
	c.srv = other
	p := c.startLogin()
	if code := p.wait(); code != 2 || !strings.Contains(p.out(), "belongs to another server") || strings.Contains(p.out(), "/authorize?") {
		t.Errorf("login exited %d, want 2, no sign-in; output:\n%s", code, p.out())
	}
	if _, after := c.stored(); after != before {
		t.Error("the other server's session was replaced")
	}
	p = c.startLogin("-replace")
	browse(t, authorizeURL(t, p).String())
	if code := p.wait(); code != 0 {
		t.Fatalf("login -replace exited %d; output:\n%s", code, p.out())
	}
	if _, after := c.stored(); after == before {
		t.Error("login -replace kept the other server's session")
	}
	if got := first.Stats().TokenRequests + other.Stats().Refreshes; got != 1 {
		t.Errorf("requests = %d, want only the first session's refresh", got)
	}
}

// TestLoginHidesEchoedSecrets: a token endpoint that echoes the client
// secret, the code and the verifier in its error: login's message has
// none of them.
func TestLoginHidesEchoedSecrets(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	forms := make(chan url.Values, 1)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		select {
		case forms <- r.PostForm:
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client",
			"error_description": "bad " + r.PostForm.Get("client_secret") + " " + url.QueryEscape(r.PostForm.Get("code")) + " " + r.PostForm.Get("code_verifier")})
	}))
	defer echo.Close()
	p := start(t, append(c.loginEnv(), "REFRESHTOKEN_TOKEN_URL="+echo.URL+"/oauth/token"), false,
		"login", "-no-browser", "-state", c.state, "-auth-url", c.srv.AuthURL)
	u := authorizeURL(t, p)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	browse(t, loc.String())
	if status := p.wait(); status != 1 || !strings.Contains(p.out(), "invalid_client") {
		t.Fatalf("login exited %d, want 1 and the error; output:\n%s", status, p.out())
	}
	var form url.Values
	select {
	case form = <-forms:
	default:
		t.Fatal("the token endpoint got no request")
	}
	for _, secret := range []string{form.Get("client_secret"), form.Get("code"), url.QueryEscape(form.Get("code")), form.Get("code_verifier")} {
		if len(secret) < 8 || strings.Contains(p.out(), secret) {
			t.Errorf("login printed a secret (%q):\n%s", secret, p.out())
		}
	}
	if !strings.Contains(p.out(), "[redacted]") {
		t.Errorf("login's message does not show the redaction:\n%s", p.out())
	}
}

func TestLoginUsage(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no token URL", args: []string{"-token-url", ""}, wantErr: "no token URL"},
		{name: "plain http elsewhere", args: []string{"-auth-url", "http://login.example/authorize"}, wantErr: "must use https"},
		{name: "no Auth0 layout", args: []string{"-token-url", "https://login.example/token"}, wantErr: "set -auth-url"},
		{name: "no device URL", args: []string{"-device", "-token-url", "https://login.example/token", "-auth-url", "https://login.example/auth"}, wantErr: "set -device-auth-url"},
		{name: "an argument", args: []string{"rt-abc"}, wantErr: "unexpected argument"},
		{name: "a path as profile", args: []string{"-profile", "../x"}, wantErr: "-profile"},
		{name: "token URL with a password", args: []string{"-token-url", "https://u:pasted-secret@login.example/oauth/token"}, wantErr: "the token URL (-token-url or REFRESHTOKEN_TOKEN_URL) holds a user name or password"},
		{name: "auth URL with a fragment", args: []string{"-auth-url", "https://login.example/authorize#x"}, wantErr: "the authorization URL (-auth-url) has a #fragment"},
		{name: "device URL with a control character", args: []string{"-device", "-device-auth-url", "https://login.example/device\nrt-pasted-secret"}, wantErr: "the device authorization URL (-device-auth-url) is not an absolute URL"},
		{name: "timeout not positive", args: []string{"-timeout", "0s"}, wantErr: "-timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"login", "-no-browser"}, tt.args...)
			if tt.name != "a path as profile" {
				args = append(args, "-state", c.state)
			}
			p := start(t, c.loginEnv(), false, args...)
			if code := p.wait(); code != 2 || !strings.Contains(p.out(), tt.wantErr) {
				t.Errorf("exit %d, output %q; want 2 and %q", code, p.out(), tt.wantErr)
			}
			if !strings.HasPrefix(p.out(), "refreshtoken login: ") || strings.Contains(p.out(), "pasted-secret") {
				t.Errorf("output %q: want one message, prefixed refreshtoken login:, without the URL", p.out())
			}
		})
	}
}
