package refreshtokentest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// dpopWindow is how far a proof's iat may be from the server's Clock.
const dpopWindow = time.Minute

// RotateDPoPNonce replaces the nonce that proofs must carry when
// Config.DPoPNonce is set, as a server does from time to time.
func (s *Server) RotateDPoPNonce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dpopNonce = rand.Text()
}

// proofOf checks the DPoP proof of r, a request to path, with ath the hash
// of access ("" for the token endpoint), and returns its key's thumbprint.
// It returns the OAuth error code otherwise: invalid_dpop_proof, or
// use_dpop_nonce when the nonce is missing or stale. Called with mu held.
func (s *Server) proofOf(r *http.Request, access string) (jkt, code string) {
	vals := r.Header.Values("DPoP")
	if len(vals) != 1 {
		return "", "invalid_dpop_proof"
	}
	var claims struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   *int64 `json:"iat"`
		ATH   string `json:"ath"`
		Nonce string `json:"nonce"`
	}
	jkt, err := verifyProof(vals[0], &claims)
	if err != nil {
		return "", "invalid_dpop_proof"
	}
	now := s.cfg.Clock()
	wantATH := ""
	if access != "" {
		sum := sha256.Sum256([]byte(access))
		wantATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	switch {
	case claims.JTI == "" || claims.IAT == nil || claims.HTM != r.Method || claims.HTU != s.URL+r.URL.Path || claims.ATH != wantATH:
		return "", "invalid_dpop_proof"
	case time.Unix(*claims.IAT, 0).Before(now.Add(-dpopWindow)) || time.Unix(*claims.IAT, 0).After(now.Add(dpopWindow)):
		return "", "invalid_dpop_proof"
	case s.cfg.DPoPNonce && claims.Nonce != s.dpopNonce:
		return "", "use_dpop_nonce"
	case s.dpopJTIs[claims.JTI]:
		s.stats.DPoPReplays++
		return "", "invalid_dpop_proof"
	}
	s.dpopJTIs[claims.JTI] = true
	return jkt, ""
}

// verifyProof checks the form, typ, alg and signature of a proof with the
// jwk of its header, decodes its claims into claims, and returns the
// key's thumbprint.
func verifyProof(proof string, claims any) (jkt string, err error) {
	enc := base64.RawURLEncoding
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWS")
	}
	var header struct {
		Typ string            `json:"typ"`
		Alg string            `json:"alg"`
		JWK map[string]string `json:"jwk"`
	}
	h, err1 := enc.DecodeString(parts[0])
	payload, err2 := enc.DecodeString(parts[1])
	sig, err3 := enc.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return "", err
	}
	if err := json.Unmarshal(h, &header); err != nil || header.Typ != "dpop+jwt" {
		return "", errors.New("bad header")
	}
	input := []byte(parts[0] + "." + parts[1])
	jwk := header.JWK
	if _, private := jwk["d"]; private {
		return "", errors.New("private key in the jwk")
	}
	switch {
	case header.Alg == "ES256" && jwk["kty"] == "EC" && jwk["crv"] == "P-256":
		x, err1 := enc.DecodeString(jwk["x"])
		y, err2 := enc.DecodeString(jwk["y"])
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 || len(sig) != 64 {
			return "", errors.New("bad EC key or signature")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(input)
		if !ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return "", errors.New("bad signature")
		}
	case header.Alg == "EdDSA" && jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519":
		x, err := enc.DecodeString(jwk["x"])
		if err != nil || len(x) != ed25519.PublicKeySize || !ed25519.Verify(x, input, sig) {
			return "", errors.New("bad signature")
		}
	default:
		return "", errors.New("unsupported alg or key")
	}
	if err := json.Unmarshal(payload, claims); err != nil {
		return "", err
	}
	return thumbprint(jwk), nil
}

// thumbprint is the JWK thumbprint of RFC 7638, written apart from the
// client's so that each checks the other.
func thumbprint(jwk map[string]string) string {
	var canon []byte
	switch jwk["kty"] {
	case "EC":
		canon, _ = json.Marshal(struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
			Y   string `json:"y"`
		}{jwk["crv"], jwk["kty"], jwk["x"], jwk["y"]})
	case "OKP":
		canon, _ = json.Marshal(struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
		}{jwk["crv"], jwk["kty"], jwk["x"]})
	}
	sum := sha256.Sum256(canon)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// serveDPoPAPI is /api for a token of scheme DPoP: it checks the proof,
// with ath, and that its key is the one the token is bound to. It reports
// whether the request is authorized; if not, it has answered.
// Called with mu held.
func (s *Server) serveDPoPAPI(w http.ResponseWriter, r *http.Request, access string) bool {
	jkt, code := s.proofOf(r, access)
	if code == "" && jkt == s.accessJKT[access] {
		return true
	}
	s.stats.APIRejected++
	if code == "" {
		code = "invalid_token"
	}
	w.Header().Set("WWW-Authenticate", `DPoP error="`+code+`", algs="ES256 EdDSA"`)
	http.Error(w, "invalid DPoP proof or token", http.StatusUnauthorized)
	return false
}

// dpopError answers a token request whose proof failed with code.
// Called with mu held.
func (s *Server) dpopError(code string) (int, map[string]any) {
	s.stats.DPoPRejected++
	if code == "use_dpop_nonce" {
		return oauthError(http.StatusBadRequest, code, "Authorization server requires nonce in DPoP proof.")
	}
	return oauthError(http.StatusBadRequest, code, "Invalid DPoP proof.")
}
