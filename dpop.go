package refreshtoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// WithDPoP makes the source prove possession of key (RFC 9449): every
// request to the token and revocation endpoints carries a DPoP proof
// signed with it, and [Transport] sends a token of type DPoP as
// "Authorization: DPoP <token>" with a fresh proof per request that also
// binds the access token (ath). key may be an *ecdsa.PrivateKey on P-256
// (ES256), an ed25519.PrivateKey (EdDSA), or any crypto.Signer whose
// public key is one of these, such as a key in a KMS or HSM. Another key
// makes every refresh fail with an error that says so, as does a nil key.
//
// The application provides the key, and keeps it across restarts as it
// keeps other private keys (a KMS, an HSM, a file it encrypts): the library
// never writes a private key anywhere, and no error, event or String holds
// a key, a proof or an access token. A refresh token bound to a key (a
// public client's, RFC 9449 section 5) only works with that same key: the
// source keeps which ([ExtraDPoPThumbprint]) and does not send it with
// another ([ErrDPoPKeyMismatch]). See docs/dpop.md.
//
// When a server answers use_dpop_nonce with a DPoP-Nonce header, the
// request is sent once more with the nonce; nonces are remembered per
// origin and updated from every DPoP-Nonce header. An answer whose
// token_type is not DPoP fails the refresh: the server ignored the proof
// and issued a bearer token, which a thief could use without the key, and
// the source does not quietly accept the weaker token (the rotated refresh
// token of such an answer is kept). By default no proof is sent.
func WithDPoP(key crypto.Signer) Option {
	return func(o *options) { o.dpop, o.dpopKey = true, key }
}

// dpop signs the proofs of one key. Its fields other than nonces are not
// modified after newDPoP.
type dpop struct {
	key    crypto.Signer
	alg    string           // "ES256" or "EdDSA"
	header []byte           // the JWS header, encoded
	thumb  string           // the JWK thumbprint (RFC 7638) of the key
	now    func() time.Time // the source's clock, for iat

	mu     sync.Mutex        // guards nonces
	nonces map[string]string // by origin (scheme://host), the latest DPoP-Nonce
}

// maxNonces bounds how many origins' nonces are kept; maxNonce bounds a
// nonce's length. A server chooses both.
const (
	maxNonces = 64
	maxNonce  = 512
)

// newDPoP returns the signer of key's proofs, or an error if its key type
// is not supported.
func newDPoP(key crypto.Signer, now func() time.Time) (*dpop, error) {
	if key == nil {
		return nil, errors.New("refreshtoken: WithDPoP was given a nil key")
	}
	var alg string
	var jwk map[string]string
	enc := base64.RawURLEncoding
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		if pub == nil || pub.Curve == nil {
			return nil, errors.New("refreshtoken: WithDPoP was given an invalid ECDSA key")
		}
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("refreshtoken: WithDPoP supports ECDSA keys on P-256 only, not %s", pub.Curve.Params().Name)
		}
		ek, err := pub.ECDH()
		if err != nil {
			return nil, errors.New("refreshtoken: WithDPoP was given an invalid ECDSA key")
		}
		b := ek.Bytes() // 0x04 || X || Y, each 32 bytes
		alg = "ES256"
		jwk = map[string]string{"kty": "EC", "crv": "P-256", "x": enc.EncodeToString(b[1:33]), "y": enc.EncodeToString(b[33:])}
	case ed25519.PublicKey:
		alg = "EdDSA"
		jwk = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": enc.EncodeToString(pub)}
	default:
		return nil, fmt.Errorf("refreshtoken: WithDPoP supports ECDSA P-256 and Ed25519 keys, not %T", pub)
	}
	h, _ := json.Marshal(struct {
		Typ string            `json:"typ"`
		Alg string            `json:"alg"`
		JWK map[string]string `json:"jwk"`
	}{"dpop+jwt", alg, jwk})
	return &dpop{key: key, alg: alg, header: []byte(enc.EncodeToString(h)), thumb: Thumbprint(jwk), now: now, nonces: make(map[string]string)}, nil
}

