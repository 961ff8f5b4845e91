package refreshtoken_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

var t0DPoP = time.Unix(1_700_000_000, 0)

func newECKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEdKey(t testing.TB) crypto.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// dpopServer starts a DPoP server for a public client on clk.
func dpopServer(t *testing.T, clk *fakeClock, nonce bool) *refreshtokentest.Server {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Public: true, DPoP: true, DPoPNonce: nonce, Clock: clk.Now})
	t.Cleanup(srv.Close)
	return srv
}

func dpopSource(srv *refreshtokentest.Server, clk *fakeClock, rt string, key crypto.Signer) *refreshtoken.TokenSource {
	return refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt}, refreshtoken.WithDPoP(key), refreshtoken.WithClock(clk.Now))
}

// getAPI calls the server's /api through a Transport of ts and returns
// the status.
func getAPIDPoP(t *testing.T, srv *refreshtokentest.Server, ts *refreshtoken.TokenSource) int {
	t.Helper()
	resp, err := refreshtoken.NewClient(context.Background(), ts).Get(srv.APIURL + "?q=1#frag")
	if err != nil {
		t.Fatalf("GET /api: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestDPoPHappyPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(testing.TB) crypto.Signer
	}{
		{"ES256", newECKey},
		{"EdDSA", newEdKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(t0DPoP)
			srv := dpopServer(t, clk, false)
			ts := dpopSource(srv, clk, srv.NewRefreshToken("openid"), tc.key(t))
			tok, err := ts.Token()
			if err != nil {
				t.Fatalf("Token() = %v", err)
			}
			if tok.Type() != "DPoP" {
				t.Errorf("Type() = %q, want DPoP", tok.Type())
			}
			for range 3 { // a proof per request: a reused jti would be refused
				if got := getAPIDPoP(t, srv, ts); got != http.StatusOK {
					t.Fatalf("GET /api = %d, want 200", got)
				}
			}
			clk.Add(2 * time.Hour) // the next request refreshes, with a new proof
			if got := getAPIDPoP(t, srv, ts); got != http.StatusOK {
				t.Fatalf("GET /api after expiry = %d, want 200", got)
			}
			if st := srv.Stats(); st.Refreshes != 2 || st.APIRejected != 0 || st.DPoPRejected != 0 || st.DPoPReplays != 0 {
				t.Errorf("Stats() = %+v, want 2 refreshes and nothing rejected", st)
			}
		})
	}
}

// A refresh token bound to a key is refused with another key's proof, and
// stays valid for its own key.
func TestDPoPWrongKey(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, false)
	keyA := newECKey(t)
	var saved string
	first := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithDPoP(keyA), refreshtoken.WithClock(clk.Now),
		refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error { saved = tok.RefreshToken; return nil }))
	if _, err := first.Token(); err != nil {
		t.Fatalf("Token() = %v", err)
	}
	thief := dpopSource(srv, clk, saved, newECKey(t))
	_, err := thief.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("Token() with another key = %v, want invalid_grant", err)
	}
	if newest, alive := srv.Newest(saved); newest != saved || !alive {
		t.Fatalf("after the other key's try: newest is the saved token %v, alive %v; want true, true", newest == saved, alive)
	}
	if _, err := dpopSource(srv, clk, saved, keyA).Token(); err != nil {
		t.Fatalf("Token() with the bound key = %v", err)
	}
	if st := srv.Stats(); st.ReuseEvents != 0 || st.DPoPRejected != 1 {
		t.Errorf("Stats() = %+v, want no reuse and 1 DPoP rejection", st)
	}
}

// proofRecorder keeps the last request's DPoP and Authorization headers.
type proofRecorder struct {
	base  http.RoundTripper
	proof string
	auth  string
}

func (r *proofRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.proof, r.auth = req.Header.Get("DPoP"), req.Header.Get("Authorization")
	return r.base.RoundTrip(req)
}

