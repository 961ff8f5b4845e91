package refreshtokentest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// browser GETs u as a browser would, but stops at the first redirect:
// the redirect is to the client's loopback listener, which the test is.
func browser(t *testing.T, u string) *http.Response {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// authorize runs /authorize for conf and returns the redirect's query.
func authorize(t *testing.T, conf *oauth2.Config, state string, opts ...oauth2.AuthCodeOption) url.Values {
	t.Helper()
	resp := browser(t, conf.AuthCodeURL(state, opts...))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/authorize: %s, want 302", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := loc.Scheme+"://"+loc.Host+loc.Path, conf.RedirectURL; got != want {
		t.Fatalf("redirected to %s, want %s", got, want)
	}
	return loc.Query()
}

func codeConfig(s *Server, scopes ...string) *oauth2.Config {
	conf := s.Config()
	conf.RedirectURL = "http://127.0.0.1:49152/callback"
	conf.Scopes = scopes
	return conf
}

// TestAuthCodeFlow: a login through x/oauth2's own helpers, for a
// confidential and a public client; the refresh token it brings works.
func TestAuthCodeFlow(t *testing.T) {
	for _, public := range []bool{false, true} {
		s := NewServer(Config{Public: public})
		defer s.Close()
		conf := codeConfig(s, "openid", "offline_access")
		verifier := oauth2.GenerateVerifier()
		q := authorize(t, conf, "st-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("audience", "https://api"))
		if q.Get("state") != "st-1" || q.Get("code") == "" {
			t.Fatalf("public=%v: redirect query %v, want a code and state st-1", public, q)
		}
		tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("public=%v: Exchange: %v", public, err)
		}
		if tok.RefreshToken == "" || tok.Extra("id_token") == nil || tok.Extra("scope") != "openid offline_access" || tok.Expiry.IsZero() {
			t.Errorf("public=%v: token %+v, want a refresh token, an id_token, the scope and an expiry", public, tok)
		}
		if _, ok := s.AccessExpiry(tok.AccessToken); !ok {
			t.Errorf("public=%v: the access token is unknown to /api", public)
		}
		if _, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
			t.Errorf("public=%v: refreshing with the login's refresh token: %v", public, err)
		}
		if got := s.Stats(); got.Logins != 1 || got.Refreshes != 1 {
			t.Errorf("public=%v: stats %+v, want 1 login, 1 refresh", public, got)
		}
	}
}

// TestAuthCodeScopes: a refresh token only with offline_access, an
// id_token only with openid, as Auth0.
func TestAuthCodeScopes(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	tests := []struct {
		scopes           []string
		refresh, idToken bool
	}{
		{scopes: nil},
		{scopes: []string{"openid"}, idToken: true},
		{scopes: []string{"offline_access"}, refresh: true},
		{scopes: []string{"read", "openid", "offline_access"}, refresh: true, idToken: true},
	}
	for _, tt := range tests {
		conf := codeConfig(s, tt.scopes...)
		verifier := oauth2.GenerateVerifier()
		q := authorize(t, conf, "", oauth2.S256ChallengeOption(verifier))
		tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("scopes %q: %v", tt.scopes, err)
		}
		if got := tok.RefreshToken != ""; got != tt.refresh {
			t.Errorf("scopes %q: refresh token %v, want %v", tt.scopes, got, tt.refresh)
		}
		if got := tok.Extra("id_token") != nil; got != tt.idToken {
			t.Errorf("scopes %q: id_token %v, want %v", tt.scopes, got, tt.idToken)
		}
		if q.Has("state") {
			t.Errorf("scopes %q: state %q in the redirect, none sent", tt.scopes, q.Get("state"))
		}
	}
}

