package sealedstore_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// A source whose store keeps its token sealed. The key would come from a
// secret manager, as base64 in an environment variable
// (base64.StdEncoding.DecodeString(os.Getenv("TOKEN_STORE_KEY"))); here
// it is a fixed example.
func Example() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()

	raw, err := base64.StdEncoding.DecodeString("ZXhhbXBsZSBrZXk6IDMyIGJ5dGVzLCBub3QgcmVhbCE=")
	if err != nil {
		log.Fatal(err)
	}
	key, err := sealedstore.AESKey("2026-11", raw)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := sealedstore.NewKeyring(key)
	if err != nil {
		log.Fatal(err)
	}
	inner := refreshtokentest.NewMemoryStore(nil, 0) // or a filestore, a redisstore
	st := sealedstore.New(inner, "user-42", keys)

	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithStore(st))
	defer ts.Close()
	if _, err := ts.Token(); err != nil {
		log.Fatal(err)
	}

	stored := inner.Stored()
	fmt.Println("the store holds a sealed entry:", strings.HasPrefix(stored.AccessToken, "sealed.v1.2026-11."))
	fmt.Println("and the refresh token's hash:", strings.HasPrefix(stored.RefreshToken, "sha256."))
	// Output:
	// the store holds a sealed entry: true
	// and the refresh token's hash: true
}
