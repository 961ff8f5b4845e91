package refreshtoken_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// proofNonce returns the nonce claim of a DPoP proof.
func proofNonce(t *testing.T, proof string) string {
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("bad proof")
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Nonce string `json:"nonce"`
	}
	json.Unmarshal(b, &c)
	return c.Nonce
}

// TestDPoPNonceAfterResend: the DPoP-Nonce of every answer is remembered,
// the resend's too: a server that hands out a new nonce with each answer
// gets the last one at the next refresh, with no new challenge.
func TestDPoPNonceAfterResend(t *testing.T) {
	var mu sync.Mutex
	var nonces []string
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got := proofNonce(t, r.Header.Get("DPoP"))
		nonces = append(nonces, got)
		n++
		w.Header().Set("Content-Type", "application/json")
		want := "n" + string(rune('0'+n-1))
		next := "n" + string(rune('0'+n))
		w.Header().Set("DPoP-Nonce", next)
		if got != want || got == "" && n == 1 {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": "use_dpop_nonce"})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": rand.Text(), "token_type": "DPoP", "expires_in": 3600})
	}))
	defer srv.Close()
	clk := newFakeClock(t0DPoP)
	ts := refreshtoken.New(context.Background(), &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}},
		&oauth2.Token{RefreshToken: "rt"}, refreshtoken.WithDPoP(newECKey(t)), refreshtoken.WithClock(clk.Now))
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	_, err := ts.Token()
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		t.Fatalf("second Token() = %v", err)
	}
	// Request 2 (the resend) got DPoP-Nonce n2; the next refresh carries it.
	if want := []string{"", "n1", "n2"}; !slices.Equal(nonces, want) {
		t.Errorf("nonces sent = %q, want %q", nonces, want)
	}
}

// TestDPoPTokenTypeCase: a token given to New whose token_type is "dpop"
// (token types are case-insensitive, RFC 6749 section 5.1) is sent with a
// proof, as DPoP: no 401, no refresh.
func TestDPoPTokenTypeCase(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, false)
	key := newECKey(t)
	var got *oauth2.Token
	first := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithDPoP(key), refreshtoken.WithClock(clk.Now),
		refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error { got = tok; return nil }))
	if _, err := first.Token(); err != nil {
		t.Fatal(err)
	}
	first.Close()
	tok := *got
	tok.TokenType = "dpop"
	ts := refreshtoken.New(context.Background(), srv.Config(), &tok, refreshtoken.WithDPoP(key), refreshtoken.WithClock(clk.Now))
	before := srv.Stats()
	if code := getAPIDPoP(t, srv, ts); code != 200 {
		t.Errorf("GET /api = %d", code)
	}
	if st := srv.Stats(); st.TokenRequests != before.TokenRequests || st.APIRejected != before.APIRejected {
		t.Errorf("lowercase dpop token: %d extra token requests, %d API rejections", st.TokenRequests-before.TokenRequests, st.APIRejected-before.APIRejected)
	}
}

// TestDPoPDowngradeKeepsRotation: a server that answers a DPoP refresh
// with a Bearer token and a rotated refresh token: the refresh fails, not
// for good, and the rotated refresh token is kept and saved.
func TestDPoPDowngradeKeepsRotation(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Public: true, Clock: clk.Now})
	defer srv.Close()
	st := refreshtokentest.NewMemoryStore(clk.Now, 0)
	rt := srv.NewRefreshToken("")
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt},
		refreshtoken.WithDPoP(newECKey(t)), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))
	_, err := ts.Token()
	if err == nil {
		t.Fatal("want downgrade error")
	}
	newest, alive := srv.Newest(rt)
	if s := st.Stored(); s == nil || s.RefreshToken != newest || !alive {
		t.Errorf("store does not hold the rotated, live refresh token")
	}
	if errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Errorf("downgrade is permanent: %v", err)
	}
}

