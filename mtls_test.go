package refreshtoken_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// newMTLSServer starts a token server on clock that requires a client
// certificate from its CA, authenticates its client, test-client, by a
// certificate with subject CN=test-client (RFC 8705 tls_client_auth) and
// binds the access tokens to it.
func newMTLSServer(t *testing.T, clock *fakeClock) (*refreshtokentest.CA, *refreshtokentest.Server) {
	t.Helper()
	ca := refreshtokentest.NewCA()
	srv := refreshtokentest.NewServer(refreshtokentest.Config{
		Clock: clock.Now,
		TLS: &tls.Config{
			Certificates: []tls.Certificate{ca.ServerCert()},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool,
		},
		ClientCertSubject: "CN=test-client",
		CertBoundTokens:   true,
	})
	t.Cleanup(srv.Close)
	return ca, srv
}

// certClient returns an HTTP client that trusts ca and presents the
// certificate cert holds, none while it holds nil. Each request opens a
// connection of its own, so that a change of certificate shows at once.
func certClient(ca *refreshtokentest.CA, cert *atomic.Pointer[tls.Certificate]) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs: ca.Pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if c := cert.Load(); c != nil {
					return c, nil
				}
				return new(tls.Certificate), nil // sends none
			},
		},
		DisableKeepAlives: true,
	}}
}

// holding returns a pointer that holds cert.
func holding(cert tls.Certificate) *atomic.Pointer[tls.Certificate] {
	p := new(atomic.Pointer[tls.Certificate])
	p.Store(&cert)
	return p
}

// getAPI sends GET /api through c and returns the status.
func getAPI(t *testing.T, c *http.Client, srv *refreshtokentest.Server) int {
	t.Helper()
	resp, err := c.Get(srv.APIURL)
	if err != nil {
		t.Fatalf("GET /api: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// noSecrets fails the test if err's text holds a secret of srv.
func noSecrets(t *testing.T, err error, srv *refreshtokentest.Server) {
	t.Helper()
	for _, s := range srv.Secrets() {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds a secret", err)
		}
	}
}

func TestMTLSTokenAndAPI(t *testing.T) {
	clock := newFakeClock(t0)
	ca, srv := newMTLSServer(t, clock)
	cert := ca.ClientCert("test-client")
	hc := certClient(ca, holding(cert))
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	ts := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil)))
	defer ts.Close()

	tok := mustToken(t, ts)
	if got, ok := srv.AccessThumbprint(tok.AccessToken); !ok || got != refreshtokentest.Thumbprint(cert.Leaf) {
		t.Errorf("AccessThumbprint = %q, %t; want the client certificate's", got, ok)
	}
	for _, tt := range []struct {
		name   string
		client *http.Client
	}{
		{"NewClient with the client in ctx", refreshtoken.NewClient(ctx, ts)},
		{"Transport with Base", &http.Client{Transport: &refreshtoken.Transport{Source: ts, Base: hc.Transport}}},
	} {
		if got := getAPI(t, tt.client, srv); got != http.StatusOK {
			t.Errorf("%s: /api = %d, want 200", tt.name, got)
		}
	}
	if st := srv.Stats(); st.TokenRequests != 1 || st.APIRejected != 0 {
		t.Errorf("Stats: %d token requests, %d API rejections; want 1, 0", st.TokenRequests, st.APIRejected)
	}
}

// TestMTLSNoCertificate: without a client certificate the handshake
// fails; the error says so, no secret in it, the refresh token is not used
// up, and a cached token that is still valid is served meanwhile.
func TestMTLSNoCertificate(t *testing.T) {
	clock := newFakeClock(t0)
	ca, srv := newMTLSServer(t, clock)
	cert := new(atomic.Pointer[tls.Certificate]) // none at first
	ended := make(chan refreshtoken.RefreshEnded, 10)
	obs := refreshtoken.ObserverFunc(func(e refreshtoken.Event) {
		if e, ok := e.(refreshtoken.RefreshEnded); ok {
			ended <- e
		}
	})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, certClient(ca, cert))
	rt0 := srv.NewRefreshToken("")
	ts := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: rt0},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0), refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, obs)))
	defer ts.Close()

	// No token yet: the caller gets the failure.
	_, err := ts.Token()
	if err == nil || !strings.Contains(err.Error(), "tls: ") || errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Fatalf("Token() without a certificate = %v, want a transient TLS failure", err)
	}
	t.Logf("Token() without a certificate: %v", err)
	noSecrets(t, err, srv)
	recv(t, "the failed refresh", ended)
	if newest, alive := srv.Newest(rt0); newest != rt0 || !alive {
		t.Fatalf("Newest = rotated %t, alive %t; want the refresh token unused", newest != rt0, alive)
	}

	// With the certificate, after the back-off: tokens.
	c := ca.ClientCert("test-client")
	cert.Store(&c)
	clock.Add(time.Minute)
	tok := mustToken(t, ts)
	recv(t, "the refresh", ended)

	// Without it again, in the early window: the cached token is served,
	// and the background refresh fails at the handshake.
	cert.Store(nil)
	clock.Add(58 * time.Minute)
	if got := mustToken(t, ts); got.AccessToken != tok.AccessToken {
		t.Errorf("Token() in the early window with the refresh failing: not the cached token")
	}
	e := recv(t, "the early refresh", ended)
	if e.Outcome != refreshtoken.OutcomeTransient || e.Err == nil || !strings.Contains(e.Err.Error(), "tls: ") {
		t.Errorf("early refresh: %s, %v; want transient, a TLS failure", e.Outcome, e.Err)
	}
	noSecrets(t, e.Err, srv)
	if got := mustToken(t, ts); got.AccessToken != tok.AccessToken {
		t.Errorf("Token() after the failed refresh: not the cached token")
	}
	st := srv.Stats()
	if st.TokenRequests != 1 || st.ReuseEvents != 0 || st.ReplacedSent != 0 {
		t.Errorf("Stats: %d token requests, %d reuses, %d replaced sent; want 1, 0, 0", st.TokenRequests, st.ReuseEvents, st.ReplacedSent)
	}
	if _, alive := srv.Newest(rt0); !alive {
		t.Error("the family was revoked")
	}
}

