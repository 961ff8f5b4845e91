package refreshtoken_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// New with oauth2.NewClient: an HTTP client that adds a valid access token
// to every request, shared by many goroutines, with one token request for
// all of them.
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

	ctx := context.Background()
	ts := refreshtoken.New(ctx, conf, &oauth2.Token{RefreshToken: refreshToken})
	defer ts.Close()
	client := oauth2.NewClient(ctx, ts)

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
