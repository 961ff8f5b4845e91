package refreshtoken_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// requestLog records what a token server received, from its
// OnTokenRequest hook.
type requestLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (l *requestLog) hook(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r)
}

func (l *requestLog) last() *http.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs[len(l.reqs)-1]
}

func TestGrantRequestStyles(t *testing.T) {
	// A secret with characters that need form encoding, in the body and in
	// HTTP Basic (RFC 6749 2.3.1).
	const secret = "p@ss:w/rd +&=%é"
	tests := []struct {
		name      string
		public    bool
		authStyle oauth2.AuthStyle
		json      bool
		wantType  string
		wantBasic bool
	}{
		{name: "form, secret in body", authStyle: oauth2.AuthStyleInParams, wantType: "application/x-www-form-urlencoded"},
		{name: "form, auto-detect: secret in body", authStyle: oauth2.AuthStyleAutoDetect, wantType: "application/x-www-form-urlencoded"},
		{name: "form, secret in Basic", authStyle: oauth2.AuthStyleInHeader, wantType: "application/x-www-form-urlencoded", wantBasic: true},
		{name: "JSON, secret in body", authStyle: oauth2.AuthStyleInParams, json: true, wantType: "application/json"},
		{name: "JSON, secret in Basic", authStyle: oauth2.AuthStyleInHeader, json: true, wantType: "application/json", wantBasic: true},
		{name: "public client, form", public: true, wantType: "application/x-www-form-urlencoded"},
		{name: "public client, JSON", public: true, json: true, wantType: "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log requestLog
			srv := refreshtokentest.NewServer(refreshtokentest.Config{ClientSecret: secret, Public: tt.public, OnTokenRequest: log.hook})
			defer srv.Close()
			conf := srv.Config()
			conf.Endpoint.AuthStyle = tt.authStyle
			var opts []refreshtoken.Option
			if tt.json {
				opts = append(opts, refreshtoken.WithJSONBody())
			}
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: srv.NewRefreshToken("offline_access")}, opts...)
			defer ts.Close()

			tok, err := ts.Token()
			if err != nil {
				t.Fatalf("Token() error = %v", err)
			}
			if tok.AccessToken == "" || tok.Type() != "Bearer" {
				t.Errorf("Token() = %+v, want a Bearer access token", tok)
			}
			if got := srv.Stats(); got.TokenRequests != 1 || got.Refreshes != 1 {
				t.Errorf("server stats = %+v, want exactly 1 request, 1 refresh", got)
			}
			r := log.last()
			if got := r.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			if _, _, basic := r.BasicAuth(); basic != tt.wantBasic {
				t.Errorf("HTTP Basic used = %v, want %v", basic, tt.wantBasic)
			}
		})
	}
}

