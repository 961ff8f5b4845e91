// Package refreshtokentest provides a local OAuth 2.0 token server that
// behaves like Auth0's /oauth/token for the refresh grant, for tests and
// demos, in the way net/http/httptest provides servers.
//
// The server rotates refresh tokens with reuse detection: every refresh
// returns a new refresh token and retires the one sent, and a retired
// refresh token sent again revokes its whole family, as Auth0 does. It also
// serves a protected API at /api that rejects an unknown or expired access
// token with 401, so a test can check that no caller ever used an expired
// token.
package refreshtokentest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Config configures a Server. The zero value gives a confidential client
// "test-client" with secret "test-secret", one-hour access tokens and
// rotation.
type Config struct {
	// ClientID is the only client the server knows. Default "test-client".
	ClientID string
	// ClientSecret is the client's secret, checked in the body or in HTTP
	// Basic. Default "test-secret"; set Public for a client without one.
	ClientSecret string
	// Public makes the client public: it authenticates with client_id
	// alone, and a secret sent anyway is refused.
	Public bool
	// Lifetime is the access tokens' lifetime, sent as expires_in (whole
	// seconds, at least 1). Default one hour.
	Lifetime time.Duration
	// NoRotation keeps refresh tokens valid across refreshes, and leaves
	// refresh_token out of the response, as Auth0 does without rotation.
	NoRotation bool
	// ExpiresInString sends expires_in as a JSON string ("3600").
	ExpiresInString bool
	// OmitExpiresIn leaves expires_in out of the response.
	OmitExpiresIn bool
	// JWTAccessTokens issues access tokens that are JWTs with an exp claim
	// (unsigned: no client should check them).
	JWTAccessTokens bool
	// Clock is the server's clock, for issuing and checking expiry.
	// Default time.Now. Share a test's fake clock with the client to test
	// expiry without sleeping.
	Clock func() time.Time
	// OnTokenRequest, if set, is called at the start of every request to
	// the token endpoint, before it is answered: a test can count requests
	// there, or block to hold a refresh in flight.
	OnTokenRequest func(*http.Request)
}

// Stats counts what the server has seen.
type Stats struct {
	TokenRequests int // requests to /oauth/token
	Refreshes     int // successful refreshes
	Rejected      int // token requests answered with an error
	ReuseEvents   int // retired refresh tokens sent again (each revoked a family)
	APICalls      int // requests to /api
	APIRejected   int // of which answered 401
}

// Server is a running token server. Its methods are safe for concurrent
// use.
type Server struct {
	// URL is the base URL, http://127.0.0.1:port.
	URL string
	// TokenURL is URL + "/oauth/token", APIURL URL + "/api".
	TokenURL, APIURL string

	cfg Config
	srv *httptest.Server

	mu      sync.Mutex
	stats   Stats
	refresh map[string]*refreshState // by refresh token
	access  map[string]time.Time     // access token to expiry
}

// refreshState is one refresh token of a family.
type refreshState struct {
	family  *family
	retired bool // rotated: sending it again is reuse
}

type family struct {
	scope   string
	revoked bool
}