// Thumbprint returns the JWK thumbprint (RFC 7638) of a public JWK given
// as its members: the base64url SHA-256 of its required members, in
// lexicographic order, as JSON without spaces. A server binds DPoP tokens
// to it (the jkt confirmation).
func Thumbprint(jwk map[string]string) string {
	var members []string
	switch jwk["kty"] {
	case "EC":
		members = []string{"crv", "kty", "x", "y"}
	case "OKP":
		members = []string{"crv", "kty", "x"}
	case "RSA":
		members = []string{"e", "kty", "n"}
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m)
		v, _ := json.Marshal(jwk[m])
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	sum := sha256.Sum256([]byte(b.String()))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// proof returns a DPoP proof for a request of method to target, with the
// nonce last seen from target's origin, and ath for access ("": none).
func (d *dpop) proof(method string, target *url.URL, access string) (string, error) {
	claims := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		ATH   string `json:"ath,omitempty"`
		Nonce string `json:"nonce,omitempty"`
	}{JTI: rand.Text(), HTM: method, HTU: htu(target), IAT: d.now().Unix(), Nonce: d.nonce(target)}
	if access != "" {
		sum := sha256.Sum256([]byte(access))
		claims.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	input := make([]byte, 0, len(d.header)+1+enc.EncodedLen(len(payload)))
	input = append(input, d.header...)
	input = append(input, '.')
	input = enc.AppendEncode(input, payload)
	sig, err := d.sign(input)
	if err != nil {
		// Not the signer's error, which may say anything about the key.
		return "", fmt.Errorf("refreshtoken: signing the DPoP proof (%s) failed", d.alg)
	}
	out := append(input, '.')
	return string(enc.AppendEncode(out, sig)), nil
}

// sign returns the JWS signature of input: for ES256, r || s, each 32
// bytes (RFC 7518 section 3.4), not the ASN.1 a crypto.Signer returns.
func (d *dpop) sign(input []byte) ([]byte, error) {
	if d.alg == "EdDSA" {
		return d.key.Sign(rand.Reader, input, crypto.Hash(0))
	}
	sum := sha256.Sum256(input)
	der, err := d.key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) > 0 ||
		rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
		return nil, errors.New("not an ECDSA signature")
	}
	sig := make([]byte, 64)
	rs.R.FillBytes(sig[:32])
	rs.S.FillBytes(sig[32:])
	return sig, nil
}

// htu is the htu claim for target: its URL without query, fragment or
// user information (which may hold a password).
func htu(target *url.URL) string {
	u := *target
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// origin is the key nonces are kept under.
func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

func (d *dpop) nonce(target *url.URL) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nonces[origin(target)]
}

// remember keeps the DPoP-Nonce of resp, an answer from target, if it has
// one, and reports whether it did.
func (d *dpop) remember(target *url.URL, resp *http.Response) bool {
	n := resp.Header.Get("DPoP-Nonce")
	if n == "" || len(n) > maxNonce {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o := origin(target)
	if _, ok := d.nonces[o]; !ok && len(d.nonces) >= maxNonces {
		clear(d.nonces) // a client of that many servers fetches nonces again
	}
	d.nonces[o] = n
	return true
}

// nonceChallenge reports whether resp, a 401 of a resource server, asks
// for a DPoP nonce (RFC 9449 section 9).
func nonceChallenge(resp *http.Response) bool {
	if resp.StatusCode != http.StatusUnauthorized {
		return false
	}
	// A header value may hold several challenges (RFC 9110 section
	// 11.6.1), and a parameter value may come as a token or quoted.
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		params, ok := dpopChallenge(strings.ToLower(v))
		if ok && (strings.Contains(params, `error="use_dpop_nonce"`) || strings.Contains(params, "error=use_dpop_nonce")) {
			return true
		}
	}
	return false
}

// dpopChallenge returns what follows the DPoP scheme in v, a lowercased
// WWW-Authenticate value: the scheme at its start or after a comma.
func dpopChallenge(v string) (params string, ok bool) {
	for rest := v; ; {
		i := strings.Index(rest, "dpop")
		if i < 0 {
			return "", false
		}
		before := strings.TrimRight(rest[:i], " \t")
		after := rest[i+len("dpop"):]
		if (before == "" && len(rest) == len(v) || strings.HasSuffix(before, ",")) && (after == "" || after[0] == ' ' || after[0] == '\t') {
			return after, true
		}
		rest = after
	}
}

