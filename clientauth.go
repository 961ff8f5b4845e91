package refreshtoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"
)

// Client authentication with a signed JWT: private_key_jwt of OpenID
// Connect Core section 9, RFC 7523 section 2.2.

// assertionType is the client_assertion_type of a JWT assertion (RFC 7523
// section 2.2).
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long an assertion is valid: short, since it is
// a bearer credential until it expires, and enough for a slow request.
const assertionLifetime = 60 * time.Second

// ClientAssertion configures private_key_jwt client authentication (OpenID
// Connect Core section 9, RFC 7523): each request to the token and
// revocation endpoints carries a JWT signed by the client instead of a
// client secret. Set Signer, KeyID and Algorithm for the library to sign,
// or Assert to sign elsewhere; not both.
//
// The library signs with the standard library: Signer is a
// [crypto.Signer], so a key kept in a KMS or an HSM works, and the private
// key never passes through this package's values.
type ClientAssertion struct {
	// Signer signs the assertions: its Public key is an *rsa.PublicKey of
	// at least 2048 bits for RS256, RS384, RS512, PS256, PS384 and PS512,
	// or an *ecdsa.PublicKey on P-256, P-384 or P-521 for ES256, ES384 and
	// ES512. It is called once per request, from the goroutine making it.
	Signer crypto.Signer
	// KeyID is the kid header, the id the server knows the key by (Auth0
	// shows it with the credential). Empty: no kid.
	KeyID string
	// Algorithm is the JWS alg: one of those listed for Signer. Auth0
	// accepts RS256, RS384 and PS256.
	Algorithm string
	// Audience is the aud claim. Empty: the token endpoint URL, which RFC
	// 7523 names; Auth0 expects its tenant URL, https://YOUR_DOMAIN/. The
	// revocation request carries the same aud.
	Audience string
	// Assert, if set, returns the assertion for one request, a compact
	// JWT for the audience aud (Audience, or the token endpoint URL), in
	// place of Signer, KeyID and Algorithm. It is called once per request:
	// each must carry a new jti, or a server that checks replays rejects
	// it. An error fails the request before anything is sent.
	Assert func(ctx context.Context, aud string) (string, error)
}

// String describes c without its Signer, whose value may be the private
// key itself (an *ecdsa.PrivateKey prints its numbers).
func (c ClientAssertion) String() string {
	return fmt.Sprintf("refreshtoken.ClientAssertion{KeyID %q, Algorithm %q, Audience %q, Signer set %t, Assert set %t}",
		c.KeyID, c.Algorithm, c.Audience, c.Signer != nil, c.Assert != nil)
}

// GoString is String, so that %#v prints no key either.
func (c ClientAssertion) GoString() string { return c.String() }

// Format prints String whatever the verb: fmt prints the fields of a struct
// for verbs such as %d or %x, and the Signer may be the private key.
func (c ClientAssertion) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }

// WithClientAssertion makes [New] authenticate the client with a signed
// JWT (private_key_jwt) instead of conf.ClientSecret, which is then never
// sent, nor is HTTP Basic: every refresh and revocation request carries
// client_assertion_type (urn:ietf:params:oauth:client-assertion-type:jwt-bearer)
// and a new client_assertion whose iss and sub are conf.ClientID, with a
// random jti, iat now by the source's clock ([WithClock]) and exp 60 s
// later. A request is still sent once: a new assertion does not make a
// retry.
//
// A bad configuration (no Signer or both Signer and Assert, an unknown
// Algorithm, a key that does not fit it, an RSA key under 2048 bits) is
// returned by every call to Token, and nothing is sent. A failure to sign
// fails that refresh, with nothing sent, as a transient failure: the
// refresh token is still good. No error, event or String holds an
// assertion, and an assertion a server echoes is redacted. [Cache]
// ignores it. By default the client authenticates with its secret, if any.
func WithClientAssertion(a ClientAssertion) Option {
	return func(o *options) { o.assertion = &a }
}

// jwsAlg is how a JWS algorithm signs: its hash and its key.
type jwsAlg struct {
	hash  crypto.Hash
	pss   bool           // RSASSA-PSS, else PKCS #1 v1.5 for RSA keys
	curve elliptic.Curve // ECDSA on curve; nil for RSA
}

