package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// hydraVersion is the Ory Hydra release the tests run, built by
// hydra/build.sh.
const hydraVersion = "v2.3.0"

// TestHydra runs the scenarios against Ory Hydra as a process of its own on
// loopback, with a SQLite file database: clients made through its admin
// API, refresh tokens from a real authorization code flow (login and
// consent accepted through the admin API), strict rotation (Hydra's
// default: a refresh revokes every earlier token of the family, a reused
// refresh token revokes the family), /userinfo as the protected API.
//
// The binary is $HYDRA_BIN, or the one hydra/build.sh leaves in the user's
// cache directory; without one the test is skipped, or fails if
// INTEROP_REQUIRE=1.
func TestHydra(t *testing.T) {
	const callers = 24
	srv := startHydra(t, hydraBinary(t), 4*time.Second, callers)
	t.Run("RotationUnderLoad", func(t *testing.T) {
		testRotationUnderLoad(t, srv, load{callers: callers, pace: 40 * time.Millisecond, refreshes: 8})
	})
	t.Run("RevocationStops", func(t *testing.T) { testRevocationStops(t, srv, callers) })
	t.Run("ReuseRevokesFamily", func(t *testing.T) { testReuseRevokesFamily(t, srv) })
}

// hydraBinary returns the path of the Hydra binary to run.
func hydraBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HYDRA_BIN")
	if bin == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			skipOrFail(t, "no HYDRA_BIN and no cache directory: %v", err)
		}
		bin = filepath.Join(cache, "refreshtoken-interop", "hydra-"+hydraVersion, "hydra")
	}
	if _, err := os.Stat(bin); err != nil {
		skipOrFail(t, "no Hydra binary (%v): build it with interop/hydra/build.sh, or set HYDRA_BIN", err)
	}
	return bin
}

// startHydra migrates a new database, starts Hydra on free loopback ports,
// waits for it to be ready, and makes a client through its admin API.
// Hydra is stopped when the test ends.
func startHydra(t *testing.T, bin string, accessTokenLife time.Duration, callers int) *server {
	dir := t.TempDir()
	public, admin := freePort(t), freePort(t)
	publicURL := "http://127.0.0.1:" + public
	adminURL := "http://127.0.0.1:" + admin
	// The login and consent pages are never loaded: the test accepts the
	// challenges in their URLs through the admin API.
	const loginURL, consentURL = "http://127.0.0.1:9/login", "http://127.0.0.1:9/consent"
	config := fmt.Sprintf(`dsn: sqlite://%s?_fk=true&_journal_mode=WAL
serve:
  public: {host: 127.0.0.1, port: %s}
  admin: {host: 127.0.0.1, port: %s}
urls:
  self: {issuer: %s/}
  login: %s
  consent: %s
secrets:
  system: [%q]
ttl:
  access_token: %s
oauth2:
  grant:
    refresh_token:
      # Strict rotation, Hydra's default: a refresh token is dead once used.
      rotation_grace_period: 0s
log:
  level: warn
`, filepath.Join(dir, "hydra.sqlite"), public, admin, publicURL, loginURL, consentURL, rand.Text()+rand.Text(), accessTokenLife)
	configFile := filepath.Join(dir, "hydra.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// Hydra reads every environment variable named like a configuration
	// key: it runs with a clean environment.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}

	migrate := exec.Command(bin, "migrate", "sql", "--read-from-env", "--yes", "--config", configFile)
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("hydra migrate sql: %v\n%s", err, tail(out, 2000))
	}

	logFile := filepath.Join(dir, "hydra.log")
	logOut, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logOut.Close() // the process has its own copy
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out", "--config", configFile)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logOut, logOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting hydra: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { stopProcess(t, cmd, exited) })

	hc := newHTTPClient(callers)
	waitReady(t, hc, adminURL+"/health/ready", exited, logFile)

	proxyTarget, err := url.Parse(publicURL)
	if err != nil {
		t.Fatal(err)
	}
	log := &grantLog{next: &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(proxyTarget) },
	}}
	proxy := httptest.NewServer(log)
	t.Cleanup(proxy.Close)

	conf := hydraClient(t, hc, adminURL)
	conf.Endpoint = oauth2.Endpoint{
		AuthURL:  publicURL + "/oauth2/auth",
		TokenURL: proxy.URL + "/oauth2/token",
		// HTTP Basic, the client's token_endpoint_auth_method.
		AuthStyle: oauth2.AuthStyleInHeader,
	}
	visit := func(ctx context.Context, page *url.URL) (string, error) {
		return acceptChallenge(ctx, hc, adminURL, page, loginURL, consentURL)
	}
	return &server{
		conf:      conf,
		log:       log,
		hc:        hc,
		authorize: func(t *testing.T) *oauth2.Token { return codeFlow(t, hc, conf, visit) },
		api:       publicURL + "/userinfo",
		revoke: func(ctx context.Context, rt string) error {
			return revoke(ctx, hc, publicURL+"/oauth2/revoke", basicAuth(conf), rt)
		},
		// Hydra has answered 200 to a revocation that failed inside it:
		// introspection is what tells.
		active: func(ctx context.Context, token string) (bool, error) {
			return introspect(ctx, hc, adminURL+"/admin/oauth2/introspect", nil, token)
		},
	}
}

