package interop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// proofTap keeps every DPoP proof sent, with its request's method and URL.
type proofTap struct {
	mu     sync.Mutex
	proofs []tapped
}

type tapped struct {
	method, url, proof, auth string
}

func (p *proofTap) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	p.proofs = append(p.proofs, tapped{r.Method, r.URL.String(), r.Header.Get("DPoP"), r.Header.Get("Authorization")})
	p.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// TestDPoPProofsGoJose checks the library's DPoP proofs with go-jose, an
// implementation apart from ours: the signature with the embedded jwk,
// typ, alg, and the claims.
func TestDPoPProofsGoJose(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key crypto.Signer
	}{{jose.ES256, ec}, {jose.EdDSA, ed}} {
		t.Run(string(tc.alg), func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			clock := func() time.Time { return t0 }
			srv := refreshtokentest.NewServer(refreshtokentest.Config{Public: true, DPoP: true, Clock: clock})
			defer srv.Close()
			tap := &proofTap{}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: tap})
			ts := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
				refreshtoken.WithDPoP(tc.key), refreshtoken.WithClock(clock))
			c := &http.Client{Transport: &refreshtoken.Transport{Source: ts, Base: tap}}
			resp, err := c.Get(srv.APIURL + "?x=1")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /api = %v, %v", resp, err)
			}
			resp.Body.Close()
			if len(tap.proofs) != 2 {
				t.Fatalf("%d requests, want 2 (token, api)", len(tap.proofs))
			}
			wantHTU := []string{srv.TokenURL, srv.APIURL}
			wantHTM := []string{"POST", "GET"}
			for i, p := range tap.proofs {
				jws, err := jose.ParseSigned(p.proof, []jose.SignatureAlgorithm{tc.alg})
				if err != nil {
					t.Fatalf("proof %d: go-jose ParseSigned: %v", i, err)
				}
				h := jws.Signatures[0].Protected
				if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() || h.ExtraHeaders["typ"] != "dpop+jwt" {
					t.Fatalf("proof %d: header jwk public %v, typ %v", i, h.JSONWebKey != nil && h.JSONWebKey.IsPublic(), h.ExtraHeaders["typ"])
				}
				payload, err := jws.Verify(h.JSONWebKey)
				if err != nil {
					t.Fatalf("proof %d: go-jose Verify with the embedded jwk: %v", i, err)
				}
				var claims map[string]any
				if err := json.Unmarshal(payload, &claims); err != nil {
					t.Fatal(err)
				}
				if claims["htm"] != wantHTM[i] || claims["htu"] != wantHTU[i] || claims["iat"] != float64(t0.Unix()) || claims["jti"] == "" {
					t.Errorf("proof %d claims = htm %v htu %v iat %v", i, claims["htm"], claims["htu"], claims["iat"])
				}
				if i == 1 {
					access := p.auth[len("DPoP "):]
					sum := sha256.Sum256([]byte(access))
					if claims["ath"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
						t.Errorf("ath is not the access token's hash")
					}
				}
				// The thumbprint, by go-jose, is the one the library states.
				tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				jwk := map[string]string{}
				b, _ := h.JSONWebKey.MarshalJSON()
				json.Unmarshal(b, &jwk)
				if got := refreshtoken.Thumbprint(jwk); got != base64.RawURLEncoding.EncodeToString(tp) {
					t.Errorf("Thumbprint = %s, go-jose %s", got, base64.RawURLEncoding.EncodeToString(tp))
				}
			}
		})
	}
}
