package refreshtokentest

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// mtlsClient returns a client that trusts ca for the server and presents
// certs, and that opens a new connection (a new handshake) per request.
func mtlsClient(ca *CA, certs ...tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool, Certificates: certs},
		DisableKeepAlives: true,
	}}
}

// mtlsServer starts a server that authenticates its client, "test-client",
// by a certificate with subject CN=test-client, with client certificates
// required or, with optional, verified if given.
func mtlsServer(t *testing.T, ca *CA, optional bool, cfg Config) *Server {
	t.Helper()
	auth := tls.RequireAndVerifyClientCert
	if optional {
		auth = tls.VerifyClientCertIfGiven
	}
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerCert()}, ClientAuth: auth, ClientCAs: ca.Pool}
	cfg.ClientCertSubject = "CN=test-client"
	s := NewServer(cfg)
	t.Cleanup(s.Close)
	return s
}

// refreshWith sends a refresh of rt through c, with the form's extra
// fields, and returns the status and the decoded answer.
func refreshWith(t *testing.T, c *http.Client, s *Server, rt string, extra url.Values) (int, map[string]any, error) {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"test-client"}, "refresh_token": {rt}}
	for k, v := range extra {
		form[k] = v
	}
	resp, err := c.PostForm(s.TokenURL, form)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, nil
}

func TestCertAuthentication(t *testing.T) {
	ca := NewCA()
	right := ca.ClientCert("test-client")
	tests := []struct {
		name     string
		optional bool // client certificates verified if given, not required
		client   *http.Client
		extra    url.Values
		want     int    // status; 0: the handshake fails
		wantErr  string // error code
	}{
		{name: "right certificate", client: mtlsClient(ca, right), want: 200},
		{name: "certificate by DNS name only: subject is configured", client: mtlsClient(ca, ca.ClientCert("other", "test-client")), want: 401, wantErr: "invalid_client"},
		{name: "certificate of another client", client: mtlsClient(ca, ca.ClientCert("other-client")), want: 401, wantErr: "invalid_client"},
		{name: "right certificate, wrong client_id", client: mtlsClient(ca, right), extra: url.Values{"client_id": {"other-client"}}, want: 401, wantErr: "invalid_client"},
		{name: "right certificate and a secret too", client: mtlsClient(ca, right), extra: url.Values{"client_secret": {"test-secret"}}, want: 401, wantErr: "invalid_client"},
		{name: "no certificate: handshake fails", client: mtlsClient(ca)},
		{name: "certificate of another CA: handshake fails", client: mtlsClient(ca, NewCA().ClientCert("test-client"))},
		{name: "no certificate, optional", optional: true, client: mtlsClient(ca), want: 401, wantErr: "invalid_client"},
		{name: "certificate of another CA, optional: still verified", optional: true, client: mtlsClient(ca, NewCA().ClientCert("test-client"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mtlsServer(t, ca, tt.optional, Config{})
			rt := s.NewRefreshToken("")
			status, body, err := refreshWith(t, tt.client, s, rt, tt.extra)
			if tt.want == 0 {
				if err == nil || !strings.Contains(err.Error(), "tls: ") {
					t.Fatalf("refresh: err = %v, want a TLS handshake failure", err)
				}
				if got := s.Stats().TokenRequests; got != 0 {
					t.Errorf("TokenRequests = %d, want 0: no request gets past the handshake", got)
				}
			} else if status != tt.want || (tt.wantErr != "" && body["error"] != tt.wantErr) || err != nil {
				t.Fatalf("refresh = %d %v, %v; want %d %q", status, body["error"], err, tt.want, tt.wantErr)
			}
			if newest, alive := s.Newest(rt); (tt.want == 200) == (newest == rt) || !alive {
				t.Errorf("Newest = rotated %t, alive %t; want rotated %t, alive", newest != rt, alive, tt.want == 200)
			}
		})
	}
}

func TestCertAuthenticationByDNSName(t *testing.T) {
	ca := NewCA()
	s := NewServer(Config{
		TLS:           &tls.Config{Certificates: []tls.Certificate{ca.ServerCert()}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool},
		ClientCertDNS: "client.example",
	})
	defer s.Close()
	if !strings.HasPrefix(s.URL, "https://") || s.Config().ClientSecret != "" {
		t.Fatalf("URL = %q, ClientSecret set %t; want https and no secret", s.URL, s.Config().ClientSecret != "")
	}
	for _, tt := range []struct {
		cert tls.Certificate
		want int
	}{
		{ca.ClientCert("anything", "other.example", "client.example"), 200},
		{ca.ClientCert("client.example"), 401}, // the subject is not a SAN
	} {
		status, _, err := refreshWith(t, mtlsClient(ca, tt.cert), s, s.NewRefreshToken(""), nil)
		if err != nil || status != tt.want {
			t.Errorf("refresh with %v = %d, %v; want %d", tt.cert.Leaf.DNSNames, status, err, tt.want)
		}
	}
}

func TestCertBoundAccessTokens(t *testing.T) {
	ca := NewCA()
	right := ca.ClientCert("test-client")
	s := mtlsServer(t, ca, true, Config{CertBoundTokens: true, JWTAccessTokens: true})
	status, body, err := refreshWith(t, mtlsClient(ca, right), s, s.NewRefreshToken(""), nil)
	if err != nil || status != 200 {
		t.Fatalf("refresh = %d %v, %v", status, body["error"], err)
	}
	access := body["access_token"].(string)
	want := Thumbprint(right.Leaf)
	if got, ok := s.AccessThumbprint(access); !ok || got != want {
		t.Errorf("AccessThumbprint = %q, %t; want %q", got, ok, want)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(access, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Cnf map[string]string `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Cnf["x5t#S256"] != want {
		t.Errorf("cnf = %v (%v), want x5t#S256 %q", claims.Cnf, err, want)
	}
	if body["token_type"] != "Bearer" {
		t.Errorf("token_type = %v, want Bearer (RFC 8705 keeps it)", body["token_type"])
	}

	for _, tt := range []struct {
		name   string
		client *http.Client
		want   int
	}{
		{"same certificate", mtlsClient(ca, right), 200},
		{"same certificate, another connection", mtlsClient(ca, right), 200},
		{"another certificate with the same subject", mtlsClient(ca, ca.ClientCert("test-client")), 401},
		{"no certificate", mtlsClient(ca), 401},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.APIURL, nil)
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := tt.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: /api = %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}

func TestUnboundWithoutCertBoundTokens(t *testing.T) {
	ca := NewCA()
	s := mtlsServer(t, ca, true, Config{})
	_, body, err := refreshWith(t, mtlsClient(ca, ca.ClientCert("test-client")), s, s.NewRefreshToken(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	access := body["access_token"].(string)
	if _, ok := s.AccessThumbprint(access); ok {
		t.Errorf("AccessThumbprint: bound without CertBoundTokens")
	}
	req, _ := http.NewRequest(http.MethodGet, s.APIURL, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := mtlsClient(ca).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/api without a certificate = %d, want 200 for a bearer token", resp.StatusCode)
	}
}
