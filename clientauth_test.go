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
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// assertionLog records the bodies of the requests a server is sent.
type assertionLog struct {
	mu    sync.Mutex
	forms []url.Values
	basic int // requests with HTTP Basic
}

// record is an OnTokenRequest hook. ParseForm leaves the form for the
// server to read again.
func (l *assertionLog) record(r *http.Request) {
	r.ParseForm()
	_, _, basic := r.BasicAuth()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forms = append(l.forms, r.PostForm)
	if basic {
		l.basic++
	}
}

func (l *assertionLog) all() []url.Values {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]url.Values(nil), l.forms...)
}

func mustECDSA(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRSA(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// assertionServer starts a server whose client authenticates with key's
// public key, on clock, logging token and revocation requests.
func assertionServer(t *testing.T, pub crypto.PublicKey, clock *fakeClock) (*refreshtokentest.Server, *assertionLog) {
	t.Helper()
	log := new(assertionLog)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{
		ClientKey: pub, Clock: clock.Now, Lifetime: time.Hour,
		OnTokenRequest: log.record, OnRevokeRequest: log.record,
	})
	t.Cleanup(srv.Close)
	return srv, log
}

// TestClientAssertion refreshes and revokes with private_key_jwt for each
// algorithm: every request carries a new assertion the server accepts,
// and no secret.
func TestClientAssertion(t *testing.T) {
	rsaKey := mustRSA(t, 2048)
	for _, tc := range []struct {
		name     string
		key      crypto.Signer
		alg      string
		audience func(*refreshtokentest.Server) string
		header   bool // conf.Endpoint.AuthStyle is AuthStyleInHeader
	}{
		{name: "RS256", key: rsaKey, alg: "RS256"},
		{name: "PS256", key: rsaKey, alg: "PS256"},
		{name: "RS384", key: rsaKey, alg: "RS384"},
		{name: "ES256", key: mustECDSA(t, elliptic.P256()), alg: "ES256"},
		{name: "ES384", key: mustECDSA(t, elliptic.P384()), alg: "ES384"},
		{name: "ES512", key: mustECDSA(t, elliptic.P521()), alg: "ES512"},
		{name: "tenant audience, as Auth0", key: rsaKey, alg: "RS256", audience: func(s *refreshtokentest.Server) string { return s.URL + "/" }},
		{name: "AuthStyleInHeader sends no Basic", key: mustECDSA(t, elliptic.P256()), alg: "ES256", header: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, log := assertionServer(t, tc.key.Public(), clock)
			rt := srv.NewRefreshToken("")
			conf := srv.Config()
			conf.ClientSecret = "never-sent-secret"
			if tc.header {
				conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
			}
			ca := refreshtoken.ClientAssertion{Signer: tc.key, KeyID: "key-1", Algorithm: tc.alg}
			if tc.audience != nil {
				ca.Audience = tc.audience(srv)
			}
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt},
				refreshtoken.WithClock(clock.Now), refreshtoken.WithClientAssertion(ca), refreshtoken.WithRevocationURL(srv.RevokeURL))
			for i := range 3 {
				if _, err := ts.Token(); err != nil {
					t.Fatalf("Token() #%d = %v", i, err)
				}
				clock.Add(2 * time.Hour)
			}
			if err := ts.Revoke(context.Background()); err != nil {
				t.Fatalf("Revoke() = %v", err)
			}
			forms := log.all()
			if len(forms) != 4 || log.basic != 0 {
				t.Fatalf("server got %d requests (%d with Basic), want 4 (3 refreshes and a revocation), none with Basic", len(forms), log.basic)
			}
			seen := map[string]bool{}
			for i, f := range forms {
				if f.Has("client_secret") || f.Get("client_assertion_type") != refreshtokentest.AssertionType || f.Get("client_id") != conf.ClientID {
					t.Errorf("request %d: client_secret %q, client_assertion_type %q, client_id %q", i, f.Get("client_secret"), f.Get("client_assertion_type"), f.Get("client_id"))
				}
				a := f.Get("client_assertion")
				if a == "" || seen[a] {
					t.Errorf("request %d: client assertion empty or sent before", i)
				}
				seen[a] = true
				if got := len(f["refresh_token"]) + len(f["token"]); got != 1 {
					t.Errorf("request %d carries the refresh token %d times, want 1", i, got)
				}
			}
			if st := srv.Stats(); st.Refreshes != 3 || st.AssertionsRejected != 0 || st.Revocations != 1 {
				t.Errorf("Stats() = %+v, want 3 refreshes, 1 revocation, no assertion rejected", st)
			}
		})
	}
}