func TestDPoPReplayedProof(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, false)
	ts := dpopSource(srv, clk, srv.NewRefreshToken(""), newECKey(t))
	rec := &proofRecorder{base: http.DefaultTransport}
	c := &http.Client{Transport: &refreshtoken.Transport{Source: ts, Base: rec}}
	resp, err := c.Get(srv.APIURL)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(rec.auth, "DPoP ") {
		t.Fatalf("Authorization scheme is not DPoP (%d bytes)", len(rec.auth))
	}
	req, _ := http.NewRequest(http.MethodGet, srv.APIURL, nil)
	req.Header.Set("Authorization", rec.auth)
	req.Header.Set("DPoP", rec.proof)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || srv.Stats().DPoPReplays != 1 {
		t.Errorf("replayed proof: status %d, replays %d; want 401, 1", resp.StatusCode, srv.Stats().DPoPReplays)
	}
	// The access token without a proof, as a bearer token: refused too.
	req.Header.Del("DPoP")
	req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(rec.auth, "DPoP "))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bound token as Bearer: status %d, want 401", resp.StatusCode)
	}
}

// A nonce required at the token endpoint costs one resend, which is not a
// reuse; a rotated nonce costs one more.
func TestDPoPNonceTokenEndpoint(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, true)
	ts := dpopSource(srv, clk, srv.NewRefreshToken(""), newECKey(t))
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() = %v", err)
	}
	if st := srv.Stats(); st.TokenRequests != 2 || st.Refreshes != 1 || st.ReuseEvents != 0 {
		t.Fatalf("Stats() = %+v, want 2 requests, 1 refresh, no reuse", st)
	}
	clk.Add(2 * time.Hour)
	if _, err := ts.Token(); err != nil { // the nonce is remembered
		t.Fatalf("second Token() = %v", err)
	}
	if st := srv.Stats(); st.TokenRequests != 3 {
		t.Fatalf("Stats() = %+v, want 3 requests: the nonce was remembered", st)
	}
	srv.RotateDPoPNonce()
	clk.Add(2 * time.Hour)
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() after rotation = %v", err)
	}
	if st := srv.Stats(); st.TokenRequests != 5 || st.Refreshes != 3 || st.ReuseEvents != 0 {
		t.Fatalf("Stats() = %+v, want 5 requests, 3 refreshes, no reuse", st)
	}
}

// A server that asks for a nonce on every request gets one resend per
// refresh, and the refresh fails.
func TestDPoPNonceNoLoop(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, false)
	srv.Inject(-1, refreshtokentest.Fault{Status: http.StatusBadRequest, Error: "use_dpop_nonce", Header: http.Header{"Dpop-Nonce": {"n-1"}}})
	ts := dpopSource(srv, clk, srv.NewRefreshToken(""), newECKey(t))
	_, err := ts.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "use_dpop_nonce" {
		t.Fatalf("Token() = %v, want use_dpop_nonce", err)
	}
	if n := srv.Stats().TokenRequests; n != 2 {
		t.Errorf("token requests = %d, want 2: one resend", n)
	}
}

// A 401 of the API that asks for a nonce gets one resend with it, and no
// refresh.
func TestDPoPNonceAPI(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, true)
	ts := dpopSource(srv, clk, srv.NewRefreshToken(""), newECKey(t))
	if got := getAPIDPoP(t, srv, ts); got != http.StatusOK {
		t.Fatalf("GET /api = %d, want 200", got)
	}
	before := srv.Stats()
	srv.RotateDPoPNonce()
	if got := getAPIDPoP(t, srv, ts); got != http.StatusOK {
		t.Fatalf("GET /api after rotation = %d, want 200", got)
	}
	st := srv.Stats()
	if st.TokenRequests != before.TokenRequests || st.APICalls != before.APICalls+2 || st.APIRejected != before.APIRejected+1 {
		t.Errorf("Stats() = %+v after %+v: want 2 API calls, 1 rejected, no token request", st, before)
	}
}

// A proof whose iat is outside the server's window is refused, and the
// refresh token is not used up.
func TestDPoPClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{-2 * time.Minute, 2 * time.Minute} {
		clk := newFakeClock(t0DPoP)
		srv := dpopServer(t, clk, false)
		rt := srv.NewRefreshToken("")
		client := newFakeClock(t0DPoP.Add(skew))
		_, err := dpopSource(srv, client, rt, newECKey(t)).Token()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_dpop_proof" {
			t.Fatalf("skew %v: Token() = %v, want invalid_dpop_proof", skew, err)
		}
		if newest, alive := srv.Newest(rt); newest != rt || !alive {
			t.Errorf("skew %v: refresh token used up", skew)
		}
	}
}

