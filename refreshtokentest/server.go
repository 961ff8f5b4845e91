// Package refreshtokentest provides a local OAuth 2.0 token server that
// behaves like Auth0's /oauth/token for the refresh grant, for tests and
// demos, in the way net/http/httptest provides servers.
//
// It also issues the first refresh token as Auth0 does, to a user who
// approves at once: the authorization code grant with PKCE at /authorize
// (see [Server.AuthURL]) and the device authorization grant (RFC 8628) at
// /oauth/device/code, with a verification page at /activate.
//
// The server rotates refresh tokens with reuse detection: every refresh
// returns a new refresh token and retires the one sent, and a retired
// refresh token sent again revokes its whole family, as Auth0 does. It also
// serves a protected API at /api that rejects an unknown or expired access
// token with 401, so a test can check that no caller ever used an expired
// token. A refresh request's audience parameter chooses the API its access
// token is for, from one family, as Auth0's multi-resource refresh tokens
// do, and /api?audience=X accepts only access tokens for X.
//
// Over TLS ([Config].TLS), it can require client certificates and
// authenticate the client by its certificate, and bind access tokens to
// it, as RFC 8705 describes; [CA] makes the certificates.
//
// It serves Auth0's revocation endpoint (RFC 7009) at /oauth/revoke
// ([Server.RevokeURL]): a refresh token sent there, with the client's
// authentication, revokes its family.
//
// Faults are injected per test: error answers with any status and headers
// (429 with Retry-After and X-RateLimit-*, 5xx, invalid_grant), latency,
// dropped connections, truncated, non-JSON and oversized bodies (see
// [Fault], [Server.Inject] and [Server.InjectRevoke]), revocation of a
// family ([Server.Revoke]), a reuse interval and a per-second rate limit
// ([Config]).
//
// For tests of code that keeps tokens, [MemoryStore] is a shared store in
// memory with faults to switch on, and [TestStore] and [TestSharedStore]
// check that a store keeps the contract of refreshtoken.Store or
// refreshtoken.SharedStore.
package refreshtokentest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
	// ClientKey, if set, is the public key (*rsa.PublicKey or
	// *ecdsa.PublicKey) of the client's private_key_jwt credential: the
	// client then authenticates with a signed JWT (client_assertion and
	// client_assertion_type, RFC 7523), never a secret, and ClientSecret is
	// ignored. The server checks the signature (RS256, RS384, RS512, PS256,
	// PS384, PS512, ES256, ES384 or ES512, fitting the key), iss and sub
	// (the client ID), aud (the token URL, or the base URL with or without
	// a slash, as Auth0 expects its tenant URL), exp (not past, by Clock,
	// and at most 5 minutes away), iat (at most 30 s ahead of Clock and 5
	// minutes behind) and that the jti was not seen before; a failure is
	// answered 401 invalid_client, as Auth0 does. Default none.
	ClientKey crypto.PublicKey
	// Public makes the client public: it authenticates with client_id
	// alone, and a secret sent anyway is refused.
	Public bool
	// TLS, if set, makes NewServer serve HTTPS with it: URL and the
	// endpoints start with https://. Its Certificates hold the server's
	// certificate, such as [CA.ServerCert]. To require client
	// certificates, as RFC 8705 servers do, set ClientAuth to
	// tls.RequireAndVerifyClientCert (or tls.VerifyClientCertIfGiven) and
	// ClientCAs to the CA's Pool. Default plain HTTP.
	TLS *tls.Config
	// ClientCertSubject and ClientCertDNS, if either is set, make the
	// client authenticate with its TLS certificate instead of a secret,
	// as RFC 8705's tls_client_auth (section 2.1.2, the metadata
	// tls_client_auth_subject_dn and tls_client_auth_san_dns): a request
	// carries client_id and no secret, and the client certificate,
	// verified against TLS.ClientCAs, must have this subject (as
	// [pkix.Name.String] writes it, such as "CN=test-client") or this DNS
	// name among its subject alternative names. ClientSecret is then
	// ignored. Default none: the client authenticates with a secret.
	ClientCertSubject, ClientCertDNS string
	// CertBoundTokens binds every access token issued over a connection
	// with a client certificate to that certificate (RFC 8705 section 3):
	// /api accepts it only over a connection with the same certificate,
	// and a JWT access token carries the certificate's thumbprint as
	// cnf.x5t#S256. Default false: tokens are bearer tokens.
	CertBoundTokens bool
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
	// OnRevokeRequest is OnTokenRequest for the revocation endpoint,
	// /oauth/revoke.
	OnRevokeRequest func(*http.Request)
	// RevokeReplacedAccess makes every grant revoke the access token the
	// family had before, as ory/fosite and Ory Hydra do: a request still
	// in flight with it is answered 401 once the refresh that replaced it
	// has reached the server. Default false: an access token stays valid
	// until it expires, as Auth0's do.
	RevokeReplacedAccess bool
	// ReuseInterval is Auth0's reuse interval (overlap period): for this
	// long after a refresh token is rotated, it is accepted once more, as
	// long as its successor has not been used, and rotation goes on from it.
	// Zero, the default, tolerates no reuse.
	ReuseInterval time.Duration
	// RateLimit is how many token requests a second (of Clock) the server
	// answers; past it, it answers 429 too_many_requests with
	// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset, as
	// Auth0 does, and it sends those headers on every token answer. Zero,
	// the default, is no limit.
	RateLimit int
	// DeviceInterval is the polling interval that /oauth/device/code
	// sends (whole seconds, at least 1); a device polling sooner, by
	// Clock, is answered slow_down. Default 5 seconds, RFC 8628's.
	DeviceInterval time.Duration
	// RefreshAbsolute and RefreshInactivity are the refresh tokens'
	// lifetimes, as an Auth0 application sets them: absolute from the
	// first issue of the family (a login, NewRefreshToken), which
	// rotation does not extend; inactivity from the issue of the refresh
	// token, or its last use without rotation. A refresh token past
	// either is answered 403 invalid_grant, as Auth0 does. Zero, the
	// default, is no limit.
	RefreshAbsolute, RefreshInactivity time.Duration
	// RefreshExpiresInField, if set, names the field in which an answer
	// that issues (or, without rotation, uses) a refresh token tells the
	// seconds it has left by those lifetimes, whole and rounded down:
	// "refresh_token_expires_in" as Azure AD and GitHub name it,
	// "refresh_expires_in" as Keycloak does. Nothing is sent for a
	// refresh token without a limit. Default none, as Auth0.
	RefreshExpiresInField string
	// Audiences lists the APIs (audience parameter of a refresh) the
	// server issues access tokens for, as an Auth0 tenant knows its APIs;
	// a refresh for another is answered 403 access_denied. A refresh
	// without audience is for the default API, "". Nil, the default,
	// accepts any audience. See [Server.AccessAudience].
	Audiences []string
	// DPoP makes the token endpoint require a DPoP proof (RFC 9449) on
	// every request, checked for its signature with its jwk, typ, htm,
	// htu, an iat within a minute of Clock, and a jti not seen before; a
	// request without one, or with a bad one, is answered 400
	// invalid_dpop_proof. Its tokens are of type DPoP, bound to the key
	// (its JWK thumbprint), and /api accepts them only as
	// "Authorization: DPoP" with a proof of the same key that carries
	// their hash (ath). For a Public client the refresh token is bound to
	// the key too: sent with another key's proof, it is answered 400
	// invalid_grant and stays valid. Default false: the DPoP header is
	// ignored and tokens are Bearer, as a server without DPoP does.
	DPoP bool
	// DPoPNonce makes proofs carry the server's current nonce, sent in
	// a DPoP-Nonce header on every answer of the token endpoint and /api
	// (see [Server.RotateDPoPNonce]); a proof without it is answered
	// use_dpop_nonce. Only with DPoP. Default false.
	DPoPNonce bool
	// Listener is where NewServer serves, such as a net.Listen on a
	// chosen address; the Server's URL is built from its address, and
	// Close closes it. Default a new listener on a loopback port.
	Listener net.Listener
}