// downgradeError is the failure of a refresh whose answer has a
// token_type other than DPoP though a proof was sent.
// The type is named only if it is Bearer: the server chose it.
type downgradeError struct{ bearer bool }

func (e *downgradeError) Error() string {
	t := "another token_type"
	if e.bearer {
		t = "token_type Bearer"
	}
	return "refreshtoken: the token endpoint answered a DPoP request with " + t + ", not DPoP: the access token is not bound to the key, and is not used"
}

// prove adds a DPoP proof to req, a request to the token or revocation
// endpoint, if the source has a key.
func (g *grant) prove(req *http.Request) error {
	if g.dpop == nil {
		return nil
	}
	p, err := g.dpop.proof(req.Method, req.URL, "")
	if err != nil {
		return err
	}
	req.Header.Set("DPoP", p)
	return nil
}

// nonceResend keeps the DPoP-Nonce of resp, the token endpoint's answer
// to req, and reports whether req is to be sent again with it: the answer
// is the error use_dpop_nonce. The resend sends the same refresh token a
// second time, which is not a reuse: a server answers use_dpop_nonce
// after checking the proof and before processing the grant (RFC 9449
// section 8), so the refresh token was not used. The caller resends once
// at most; a second use_dpop_nonce fails the refresh, which counts in the
// failure policy as any failed refresh does.
func (g *grant) nonceResend(req *http.Request, resp *http.Response, body []byte) bool {
	if g.dpop == nil || !g.dpop.remember(req.URL, resp) || resp.StatusCode != http.StatusBadRequest {
		return false
	}
	fields, _, _ := decode(resp.Header.Get("Content-Type"), body)
	code, _ := field(fields, "error")
	// An answer that carries a token is no refusal before the refresh
	// token was used, whatever its error says: no resend then.
	return code == "use_dpop_nonce" && fields["refresh_token"] == nil && fields["access_token"] == nil
}

// dpopType returns tok, a new token fetched with a DPoP proof, with its
// type spelled DPoP, or an error if the server issued another type.
func dpopType(tok *oauth2.Token) (*oauth2.Token, error) {
	if !strings.EqualFold(tok.TokenType, "DPoP") {
		return nil, &downgradeError{bearer: tok.TokenType == "" || strings.EqualFold(tok.TokenType, "Bearer")}
	}
	tok.TokenType = "DPoP" // tok is not handed out yet
	return tok, nil
}

// signer returns the DPoP signer for e's token: the source's, if it has
// one and the token is of type DPoP; else nil.
func (t *Transport) signer(e *entry) *dpop {
	g := t.Source.grant
	if g == nil || g.dpop == nil || e.tok == nil || !strings.EqualFold(e.tok.TokenType, "DPoP") {
		return nil
	}
	return g.dpop
}

// authorize returns a copy of req with e's Authorization header and, for
// a DPoP token, a fresh proof for req that binds the access token.
func (t *Transport) authorize(req *http.Request, e *entry) (*http.Request, error) {
	r := authorized(req, e.auth)
	if d := t.signer(e); d != nil {
		p, err := d.proof(req.Method, req.URL, e.tok.AccessToken)
		if err != nil {
			return nil, err
		}
		r.Header.Set("DPoP", p)
	}
	return r, nil
}

// nonceRetry keeps the DPoP-Nonce of resp, the answer to req sent with
// e's token, and if resp is a 401 that asks for a nonce (RFC 9449 section
// 9), sends req once more with a proof that carries it. The token is not
// dropped: the server did not reject it, only the proof's lack of a
// nonce. It returns resp itself when there is nothing to do.
func (t *Transport) nonceRetry(req *http.Request, e *entry, resp *http.Response) (*http.Response, error) {
	d := t.signer(e)
	if d == nil || !d.remember(req.URL, resp) || !nonceChallenge(resp) || !replayable(req) {
		return resp, nil
	}
	resp, sent, err := t.resend(req, e, resp)
	if sent && err == nil {
		d.remember(req.URL, resp)
	}
	return resp, err
}