// TestDPoPResendRedactsFirstAttempt: the answer to a nonce resend that
// echoes the first attempt's client assertion and proof (the assertion
// was never used: a live credential) has both redacted.
func TestDPoPResendRedactsFirstAttempt(t *testing.T) {
	var mu sync.Mutex
	var first struct{ assertion, proof string }
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		r.ParseForm()
		n++
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("DPoP-Nonce", "nn")
		if n == 1 {
			first.assertion, first.proof = r.PostForm.Get("client_assertion"), r.Header.Get("DPoP")
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": "use_dpop_nonce"})
			return
		}
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "earlier " + first.assertion + " " + first.proof})
	}))
	defer srv.Close()
	ts := refreshtoken.New(context.Background(), &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}},
		&oauth2.Token{RefreshToken: "rt"}, refreshtoken.WithDPoP(newECKey(t)),
		refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{Signer: newECKey(t), Algorithm: "ES256"}))
	_, err := ts.Token()
	mu.Lock()
	defer mu.Unlock()
	if err == nil {
		t.Fatal("want error")
	}
	if strings.Contains(err.Error(), first.assertion[strings.LastIndexByte(first.assertion, '.')+1:]) {
		t.Errorf("error holds the first attempt's client assertion")
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && strings.Contains(string(re.Body), first.assertion) {
		t.Errorf("RetrieveError.Body holds the first attempt's client assertion")
	}
	if strings.Contains(err.Error(), first.proof[strings.LastIndexByte(first.proof, '.')+1:]) {
		t.Errorf("error holds the first attempt's proof")
	}
}

// shortRSigner signs as its ECDSA key does, but only returns signatures
// whose r is at least a byte shorter than the curve's order, which the JWS
// form (r||s, each left-padded to its full length) must pad: 1 in 256
// signatures otherwise, too rare for a test to meet by chance.
type shortRSigner struct{ *ecdsa.PrivateKey }

func (k shortRSigner) Sign(rnd io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	for {
		sig, err := ecdsa.SignASN1(rnd, k.PrivateKey, digest)
		if err != nil {
			return nil, err
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig, &rs); err != nil {
			return nil, err
		}
		if rs.R.BitLen() <= k.Curve.Params().BitSize-8 {
			return sig, nil
		}
	}
}

// TestECDSAShortSignature: proofs and client assertions whose signature's
// r is short are padded and accepted by the server, which checks them.
func TestECDSAShortSignature(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	clientKey := mustECDSA(t, elliptic.P256())
	srv := refreshtokentest.NewServer(refreshtokentest.Config{ClientKey: clientKey.Public(), DPoP: true, Clock: clk.Now})
	t.Cleanup(srv.Close)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{Signer: shortRSigner{clientKey}, Algorithm: "ES256"}),
		refreshtoken.WithDPoP(shortRSigner{mustECDSA(t, elliptic.P256())}), refreshtoken.WithClock(clk.Now))
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() with short signatures = %v", err)
	}
	if got := getAPIDPoP(t, srv, ts); got != http.StatusOK {
		t.Errorf("GET /api with a short proof signature = %d, want 200", got)
	}
}

// TestDPoPNonceAfterRefreshRetry: the request that Transport sends again
// after a 401 and a refresh gets its own nonce resend: an API that
// rejects the old token, then asks for a nonce, then accepts, is answered
// 200 in three requests and one refresh.
func TestDPoPNonceAfterRefreshRetry(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, false)
	ts := dpopSource(srv, clk, srv.NewRefreshToken(""), newECKey(t))
	var (
		mu     sync.Mutex
		nonces []string
	)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		nonces = append(nonces, proofNonce(t, r.Header.Get("DPoP")))
		switch len(nonces) {
		case 1:
			w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
		case 2:
			w.Header().Set("WWW-Authenticate", `Bearer realm="api", DPoP error=use_dpop_nonce`)
			w.Header().Set("DPoP-Nonce", "api-nonce")
			w.WriteHeader(http.StatusUnauthorized)
		default:
			if nonces[len(nonces)-1] != "api-nonce" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer api.Close()
	resp, err := refreshtoken.NewClient(context.Background(), ts).Get(api.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET = %d, want 200", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"", "", "api-nonce"}; !slices.Equal(nonces, want) {
		t.Errorf("API requests' nonces = %q, want %q", nonces, want)
	}
	if st := srv.Stats(); st.Refreshes != 2 || st.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want 2 refreshes (the first token, the one after the 401), no reuse", st)
	}
}