// Fault is a misbehaviour of the token endpoint, injected with
// [Server.Inject]. The zero Fault is none. Only DropAfterRotate uses up
// the refresh token sent; every other fault leaves it valid, as a failed
// request does on Auth0.
type Fault struct {
	// Status, if not zero, is answered with an OAuth error body: Error, or
	// a code that fits the status (too_many_requests for 429,
	// server_error for 5xx, invalid_request otherwise).
	Status int
	// Error is the OAuth error code sent with Status, such as
	// "invalid_grant".
	Error string
	// Header is added to the answer: Retry-After, X-RateLimit-Reset.
	Header http.Header
	// Latency delays the request by this much real time before it is
	// processed; if the client gives up meanwhile, it is not processed.
	Latency time.Duration
	// Drop closes the connection without an answer, before the request is
	// processed.
	Drop bool
	// DropAfterRotate processes the refresh (the refresh token sent is
	// rotated), then closes the connection without an answer: the client
	// never sees the new refresh token.
	DropAfterRotate bool
	// Truncate answers 200 with a token response cut off in the middle.
	Truncate bool
	// NonJSON answers 200 with an HTML page.
	NonJSON bool
	// Huge answers 200 with a token response padded past 1 MiB.
	Huge bool
	// ReissueAccessToken answers a successful refresh with the access
	// token the family was last given, if it is still valid, and its
	// original expiry, as some servers do; the refresh token is rotated
	// as usual.
	ReissueAccessToken bool
}