// TestAuthorizeRefusesRedirects: no redirect anywhere but loopback, and a
// 400 page, not a redirect, for a wrong redirect_uri or client.
func TestAuthorizeRefusesRedirects(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	tests := []struct {
		name, redirect string
		query          string // replaces the default query's tail
	}{
		{name: "https elsewhere", redirect: "https://evil.example/cb"},
		{name: "http elsewhere", redirect: "http://evil.example/cb"},
		{name: "loopback as a subdomain", redirect: "http://127.0.0.1.evil.example/cb"},
		{name: "localhost as a subdomain", redirect: "http://localhost.evil.example/cb"},
		{name: "loopback as user info", redirect: "http://127.0.0.1@evil.example/cb"},
		{name: "backslash", redirect: `http://evil.example\@127.0.0.1/cb`, query: ""},
		{name: "fragment", redirect: "http://127.0.0.1:1/cb#x"},
		{name: "fragment hiding a host", redirect: "http://evil.example#@127.0.0.1/"},
		{name: "escaped host", redirect: "http://127.0.0.1%2eevil.example/"},
		{name: "zone", redirect: "http://[::1%25eth0]:1/"},
		{name: "opaque", redirect: "http:127.0.0.1:1"},
		{name: "other scheme", redirect: "javascript://127.0.0.1/%0aalert(1)"},
		{name: "upper-case host", redirect: "http://LOCALHOST:1/"},
		{name: "missing", redirect: ""},
		{name: "repeated", redirect: "http://127.0.0.1:1/", query: "&redirect_uri=https%3A%2F%2Fevil.example%2F"},
		{name: "unknown client", redirect: "http://127.0.0.1:1/", query: "&client_id=other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{"response_type": {"code"}, "client_id": {"test-client"}, "redirect_uri": {tt.redirect},
				"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st"}}
			if strings.Contains(tt.query, "client_id") {
				q.Del("client_id")
			}
			resp := browser(t, s.AuthURL+"?"+q.Encode()+tt.query)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("%s: %s, Location %q; want 400 and no redirect", tt.redirect, resp.Status, resp.Header.Get("Location"))
			}
		})
	}
	for _, ok := range []string{"http://127.0.0.1:1/cb", "http://[::1]:8080/", "http://localhost:65535/x?keep=1", "http://127.0.0.1/"} {
		q := url.Values{"response_type": {"code"}, "client_id": {"test-client"}, "redirect_uri": {ok},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		resp := browser(t, s.AuthURL+"?"+q.Encode())
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), strings.Split(ok, "?")[0]) || loc.Query().Get("code") == "" {
			t.Errorf("%s: %s, Location %q; want a redirect there with a code", ok, resp.Status, resp.Header.Get("Location"))
		}
		if strings.Contains(ok, "keep=1") && loc.Query().Get("keep") != "1" {
			t.Errorf("%s: the redirect URI's own query is lost: %s", ok, loc)
		}
	}
}

// TestAuthorizeRedirectsErrors: once the redirect URI is known good, a bad
// request is redirected with error and the state, and no code.
func TestAuthorizeRedirectsErrors(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	tests := []struct {
		name   string
		change url.Values
		code   string
	}{
		{name: "no PKCE", change: url.Values{"code_challenge": nil, "code_challenge_method": nil}, code: "invalid_request"},
		{name: "plain PKCE", change: url.Values{"code_challenge_method": {"plain"}}, code: "invalid_request"},
		{name: "no PKCE method", change: url.Values{"code_challenge_method": nil}, code: "invalid_request"},
		{name: "short challenge", change: url.Values{"code_challenge": {challenge[:42]}}, code: "invalid_request"},
		{name: "challenge not base64url", change: url.Values{"code_challenge": {challenge[:42] + "+"}}, code: "invalid_request"},
		{name: "implicit grant", change: url.Values{"response_type": {"token"}}, code: "unsupported_response_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{"response_type": {"code"}, "client_id": {"test-client"}, "redirect_uri": {"http://127.0.0.1:1/cb"},
				"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st <&>"}}
			for k, v := range tt.change {
				q[k] = v
				if v == nil {
					q.Del(k)
				}
			}
			resp := browser(t, s.AuthURL+"?"+q.Encode())
			loc, err := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || err != nil {
				t.Fatalf("%s, Location %q; want a redirect", resp.Status, resp.Header.Get("Location"))
			}
			got := loc.Query()
			if got.Get("error") != tt.code || got.Get("state") != "st <&>" || got.Has("code") {
				t.Errorf("redirect query %v, want error %s, the state, no code", got, tt.code)
			}
		})
	}
}