// hydraClient makes an OAuth 2.0 client through Hydra's admin API, allowed
// the code and refresh grants with openid and offline_access.
func hydraClient(t *testing.T, hc *http.Client, adminURL string) *oauth2.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const redirect = "http://127.0.0.1/callback"
	scopes := []string{"openid", "offline_access"}
	var client struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	err := sendJSON(ctx, hc, http.MethodPost, adminURL+"/admin/clients", map[string]any{
		"client_secret":              rand.Text(),
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      strings.Join(scopes, " "),
		"redirect_uris":              []string{redirect},
		"token_endpoint_auth_method": "client_secret_basic",
	}, &client)
	if err != nil {
		t.Fatalf("creating the client: %v", err)
	}
	return &oauth2.Config{ClientID: client.ID, ClientSecret: client.Secret, RedirectURL: redirect, Scopes: scopes}
}

// acceptChallenge does what the login or consent page would: it accepts
// the challenge in page's URL through the admin API, granting every scope
// asked for, and returns where the browser goes next.
func acceptChallenge(ctx context.Context, hc *http.Client, adminURL string, page *url.URL, loginURL, consentURL string) (string, error) {
	var endpoint string
	var body map[string]any
	switch {
	case strings.HasPrefix(page.String(), loginURL+"?"):
		endpoint = "/admin/oauth2/auth/requests/login/accept?login_challenge=" + url.QueryEscape(page.Query().Get("login_challenge"))
		body = map[string]any{"subject": "interop-user"}
	case strings.HasPrefix(page.String(), consentURL+"?"):
		endpoint = "/admin/oauth2/auth/requests/consent/accept?consent_challenge=" + url.QueryEscape(page.Query().Get("consent_challenge"))
		body = map[string]any{"grant_scope": []string{"openid", "offline_access"}}
	default:
		return "", fmt.Errorf("redirected to %s, not to the login, consent or callback page", page.Redacted())
	}
	var answer struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := sendJSON(ctx, hc, http.MethodPut, adminURL+endpoint, body, &answer); err != nil {
		return "", err
	}
	return answer.RedirectTo, nil
}

// sendJSON sends v as JSON and decodes a 2xx answer into out. Errors carry
// the status, not the body.
func sendJSON(ctx context.Context, hc *http.Client, method, endpoint string, v, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d", method, req.URL.Path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// freePort returns a loopback port free at the time of the call, for a
// process that takes its port from its configuration.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// waitReady polls Hydra's readiness endpoint until it answers 200, failing
// the test if the process exits first or a deadline passes.
func waitReady(t *testing.T, hc *http.Client, ready string, exited <-chan error, logFile string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logFile)
			t.Fatalf("hydra exited before it was ready: %v\n%s", err, tail(out, 2000))
		case <-deadline:
			out, _ := os.ReadFile(logFile)
			t.Fatalf("hydra not ready after 60 s\n%s", tail(out, 2000))
		case <-poll.C:
		}
		resp, err := hc.Get(ready)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
	}
}

// stopProcess stops cmd, which the goroutine behind exited waits for:
// SIGINT, then SIGKILL if it has not exited after 10 s.
func stopProcess(t *testing.T, cmd *exec.Cmd, exited <-chan error) {
	if err := cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("stopping hydra: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("hydra did not stop within 10 s of SIGINT; killing it")
		cmd.Process.Kill()
		<-exited
	}
}

// tail returns the last n bytes of b, for a process's output. Hydra's
// output at start-up holds no token: none has been issued.
func tail(b []byte, n int) []byte {
	return b[max(len(b)-n, 0):]
}
