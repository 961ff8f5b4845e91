package refreshtokentest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"
)

// AssertionType is the client_assertion_type of a JWT client assertion
// (RFC 7523 section 2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLeeway is how far in the future an assertion's iat may be, for
// clocks that differ a little.
const assertionLeeway = 30 * time.Second

// maxAssertionAge bounds how long ago an assertion was issued, and how
// long it may live: a server keeps the jti of each until it expires.
const maxAssertionAge = 5 * time.Minute

// verifyAlgs are the JWS algorithms a key verifies: hash, PSS or not, and
// the curve of an ECDSA key (nil for RSA). The library has the same table
// for signing; this one is written apart on purpose: the server checks
// the library, so it shares none of its code.
var verifyAlgs = map[string]struct {
	hash  crypto.Hash
	pss   bool
	curve elliptic.Curve
}{
	"RS256": {hash: crypto.SHA256},
	"RS384": {hash: crypto.SHA384},
	"RS512": {hash: crypto.SHA512},
	"PS256": {hash: crypto.SHA256, pss: true},
	"PS384": {hash: crypto.SHA384, pss: true},
	"PS512": {hash: crypto.SHA512, pss: true},
	"ES256": {hash: crypto.SHA256, curve: elliptic.P256()},
	"ES384": {hash: crypto.SHA384, curve: elliptic.P384()},
	"ES512": {hash: crypto.SHA512, curve: elliptic.P521()},
}

// authenticateAssertion checks a private_key_jwt client assertion (OpenID
// Connect Core section 9) against cfg.ClientKey, as Auth0 does: every
// failure is 401 invalid_client. Called with mu held.
func (s *Server) authenticateAssertion(r *http.Request, params map[string][]string) (int, map[string]any) {
	get := func(k string) string {
		if vs := params[k]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	if _, _, basic := r.BasicAuth(); basic || get("client_secret") != "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "Use one client authentication method.")
	}
	assertion := get("client_assertion")
	if assertion != "" {
		s.issued = append(s.issued, assertion) // for Secrets: it must not leak either
	}
	if id := get("client_id"); id != "" && id != s.cfg.ClientID {
		return oauthError(http.StatusUnauthorized, "invalid_client", "Unknown client.")
	}
	if get("client_assertion_type") != AssertionType || assertion == "" {
		return oauthError(http.StatusUnauthorized, "invalid_client", "A client assertion (private_key_jwt) is required.")
	}
	if reason := s.checkAssertion(assertion, s.cfg.Clock()); reason != "" {
		s.stats.AssertionsRejected++
		return oauthError(http.StatusUnauthorized, "invalid_client", reason)
	}
	return 0, nil
}

// checkAssertion returns why assertion is not valid at now, or "".
func (s *Server) checkAssertion(assertion string, now time.Time) string {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "The client assertion is not a compact JWS."
	}
	var header struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
	}
	if err := decodePart(parts[0], &header); err != nil {
		return "The client assertion's header is malformed."
	}
	if header.Typ != "" && !strings.EqualFold(header.Typ, "JWT") {
		return "The client assertion's typ is not JWT."
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "The client assertion's signature is malformed."
	}
	if !verify(s.cfg.ClientKey, header.Alg, parts[0]+"."+parts[1], sig) {
		return "Invalid client assertion signature."
	}
	var claims struct {
		Iss, Sub, Jti string
		Aud           any
		Iat, Exp      *float64
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return "The client assertion's claims are malformed."
	}
	switch {
	case claims.Iss != s.cfg.ClientID || claims.Sub != s.cfg.ClientID:
		return "The client assertion's iss and sub must be the client ID."
	case !s.assertionAudience(claims.Aud):
		return "The client assertion's aud is not this server."
	case claims.Exp == nil || claims.Iat == nil:
		return "The client assertion has no exp or no iat."
	case !now.Before(unix(*claims.Exp)):
		return "The client assertion has expired."
	case unix(*claims.Iat).After(now.Add(assertionLeeway)):
		return "The client assertion's iat is in the future."
	case unix(*claims.Iat).Before(now.Add(-maxAssertionAge)) || unix(*claims.Exp).After(now.Add(maxAssertionAge)):
		return "The client assertion lives too long."
	case claims.Jti == "":
		return "The client assertion has no jti."
	}
	if s.jtis == nil {
		s.jtis = make(map[string]time.Time)
	}
	for jti, exp := range s.jtis {
		if !now.Before(exp) {
			delete(s.jtis, jti) // expired: it cannot be replayed anyway
		}
	}
	if _, seen := s.jtis[claims.Jti]; seen {
		return "The client assertion's jti has been used before."
	}
	s.jtis[claims.Jti] = unix(*claims.Exp)
	return ""
}

// assertionAudience reports whether aud, a string or a list of them, names
// this server: its token URL, or its base URL with or without a slash
// (Auth0 expects https://YOUR_DOMAIN/).
func (s *Server) assertionAudience(aud any) bool {
	ok := func(a any) bool {
		v, _ := a.(string)
		return v != "" && (v == s.TokenURL || v == s.URL || v == s.URL+"/")
	}
	if list, isList := aud.([]any); isList {
		return slices.ContainsFunc(list, ok)
	}
	return ok(aud)
}

// verify reports whether sig is a valid JWS signature by key of input
// with alg.
func verify(key crypto.PublicKey, alg, input string, sig []byte) bool {
	a, known := verifyAlgs[alg]
	if !known {
		return false
	}
	h := a.hash.New()
	h.Write([]byte(input))
	digest := h.Sum(nil)
	switch k := key.(type) {
	case *rsa.PublicKey:
		if a.curve != nil {
			return false
		}
		if a.pss {
			return rsa.VerifyPSS(k, a.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(k, a.hash, digest, sig) == nil
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if a.curve != k.Curve || len(sig) != 2*size {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	return nil
}

// unix is the instant of a NumericDate, within about 300 years of 1970:
// a client's value, which may be anything.
func unix(sec float64) time.Time {
	sec = min(max(sec, -1e10), 1e10)
	return time.Unix(0, 0).Add(time.Duration(sec * float64(time.Second)))
}
