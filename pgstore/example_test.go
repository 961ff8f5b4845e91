package pgstore_test

import (
	"context"
	"log"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/pgstore"
)

// A source per user in every replica of a service, all sharing each user's
// token through PostgreSQL, so that the fleet refreshes it once per
// lifetime and never sends a retired refresh token. (It needs a
// PostgreSQL server, so it is compiled but not run.)
func ExampleNew() {
	ctx := context.Background()
	conf := &oauth2.Config{
		ClientID:     os.Getenv("AUTH0_CLIENT_ID"),
		ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"),
		Endpoint:     oauth2.Endpoint{TokenURL: "https://" + os.Getenv("AUTH0_DOMAIN") + "/oauth/token"},
	}
	// One pool per process, shared by all its sources, over TLS that
	// checks the server's name.
	cfg, err := pgxpool.ParseConfig("postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	// A statement whose context ends is cancelled at the server, not run
	// later.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	// Once, at deployment (or in your migrations).
	if _, err := pool.Exec(ctx, pgstore.Schema); err != nil {
		log.Fatal(err)
	}

	userID := "user-42"
	store := pgstore.New(pool, conf.ClientID+":"+userID)
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
