package refreshtokentest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// codeLifetime is how long an authorization code can be exchanged, by the
// server's Clock. RFC 6749 §4.1.2 recommends ten minutes at most; a client
// exchanges its code at once.
const codeLifetime = time.Minute

// authCode is an authorization code that /authorize issued.
type authCode struct {
	redirectURI string // as sent to /authorize, to compare with the exchange's
	challenge   string // the S256 code_challenge
	scope       string
	expires     time.Time
	used        bool    // an exchange was tried: the code is spent
	family      *family // the family its exchange started, if it succeeded
}

// serveAuthorize is /authorize (RFC 6749 §4.1.1, RFC 7636): the user
// approves at once, without a login page, and the browser is redirected to
// redirect_uri with a code and the state. The client must send a PKCE
// code_challenge with method S256, public or confidential (RFC 9700 §2.1.1
// recommends PKCE for every client; Auth0 supports only S256). The scope
// asked for is granted whole. A request whose client_id or redirect_uri is
// wrong gets a 400 page, not a redirect (RFC 6749 §4.1.2.1); any other
// error is redirected with error, error_description and the state.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "Use GET.", http.StatusMethodNotAllowed)
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "Malformed query.", http.StatusBadRequest)
		return
	}
	for k, vs := range q {
		// RFC 6749 §3.1: a parameter must not be sent twice; which of
		// two redirect_uris would we trust?
		if len(vs) > 1 {
			http.Error(w, fmt.Sprintf("Parameter %q is repeated.", k), http.StatusBadRequest)
			return
		}
	}
	if q.Get("client_id") != s.cfg.ClientID {
		http.Error(w, "Unknown client_id.", http.StatusBadRequest)
		return
	}
	redirect, err := loopbackRedirect(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	answer := func(params url.Values) {
		if q.Has("state") {
			params.Set("state", q.Get("state"))
		}
		u := *redirect
		v := u.Query()
		for k, vs := range params {
			v[k] = vs
		}
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	fail := func(code, desc string) {
		answer(url.Values{"error": {code}, "error_description": {desc}})
	}
	challenge := q.Get("code_challenge")
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "Only response_type=code is supported.")
		return
	case challenge == "":
		fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256.")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256.")
		return
	case len(challenge) != 43 || !base64url(challenge):
		// BASE64URL(SHA256(verifier)) is always 43 characters.
		fail("invalid_request", "Malformed code_challenge.")
		return
	}
	code := "code-" + rand.Text()
	s.mu.Lock()
	s.secret(code)
	s.codes[code] = &authCode{
		redirectURI: q.Get("redirect_uri"),
		challenge:   challenge,
		scope:       q.Get("scope"),
		expires:     s.cfg.Clock().Add(codeLifetime),
	}
	s.mu.Unlock()
	answer(url.Values{"code": {code}})
}

// loopbackRedirect parses raw as a redirect URI on this machine's loopback
// interface, http on any port (RFC 8252 §7.3), and refuses any other. The
// server approves every request without asking anyone, so with any
// redirect URI allowed, a link to /authorize would send whoever follows it
// to a site of the link's choice, with a code for a PKCE challenge that
// the link's author made: an open redirector and a token dispenser on
// whatever host runs the test server. A loopback redirect stays on the
// machine of the browser that followed it.
func loopbackRedirect(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return nil, errors.New("Missing or malformed redirect_uri.")
	}
	// The host must stand in raw as parsed, right after "http://": no
	// user info, no escapes, nothing that a browser would read as
	// another host than Go does (such as "http://evil\@127.0.0.1/").
	rest, _ := strings.CutPrefix(raw, "http://")
	loopback := false
	for _, h := range []string{"127.0.0.1", "[::1]", "localhost"} {
		loopback = loopback || u.Host == h || strings.HasPrefix(u.Host, h+":")
	}
	if u.Scheme != "http" || !loopback || !strings.HasPrefix(rest, u.Host) || u.User != nil ||
		strings.ContainsAny(raw, `\#`) || u.Opaque != "" {
		return nil, errors.New("redirect_uri must be http://127.0.0.1:PORT/..., http://[::1]:PORT/... or http://localhost:PORT/..., without a fragment: this test server redirects only to loopback.")
	}
	return u, nil
}

// codeGrant answers grant_type=authorization_code (RFC 6749 §4.1.3, RFC
// 7636 §4.6); called with mu held. A code is spent by the first exchange
// that names it, whatever the outcome; sent again, it is answered
// invalid_grant and the family its exchange started is revoked, as RFC
// 6749 §4.1.2 asks, since someone else holds the code.
func (s *Server) codeGrant(params url.Values, now time.Time) (int, map[string]any) {
	c := s.codes[params.Get("code")]
	if c == nil || c.used {
		if c != nil && c.family != nil {
			c.family.revoked = true
		}
		return oauthError(http.StatusForbidden, "invalid_grant", "Invalid authorization code.")
	}
	c.used = true
	verifier := params.Get("code_verifier")
	sum := sha256.Sum256([]byte(verifier))
	switch {
	case !now.Before(c.expires):
		return oauthError(http.StatusForbidden, "invalid_grant", "Invalid authorization code.")
	case params.Get("redirect_uri") != c.redirectURI:
		return oauthError(http.StatusForbidden, "invalid_grant", "redirect_uri does not match the one sent to /authorize.")
	case len(verifier) < 43 || len(verifier) > 128 || !unreserved(verifier) ||
		subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.challenge)) != 1:
		return oauthError(http.StatusForbidden, "invalid_grant", "Failed to verify code verifier.")
	}
	body, fam := s.login(c.scope, now)
	c.family = fam
	return http.StatusOK, body
}

// base64url reports whether s is made of the base64url alphabet.
func base64url(s string) bool {
	return strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}

// unreserved reports whether s is made of RFC 3986's unreserved characters,
// the alphabet of a code verifier (RFC 7636 §4.1).
func unreserved(s string) bool {
	return strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") == ""
}