// NewServer starts a Server on a loopback port. Close it when done.
func NewServer(cfg Config) *Server {
	if cfg.ClientID == "" {
		cfg.ClientID = "test-client"
	}
	if cfg.ClientSecret == "" && !cfg.Public {
		cfg.ClientSecret = "test-secret"
	}
	if cfg.Public {
		cfg.ClientSecret = ""
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	s := &Server{
		cfg:     cfg,
		refresh: make(map[string]*refreshState),
		access:  make(map[string]time.Time),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", s.serveToken)
	mux.HandleFunc("/api", s.serveAPI)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	s.TokenURL = s.URL + "/oauth/token"
	s.APIURL = s.URL + "/api"
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Config returns an oauth2.Config for the server's client, with the secret
// in the request body.
func (s *Server) Config() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.cfg.ClientID,
		ClientSecret: s.cfg.ClientSecret,
		Endpoint:     oauth2.Endpoint{TokenURL: s.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
	}
}

// NewRefreshToken starts a token family, as a user's login would, and
// returns its refresh token. scope is the space-separated scope granted; it
// holds "openid" for the refreshes to return an id_token.
func (s *Server) NewRefreshToken(scope string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := "rt-" + rand.Text()
	s.refresh[rt] = &refreshState{family: &family{scope: scope}}
	return rt
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// serveToken is /oauth/token for the refresh grant.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if s.cfg.OnTokenRequest != nil {
		s.cfg.OnTokenRequest(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.TokenRequests++
	status, body := s.token(r)
	if status != http.StatusOK {
		s.stats.Rejected++
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// token answers one token request; called with mu held.
func (s *Server) token(r *http.Request) (int, map[string]any) {
	if r.Method != http.MethodPost {
		return oauthError(http.StatusMethodNotAllowed, "invalid_request", "Use POST.")
	}
	params, err := readParams(r)
	if err != nil {
		return oauthError(http.StatusBadRequest, "invalid_request", err.Error())
	}
	if status, body := s.authenticate(r, params); status != 0 {
		return status, body
	}
	if gt := params.Get("grant_type"); gt != "refresh_token" {
		return oauthError(http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("Unsupported grant type: %s", gt))
	}
	rt := s.refresh[params.Get("refresh_token")]
	switch {
	case rt == nil || rt.family.revoked:
		return oauthError(http.StatusForbidden, "invalid_grant", "Unknown or invalid refresh token.")
	case rt.retired:
		s.stats.ReuseEvents++
		rt.family.revoked = true
		return oauthError(http.StatusForbidden, "invalid_grant", "Unknown or invalid refresh token.")
	}
	scope := rt.family.scope
	if req := params.Get("scope"); req != "" {
		granted := strings.Fields(rt.family.scope)
		for _, sc := range strings.Fields(req) {
			if !slices.Contains(granted, sc) {
				return oauthError(http.StatusForbidden, "invalid_scope", fmt.Sprintf("Scope %q was not granted.", sc))
			}
		}
		scope = req
	}

	now := s.cfg.Clock()
	secs := max(int64(s.cfg.Lifetime/time.Second), 1)
	exp := now.Add(time.Duration(secs) * time.Second)
	access := "at-" + rand.Text()
	if s.cfg.JWTAccessTokens {
		access = jwt(map[string]any{"exp": exp.Unix(), "iat": now.Unix(), "jti": rand.Text()})
	}
	s.access[access] = exp
	s.stats.Refreshes++
	body := map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"scope":        scope,
	}
	switch {
	case s.cfg.OmitExpiresIn:
	case s.cfg.ExpiresInString:
		body["expires_in"] = fmt.Sprint(secs)
	default:
		body["expires_in"] = secs
	}
	if slices.Contains(strings.Fields(scope), "openid") {
		body["id_token"] = jwt(map[string]any{"sub": "user-1", "aud": s.cfg.ClientID, "iat": now.Unix(), "exp": exp.Unix()})
	}
	if !s.cfg.NoRotation {
		rt.retired = true
		next := "rt-" + rand.Text()
		s.refresh[next] = &refreshState{family: rt.family}
		body["refresh_token"] = next
	}
	return http.StatusOK, body
}

// authenticate checks the client (RFC 6749 2.3.1): the secret in HTTP Basic
// (id and secret each form-encoded) or in the body, never in both. It
// returns status 0 when the client is authenticated.
func (s *Server) authenticate(r *http.Request, params url.Values) (int, map[string]any) {
	id, secret := params.Get("client_id"), params.Get("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok {
		if params.Has("client_secret") {
			return oauthError(http.StatusBadRequest, "invalid_request", "Use one client authentication method.")
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(bid)
		secret, err2 = url.QueryUnescape(bsecret)
		if err1 != nil || err2 != nil {
			return oauthError(http.StatusUnauthorized, "invalid_client", "Malformed Basic credentials.")
		}
	}
	if id != s.cfg.ClientID || secret != s.cfg.ClientSecret {
		return oauthError(http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
	}
	return 0, nil
}

// readParams reads a form or JSON body, as Auth0 accepts both.
func readParams(r *http.Request) (url.Values, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, errors.New("Malformed form body.")
		}
		return r.PostForm, nil
	case "application/json":
		var m map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&m); err != nil {
			return nil, errors.New("Malformed JSON body.")
		}
		v := url.Values{}
		for k, x := range m {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("Parameter %s must be a string.", k)
			}
			v.Set(k, s)
		}
		return v, nil
	}
	return nil, fmt.Errorf("Unsupported Content-Type %q.", mt)
}

// serveAPI is a protected resource: 200 for a known, unexpired access
// token, 401 otherwise.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.APICalls++
	access, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	exp, known := s.access[access]
	if !ok || !known || !s.cfg.Clock().Before(exp) {
		s.stats.APIRejected++
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid or expired access token", http.StatusUnauthorized)
		return
	}
	fmt.Fprintln(w, `{"ok":true}`)
}

func oauthError(status int, code, desc string) (int, map[string]any) {
	return status, map[string]any{"error": code, "error_description": desc}
}

// jwt returns an unsigned JWT with the given claims.
func jwt(claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims)
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + ".sig"
}