// Stats counts what the server has seen.
type Stats struct {
	TokenRequests  int // requests to /oauth/token
	Refreshes      int // successful refreshes
	Rejected       int // token requests answered with an error, or not at all
	ReuseEvents    int // retired refresh tokens sent again (each revoked a family)
	ReuseTolerated int // retired refresh tokens accepted within the reuse interval
	RefreshExpired int // refresh tokens refused past RefreshAbsolute or RefreshInactivity
	// ReplacedSent counts retired refresh tokens sent again although the
	// answer that replaced them was delivered: a client that lost or
	// ignored a rotated token. It counts whether or not the reuse was
	// tolerated.
	ReplacedSent int
	RateLimited  int // token requests answered 429 by the rate limit
	// AssertionsRejected counts client assertions (ClientKey) refused:
	// a bad signature, claim or time, or a jti seen before.
	AssertionsRejected int
	APICalls           int // requests to /api
	APIRejected        int // of which answered 401
	// Logins counts tokens issued by the authorization code and device
	// grants: families started by a user's approval, not by a refresh.
	Logins int
	// RevokeRequests counts requests to /oauth/revoke, and Revocations
	// those that revoked a family that was alive (see [Server.RevokeURL]).
	RevokeRequests, Revocations int
	// YoungestRefreshed is the shortest time (of Clock) between a
	// refresh that issued a refresh token and the refresh that used it;
	// zero until a refresh token issued by a refresh has been used. A
	// client that refreshes before its access token nears expiry, as a
	// process that missed another's refresh would, shows here.
	YoungestRefreshed time.Duration
	// DPoPRejected counts token requests refused for their DPoP proof
	// (invalid_dpop_proof, use_dpop_nonce) or for a refresh token bound to
	// another key; DPoPReplays counts proofs refused for a jti seen
	// before, at either endpoint.
	DPoPRejected, DPoPReplays int
}

