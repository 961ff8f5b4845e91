package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenfresh/refreshtoken"
	"golang.org/x/oauth2"
)

// server is what the scenarios need of an authorization server.
type server struct {
	// conf is the client's configuration for refreshtoken.New; its
	// TokenURL goes through log.
	conf *oauth2.Config
	log  *grantLog
	// hc is the HTTP client of the sources and the load.
	hc *http.Client
	// authorize runs a real authorization code flow and returns its token,
	// with a refresh token of a new family.
	authorize func(t *testing.T) *oauth2.Token
	// api is a protected API: 200 for a valid access token, 401 otherwise.
	api string
	// revoke revokes a refresh token and its family (RFC 7009).
	revoke func(ctx context.Context, refreshToken string) error
	// active reports whether the server holds a token valid
	// (introspection, RFC 7662).
	active func(ctx context.Context, token string) (bool, error)
}

// load is the load a rotation test puts on the server.
type load struct {
	callers int           // goroutines calling the API
	pace    time.Duration // between one caller's calls
	// refreshes is how many refreshes the source makes before the load
	// stops: with tokens refreshed at about half their life, n refreshes
	// span about n/2 lifetimes.
	refreshes int
}

// requireEnv is the variable that turns a skip for a missing server into a
// failure, for CI.
const requireEnv = "INTEROP_REQUIRE"

// skipOrFail skips the test, or fails it when INTEROP_REQUIRE=1.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf(format+" (and %s=1)", append(args, requireEnv)...)
	}
	t.Skipf(format, args...)
}

// testRotationUnderLoad calls the API through refreshtoken.NewClient from
// many goroutines over several token lifetimes, and checks what the
// callers and the server saw: no caller saw an error or a 401, though the
// server revokes the previous access token at each refresh; the refreshes
// were no more frequent than the early-refresh rules allow; each sent the
// refresh token the previous one returned, none twice; and the family is
// alive at the end.
func testRotationUnderLoad(t *testing.T, srv *server, ld load) {
	first := srv.authorize(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// The 401s the server answered, which Transport is to hide.
	counted := &countUnauthorized{base: srv.hc.Transport}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: counted, Timeout: srv.hc.Timeout})

	var (
		mu     sync.Mutex // guards newest and made
		newest *oauth2.Token
		made   int
	)
	enough := make(chan struct{})
	onNew := func(_ context.Context, tok *oauth2.Token) error {
		mu.Lock()
		defer mu.Unlock()
		newest, made = tok, made+1
		if made == ld.refreshes {
			close(enough)
		}
		return nil
	}
	before := len(srv.log.refreshes())
	start := time.Now()
	ts := refreshtoken.New(ctx, srv.conf, first, refreshtoken.WithOnNewToken(onNew))
	client := refreshtoken.NewClient(ctx, ts)

	errs := make(chan error, ld.callers)
	calls := make(chan int, ld.callers)
	for range ld.callers {
		go func() {
			n, err := callUntil(ctx, client, srv.api, ld.pace, enough)
			calls <- n
			errs <- err
		}()
	}
	total := 0
	for range ld.callers {
		total += <-calls
		if err := <-errs; err != nil {
			t.Errorf("a caller: %v", err)
		}
	}
	// Close waits for a refresh in flight: what follows sees the server
	// and the source at rest.
	if err := ts.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	elapsed := time.Since(start)

	grants := srv.log.refreshes()[before:]
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d calls from %d callers in %v, %d refreshes, expires_in %v; the server answered 401 %d times, for Transport to retry",
		total, ld.callers, elapsed.Round(time.Millisecond), len(grants), lifetimes(grants), counted.n.Load())
	if len(grants) != made {
		t.Errorf("the server saw %d refresh requests, the source reported %d new tokens", len(grants), made)
	}
	checkChain(t, first.RefreshToken, grants)
	checkEarlyRule(t, start, grants)

	if newest == nil {
		t.Fatal("no new token")
	}
	ok, err := srv.active(ctx, newest.RefreshToken)
	if err != nil || !ok {
		t.Errorf("introspection of the newest refresh token = %v, %v; want active: the family was revoked", ok, err)
	}
}

// checkChain checks that every refresh succeeded and sent the refresh
// token the one before returned (the first, the one from the code flow),
// so that none was sent twice.
func checkChain(t *testing.T, first string, grants []grant) {
	t.Helper()
	want := digestOf(first)
	seen := make(map[digest]bool)
	for i, g := range grants {
		if g.status != http.StatusOK || g.errCode != "" {
			t.Errorf("refresh %d: HTTP %d, error %q; want 200", i+1, g.status, g.errCode)
		}
		if seen[g.sent] {
			t.Errorf("refresh %d sent a refresh token sent before: a reuse", i+1)
		}
		seen[g.sent] = true
		if g.sent != want {
			t.Errorf("refresh %d did not send the refresh token of the answer before it", i+1)
		}
		if g.issued == (digest{}) {
			t.Errorf("refresh %d: the answer has no refresh token; the server should rotate", i+1)
		}
		want = g.issued
	}
}