// TestMTLSAnotherClientsCertificate: a certificate the CA issued to
// another client is answered invalid_client, a rejection, with the refresh
// token left as it was.
func TestMTLSAnotherClientsCertificate(t *testing.T) {
	clock := newFakeClock(t0)
	ca, srv := newMTLSServer(t, clock)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, certClient(ca, holding(ca.ClientCert("other-client"))))
	rt := srv.NewRefreshToken("")
	ts := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: rt},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil)))
	defer ts.Close()
	_, err := ts.Token()
	var re *oauth2.RetrieveError
	if !errors.Is(err, refreshtoken.ErrRefreshRejected) || !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Fatalf("Token() = %v, want ErrRefreshRejected with invalid_client", err)
	}
	noSecrets(t, err, srv)
	if newest, alive := srv.Newest(rt); newest != rt || !alive {
		t.Errorf("Newest = rotated %t, alive %t; want the refresh token unused", newest != rt, alive)
	}
}

// TestMTLSBoundTokenAnotherCertificate: the API answers 401 to a token
// bound to the source's certificate sent over a connection with another;
// Transport drops it, refreshes once, sends once more, and returns the
// second 401: no loop.
func TestMTLSBoundTokenAnotherCertificate(t *testing.T) {
	clock := newFakeClock(t0)
	ca, srv := newMTLSServer(t, clock)
	unauthorized := make(chan refreshtoken.Unauthorized, 10)
	obs := refreshtoken.ObserverFunc(func(e refreshtoken.Event) {
		if e, ok := e.(refreshtoken.Unauthorized); ok {
			unauthorized <- e
		}
	})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, certClient(ca, holding(ca.ClientCert("test-client"))))
	ts := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, obs)))
	defer ts.Close()
	mustToken(t, ts)

	other := certClient(ca, holding(ca.ClientCert("test-client"))) // same subject, another key
	api := &http.Client{Transport: &refreshtoken.Transport{Source: ts, Base: other.Transport}}
	// The first request: its token is dropped, one refresh, one resend,
	// the 401 of the resend returned. The second, with the token fetched
	// for the first: dropped, and as a replacement token was rejected
	// too, the source backs off: no refresh, no resend (invalidate.go).
	for i, want := range []refreshtoken.Unauthorized{
		{Dropped: true, Retried: true, RejectedAgain: true},
		{Dropped: true},
	} {
		before := srv.Stats()
		if got := getAPI(t, api, srv); got != http.StatusUnauthorized {
			t.Fatalf("request %d: /api = %d, want 401", i, got)
		}
		u := recv(t, "the Unauthorized event", unauthorized)
		if u.Dropped != want.Dropped || u.Retried != want.Retried || u.RejectedAgain != want.RejectedAgain {
			t.Errorf("request %d: %+v, want %+v", i, u, want)
		}
		after := srv.Stats()
		wantRefreshes := 0
		if want.Retried {
			wantRefreshes = 1
		}
		if refreshes, calls := after.Refreshes-before.Refreshes, after.APICalls-before.APICalls; refreshes != wantRefreshes || calls != 1+wantRefreshes {
			t.Errorf("request %d: %d refreshes, %d API calls; want %d, %d", i, refreshes, calls, wantRefreshes, 1+wantRefreshes)
		}
	}
	// The third, during the back-off: no token, nothing sent.
	before := srv.Stats()
	_, err := api.Get(srv.APIURL)
	var retry *refreshtoken.RetryError
	if !errors.As(err, &retry) {
		t.Errorf("request during the back-off: %v, want a *RetryError", err)
	}
	if after := srv.Stats(); after.TokenRequests != before.TokenRequests || after.APICalls != before.APICalls {
		t.Errorf("request during the back-off sent %d token requests, %d API calls; want none", after.TokenRequests-before.TokenRequests, after.APICalls-before.APICalls)
	}
	if st := srv.Stats(); st.ReuseEvents != 0 {
		t.Errorf("ReuseEvents = %d, want 0", st.ReuseEvents)
	}
}

// TestMTLSPool: a Pool's sources refresh through the mTLS client of the
// context given to NewPool, and its clients call the API over it.
func TestMTLSPool(t *testing.T) {
	clock := newFakeClock(t0)
	ca, srv := newMTLSServer(t, clock)
	cert := ca.ClientCert("test-client")
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, certClient(ca, holding(cert)))
	p := refreshtoken.NewPool(ctx, srv.Config(), newKeyStores(clock.Now, false).store, refreshtoken.WithClock(clock.Now))
	defer p.Close()
	for _, key := range []string{"alice", "bob"} {
		if err := p.SetToken(ctx, key, &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
			t.Fatal(err)
		}
		if got := getAPI(t, p.Client(ctx, key), srv); got != http.StatusOK {
			t.Errorf("%s: /api = %d, want 200", key, got)
		}
		tok, err := p.Token(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := srv.AccessThumbprint(tok.AccessToken); !ok || got != refreshtokentest.Thumbprint(cert.Leaf) {
			t.Errorf("%s: AccessThumbprint = %q, %t; want the client certificate's", key, got, ok)
		}
	}
	if st := srv.Stats(); st.Refreshes != 2 || st.APIRejected != 0 {
		t.Errorf("Stats: %d refreshes, %d API rejections; want 2, 0", st.Refreshes, st.APIRejected)
	}
}