// A server that ignores the proof and answers Bearer fails the refresh.
func TestDPoPDowngrade(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Public: true, Clock: clk.Now})
	defer srv.Close()
	ts := dpopSource(srv, clk, srv.NewRefreshToken(""), newECKey(t))
	_, err := ts.Token()
	if err == nil || !strings.Contains(err.Error(), "token_type Bearer, not DPoP") {
		t.Fatalf("Token() = %v, want the downgrade reported", err)
	}
	for _, s := range srv.Secrets() {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error holds a secret")
		}
	}
}

func TestDPoPUnsupportedKey(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, false)
	// A broken Signer's public key: nil, or with no curve.
	broken := []crypto.Signer{staticSigner{pub: (*ecdsa.PublicKey)(nil)}, staticSigner{pub: &ecdsa.PublicKey{}}}
	for _, key := range append([]crypto.Signer{rk, p384, nil}, broken...) {
		_, err := dpopSource(srv, clk, srv.NewRefreshToken(""), key).Token()
		if err == nil || !strings.Contains(err.Error(), "WithDPoP") {
			t.Errorf("Token() with %T = %v, want a WithDPoP error", key, err)
		}
	}
	if n := srv.Stats().TokenRequests; n != 0 {
		t.Errorf("token requests = %d, want 0", n)
	}
}

// TestDPoPWithClientAssertion: with private_key_jwt and DPoP together, the
// resend that a nonce challenge asks for carries a new client assertion
// and a new proof: the server accepts both (it refuses a replayed jti),
// and the refresh token is sent for one refresh.
func TestDPoPWithClientAssertion(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	clientKey := mustECDSA(t, elliptic.P256())
	log := new(assertionLog)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{ClientKey: clientKey.Public(), DPoP: true, DPoPNonce: true,
		Clock: clk.Now, OnTokenRequest: log.record})
	t.Cleanup(srv.Close)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{Signer: clientKey, KeyID: "k1", Algorithm: "ES256"}),
		refreshtoken.WithDPoP(newECKey(t)), refreshtoken.WithClock(clk.Now))
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("Token() = %v", err)
	}
	if tok.Type() != "DPoP" {
		t.Errorf("token type = %q, want DPoP", tok.Type())
	}
	forms := log.all()
	if len(forms) != 2 {
		t.Fatalf("%d token requests, want 2 (the nonce challenge, the resend)", len(forms))
	}
	if a, b := forms[0].Get("client_assertion"), forms[1].Get("client_assertion"); a == "" || a == b {
		t.Error("the resend did not carry a new client assertion")
	}
	if st := srv.Stats(); st.Refreshes != 1 || st.ReuseEvents != 0 || st.AssertionsRejected != 0 {
		t.Errorf("Stats() = %+v, want 1 refresh, no reuse, no assertion rejected", st)
	}
	if got := getAPIDPoP(t, srv, ts); got != http.StatusOK {
		t.Errorf("GET /api = %d, want 200", got)
	}
}

// TestDPoPProofRedacted: a server that echoes the DPoP proof (a token
// request's, or an API request's) has it redacted from the errors and the
// answer the caller sees of the token endpoint.
func TestDPoPProofRedacted(t *testing.T) {
	var (
		mu   sync.Mutex
		sent []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proof := r.Header.Get("DPoP")
		mu.Lock()
		sent = append(sent, proof)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", proof)
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_dpop_proof", "error_description": "bad proof " + proof, "error_uri": proof})
	}))
	defer srv.Close()
	ts := refreshtoken.New(context.Background(), &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}},
		&oauth2.Token{RefreshToken: "rt-secret"}, refreshtoken.WithDPoP(newECKey(t)))
	_, err := ts.Token()
	if err == nil {
		t.Fatal("Token() = nil error, want invalid_dpop_proof")
	}
	mu.Lock()
	proof := sent[len(sent)-1]
	mu.Unlock()
	if proof == "" {
		t.Fatal("no proof was sent")
	}
	if found := leaks(err, []string{proof, proof[strings.LastIndexByte(proof, '.')+1:], "rt-secret"}); len(found) > 0 {
		t.Errorf("the error shows a secret:\n%s", strings.Join(found, "\n"))
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("Token() = %v, want a RetrieveError", err)
	}
	for what, shown := range map[string]string{"body": string(re.Body), "error_description": re.ErrorDescription,
		"error_uri": re.ErrorURI, "header": re.Response.Header.Get("X-Echo")} {
		if strings.Contains(shown, proof) {
			t.Errorf("the answer's %s, as the caller sees it, holds the proof", what)
		}
	}
}
