package refreshtoken_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// With mutual TLS (RFC 8705), the client certificate goes in the HTTP
// client given in the context: the source authenticates with it at the
// token endpoint, and NewClient sends the API requests over it, so that
// access tokens bound to the certificate are accepted.
func ExampleNewClient_mutualTLS() {
	ca := refreshtokentest.NewCA()
	srv := refreshtokentest.NewServer(refreshtokentest.Config{
		TLS: &tls.Config{
			Certificates: []tls.Certificate{ca.ServerCert()},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool,
		},
		ClientCertSubject: "CN=test-client", // tls_client_auth: no secret
		CertBoundTokens:   true,
	})
	defer srv.Close()

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{ca.ClientCert("test-client")},
		RootCAs:      ca.Pool,
	}}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	conf := &oauth2.Config{ClientID: "test-client", Endpoint: oauth2.Endpoint{TokenURL: srv.TokenURL}}
	ts := refreshtoken.New(ctx, conf, &oauth2.Token{RefreshToken: srv.NewRefreshToken("")})
	defer ts.Close()

	resp, err := refreshtoken.NewClient(ctx, ts).Get(srv.APIURL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