var jwsAlgs = map[string]jwsAlg{
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

// asserter makes the client assertions of a grant. It is not modified
// after New.
type asserter struct {
	conf     ClientAssertion
	alg      jwsAlg
	header   string // the encoded JWS header
	clientID string
	aud      string
	now      func() time.Time
}

// newAsserter checks a and returns the asserter of a client clientID
// whose token endpoint is tokenURL.
func newAsserter(a ClientAssertion, clientID, tokenURL string, now func() time.Time) (*asserter, error) {
	as := &asserter{conf: a, clientID: clientID, aud: a.Audience, now: now}
	if as.aud == "" {
		as.aud = tokenURL
	}
	if a.Assert != nil {
		if a.Signer != nil {
			return nil, errors.New("refreshtoken: ClientAssertion sets both Signer and Assert")
		}
		return as, nil
	}
	if a.Signer == nil {
		return nil, errors.New("refreshtoken: ClientAssertion has no Signer and no Assert")
	}
	alg, ok := jwsAlgs[a.Algorithm]
	if !ok {
		return nil, fmt.Errorf("refreshtoken: ClientAssertion.Algorithm %q is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512", a.Algorithm)
	}
	switch pub := a.Signer.Public().(type) {
	case *rsa.PublicKey:
		if pub == nil || pub.N == nil {
			return nil, errors.New("refreshtoken: the ClientAssertion Signer's RSA public key is empty")
		}
		if alg.curve != nil {
			return nil, fmt.Errorf("refreshtoken: ClientAssertion.Algorithm %s needs an ECDSA key, and the Signer's is RSA", a.Algorithm)
		}
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("refreshtoken: the ClientAssertion Signer's RSA key has %d bits: at least 2048 are needed", pub.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if pub == nil || pub.Curve == nil {
			return nil, errors.New("refreshtoken: the ClientAssertion Signer's ECDSA public key is empty")
		}
		if alg.curve == nil || pub.Curve != alg.curve {
			return nil, fmt.Errorf("refreshtoken: ClientAssertion.Algorithm %s does not fit the Signer's ECDSA key on %s", a.Algorithm, pub.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("refreshtoken: the ClientAssertion Signer's key is a %T: RSA or ECDSA are supported", pub)
	}
	as.alg = alg
	h := map[string]string{"alg": a.Algorithm, "typ": "JWT"}
	if a.KeyID != "" {
		h["kid"] = a.KeyID
	}
	hj, _ := json.Marshal(h) // a map of strings always marshals
	as.header = base64.RawURLEncoding.EncodeToString(hj)
	return as, nil
}

// assertion returns a new client assertion. Its errors hold no part of
// one.
func (as *asserter) assertion(ctx context.Context) (string, error) {
	if as.conf.Assert != nil {
		a, err := as.conf.Assert(ctx, as.aud)
		if err != nil {
			return "", fmt.Errorf("refreshtoken: ClientAssertion.Assert failed: %w", err)
		}
		if a == "" {
			return "", errors.New("refreshtoken: ClientAssertion.Assert returned an empty assertion")
		}
		return a, nil
	}
	var id [16]byte
	rand.Read(id[:]) // never fails (crypto/rand)
	now := as.now()
	claims, _ := json.Marshal(map[string]any{
		"iss": as.clientID,
		"sub": as.clientID,
		"aud": as.aud,
		"jti": base64.RawURLEncoding.EncodeToString(id[:]),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}) // strings and numbers always marshal
	input := as.header + "." + base64.RawURLEncoding.EncodeToString(claims)
	sig, err := as.sign(input)
	if err != nil {
		return "", fmt.Errorf("refreshtoken: signing the client assertion (%s) failed: %w", as.conf.Algorithm, err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// sign returns the JWS signature of input (RFC 7518 section 3).
func (as *asserter) sign(input string) ([]byte, error) {
	h := as.alg.hash.New()
	h.Write([]byte(input))
	digest := h.Sum(nil)
	var opts crypto.SignerOpts = as.alg.hash
	if as.alg.pss {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: as.alg.hash}
	}
	sig, err := as.conf.Signer.Sign(rand.Reader, digest, opts)
	if err != nil || as.alg.curve == nil {
		return sig, err
	}
	// A crypto.Signer gives ECDSA signatures in ASN.1 DER; JWS wants r and
	// s as fixed-size big-endian integers, one after the other.
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) > 0 || rs.R == nil || rs.S == nil || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
		return nil, errors.New("the Signer's ECDSA signature is not ASN.1 DER")
	}
	size := (as.alg.curve.Params().BitSize + 7) / 8
	if rs.R.BitLen() > size*8 || rs.S.BitLen() > size*8 {
		return nil, errors.New("the Signer's ECDSA signature does not fit the curve")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

// assertionSecrets is what of assertion must not appear in an error: all
// of it, and its signature alone.
func assertionSecrets(assertion string) []string {
	if assertion == "" {
		return nil
	}
	list := []string{assertion}
	if i := strings.LastIndexByte(assertion, '.'); i >= 0 && i+1 < len(assertion) {
		list = append(list, assertion[i+1:])
	}
	return list
}
