// Command quickstart calls an API with access tokens from an Auth0 refresh
// token, keeping every rotated refresh token in a file.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
)

func main() {
	ctx := context.Background()
	conf := &oauth2.Config{
		ClientID:     os.Getenv("AUTH0_CLIENT_ID"),
		ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"), // "" for a public client
		Endpoint:     oauth2.Endpoint{TokenURL: "https://" + os.Getenv("AUTH0_DOMAIN") + "/oauth/token"},
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		log.Fatal(err)
	}
	// The first run takes the refresh token from REFRESH_TOKEN. The store
	// keeps every rotated one, and later runs use the stored token instead.
	ts := refreshtoken.New(ctx, conf, &oauth2.Token{RefreshToken: os.Getenv("REFRESH_TOKEN")},
		refreshtoken.WithStore(filestore.New(filepath.Join(dir, "quickstart", "token.json"))),
		refreshtoken.WithEndpointParams(url.Values{"audience": {"https://api.example.com"}}))
	client := refreshtoken.NewClient(ctx, ts) // share ts and client across goroutines

	err = call(ctx, client, "https://api.example.com/v1/things")
	// Close saves a rotated refresh token whose Save failed, or says it could not.
	if err := errors.Join(err, ts.Close()); err != nil {
		log.Fatal(err)
	}
}

func call(ctx context.Context, client *http.Client, api string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	return nil
}