// staticSigner is a crypto.Signer whose Sign is f.
type staticSigner struct {
	pub crypto.PublicKey
	f   func() ([]byte, error)
}

func (s staticSigner) Public() crypto.PublicKey { return s.pub }
func (s staticSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return s.f()
}

// TestClientAssertionRejected: an assertion the server refuses is a
// rejected refresh (invalid_client), and the refresh token stays valid.
func TestClientAssertionRejected(t *testing.T) {
	key := mustECDSA(t, elliptic.P256())
	for _, tc := range []struct {
		name     string
		server   crypto.PublicKey
		audience string
		skew     time.Duration // of the source's clock against the server's
		reason   string
	}{
		{name: "wrong key", server: mustECDSA(t, elliptic.P256()).Public(), reason: "signature"},
		{name: "wrong key type", server: mustRSA(t, 2048).Public(), reason: "signature"},
		{name: "wrong audience", server: key.Public(), audience: "https://elsewhere.example/", reason: "aud"},
		{name: "source clock behind: expired", server: key.Public(), skew: -2 * time.Minute, reason: "expired"},
		{name: "source clock ahead: iat in the future", server: key.Public(), skew: 2 * time.Minute, reason: "future"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, _ := assertionServer(t, tc.server, clock)
			rt := srv.NewRefreshToken("")
			ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt},
				refreshtoken.WithClock(func() time.Time { return clock.Now().Add(tc.skew) }),
				refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{Signer: key, Algorithm: "ES256", Audience: tc.audience}))
			_, err := ts.Token()
			var re *oauth2.RetrieveError
			if !errors.Is(err, refreshtoken.ErrRefreshRejected) || !errors.As(err, &re) || re.ErrorCode != "invalid_client" || !strings.Contains(re.ErrorDescription, tc.reason) {
				t.Fatalf("Token() = %v, want invalid_client about %s", err, tc.reason)
			}
			if _, alive := srv.Newest(rt); !alive || srv.Stats().AssertionsRejected != 1 {
				t.Errorf("refresh token alive %v, %d assertions rejected; want alive, 1", alive, srv.Stats().AssertionsRejected)
			}
		})
	}
}

// TestClientAssertionReplay: an Assert callback that returns an assertion
// already used gets invalid_client for its jti.
func TestClientAssertionReplay(t *testing.T) {
	key := mustECDSA(t, elliptic.P256())
	clock := newFakeClock(t0)
	srv, log := assertionServer(t, key.Public(), clock)
	first := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{Signer: key, Algorithm: "ES256"}))
	if _, err := first.Token(); err != nil {
		t.Fatalf("Token() = %v", err)
	}
	used := log.all()[0].Get("client_assertion")
	var gotAud string
	second := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{
			Assert: func(_ context.Context, aud string) (string, error) { gotAud = aud; return used, nil },
		}))
	_, err := second.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || !strings.Contains(re.ErrorDescription, "jti") {
		t.Fatalf("Token() with a replayed assertion = %v, want invalid_client about the jti", err)
	}
	if gotAud != srv.TokenURL {
		t.Errorf("Assert got aud %q, want the token URL %q", gotAud, srv.TokenURL)
	}
	if strings.Contains(err.Error(), used) {
		t.Errorf("error holds the assertion: %v", err)
	}
}