// TestAutoDetectSendsOnce shows why AuthStyleAutoDetect is not used: on an
// error x/oauth2 sends the same refresh token a second time.
func TestAutoDetectSendsOnce(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}`)
	}))
	defer srv.Close()
	conf := &oauth2.Config{ClientID: "id", ClientSecret: "secret", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}

	x := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: "rt"})
	if _, err := x.Token(); err == nil {
		t.Fatal("x/oauth2 Token() succeeded against a failing server")
	}
	if got := requests.Swap(0); got != 2 {
		t.Logf("x/oauth2 with AuthStyleAutoDetect sent %d requests (2 when this test was written)", got)
	}

	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: "rt"})
	defer ts.Close()
	if _, err := ts.Token(); err == nil {
		t.Fatal("Token() succeeded against a failing server")
	}
	if got := requests.Load(); got != 1 {
		t.Errorf("requests = %d, want 1: the refresh token must be sent once", got)
	}
}

// TestJSONBodyAsSeed checks the JSON body field by field against the sample
// request of Auth0's how-to, plus a scope and an endpoint parameter.
func TestJSONBodyAsSeed(t *testing.T) {
	tests := []struct {
		name   string
		scopes []string
		params url.Values
		want   map[string]any
	}{
		{
			name: "as in the sample",
			want: map[string]any{"grant_type": "refresh_token", "client_id": "my-client", "client_secret": "YOUR_CLIENT_SECRET", "refresh_token": "YOUR_REFRESH_TOKEN"},
		},
		{
			name:   "with scope and audience",
			scopes: []string{"openid", "read:things"},
			params: url.Values{"audience": {"https://api.example.com"}},
			want: map[string]any{"grant_type": "refresh_token", "client_id": "my-client", "client_secret": "YOUR_CLIENT_SECRET", "refresh_token": "YOUR_REFRESH_TOKEN",
				"scope": "openid read:things", "audience": "https://api.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bodies := make(chan map[string]any, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var m map[string]any
				if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
					t.Errorf("request body is not JSON: %v", err)
				}
				bodies <- m
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":86400}`)
			}))
			defer srv.Close()
			conf := &oauth2.Config{ClientID: "my-client", ClientSecret: "YOUR_CLIENT_SECRET", Scopes: tt.scopes, Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: "YOUR_REFRESH_TOKEN"},
				refreshtoken.WithJSONBody(), refreshtoken.WithEndpointParams(tt.params))
			defer ts.Close()
			if _, err := ts.Token(); err != nil {
				t.Fatalf("Token() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, recv(t, "request body", bodies)); diff != "" {
				t.Errorf("JSON body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFormBodyParams(t *testing.T) {
	forms := make(chan url.Values, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		forms <- r.PostForm
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`)
	}))
	defer srv.Close()
	conf := &oauth2.Config{ClientID: "c", ClientSecret: "s", Scopes: []string{"a", "b"}, Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: "rt"},
		refreshtoken.WithEndpointParams(url.Values{"audience": {"https://api"}}))
	defer ts.Close()
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() error = %v", err)
	}
	want := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt"}, "client_id": {"c"}, "client_secret": {"s"}, "scope": {"a b"}, "audience": {"https://api"}}
	if diff := cmp.Diff(want, recv(t, "request form", forms)); diff != "" {
		t.Errorf("form body mismatch (-want +got):\n%s", diff)
	}
}

func TestRotationAdopted(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, Lifetime: time.Hour})
	defer srv.Close()
	initial := srv.NewRefreshToken("offline_access")
	var saved []string
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: initial},
		refreshtoken.WithClock(clock.Now),
		refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
			saved = append(saved, tok.RefreshToken) // called with the refresh lock held
			return nil
		}))
	defer ts.Close()

	seen := map[string]bool{initial: true}
	for i := range 5 {
		tok, err := ts.Token()
		if err != nil {
			t.Fatalf("lifetime %d: Token() error = %v", i, err)
		}
		if seen[tok.RefreshToken] {
			t.Fatalf("lifetime %d: refresh token not rotated", i)
		}
		seen[tok.RefreshToken] = true
		if saved[len(saved)-1] != tok.RefreshToken {
			t.Errorf("lifetime %d: callback saw a refresh token other than the one handed out", i)
		}
		clock.Add(time.Hour) // expired: the next call must use the rotated token
	}
	if got := srv.Stats(); got.Refreshes != 5 || got.ReuseEvents != 0 || got.Rejected != 0 {
		t.Errorf("server stats = %+v, want 5 refreshes, no reuse, no rejection", got)
	}
}

func TestNoRotationKeepsRefreshToken(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, NoRotation: true})
	defer srv.Close()
	rt := srv.NewRefreshToken("offline_access")
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt}, refreshtoken.WithClock(clock.Now))
	defer ts.Close()
	for i := range 3 {
		tok, err := ts.Token()
		if err != nil {
			t.Fatalf("Token() error = %v", err)
		}
		if tok.RefreshToken != rt {
			t.Errorf("refresh %d: RefreshToken changed though the server returned none", i)
		}
		clock.Add(time.Hour)
	}
	if got := srv.Stats().Refreshes; got != 3 {
		t.Errorf("refreshes = %d, want 3", got)
	}
}

func TestIDTokenAndScope(t *testing.T) {
	tests := []struct {
		name        string
		granted     string
		scopes      []string
		wantScope   string
		wantIDToken bool
	}{
		{name: "openid returns an id_token", granted: "openid profile offline_access", wantScope: "openid profile offline_access", wantIDToken: true},
		{name: "no openid, no id_token", granted: "read offline_access", wantScope: "read offline_access"},
		{name: "narrowed by conf.Scopes", granted: "openid read write offline_access", scopes: []string{"openid", "read"}, wantScope: "openid read", wantIDToken: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := refreshtokentest.NewServer(refreshtokentest.Config{})
			defer srv.Close()
			conf := srv.Config()
			conf.Scopes = tt.scopes
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: srv.NewRefreshToken(tt.granted)})
			defer ts.Close()
			tok, err := ts.Token()
			if err != nil {
				t.Fatalf("Token() error = %v", err)
			}
			if got := tok.Extra("scope"); got != tt.wantScope {
				t.Errorf(`Extra("scope") = %v, want %q`, got, tt.wantScope)
			}
			id, _ := tok.Extra("id_token").(string)
			if (id != "") != tt.wantIDToken {
				t.Errorf(`Extra("id_token") = %q, want present: %v`, id, tt.wantIDToken)
			}
		})
	}
}

func TestScopeNotGranted(t *testing.T) {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	conf := srv.Config()
	conf.Scopes = []string{"admin"}
	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: srv.NewRefreshToken("read")})
	defer ts.Close()
	_, err := ts.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
		t.Errorf("Token() error = %v, want a RetrieveError with invalid_scope", err)
	}
}

// TestExpiry checks where a token's expiry comes from. The server answers
// 5 s after the request was sent; expiry counts from the send.
func TestExpiry(t *testing.T) {
	tests := []struct {
		name   string
		cfg    refreshtokentest.Config
		want   time.Time
		reason string
	}{
		{name: "expires_in number", want: t0.Add(time.Hour)},
		{name: "expires_in string", cfg: refreshtokentest.Config{ExpiresInString: true}, want: t0.Add(time.Hour)},
		{name: "no expires_in, JWT exp", cfg: refreshtokentest.Config{OmitExpiresIn: true, JWTAccessTokens: true},
			want: t0.Add(5*time.Second + time.Hour), reason: "exp is set by the server when it answers, 5 s after the send"},
		{name: "no expires_in, opaque token", cfg: refreshtokentest.Config{OmitExpiresIn: true},
			want: time.Time{}, reason: "as in x/oauth2: never expires, used until Invalidate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			cfg := tt.cfg
			cfg.Clock = clock.Now
			cfg.Lifetime = time.Hour
			cfg.OnTokenRequest = func(*http.Request) { clock.Add(5 * time.Second) } // a slow answer
			srv := refreshtokentest.NewServer(cfg)
			defer srv.Close()
			var got time.Time
			ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
				refreshtoken.WithClock(clock.Now),
				refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error { got = tok.Expiry; return nil }))
			defer ts.Close()
			if _, err := ts.Token(); err != nil {
				t.Fatalf("Token() error = %v", err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("Expiry = %v, want %v (%s)", got, tt.want, tt.reason)
			}
		})
	}
}

// TestNeverExpiringToken: a token with no expiry is used until Invalidate.
func TestNeverExpiringToken(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, OmitExpiresIn: true})
	defer srv.Close()
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}, refreshtoken.WithClock(clock.Now))
	defer ts.Close()
	for range 3 {
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		if !tok.Expiry.IsZero() {
			t.Errorf("Expiry = %v, want zero", tok.Expiry)
		}
		clock.Add(24 * time.Hour)
	}
	if got := srv.Stats().Refreshes; got != 1 {
		t.Errorf("refreshes = %d, want 1", got)
	}
	ts.Invalidate()
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	if got := srv.Stats().Refreshes; got != 2 {
		t.Errorf("refreshes after Invalidate = %d, want 2", got)
	}
}

// Secrets the error tests put in server answers, to check they never show
// in an error message.
const (
	testRefreshToken = "rt-SECRET-refresh-token"
	testClientSecret = "SECRET-client-secret"
	testAccessToken  = "at-SECRET-access-token"
)

func TestResponses(t *testing.T) {
	type answer struct {
		status      int
		contentType string
		header      http.Header
		body        string
	}
	jsonAnswer := func(status int, body string) answer {
		return answer{status: status, contentType: "application/json", body: body}
	}
	tests := []struct {
		name      string
		answer    answer
		wantErr   string // substring of the error; "" for success
		wantCode  string // RetrieveError.ErrorCode; "-" for no RetrieveError
		wantDesc  string
		wantExtra map[string]any // checked with Extra on success
	}{
		{name: "RFC 6749 invalid_grant 400", answer: jsonAnswer(400, `{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}`),
			wantErr: `400 Bad Request: "invalid_grant": "Unknown or invalid refresh token."`, wantCode: "invalid_grant", wantDesc: "Unknown or invalid refresh token."},
		{name: "invalid_grant 403 (Auth0)", answer: jsonAnswer(403, `{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}`),
			wantErr: "403", wantCode: "invalid_grant", wantDesc: "Unknown or invalid refresh token."},
		{name: "invalid_client 401", answer: jsonAnswer(401, `{"error":"invalid_client","error_description":"Client authentication failed."}`),
			wantErr: "invalid_client", wantCode: "invalid_client"},
		{name: "unauthorized_client", answer: jsonAnswer(400, `{"error":"unauthorized_client"}`), wantErr: "unauthorized_client", wantCode: "unauthorized_client"},
		{name: "unsupported_grant_type", answer: jsonAnswer(400, `{"error":"unsupported_grant_type"}`), wantErr: "unsupported_grant_type", wantCode: "unsupported_grant_type"},
		{name: "invalid_scope", answer: jsonAnswer(400, `{"error":"invalid_scope"}`), wantErr: "invalid_scope", wantCode: "invalid_scope"},
		{name: "invalid_request with error_uri", answer: jsonAnswer(400, `{"error":"invalid_request","error_uri":"https://example.com/e"}`), wantErr: "invalid_request", wantCode: "invalid_request"},
		{name: "access_denied", answer: jsonAnswer(403, `{"error":"access_denied","error_description":"Blocked."}`), wantErr: "access_denied", wantCode: "access_denied", wantDesc: "Blocked."},
		{name: "429 with rate-limit headers", answer: answer{status: 429, contentType: "application/json",
			header: http.Header{"X-Ratelimit-Reset": {"1764072000"}, "Retry-After": {"7"}},
			body:   `{"error":"too_many_requests","error_description":"Rate limit exceeded."}`},
			wantErr: "429", wantCode: "too_many_requests", wantDesc: "Rate limit exceeded."},
		{name: "500 HTML", answer: answer{status: 500, contentType: "text/html", body: "<html>oops</html>"}, wantErr: "500 Internal Server Error", wantCode: ""},
		{name: "200 with error field", answer: jsonAnswer(200, `{"error":"invalid_grant","error_description":"reused"}`), wantErr: `"invalid_grant"`, wantCode: "invalid_grant", wantDesc: "reused"},
		{name: "error echoing the secrets", answer: jsonAnswer(400, `{"error":"invalid_grant","error_description":"token `+testRefreshToken+` of client with secret `+testClientSecret+` is revoked"}`),
			wantErr: "[redacted]", wantCode: "invalid_grant", wantDesc: "token [redacted] of client with secret [redacted] is revoked"},
		{name: "redirect not followed", answer: answer{status: 307, header: http.Header{"Location": {"/elsewhere"}}}, wantErr: "307", wantCode: ""},
		{name: "missing access_token", answer: jsonAnswer(200, `{"token_type":"Bearer","expires_in":3600}`), wantErr: "no access_token", wantCode: "-"},
		{name: "empty access_token", answer: jsonAnswer(200, `{"access_token":"","expires_in":3600}`), wantErr: "no access_token", wantCode: "-"},
		{name: "access_token not a string", answer: jsonAnswer(200, `{"access_token":123}`), wantErr: "access_token is a float64", wantCode: "-"},
		{name: "expires_in not a number", answer: jsonAnswer(200, `{"access_token":"`+testAccessToken+`","expires_in":"soon"}`), wantErr: "not a number", wantCode: "-"},
		{name: "expires_in a bool", answer: jsonAnswer(200, `{"access_token":"`+testAccessToken+`","expires_in":true}`), wantErr: "not a number", wantCode: "-"},
		{name: "not JSON", answer: answer{status: 200, contentType: "application/json", body: `{"access_token":"` + testAccessToken + `",`}, wantErr: "not a JSON object", wantCode: "-"},
		{name: "JSON array", answer: jsonAnswer(200, `["`+testAccessToken+`"]`), wantErr: "not a JSON object", wantCode: "-"},
		{name: "JSON null", answer: jsonAnswer(200, `null`), wantErr: "not a JSON object", wantCode: "-"},
		{name: "huge body", answer: jsonAnswer(200, `{"access_token":"`+testAccessToken+`","pad":"`+strings.Repeat("x", 2<<20)+`"}`), wantErr: "larger than 1048576 bytes", wantCode: "-"},
		{name: "huge error body", answer: answer{status: 502, contentType: "text/html", body: strings.Repeat("x", 2<<20)}, wantErr: "larger than 1048576 bytes", wantCode: "-"},
		{name: "success", answer: jsonAnswer(200, `{"access_token":"at","token_type":"Bearer","expires_in":86400,"scope":"openid","id_token":"id","unknown":{"x":1}}`),
			wantExtra: map[string]any{"scope": "openid", "id_token": "id", "expires_in": float64(86400)}},
		{name: "success, form-encoded response", answer: answer{status: 200, contentType: "application/x-www-form-urlencoded", body: "access_token=at&token_type=bearer&scope=repo&expires_in=3600"},
			wantExtra: map[string]any{"scope": "repo", "expires_in": int64(3600)}},
		{name: "success, expires_in as string", answer: jsonAnswer(200, `{"access_token":"at","expires_in":"3600"}`), wantExtra: map[string]any{"expires_in": "3600"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if requests.Add(1) > 1 {
					t.Errorf("second request to %s: redirect followed or request repeated", r.URL.Path)
				}
				for k, vs := range tt.answer.header {
					w.Header()[k] = vs
				}
				if tt.answer.contentType != "" {
					w.Header().Set("Content-Type", tt.answer.contentType)
				}
				w.WriteHeader(tt.answer.status)
				io.WriteString(w, tt.answer.body)
			}))
			defer srv.Close()
			conf := &oauth2.Config{ClientID: "c", ClientSecret: testClientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: testRefreshToken})
			defer ts.Close()

			tok, err := ts.Token()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Token() error = %v", err)
				}
				for k, want := range tt.wantExtra {
					if got := tok.Extra(k); got != want {
						t.Errorf("Extra(%q) = %#v, want %#v", k, got, want)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("Token() = %+v, want error containing %q", tok, tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("Token() error = %q, want it to contain %q", msg, tt.wantErr)
			}
			if !strings.HasPrefix(msg, "refreshtoken: ") {
				t.Errorf("error %q does not start with the package name", msg)
			}
			for _, secret := range []string{testRefreshToken, testClientSecret, testAccessToken} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains a secret", msg)
				}
			}
			var re *oauth2.RetrieveError
			isRE := errors.As(err, &re)
			if tt.wantCode == "-" {
				if isRE {
					t.Errorf("errors.As found a RetrieveError in %q; want none", msg)
				}
				return
			}
			if !isRE {
				t.Fatalf("errors.As(%q, *oauth2.RetrieveError) = false", msg)
			}
			if re.ErrorCode != tt.wantCode || (tt.wantDesc != "" && re.ErrorDescription != tt.wantDesc) {
				t.Errorf("RetrieveError = {%q, %q}, want {%q, %q}", re.ErrorCode, re.ErrorDescription, tt.wantCode, tt.wantDesc)
			}
			if re.Response == nil || re.Response.StatusCode != tt.answer.status {
				t.Errorf("RetrieveError.Response = %v, want status %d", re.Response, tt.answer.status)
			}
			for k := range tt.answer.header {
				if got, want := re.Response.Header.Get(k), tt.answer.header.Get(k); got != want {
					t.Errorf("RetrieveError.Response.Header[%s] = %q, want %q", k, got, want)
				}
			}
			for _, secret := range []string{testRefreshToken, testClientSecret} {
				if strings.Contains(string(re.Body), secret) || strings.Contains(re.Error(), secret) {
					t.Errorf("RetrieveError holds a secret: %q", re.Body)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	defer srv.Close()
	good := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
	tests := []struct {
		name    string
		conf    *oauth2.Config
		tok     *oauth2.Token
		opts    []refreshtoken.Option
		wantErr string
	}{
		{name: "nil config", conf: nil, tok: &oauth2.Token{RefreshToken: "rt"}, wantErr: "nil *oauth2.Config"},
		{name: "nil token", conf: good, tok: nil, wantErr: "no refresh token"},
		{name: "expired access token, no refresh token", conf: good, tok: &oauth2.Token{AccessToken: "at", Expiry: time.Unix(1, 0)}, wantErr: "no refresh token"},
		{name: "no token URL", conf: &oauth2.Config{ClientID: "c"}, tok: &oauth2.Token{RefreshToken: "rt"}, wantErr: "TokenURL is empty"},
		{name: "reserved parameter", conf: good, tok: &oauth2.Token{RefreshToken: "rt"},
			opts: []refreshtoken.Option{refreshtoken.WithEndpointParams(url.Values{"grant_type": {"password"}})}, wantErr: `may not set "grant_type"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := refreshtoken.New(context.Background(), tt.conf, tt.tok, tt.opts...)
			defer ts.Close()
			for range 2 { // every call, not only the first
				if _, err := ts.Token(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Token() error = %v, want one containing %q", err, tt.wantErr)
				}
			}
		})
	}
	if got := requests.Load(); got != 0 {
		t.Errorf("%d requests sent with a broken configuration, want 0", got)
	}
}

// TestContextValuesOnly: the ctx given to New picks the HTTP client, and
// cancelling it does not break later refreshes (x/oauth2 issue 388).
func TestContextValuesOnly(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	var viaClient atomic.Int32
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		viaClient.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), oauth2.HTTPClient, hc))
	ts := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}, refreshtoken.WithClock(clock.Now))
	defer ts.Close()
	cancel()
	for i := range 3 {
		if _, err := ts.Token(); err != nil {
			t.Fatalf("refresh %d after the ctx given to New was cancelled: %v", i, err)
		}
		clock.Add(time.Hour)
	}
	if got := viaClient.Load(); got != 3 {
		t.Errorf("requests through the context's HTTP client = %d, want 3", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSecretsNotInErrorsOnNetworkFailure: a connection error names the URL
// but no credential.
func TestSecretsNotInErrorsOnNetworkFailure(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	conf := &oauth2.Config{ClientID: "c", ClientSecret: testClientSecret, Endpoint: oauth2.Endpoint{TokenURL: url, AuthStyle: oauth2.AuthStyleInHeader}}
	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: testRefreshToken})
	defer ts.Close()
	_, err := ts.Token()
	if err == nil {
		t.Fatal("Token() succeeded with no server")
	}
	msg := fmt.Sprint(err)
	if strings.Contains(msg, testRefreshToken) || strings.Contains(msg, testClientSecret) {
		t.Errorf("error %q contains a secret", msg)
	}
}

