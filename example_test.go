package refreshtoken_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// New with a file store and NewClient, as the README recommends: an HTTP
// client that adds a valid access token to every request, shared by many
// goroutines, with one token request for all of them, and every rotated
// refresh token saved in a file.
func ExampleNew() {
	// A local Auth0-like server stands in for https://YOUR_DOMAIN/oauth/token.
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	conf := &oauth2.Config{
		ClientID:     "test-client",
		ClientSecret: "test-secret",
		Endpoint:     oauth2.Endpoint{TokenURL: srv.TokenURL},
	}
	refreshToken := srv.NewRefreshToken("openid offline_access")
	dir, err := os.MkdirTemp("", "refreshtoken-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	ts := refreshtoken.New(ctx, conf, &oauth2.Token{RefreshToken: refreshToken},
		refreshtoken.WithStore(filestore.New(filepath.Join(dir, "token.json"))))
	defer ts.Close()
	client := refreshtoken.NewClient(ctx, ts)

	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(srv.APIURL)
			if err != nil {
				log.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				log.Fatal(resp.Status)
			}
		}()
	}
	wg.Wait()
	fmt.Println("API calls:", srv.Stats().APICalls)
	fmt.Println("token requests:", srv.Stats().TokenRequests)
	// Output:
	// API calls: 20
	// token requests: 1
}

// NewClient recovers from a 401: when the API rejects a token before it
// expires, the client's Transport gets a new one and sends the request again.
func ExampleNewClient() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	ctx := context.Background()
	ts := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("offline_access")})
	defer ts.Close()
	client := refreshtoken.NewClient(ctx, ts)

	get := func() {
		resp, err := client.Get(srv.APIURL)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
	}
	get()
	// The API stops accepting every access token issued so far, as after
	// a revocation.
	srv.RevokeAccessTokens()
	get()
	fmt.Println("token requests:", srv.Stats().TokenRequests)
	// Output:
	// 200 OK
	// 200 OK
	// token requests: 2
}

// Transport in an http.Client of your own, here with a time limit per
// request.
func ExampleTransport() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	ts := refreshtoken.New(context.Background(), srv.Config(),
		&oauth2.Token{RefreshToken: srv.NewRefreshToken("offline_access")})
	defer ts.Close()
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &refreshtoken.Transport{Source: ts}, // Base nil: http.DefaultTransport
	}
	resp, err := client.Get(srv.APIURL)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// 200 OK
}

// WithStore with a filestore: a restarted process uses the token the last
// one saved, with no request while its access token is fresh, and with the
// latest rotated refresh token after.
func ExampleWithStore() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	dir, err := os.MkdirTemp("", "refreshtoken-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "token.json")
	initial := srv.NewRefreshToken("offline_access")

	// run is one run of a process: a source, one token, Close.
	run := func(tok *oauth2.Token) {
		ts := refreshtoken.New(context.Background(), srv.Config(), tok,
			refreshtoken.WithStore(filestore.New(path)))
		if _, err := ts.Token(); err != nil {
			log.Fatal(err)
		}
		if err := ts.Close(); err != nil {
			log.Fatal(err)
		}
	}
	run(&oauth2.Token{RefreshToken: initial})
	fmt.Println("token requests after the first run:", srv.Stats().TokenRequests)
	// The second run is given no token: the store has it.
	run(&oauth2.Token{})
	fmt.Println("token requests after the second run:", srv.Stats().TokenRequests)

	saved, err := filestore.New(path).Load(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	newest, _ := srv.Newest(initial)
	fmt.Println("the file holds the latest refresh token:", saved.RefreshToken == newest)
	// Output:
	// token requests after the first run: 1
	// token requests after the second run: 1
	// the file holds the latest refresh token: true
}

// SetToken after ErrRefreshRejected: once the server has revoked the token
// family, the source stops sending requests and reports the rejection until
// it is given a new refresh token, such as one from a new sign-in.
func ExampleTokenSource_SetToken() {
	clock := refreshtokentest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	first := srv.NewRefreshToken("offline_access")
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: first},
		refreshtoken.WithClock(clock.Now))
	defer ts.Close()
	if _, err := ts.Token(); err != nil {
		log.Fatal(err)
	}

	// The user's sessions are revoked (a password change, an administrator).
	srv.Revoke(first)
	_, err := ts.Token()
	fmt.Println("cached token still served:", err == nil)
	clock.Add(time.Hour) // the access token expires
	for range 3 {
		_, err = ts.Token()
		fmt.Println("rejected:", errors.Is(err, refreshtoken.ErrRefreshRejected))
	}
	fmt.Println("token requests:", srv.Stats().TokenRequests)

	// The user signs in again: the source gets the new refresh token.
	if err := ts.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("offline_access")}); err != nil {
		log.Fatal(err)
	}
	_, err = ts.Token()
	fmt.Println("recovered:", err == nil)
	fmt.Println("token requests:", srv.Stats().TokenRequests)
	// Output:
	// cached token still served: true
	// rejected: true
	// rejected: true
	// rejected: true
	// token requests: 2
	// recovered: true
	// token requests: 3
}

// Cache around another token source: here one that, like a client
// credentials source, fetches a new token on every call.
func ExampleCache() {
	calls := 0
	fetch := tokenSourceFunc(func() (*oauth2.Token, error) {
		calls++ // Cache calls it from one goroutine at a time
		return &oauth2.Token{AccessToken: fmt.Sprint("token-", calls), Expiry: time.Now().Add(time.Hour)}, nil
	})
	ts := refreshtoken.Cache(fetch)
	defer ts.Close()
	for range 3 {
		tok, err := ts.Token()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(tok.AccessToken)
	}
	fmt.Println("inner source calls:", calls)
	// Output:
	// token-1
	// token-1
	// token-1
	// inner source calls: 1
}

type tokenSourceFunc func() (*oauth2.Token, error)

func (f tokenSourceFunc) Token() (*oauth2.Token, error) { return f() }

// WithOnNewToken persists every rotated refresh token before the new access
// token is used, so a restart resumes with a refresh token that still works.
func ExampleWithOnNewToken() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	dir, err := os.MkdirTemp("", "refreshtoken-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "token.json")

	save := func(_ context.Context, tok *oauth2.Token) error {
		b, err := json.Marshal(tok) // access token, real expiry, refresh token
		if err != nil {
			return err
		}
		// A real store writes a temporary file and renames it over the
		// old one, so that a crash never leaves a torn file.
		return os.WriteFile(path, b, 0o600)
	}
	initial := srv.NewRefreshToken("offline_access")
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: initial},
		refreshtoken.WithOnNewToken(save))
	defer ts.Close()
	if _, err := ts.Token(); err != nil {
		log.Fatal(err)
	}

	var saved oauth2.Token
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		log.Fatal(err)
	}
	fmt.Println("refresh token rotated:", saved.RefreshToken != initial)
	fmt.Println("saved token expires in about an hour:", time.Until(saved.Expiry).Round(time.Hour))
	// Output:
	// refresh token rotated: true
	// saved token expires in about an hour: 1h0m0s
}
