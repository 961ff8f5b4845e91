package pgstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// sourceSeen is what a restarted source makes of a stored token: what the
// wrapper must carry through as the plain store does.
type sourceSeen struct {
	Refreshes       int
	Type            string
	RefreshExpiry   time.Time
	KeepAliveAt     time.Time
	OtherKeyRefused bool
	AudienceOK      bool
	KeepAliveSent   bool
	RevokedForAll   bool
}

// TestSealedLikePlain runs one user's life through a Pool and sources on
// pgstore, plain and sealed by sealedstore, against refreshtokentest's
// server with DPoP, refresh-token lifetimes and two audiences: a source
// restarted on the store adopts the same token, lifetimes and binding
// (no refresh; another DPoP key refused without sending), an Audience
// sibling refreshes, KeepAlive is due at the same instant, and a
// Pool.Revoke's sign-out stops a source that loads it. Anything the
// wrapper lost or mis-adopted shows as a difference from the plain store.
func TestSealedLikePlain(t *testing.T) {
	pg := startPostgres(t)
	keys := fleetKeys()
	dpopKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const day = 24 * time.Hour
	run := func(t *testing.T, name string, store func(key string) refreshtoken.Store) sourceSeen {
		ctx := context.Background()
		clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, DPoP: true, Public: true,
			RefreshAbsolute: 30 * day, RefreshInactivity: 10 * day, RefreshExpiresInField: "refresh_token_expires_in",
			Audiences: []string{"", "https://b.example"}})
		opts := []refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithDPoP(dpopKey),
			refreshtoken.WithRefreshTokenLifetime(30*day, 10*day), refreshtoken.WithRevocationURL(srv.RevokeURL)}
		key := name + ":user-1"
		pool := refreshtoken.NewPool(ctx, srv.Config(), store, opts...)
		defer pool.Close()
		if err := pool.SetToken(ctx, key, &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid offline_access")}); err != nil {
			t.Fatalf("SetToken() = %v", err)
		}
		tok, err := pool.Token(ctx, key)
		if err != nil {
			t.Fatalf("Pool.Token() = %v", err)
		}
		var seen sourceSeen
		before := srv.Stats().Refreshes

		// A restart, later: a source given no token, only the store. What
		// it knows of the refresh token's lifetimes is what the store
		// kept; without it, it would count them from now.
		clock.Set(t0.Add(30 * time.Minute))
		ts := refreshtoken.New(ctx, srv.Config(), nil, append(opts, refreshtoken.WithStore(store(key)))...)
		defer ts.Close()
		got, err := ts.Token()
		if err != nil {
			t.Fatalf("restarted Token() = %v", err)
		}
		if got.AccessToken != tok.AccessToken {
			t.Errorf("the restarted source's access token is not the Pool's")
		}
		seen.Refreshes = srv.Stats().Refreshes - before
		seen.Type = got.Type()
		seen.RefreshExpiry, seen.KeepAliveAt = ts.RefreshTokenExpiry(), ts.KeepAliveAt()

		other := refreshtoken.New(ctx, srv.Config(), nil, refreshtoken.WithClock(clock.Now), refreshtoken.WithDPoP(otherKey), refreshtoken.WithStore(store(key)))
		defer other.Close()
		requests := srv.Stats().TokenRequests
		clock.Set(t0.Add(2 * time.Hour)) // the access token expired
		_, err = other.Token()
		seen.OtherKeyRefused = errors.Is(err, refreshtoken.ErrDPoPKeyMismatch) && srv.Stats().TokenRequests == requests
		t.Logf("%s: other key: %v, %d requests", name, err, srv.Stats().TokenRequests-requests)

		b := ts.Audience("https://b.example")
		if bt, err := b.Token(); err == nil {
			aud, _ := srv.AccessAudience(bt.AccessToken)
			seen.AudienceOK = aud == "https://b.example"
		} else {
			t.Logf("Audience Token() = %v", err)
		}

		if at := ts.KeepAliveAt(); !at.IsZero() {
			clock.Set(at)
			requests := srv.Stats().TokenRequests
			if err := ts.KeepAlive(ctx); err != nil {
				t.Errorf("KeepAlive() = %v", err)
			}
			seen.KeepAliveSent = srv.Stats().TokenRequests == requests+1
			t.Logf("%s: keep-alive at %v: %d requests", name, at, srv.Stats().TokenRequests-requests)
		}
		if err := ts.Flush(); err != nil {
			t.Fatalf("Flush() = %v", err)
		}

		if err := pool.Revoke(ctx, key); err != nil {
			t.Fatalf("Pool.Revoke() = %v", err)
		}
		later := refreshtoken.New(ctx, srv.Config(), &oauth2.Token{RefreshToken: "stale"}, append(opts, refreshtoken.WithStore(store(key)))...)
		defer later.Close()
		requests = srv.Stats().TokenRequests
		_, err = later.Token()
		seen.RevokedForAll = errors.Is(err, refreshtoken.ErrRevoked) && srv.Stats().TokenRequests == requests
		return seen
	}
	pool := pg.Pool()
	plain := run(t, "plain", func(key string) refreshtoken.Store { return pgstore.New(pool, key) })
	sealed := run(t, "sealed", func(key string) refreshtoken.Store {
		return sealedstore.New(pgstore.New(pool, key), key, keys)
	})
	want := sourceSeen{Refreshes: 0, Type: "DPoP", RefreshExpiry: plain.RefreshExpiry,
		KeepAliveAt: plain.KeepAliveAt, OtherKeyRefused: true, AudienceOK: true, KeepAliveSent: true, RevokedForAll: true}
	if plain.RefreshExpiry.IsZero() || plain.KeepAliveAt.IsZero() {
		t.Errorf("plain store: %+v; want a refresh-token expiry and a keep-alive instant", plain)
	}
	if d := cmp.Diff(want, plain); d != "" {
		t.Errorf("plain store (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, sealed); d != "" {
		t.Errorf("sealed store (-want +got):\n%s", d)
	}
}