// TestClientAssertionConfig: a bad configuration fails every Token and
// Revoke call, and nothing is sent.
func TestClientAssertionConfig(t *testing.T) {
	ec := mustECDSA(t, elliptic.P256())
	small := mustRSA(t, 1024)
	big := mustRSA(t, 2048)
	for _, tc := range []struct {
		name string
		ca   refreshtoken.ClientAssertion
		want string
	}{
		{name: "nothing", ca: refreshtoken.ClientAssertion{Algorithm: "ES256"}, want: "no Signer"},
		{name: "Signer and Assert", ca: refreshtoken.ClientAssertion{Signer: ec, Algorithm: "ES256", Assert: func(context.Context, string) (string, error) { return "x", nil }}, want: "both"},
		{name: "HS256", ca: refreshtoken.ClientAssertion{Signer: ec, Algorithm: "HS256"}, want: "not one of"},
		{name: "none", ca: refreshtoken.ClientAssertion{Signer: ec, Algorithm: "none"}, want: "not one of"},
		{name: "no algorithm", ca: refreshtoken.ClientAssertion{Signer: ec}, want: "not one of"},
		{name: "RS256 with an EC key", ca: refreshtoken.ClientAssertion{Signer: ec, Algorithm: "RS256"}, want: "does not fit"},
		{name: "ES256 with an RSA key", ca: refreshtoken.ClientAssertion{Signer: big, Algorithm: "ES256"}, want: "needs an ECDSA key"},
		{name: "ES384 with a P-256 key", ca: refreshtoken.ClientAssertion{Signer: ec, Algorithm: "ES384"}, want: "does not fit"},
		{name: "RSA 1024", ca: refreshtoken.ClientAssertion{Signer: small, Algorithm: "RS256"}, want: "1024 bits"},
		{name: "nil ECDSA public key", ca: refreshtoken.ClientAssertion{Signer: staticSigner{pub: (*ecdsa.PublicKey)(nil)}, Algorithm: "ES256"}, want: "empty"},
		{name: "ECDSA public key with no curve", ca: refreshtoken.ClientAssertion{Signer: staticSigner{pub: &ecdsa.PublicKey{}}, Algorithm: "ES256"}, want: "empty"},
		{name: "empty RSA public key", ca: refreshtoken.ClientAssertion{Signer: staticSigner{pub: &rsa.PublicKey{}}, Algorithm: "RS256"}, want: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, log := assertionServer(t, ec.Public(), clock)
			ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
				refreshtoken.WithClock(clock.Now), refreshtoken.WithClientAssertion(tc.ca), refreshtoken.WithRevocationURL(srv.RevokeURL))
			for i := range 2 {
				if _, err := ts.Token(); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Token() #%d = %v, want an error about %q", i, err, tc.want)
				}
			}
			if err := ts.Revoke(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Revoke() = %v, want an error about %q", err, tc.want)
			}
			if n := len(log.all()); n != 0 {
				t.Errorf("server got %d requests, want none", n)
			}
		})
	}
	t.Run("reserved endpoint parameter", func(t *testing.T) {
		clock := newFakeClock(t0)
		srv, log := assertionServer(t, ec.Public(), clock)
		ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
			refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{Signer: ec, Algorithm: "ES256"}),
			refreshtoken.WithEndpointParams(url.Values{"client_assertion": {"x"}}))
		if _, err := ts.Token(); err == nil || !strings.Contains(err.Error(), "client_assertion") || len(log.all()) != 0 {
			t.Errorf("Token() = %v with %d requests, want an error about client_assertion and none", err, len(log.all()))
		}
	})
}

