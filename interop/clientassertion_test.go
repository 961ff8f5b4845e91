package interop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// TestClientAssertionGoJose verifies the library's private_key_jwt
// assertions with go-jose, an implementation of JOSE independent of ours:
// the header, the signature with the public key, and the claims of RFC
// 7523 section 3, for each algorithm.
func TestClientAssertionGoJose(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ec := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key crypto.Signer
	}{
		{jose.RS256, rsaKey},
		{jose.RS384, rsaKey},
		{jose.PS256, rsaKey},
		{jose.PS512, rsaKey},
		{jose.ES256, ec(elliptic.P256())},
		{jose.ES384, ec(elliptic.P384())},
		{jose.ES512, ec(elliptic.P521())},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			var (
				mu         sync.Mutex
				assertions []string
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				mu.Lock()
				assertions = append(assertions, r.PostForm.Get("client_assertion"))
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 60})
			}))
			defer srv.Close()
			now := t0
			ts := refreshtoken.New(context.Background(), &oauth2.Config{ClientID: "client-1", Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/oauth/token"}},
				&oauth2.Token{RefreshToken: "rt"},
				refreshtoken.WithClock(func() time.Time { return now }),
				refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{Signer: tc.key, KeyID: "kid-1", Algorithm: string(tc.alg)}))
			for range 2 {
				if _, err := ts.Token(); err != nil {
					t.Fatalf("Token() = %v", err)
				}
				now = now.Add(time.Hour) // the next Token refreshes
			}
			mu.Lock()
			defer mu.Unlock()
			if len(assertions) != 2 {
				t.Fatalf("server got %d assertions, want 2", len(assertions))
			}
			jtis := map[string]bool{}
			for i, a := range assertions {
				tok, err := jwt.ParseSigned(a, []jose.SignatureAlgorithm{tc.alg})
				if err != nil {
					t.Fatalf("assertion %d: jwt.ParseSigned: %v", i, err)
				}
				h := tok.Headers[0]
				if h.KeyID != "kid-1" || h.Algorithm != string(tc.alg) || h.ExtraHeaders[jose.HeaderType] != "JWT" {
					t.Errorf("assertion %d: header kid %q alg %q typ %v, want kid-1, %s, JWT", i, h.KeyID, h.Algorithm, h.ExtraHeaders[jose.HeaderType], tc.alg)
				}
				var c jwt.Claims
				if err := tok.Claims(tc.key.Public(), &c); err != nil {
					t.Fatalf("assertion %d: signature does not verify: %v", i, err)
				}
				iat := t0.Add(time.Duration(i) * time.Hour)
				if err := c.ValidateWithLeeway(jwt.Expected{Issuer: "client-1", Subject: "client-1", AnyAudience: jwt.Audience{srv.URL + "/oauth/token"}, Time: iat}, 0); err != nil {
					t.Errorf("assertion %d: claims: %v", i, err)
				}
				if c.IssuedAt == nil || !c.IssuedAt.Time().Equal(iat) || c.Expiry == nil || c.Expiry.Time().Sub(iat) != time.Minute {
					t.Errorf("assertion %d: iat %v exp %v, want iat %v and exp a minute later", i, c.IssuedAt, c.Expiry, iat)
				}
				if c.ID == "" || jtis[c.ID] {
					t.Errorf("assertion %d: jti %q empty or repeated", i, c.ID)
				}
				jtis[c.ID] = true
				if err := c.ValidateWithLeeway(jwt.Expected{Time: iat.Add(61 * time.Second)}, 0); err == nil {
					t.Errorf("assertion %d is valid 61 s after it was issued", i)
				}
			}
		})
	}
}