// Server is a running token server. Its methods are safe for concurrent
// use.
type Server struct {
	// URL is the base URL, http://127.0.0.1:port (https with Config.TLS).
	URL string
	// TokenURL is URL + "/oauth/token", APIURL URL + "/api".
	TokenURL, APIURL string
	// AuthURL is URL + "/authorize", DeviceAuthURL URL +
	// "/oauth/device/code", RevokeURL URL + "/oauth/revoke", Auth0's
	// paths.
	AuthURL, DeviceAuthURL, RevokeURL string

	cfg Config
	srv *httptest.Server

	mu      sync.Mutex
	stats   Stats
	refresh map[string]*refreshState // by refresh token
	access  map[string]time.Time     // access token to expiry
	// audiences maps every access token issued to its audience;
	// audienceRefreshes counts the successful refreshes per audience.
	audiences         map[string]string
	audienceRefreshes map[string]int
	faults            []injected
	revokes           []injected // faults of /oauth/revoke
	window            int64      // the second (UNIX) the rate limit counts in
	inWin             int        // requests in that second

	codes   map[string]*authCode   // by authorization code
	devices map[string]*deviceAuth // by device code
	users   map[string]*deviceAuth // by normalised user code
	issued  []string               // every secret issued, for Secrets

	// boundTo maps every certificate-bound access token to its
	// certificate's thumbprint (CertBoundTokens).
	boundTo map[string]string
	// x5t is, while token answers a request (mu held throughout), the
	// thumbprint that the access tokens it issues are bound to, "" for
	// none; issue reads it.
	x5t       string
	jtis      map[string]time.Time // client assertions' jti seen, to their exp
	dpopNonce string               // the nonce proofs must carry, with DPoPNonce
	dpopJTIs  map[string]bool      // the jti of every DPoP proof accepted
	accessJKT map[string]string    // access token to the thumbprint it is bound to
}

type injected struct {
	fault Fault
	left  int // requests still to get it; < 0: until Heal
}

// refreshState is one refresh token of a family.
type refreshState struct {
	family    *family
	retired   bool      // rotated: sending it again is reuse
	retiredAt time.Time // when it was rotated
	successor *refreshState
	delivered bool      // the answer with its successor reached the client
	issuedAt  time.Time // when a refresh issued it; zero for NewRefreshToken's
	lastUsed  time.Time // its last refresh, without rotation
}

type family struct {
	started time.Time // its first issue
	scope   string
	revoked bool
	access  string // the access token last issued, for ReissueAccessToken
	newest  string // the refresh token last issued, for Newest
	jkt     string // the thumbprint of the key it is bound to; "": none
}

// NewServer starts a Server on cfg.Listener, or on a new loopback port.
// Close it when done.
func NewServer(cfg Config) *Server {
	if cfg.ClientID == "" {
		cfg.ClientID = "test-client"
	}
	if cfg.ClientKey != nil {
		cfg.ClientSecret = ""
	} else if cfg.ClientSecret == "" && !cfg.Public {
		cfg.ClientSecret = "test-secret"
	}
	if cfg.Public || cfg.certAuth() {
		cfg.ClientSecret = ""
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	cfg.DeviceInterval = cfg.DeviceInterval.Truncate(time.Second)
	if cfg.DeviceInterval <= 0 {
		cfg.DeviceInterval = 5 * time.Second
	}
	s := &Server{
		cfg:     cfg,
		refresh: make(map[string]*refreshState),
		access:  make(map[string]time.Time),

		audiences:         make(map[string]string),
		audienceRefreshes: make(map[string]int),
		codes:             make(map[string]*authCode),
		devices:           make(map[string]*deviceAuth),
		users:             make(map[string]*deviceAuth),
		boundTo:           make(map[string]string),
		dpopNonce:         rand.Text(),
		dpopJTIs:          make(map[string]bool),
		accessJKT:         make(map[string]string),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", s.serveToken)
	mux.HandleFunc("/oauth/revoke", s.serveRevoke)
	mux.HandleFunc("/api", s.serveAPI)
	mux.HandleFunc("/authorize", s.serveAuthorize)
	mux.HandleFunc("/oauth/device/code", s.serveDeviceCode)
	mux.HandleFunc("/activate", s.serveActivate)
	s.srv = httptest.NewUnstartedServer(mux)
	if cfg.Listener != nil {
		s.srv.Listener.Close()
		s.srv.Listener = cfg.Listener
	}
	scheme := "http://"
	if cfg.TLS != nil {
		scheme = "https://"
		s.srv.TLS = cfg.TLS.Clone()
	}
	// Set before Start, as the handlers read them: httptest builds the
	// same URL in Start.
	s.URL = scheme + s.srv.Listener.Addr().String()
	s.TokenURL = s.URL + "/oauth/token"
	s.APIURL = s.URL + "/api"
	s.AuthURL = s.URL + "/authorize"
	s.DeviceAuthURL = s.URL + "/oauth/device/code"
	s.RevokeURL = s.URL + "/oauth/revoke"
	if cfg.TLS != nil {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Config returns an oauth2.Config for the server's client, with the secret
// in the request body, and the server's three endpoints.
func (s *Server) Config() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.cfg.ClientID,
		ClientSecret: s.cfg.ClientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: s.TokenURL, AuthURL: s.AuthURL, DeviceAuthURL: s.DeviceAuthURL,
			AuthStyle: oauth2.AuthStyleInParams},
	}
}

// NewRefreshToken starts a token family, as a user's login would, and
// returns its refresh token. scope is the space-separated scope granted; it
// holds "openid" for the refreshes to return an id_token.
func (s *Server) NewRefreshToken(scope string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.secret("rt-" + rand.Text())
	s.refresh[rt] = &refreshState{family: &family{started: s.cfg.Clock(), scope: scope, newest: rt}}
	return rt
}

// Secrets returns every secret the server has issued or accepts: refresh,
// access and id tokens, authorization and device codes, and the client
// secret. A test checks with it that none of them leaks into a log, an
// error or an event.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	secrets := slices.Clone(s.issued)
	if s.cfg.ClientSecret != "" {
		secrets = append(secrets, s.cfg.ClientSecret)
	}
	return secrets
}