// TestClientAssertionSignFails: a failure to make the assertion fails the
// refresh with nothing sent, as a transient failure wrapping the signer's
// error; the refresh token is still good.
func TestClientAssertionSignFails(t *testing.T) {
	key := mustECDSA(t, elliptic.P256())
	kmsDown := errors.New("kms unavailable")
	for _, tc := range []struct {
		name string
		ca   refreshtoken.ClientAssertion
	}{
		{name: "Signer", ca: refreshtoken.ClientAssertion{Algorithm: "ES256", Signer: staticSigner{pub: key.Public(), f: func() ([]byte, error) { return nil, kmsDown }}}},
		{name: "Assert", ca: refreshtoken.ClientAssertion{Assert: func(context.Context, string) (string, error) { return "", kmsDown }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, log := assertionServer(t, key.Public(), clock)
			rt := srv.NewRefreshToken("")
			ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt},
				refreshtoken.WithClock(clock.Now), refreshtoken.WithClientAssertion(tc.ca))
			_, err := ts.Token()
			if !errors.Is(err, kmsDown) || errors.Is(err, refreshtoken.ErrRefreshRejected) {
				t.Fatalf("Token() = %v, want a transient failure naming the signer's error", err)
			}
			if n := len(log.all()); n != 0 {
				t.Errorf("server got %d requests, want none", n)
			}
			if newest, alive := srv.Newest(rt); newest != rt || !alive {
				t.Errorf("the refresh token was used or revoked")
			}
		})
	}
}

// TestClientAssertionRedacted: a hostile server that echoes the assertion,
// or its signature, in its answer does not get it into the error.
func TestClientAssertionRedacted(t *testing.T) {
	key := mustECDSA(t, elliptic.P256())
	var (
		mu   sync.Mutex
		sent []string
	)
	for _, echo := range []string{"whole", "signature", "escaped"} {
		t.Run(echo, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				a := r.PostForm.Get("client_assertion")
				mu.Lock()
				sent = append(sent, a)
				mu.Unlock()
				shown := a
				switch echo {
				case "signature":
					shown = a[strings.LastIndexByte(a, '.')+1:]
				case "escaped":
					shown = url.QueryEscape(a)
				}
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Echo", shown)
				w.WriteHeader(http.StatusUnauthorized)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": "bad assertion " + shown, "error_uri": shown})
			}))
			defer srv.Close()
			ts := refreshtoken.New(context.Background(), &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}},
				&oauth2.Token{RefreshToken: "rt-secret"},
				refreshtoken.WithClientAssertion(refreshtoken.ClientAssertion{Signer: key, Algorithm: "ES256"}))
			_, err := ts.Token()
			if err == nil {
				t.Fatal("Token() = nil error, want invalid_client")
			}
			mu.Lock()
			a := sent[len(sent)-1]
			mu.Unlock()
			if a == "" {
				t.Fatal("no assertion was sent")
			}
			if found := leaks(err, []string{a, a[strings.LastIndexByte(a, '.')+1:], "rt-secret"}); len(found) > 0 {
				t.Errorf("the error shows a secret:\n%s", strings.Join(found, "\n"))
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || !strings.Contains(re.ErrorDescription, "[redacted]") {
				t.Errorf("Token() = %v, want a RetrieveError with the echo redacted", err)
			}
		})
	}
}

// TestClientAssertionPrintsNoKey: a ClientAssertion printed with any verb,
// alone or inside another value, shows no part of its private key, also
// when the Signer is a value that holds the key's bytes (an
// ed25519.PrivateKey, which fmt prints byte by byte).
func TestClientAssertionPrintsNoKey(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := refreshtoken.ClientAssertion{Signer: edKey, KeyID: "k1", Algorithm: "EdDSA"}
	secrets := []string{string(edKey), string(edKey.Seed())}
	for _, v := range []any{c, &c, struct{ A refreshtoken.ClientAssertion }{c}} {
		if found := leaks(v, secrets); len(found) > 0 {
			t.Errorf("a printed ClientAssertion shows its key:\n%s", strings.Join(found, "\n"))
		}
	}
}
