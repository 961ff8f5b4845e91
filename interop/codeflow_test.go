package interop

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// authorizationCode sends the authorization request authURL as a browser
// would, with cookies, and follows its redirects until the one to
// redirect, whose code it returns after checking state. A redirect
// elsewhere (a login or consent page) goes to visit, which does what the
// user would and returns where the browser goes next; nil visit fails on
// such a redirect.
func authorizationCode(ctx context.Context, t *testing.T, hc *http.Client, authURL, redirect, state string, visit func(ctx context.Context, page *url.URL) (string, error)) string {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{
		Transport:     hc.Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	next := authURL
	for range 10 {
		loc, err := redirectOf(ctx, browser, next)
		if err != nil {
			t.Fatalf("authorization: %v", err)
		}
		switch {
		case strings.HasPrefix(loc.String(), redirect+"?"):
			q := loc.Query()
			if e := q.Get("error"); e != "" {
				t.Fatalf("authorization: error %q", e)
			}
			if q.Get("state") != state {
				t.Fatal("authorization: the state came back changed")
			}
			return q.Get("code")
		case visit == nil:
			t.Fatalf("authorization: redirected to %s", loc.Redacted())
		default:
			if next, err = visit(ctx, loc); err != nil {
				t.Fatalf("authorization: %v", err)
			}
		}
	}
	t.Fatal("authorization: too many redirects")
	return ""
}

// redirectOf GETs target and returns the redirect it answers.
func redirectOf(ctx context.Context, browser *http.Client, target string) (*url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := browser.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("GET %s: HTTP %d, not a redirect", req.URL.Path, resp.StatusCode)
	}
	return loc, nil
}

// codeFlow runs the authorization code flow: the authorization request,
// the pages visit accepts (nil if the server grants at once), the redirect
// with the code, and the code's exchange.
func codeFlow(t *testing.T, hc *http.Client, conf *oauth2.Config, visit func(context.Context, *url.URL) (string, error)) *oauth2.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	state := rand.Text()
	code := authorizationCode(ctx, t, hc, conf.AuthCodeURL(state), conf.RedirectURL, state, visit)
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), code)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("code exchange: no refresh token")
	}
	return tok
}