// checkEarlyRule checks the refreshes against the source's early-refresh
// rules (expiry.go): a token whose answer said expires_in E, issued when
// its request was sent, turns stale at E/2 at the earliest (the early
// window is at most half the lifetime, and jitter only moves the refresh
// later), and the next refresh's request is sent after that. So the n-th
// refresh cannot reach the server before start plus half the sum of the
// lifetimes before it: that bound is exact, with no allowance for timing.
// A refresh forced by a 401 for a token that was not yet replaced would
// break it.
func checkEarlyRule(t *testing.T, start time.Time, grants []grant) {
	t.Helper()
	earliest := start
	for i, g := range grants {
		if g.at.Before(earliest) {
			t.Errorf("refresh %d came %v after the start, before the early-refresh rules allow it (%v): more than one refresh per early window",
				i+1, g.at.Sub(start), earliest.Sub(start))
		}
		if g.expiresIn <= 0 {
			t.Errorf("refresh %d: expires_in %d; the test needs a positive one", i+1, g.expiresIn)
		}
		earliest = earliest.Add(time.Duration(g.expiresIn) * time.Second / 2)
	}
}

func lifetimes(grants []grant) []int64 {
	var out []int64
	for _, g := range grants {
		out = append(out, g.expiresIn)
	}
	return out
}

// testRevocationStops revokes the refresh token of a running source
// (RFC 7009) and checks that the source stops cleanly: the callers get
// ErrRefreshRejected (one 401 first at most, for a call already sent with
// the revoked access token), and the source sends one refresh request,
// rejected, and no more.
func testRevocationStops(t *testing.T, srv *server, callers int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, srv.hc)

	var (
		mu     sync.Mutex // guards newest
		newest *oauth2.Token
	)
	onNew := func(_ context.Context, tok *oauth2.Token) error {
		mu.Lock()
		defer mu.Unlock()
		newest = tok
		return nil
	}
	// A source that starts from a refresh token alone, as one restarted
	// from a store: its first call refreshes.
	rt := srv.authorize(t).RefreshToken
	ts := refreshtoken.New(ctx, srv.conf, &oauth2.Token{RefreshToken: rt}, refreshtoken.WithOnNewToken(onNew))
	defer ts.Close()
	if _, err := ts.TokenContext(ctx); err != nil {
		t.Fatalf("first Token() = %v", err)
	}
	// Nothing calls the source from here until the load: it starts no
	// refresh of its own, so newest is the token in use.
	mu.Lock()
	tok := newest
	mu.Unlock()
	if err := srv.revoke(ctx, tok.RefreshToken); err != nil {
		t.Fatalf("revocation: %v", err)
	}
	for _, c := range []struct{ name, token string }{{"refresh", tok.RefreshToken}, {"access", tok.AccessToken}} {
		if ok, err := srv.active(ctx, c.token); err != nil || ok {
			t.Fatalf("introspection of the revoked %s token = %v, %v; want inactive", c.name, ok, err)
		}
	}
	sent := srv.log.total()

	client := refreshtoken.NewClient(ctx, ts)
	errs := make(chan error, callers)
	for range callers {
		go func() { errs <- callUntilRejected(ctx, client, srv.api, 3) }()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("a caller: %v", err)
		}
	}
	if _, err := ts.TokenContext(ctx); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Errorf("Token() after the rejection = %v, want ErrRefreshRejected", err)
	}
	ts.Invalidate()
	if _, err := ts.TokenContext(ctx); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Errorf("Token() after Invalidate = %v, want ErrRefreshRejected", err)
	}

	grants := srv.log.refreshes()
	after := srv.log.total() - sent
	if after != 1 {
		t.Fatalf("the source sent %d token requests after the revocation, want 1 (rejected, then none)", after)
	}
	if g := grants[len(grants)-1]; g.errCode != "invalid_grant" || g.sent != digestOf(tok.RefreshToken) {
		t.Errorf("the request after the revocation: HTTP %d, error %q, sent the revoked token: %v; want invalid_grant for the revoked token",
			g.status, g.errCode, g.sent == digestOf(tok.RefreshToken))
	}
}

// testReuseRevokesFamily checks that the server is strict, so that the
// family check of testRotationUnderLoad can fail: a refresh token sent a
// second time, after it was rotated, is rejected and revokes the newest
// refresh token of its family.
func testReuseRevokesFamily(t *testing.T, srv *server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, srv.hc)

	rt := srv.authorize(t).RefreshToken
	// Two sources given the same refresh token, with no shared store:
	// the mistake the library's stores exist to prevent.
	var rotated *oauth2.Token
	first := refreshtoken.New(ctx, srv.conf, &oauth2.Token{RefreshToken: rt}, refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
		rotated = tok // called before Token returns
		return nil
	}))
	defer first.Close()
	if _, err := first.TokenContext(ctx); err != nil {
		t.Fatalf("first source: Token() = %v", err)
	}
	if ok, err := srv.active(ctx, rotated.RefreshToken); err != nil || !ok {
		t.Fatalf("introspection of the rotated refresh token = %v, %v; want active", ok, err)
	}
	second := refreshtoken.New(ctx, srv.conf, &oauth2.Token{RefreshToken: rt})
	defer second.Close()
	if _, err := second.TokenContext(ctx); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Fatalf("second source, reusing the refresh token: Token() = %v, want ErrRefreshRejected", err)
	}
	if ok, err := srv.active(ctx, rotated.RefreshToken); err != nil || ok {
		t.Errorf("introspection of the rotated refresh token after the reuse = %v, %v; want inactive (the family revoked)", ok, err)
	}
}

// callUntil calls the API every pace until stop is closed, and returns the
// number of calls and the first failure: an error or a status but 200.
func callUntil(ctx context.Context, client *http.Client, api string, pace time.Duration, stop <-chan struct{}) (int, error) {
	tick := time.NewTicker(pace)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return n, nil
		case <-ctx.Done():
			return n, fmt.Errorf("the source had not made enough refreshes by the deadline (%d calls): %w", n, ctx.Err())
		case <-tick.C:
		}
		status, err := call(ctx, client, api)
		switch {
		case err != nil:
			return n, fmt.Errorf("call %d: %w", n+1, err)
		case status != http.StatusOK:
			return n, fmt.Errorf("call %d: HTTP %d, want 200", n+1, status)
		}
	}
}

// callUntilRejected calls the API until a call fails with
// ErrRefreshRejected, and then again more times, which must fail the same
// way. Before it, only the first call may fail otherwise: with a 401, if
// it was sent with the revoked access token.
func callUntilRejected(ctx context.Context, client *http.Client, api string, more int) error {
	for n := 1; ; n++ {
		status, err := call(ctx, client, api)
		switch {
		case errors.Is(err, refreshtoken.ErrRefreshRejected):
			for i := range more {
				if _, err := call(ctx, client, api); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
					return fmt.Errorf("call %d after the rejection: %v, want ErrRefreshRejected", i+1, err)
				}
			}
			return nil
		case err != nil:
			return fmt.Errorf("call %d: %w", n, err)
		case status != http.StatusUnauthorized || n > 1:
			return fmt.Errorf("call %d: HTTP %d, want ErrRefreshRejected (or a 401 for the first call)", n, status)
		}
	}
}

// call makes one GET through client and returns the status.
func call(ctx context.Context, client *http.Client, api string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// postForm posts form to endpoint, authenticated by auth if not nil, and
// decodes a JSON answer into v if v is not nil. Errors carry the status,
// not the body, which may echo a token.
func postForm(ctx context.Context, hc *http.Client, endpoint string, form url.Values, auth func(*http.Request), v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != nil {
		auth(req)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: HTTP %d", req.URL.Path, resp.StatusCode)
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// introspect asks an RFC 7662 endpoint whether token is active.
func introspect(ctx context.Context, hc *http.Client, endpoint string, auth func(*http.Request), token string) (bool, error) {
	var answer struct {
		Active bool `json:"active"`
	}
	err := postForm(ctx, hc, endpoint, url.Values{"token": {token}}, auth, &answer)
	return answer.Active, err
}

// revoke revokes a refresh token at an RFC 7009 endpoint.
func revoke(ctx context.Context, hc *http.Client, endpoint string, auth func(*http.Request), refreshToken string) error {
	return postForm(ctx, hc, endpoint, url.Values{"token": {refreshToken}, "token_type_hint": {"refresh_token"}}, auth, nil)
}

// basicAuth authenticates a request as the client of conf, with HTTP Basic
// and the id and secret form-encoded (RFC 6749 section 2.3.1).
func basicAuth(conf *oauth2.Config) func(*http.Request) {
	return func(r *http.Request) {
		r.SetBasicAuth(url.QueryEscape(conf.ClientID), url.QueryEscape(conf.ClientSecret))
	}
}

// countUnauthorized counts the answers 401 that pass through it.
type countUnauthorized struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countUnauthorized) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		c.n.Add(1)
	}
	return resp, err
}

// newHTTPClient returns a client for the sources and the load, with room
// for one idle connection per caller.
func newHTTPClient(callers int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = callers + 4
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}