// secret records v as issued and returns it. Called with mu held.
func (s *Server) secret(v string) string {
	s.issued = append(s.issued, v)
	return v
}

// Newest returns the refresh token the server issued last in the family of
// refreshToken (refreshToken itself until the family is first rotated),
// whether or not the answer that carried it was delivered, and whether the
// family is alive: not revoked, by [Server.Revoke] or for reuse. It returns
// "", false for a refresh token the server never issued. A test checks
// with it that a client kept, or saved, the latest rotation.
func (s *Server) Newest(refreshToken string) (newest string, alive bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.refresh[refreshToken]
	if rt == nil {
		return "", false
	}
	return rt.family.newest, !rt.family.revoked
}

// AccessExpiry returns when an access token the server issued expires, as
// /api judges it, and false for one it never issued (or that
// [Server.RevokeAccessTokens] revoked). A re-issued access token keeps its
// first expiry.
func (s *Server) AccessExpiry(access string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[access]
	return exp, ok
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Inject makes the next n token requests get f; n < 0 makes every request
// get it until Heal. Injected faults queue: the next request gets the
// oldest one with requests left.
func (s *Server) Inject(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, injected{fault: f, left: n})
}

// Heal drops every injected fault, of both endpoints.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults, s.revokes = nil, nil
}

// Revoke revokes the family of refreshToken, as an administrator or a
// password change would: every refresh token of it is answered
// invalid_grant from now on. It reports whether the token was known.
func (s *Server) Revoke(refreshToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.refresh[refreshToken]
	if rt != nil {
		rt.family.revoked = true
	}
	return rt != nil
}

// RevokeAccessTokens makes /api reject every access token issued so far,
// as a server that revokes access tokens early would.
func (s *Server) RevokeAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.access)
}

// nextFault takes the fault for one token request; called with mu held.
func (s *Server) nextFault() Fault {
	return next(&s.faults)
}

// next takes the oldest fault of q with requests left; called with mu
// held.
func next(q *[]injected) Fault {
	for len(*q) > 0 {
		f := &(*q)[0]
		if f.left == 0 {
			*q = (*q)[1:]
			continue
		}
		if f.left > 0 {
			f.left--
		}
		return f.fault
	}
	return Fault{}
}