// TestRotatedTokenKeptFromUnusableAnswer: a 200 that rotates the refresh
// token but is otherwise unusable still hands over the new refresh token:
// it is saved and sent next, never the retired one.
func TestRotatedTokenKeptFromUnusableAnswer(t *testing.T) {
	tests := []struct {
		name  string
		first string
	}{
		{name: "bad expires_in", first: `{"access_token":"at1","refresh_token":"rt2","expires_in":"soon"}`},
		{name: "no access_token", first: `{"refresh_token":"rt2","expires_in":3600}`},
		{name: "already-expired JWT", first: `{"access_token":"eyJhbGciOiJub25lIn0.eyJleHAiOjEwMDB9.sig","refresh_token":"rt2"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := make(chan string, 10)
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				sent <- r.PostForm.Get("refresh_token")
				w.Header().Set("Content-Type", "application/json")
				if n.Add(1) == 1 {
					io.WriteString(w, tt.first)
					return
				}
				io.WriteString(w, `{"access_token":"at2","refresh_token":"rt3","expires_in":3600}`)
			}))
			defer srv.Close()
			clock := newFakeClock(t0)
			var saved []string
			conf := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: "rt1"}, refreshtoken.WithClock(clock.Now),
				refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
					saved = append(saved, tok.RefreshToken)
					return nil
				}))
			defer ts.Close()
			_, err := ts.Token()
			if err == nil {
				t.Fatal("Token() succeeded on an unusable answer")
			}
			clock.Set(retryAt(t, err))
			tok := mustToken(t, ts)
			if got := []string{recv(t, "request", sent), recv(t, "request", sent)}; got[0] != "rt1" || got[1] != "rt2" {
				t.Errorf("refresh tokens sent = %q, want [rt1 rt2]", got)
			}
			if want := []string{"rt2", "rt3"}; !slicesEqual(saved, want) {
				t.Errorf("callback saw %q, want %q", saved, want)
			}
			if tok.RefreshToken != "rt3" {
				t.Errorf("RefreshToken = %q, want rt3", tok.RefreshToken)
			}
		})
	}
}

func slicesEqual(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }
