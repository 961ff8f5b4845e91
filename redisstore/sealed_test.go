package redisstore_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/redisstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// sealedKeys returns a keyring of one new AES key.
func sealedKeys(t *testing.T) *sealedstore.Keyring {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	k, err := sealedstore.AESKey("k1", b)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sealedstore.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSealedConformance: a sealed Store on Redis keeps the SharedStore
// contract, with Redis's lock.
func TestSealedConformance(t *testing.T) {
	rs := startRedis(t)
	keys := sealedKeys(t)
	var n atomic.Int32
	refreshtokentest.TestSharedStore(t, func(*testing.T) (a, b refreshtokentest.SharedStore) {
		key := fmt.Sprintf("refreshtoken:sealed:%d", n.Add(1))
		return sealedstore.New(redisstore.New(rs.Client(), key), key, keys).(refreshtoken.SharedStore),
			sealedstore.New(redisstore.New(rs.Client(), key), key, keys).(refreshtoken.SharedStore)
	})
}

// TestSealedFleet: replicas, each with its own Redis client and sealed
// wrapper, called by many goroutines at once through several lifetimes,
// refresh once per lifetime with no reuse: wrapping keeps the fleet's
// lock and compare. The Redis hash and lock never hold a secret.
func TestSealedFleet(t *testing.T) {
	const replicas, callers, lifetimes = 3, 8, 4
	rs := startRedis(t)
	keys := sealedKeys(t)
	clock, srv := newServer(t, refreshtokentest.Config{})
	const key = "refreshtoken:sealed-fleet:user-1"
	first := srv.NewRefreshToken("openid")
	var fleet []*refreshtoken.TokenSource
	for range replicas {
		st := sealedstore.New(redisstore.New(rs.Client(), key), key, keys)
		if _, ok := st.(refreshtoken.SharedStore); !ok {
			t.Fatal("a sealed redisstore is not a SharedStore: the fleet would lose its lock")
		}
		ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: first},
			refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0), refreshtoken.WithStore(st))
		t.Cleanup(func() { ts.Close() })
		fleet = append(fleet, ts)
	}
	ctx := context.Background()
	for life := range lifetimes {
		var wg sync.WaitGroup
		errs := make(chan error, replicas*callers)
		for _, ts := range fleet {
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := ts.Token(); err != nil {
						errs <- err
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("lifetime %d: Token() = %v", life, err)
		}
		h := rs.Client().HGetAll(ctx, key).Val()
		lock := rs.Client().Get(ctx, key+":lock").Val()
		for _, s := range srv.Secrets() {
			if strings.Contains(fmt.Sprint(h)+lock, s) {
				t.Errorf("lifetime %d: Redis holds a secret", life)
			}
		}
		if !strings.HasPrefix(h["access_token"], "sealed.v1.k1.") || !strings.HasPrefix(h["refresh_token"], "sha256.") {
			t.Errorf("lifetime %d: the Redis hash has fields %q…, %q…; want a sealed entry and a hash", life, h["access_token"][:min(len(h["access_token"]), 13)], h["refresh_token"][:min(len(h["refresh_token"]), 7)])
		}
		clock.Add(2 * time.Hour)
	}
	got := srv.Stats()
	if got.Refreshes != lifetimes || got.ReuseEvents != 0 || got.Rejected != 0 {
		t.Errorf("server stats: %d refreshes, %d reuse events, %d rejected; want %d, 0, 0", got.Refreshes, got.ReuseEvents, got.Rejected, lifetimes)
	}
}
