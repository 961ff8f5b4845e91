package refreshtokentest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// CA is a certificate authority in memory for tests of mutual TLS
// (RFC 8705): it issues server and client certificates with ECDSA P-256
// keys, valid from 2000 to 2100 so that no test depends on the wall clock.
// Its methods are safe for concurrent use.
type CA struct {
	// Pool holds the CA's certificate alone: a server's tls.Config
	// ClientCAs, a client's tls.Config RootCAs.
	Pool *x509.CertPool

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA returns a new CA with a key of its own. It panics if the key or
// the certificate cannot be made, as httptest does on such failures.
func NewCA() *CA {
	key := newKey()
	tmpl := template("refreshtokentest CA")
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic("refreshtokentest: creating the CA certificate: " + err.Error())
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic("refreshtokentest: parsing the CA certificate: " + err.Error())
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Pool: pool, cert: cert, key: key}
}

// ServerCert returns a server certificate for 127.0.0.1, ::1 and
// localhost: the Certificates of a Server's [Config] TLS.
func (ca *CA) ServerCert() tls.Certificate {
	tmpl := template("localhost")
	tmpl.DNSNames = []string{"localhost"}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.issue(tmpl)
}

// ClientCert returns a client certificate whose subject is CN=commonName
// and whose subject alternative names are dnsNames: the Certificates of a
// client's tls.Config.
func (ca *CA) ClientCert(commonName string, dnsNames ...string) tls.Certificate {
	tmpl := template(commonName)
	tmpl.DNSNames = dnsNames
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tmpl)
}

func (ca *CA) issue(tmpl *x509.Certificate) tls.Certificate {
	key := newKey()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		panic("refreshtokentest: creating a certificate: " + err.Error())
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic("refreshtokentest: parsing a certificate: " + err.Error())
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("refreshtokentest: generating a key: " + err.Error())
	}
	return key
}

// template returns a certificate template with a random serial number.
func template(commonName string) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("refreshtokentest: generating a serial number: " + err.Error())
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// Thumbprint returns the certificate's SHA-256 thumbprint as RFC 8705
// section 3.1 encodes it in cnf.x5t#S256: the base64url encoding, without
// padding, of the SHA-256 hash of its DER encoding.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// certAuth reports whether the client authenticates with its certificate
// (tls_client_auth) rather than a secret.
func (c *Config) certAuth() bool {
	return c.ClientCertSubject != "" || c.ClientCertDNS != ""
}

// authenticateCert checks a tls_client_auth client (RFC 8705 section 2.1):
// client_id and no secret, over a connection whose client certificate
// chains to TLS.ClientCAs and has the configured subject or DNS name. It
// returns status 0 when the client is authenticated.
func (s *Server) authenticateCert(r *http.Request, params url.Values) (int, map[string]any) {
	_, _, basic := r.BasicAuth()
	if basic || params.Has("client_secret") {
		return oauthError(http.StatusUnauthorized, "invalid_client", "This client authenticates with its certificate, not a secret.")
	}
	if params.Get("client_id") != s.cfg.ClientID || !s.clientCertMatches(r) {
		return oauthError(http.StatusUnauthorized, "invalid_client", "Client certificate authentication failed.")
	}
	return 0, nil
}

// clientCertMatches reports whether r came over a connection with a
// verified client certificate that has the configured subject or DNS name.
func (s *Server) clientCertMatches(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return false // no certificate, or one that was not verified
	}
	leaf := r.TLS.VerifiedChains[0][0]
	return (s.cfg.ClientCertSubject != "" && leaf.Subject.String() == s.cfg.ClientCertSubject) ||
		(s.cfg.ClientCertDNS != "" && slices.Contains(leaf.DNSNames, s.cfg.ClientCertDNS))
}

// peerThumbprint returns the thumbprint of r's client certificate, ""
// without one.
func peerThumbprint(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return Thumbprint(r.TLS.PeerCertificates[0])
}

// bindingFor returns the thumbprint that the access tokens issued in
// answer to r are bound to: "" unless CertBoundTokens is set and r came
// with a client certificate.
func (s *Server) bindingFor(r *http.Request) string {
	if !s.cfg.CertBoundTokens {
		return ""
	}
	return peerThumbprint(r)
}

// certBoundOK reports whether access, a known access token, may be used
// over r's connection: it is not bound, or bound to r's client
// certificate. Called with mu held.
func (s *Server) certBoundOK(r *http.Request, access string) bool {
	want, bound := s.boundTo[access]
	return !bound || want == peerThumbprint(r)
}

// AccessThumbprint returns the thumbprint (see [Thumbprint]) of the client
// certificate that an access token the server issued is bound to, and
// false for one that is not bound.
func (s *Server) AccessThumbprint(access string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x5t, ok := s.boundTo[access]
	return x5t, ok
}