// serveToken is /oauth/token.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if s.cfg.OnTokenRequest != nil {
		s.cfg.OnTokenRequest(r)
	}
	s.mu.Lock()
	s.stats.TokenRequests++
	f := s.nextFault()
	s.mu.Unlock()

	if f.Latency > 0 {
		// Read the body first: only then does the server notice, through
		// r.Context(), that the client gave up.
		b, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(b))
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return // the client gave up before the request was processed
		}
	}
	if f.Drop {
		s.mu.Lock()
		s.stats.Rejected++
		s.mu.Unlock()
		drop(w)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	var status int
	var body any
	var rotated *refreshState
	switch {
	case !s.allow(h):
		s.stats.RateLimited++
		status, body = oauthError(http.StatusTooManyRequests, "too_many_requests", "Rate limit exceeded.")
	case f.Status != 0:
		status, body = oauthError(f.Status, f.code(), "Injected fault.")
	case f.NonJSON:
		h.Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "<html><body>Bad gateway</body></html>")
		s.stats.Rejected++
		return
	case f.Truncate, f.Huge:
		b, _ := json.Marshal(map[string]any{"access_token": s.secret("at-" + rand.Text()), "token_type": "Bearer", "expires_in": 3600, "refresh_token": s.secret("rt-" + rand.Text())})
		if f.Truncate {
			b = b[:len(b)/2]
		} else {
			b = append(b[:len(b)-1], []byte(`,"padding":"`+strings.Repeat("x", 1<<20)+`"}`)...)
		}
		w.WriteHeader(http.StatusOK)
		w.Write(b)
		s.stats.Rejected++
		return
	default:
		status, body, rotated = s.token(r, f.ReissueAccessToken)
	}
	if s.cfg.DPoP && s.cfg.DPoPNonce {
		h.Set("DPoP-Nonce", s.dpopNonce)
	}
	for k, vs := range f.Header {
		h[k] = vs
	}
	if status != http.StatusOK {
		s.stats.Rejected++
	}
	if f.DropAfterRotate {
		if status == http.StatusOK {
			s.stats.Rejected++
		}
		drop(w)
		return
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
	if rotated != nil {
		rotated.delivered = true
	}
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic("refreshtokentest: cannot hijack the connection: " + err.Error())
	}
	conn.Close()
}

// allow applies the rate limit and sets its headers; called with mu held.
func (s *Server) allow(h http.Header) bool {
	if s.cfg.RateLimit <= 0 {
		return true
	}
	sec := s.cfg.Clock().Unix()
	if sec != s.window {
		s.window, s.inWin = sec, 0
	}
	s.inWin++
	h.Set("X-RateLimit-Limit", fmt.Sprint(s.cfg.RateLimit))
	h.Set("X-RateLimit-Remaining", fmt.Sprint(max(s.cfg.RateLimit-s.inWin, 0)))
	h.Set("X-RateLimit-Reset", fmt.Sprint(sec+1))
	return s.inWin <= s.cfg.RateLimit
}

func (f Fault) code() string {
	switch {
	case f.Error != "":
		return f.Error
	case f.Status == http.StatusTooManyRequests:
		return "too_many_requests"
	case f.Status >= 500:
		return "server_error"
	}
	return "invalid_request"
}

// serveAPI is a protected resource: 200 for a known, unexpired access
// token (for the audience of the query's audience parameter, if it has
// one), 401 otherwise.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.APICalls++
	if s.cfg.DPoP && s.cfg.DPoPNonce {
		w.Header().Set("DPoP-Nonce", s.dpopNonce)
	}
	auth := r.Header.Get("Authorization")
	access, ok := strings.CutPrefix(auth, "Bearer ")
	if dp, isDPoP := strings.CutPrefix(auth, "DPoP "); isDPoP && s.accessJKT[dp] != "" {
		if !s.serveDPoPAPI(w, r, dp) {
			return
		}
		access, ok = dp, true
	} else if s.accessJKT[access] != "" {
		ok = false // a bound token sent as a bearer token
	}
	exp, known := s.access[access]
	if !ok || !known || !s.cfg.Clock().Before(exp) || !s.forAudience(r, access) || !s.certBoundOK(r, access) {
		s.stats.APIRejected++
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid or expired access token", http.StatusUnauthorized)
		return
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	json.NewEncoder(w).Encode(map[string]any{"ok": true, "body": string(b)})
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