// TestCodeExchangeRefusals: every exchange but the right one is refused,
// and spends the code; a code sent again revokes what it gave.
func TestCodeExchangeRefusals(t *testing.T) {
	clock := NewClock(time.Unix(1_800_000_000, 0))
	s := NewServer(Config{Clock: clock.Now})
	defer s.Close()
	conf := codeConfig(s, "offline_access")
	tests := []struct {
		name     string
		exchange func(code, verifier string) (*oauth2.Token, error)
		code     string // the error expected
		spends   bool   // whether the code is spent after it
	}{
		{name: "wrong verifier", code: "invalid_grant", spends: true, exchange: func(code, _ string) (*oauth2.Token, error) {
			return conf.Exchange(context.Background(), code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		}},
		{name: "no verifier", code: "invalid_grant", spends: true, exchange: func(code, _ string) (*oauth2.Token, error) {
			return conf.Exchange(context.Background(), code)
		}},
		{name: "the challenge as verifier", code: "invalid_grant", spends: true, exchange: func(code, verifier string) (*oauth2.Token, error) {
			return conf.Exchange(context.Background(), code, oauth2.VerifierOption(oauth2.S256ChallengeFromVerifier(verifier)))
		}},
		{name: "other redirect_uri", code: "invalid_grant", spends: true, exchange: func(code, verifier string) (*oauth2.Token, error) {
			other := *conf
			other.RedirectURL = "http://127.0.0.1:49153/callback"
			return other.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
		}},
		{name: "expired code", code: "invalid_grant", spends: true, exchange: func(code, verifier string) (*oauth2.Token, error) {
			clock.Add(codeLifetime)
			return conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
		}},
		{name: "unknown code", code: "invalid_grant", exchange: func(_, verifier string) (*oauth2.Token, error) {
			return conf.Exchange(context.Background(), "code-forged", oauth2.VerifierOption(verifier))
		}},
		{name: "wrong client secret", code: "invalid_client", exchange: func(code, verifier string) (*oauth2.Token, error) {
			other := *conf
			other.ClientSecret = "nope"
			return other.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
		}},
		{name: "wrong client", code: "invalid_client", exchange: func(code, verifier string) (*oauth2.Token, error) {
			other := *conf
			other.ClientID = "other-client"
			return other.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			code := authorize(t, conf, "st", oauth2.S256ChallengeOption(verifier)).Get("code")
			_, err := tt.exchange(code, verifier)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != tt.code {
				t.Fatalf("Exchange: %v, want %s", err, tt.code)
			}
			// The right exchange now: refused if the code was spent.
			_, err = conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
			if spent := err != nil; spent != tt.spends {
				t.Errorf("the right exchange after it: %v, want spent %v: a refused client or an unknown code must not spend the code, any other exchange must", err, tt.spends)
			}
		})
	}
	if got := s.Stats().Logins; got != 3 {
		t.Errorf("logins = %d, want 3 (after the unknown code and the two client refusals)", got)
	}
}

// TestCodeReuseRevokes: a code exchanged twice is refused the second time,
// and the family the first exchange started is revoked (RFC 6749 §4.1.2).
func TestCodeReuseRevokes(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	conf := codeConfig(s, "offline_access")
	verifier := oauth2.GenerateVerifier()
	code := authorize(t, conf, "st", oauth2.S256ChallengeOption(verifier)).Get("code")
	tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	_, err = conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("second exchange: %v, want invalid_grant", err)
	}
	if _, alive := s.Newest(tok.RefreshToken); alive {
		t.Error("the first exchange's family is alive after the code's reuse, want revoked")
	}
}

// TestListener: a Server on a listener of the caller's.
func TestListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{Listener: l})
	defer s.Close()
	if want := "http://" + l.Addr().String(); s.URL != want || s.AuthURL != want+"/authorize" {
		t.Errorf("URL %s, AuthURL %s; want %s", s.URL, s.AuthURL, want)
	}
	if status, body := post(t, s, refreshForm(s, s.NewRefreshToken("")), false); status != http.StatusOK {
		t.Errorf("refresh: %d %v", status, body)
	}
}
