package redisstore_test

import (
	"context"
	"log"
	"net/url"
	"os"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/redisstore"
)

// A source per user in every replica of a service, all sharing each user's
// token through Redis, so that the fleet refreshes it once per lifetime and
// never sends a retired refresh token. (It needs a Redis server, so it is
// compiled but not run.)
func ExampleNew() {
	ctx := context.Background()
	conf := &oauth2.Config{
		ClientID:     os.Getenv("AUTH0_CLIENT_ID"),
		ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"),
		Endpoint:     oauth2.Endpoint{TokenURL: "https://" + os.Getenv("AUTH0_DOMAIN") + "/oauth/token"},
	}
	// One client per process, shared by all its sources. ContextTimeoutEnabled
	// makes go-redis honour the source's deadlines.
	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()

	userID := "user-42"
	// The braces keep the token and its lock in one Redis Cluster slot.
	store := redisstore.New(rdb, "refreshtoken:"+conf.ClientID+":{"+userID+"}")
	// The refresh token of the user's sign-in; once the store holds the
	// user's token, it supersedes this one.
	signedIn := &oauth2.Token{RefreshToken: os.Getenv("REFRESH_TOKEN")}
	ts := refreshtoken.New(ctx, conf, signedIn,
		refreshtoken.WithStore(store),
		refreshtoken.WithEndpointParams(url.Values{"audience": {"https://api.example.com"}}))
	defer ts.Close()

	client := refreshtoken.NewClient(ctx, ts)
	resp, err := client.Get("https://api.example.com/v1/users/" + userID)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
}
