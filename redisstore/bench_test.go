package redisstore_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/redisstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// counter is a go-redis hook that counts commands, and the writes on the
// client's connections: go-redis sends a command (or a pipeline) in one
// write and waits for the answer, so a write is a round trip.
type counter struct{ commands, writes atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{conn, &c.writes}, nil
	}
}

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.commands.Add(1)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.commands.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// BenchmarkRefresh: one source refreshing 2,000 times (with
// -benchtime 2000x) against refreshtokentest's server on loopback, each
// refresh a caller's Token for an expired token: with no store (and
// x/oauth2's refresh, which has none, in the same run), with
// refreshtokentest's MemoryStore (the protocol without a server), and with
// redisstore on a local redis-server (appendfsync always, as the tests run
// it). It reports the latency of a refresh (median and p99) and Redis's
// round trips and commands per refresh. pgstore's benchmark of the same
// name measures the same for PostgreSQL.
func BenchmarkRefresh(b *testing.B) {
	rs := startRedis(b)
	rdb := rs.Client()
	var count counter
	rdb.AddHook(&count)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
	var runs int // a new key for each run: each has a new token server
	for _, bc := range []struct {
		name  string
		store func() refreshtoken.Store
	}{
		{"store=none", func() refreshtoken.Store { return nil }},
		{"store=none-xoauth2", nil}, // x/oauth2's refresh, which has no store
		{"store=memory", func() refreshtoken.Store { return refreshtokentest.NewMemoryStore(nil, 0) }},
		{"store=redisstore", func() refreshtoken.Store {
			runs++
			return redisstore.New(rdb, fmt.Sprintf("refreshtoken:bench:%d", runs))
		}},
		{"store=redisstore+sealed", func() refreshtoken.Store {
			runs++
			key := fmt.Sprintf("refreshtoken:bench:%d", runs)
			return sealedstore.New(redisstore.New(rdb, key), key, benchKeys(b))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			clock := refreshtokentest.NewClock(t0)
			srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
			defer srv.Close()
			token := xoauth2Refresh(srv)
			if bc.store != nil {
				opts := []refreshtoken.Option{refreshtoken.WithClock(clock.Now)}
				if st := bc.store(); st != nil {
					opts = append(opts, refreshtoken.WithStore(st))
				}
				ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid")}, opts...)
				defer ts.Close()
				token = ts.Token
			}
			if _, err := token(); err != nil {
				b.Fatal(err)
			}
			refreshes, w0, c0 := srv.Stats().Refreshes, count.writes.Load(), count.commands.Load()
			took := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				clock.Add(time.Hour) // the token has expired: Token refreshes
				start := time.Now()
				if _, err := token(); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			if n := srv.Stats().Refreshes - refreshes; n != b.N {
				b.Fatalf("%d refreshes for %d expiries", n, b.N)
			}
			slices.Sort(took)
			b.ReportMetric(percentile(took, 0.5), "ms/refresh-p50")
			b.ReportMetric(percentile(took, 0.99), "ms/refresh-p99")
			if strings.HasPrefix(bc.name, "store=redisstore") {
				b.ReportMetric(float64(count.writes.Load()-w0)/float64(b.N), "round-trips/refresh")
				b.ReportMetric(float64(count.commands.Load()-c0)/float64(b.N), "commands/refresh")
			}
		})
	}
}

// xoauth2Refresh returns a function that refreshes with x/oauth2 at each
// call, as its ReuseTokenSource does at each expiry: a TokenSource of the
// config over the latest refresh token, with no access token.
func xoauth2Refresh(srv *refreshtokentest.Server) func() (*oauth2.Token, error) {
	rt := srv.NewRefreshToken("openid")
	return func() (*oauth2.Token, error) {
		tok, err := srv.Config().TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt}).Token()
		if err == nil {
			rt = tok.RefreshToken
		}
		return tok, err
	}
}

// percentile is the p-th quantile of sorted, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(p*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// BenchmarkSaveLoad: a Save and a Load of a token of a real token's size
// (a 1 KB JWT, an ID token, a 64-character refresh token) on a local
// redis-server (appendfsync always), plain and sealed by
// sealedstore, in one run: what encryption adds to each, beside the
// round trip it rides on.
func BenchmarkSaveLoad(b *testing.B) {
	rs := startRedis(b)
	rdb := rs.Client()
	ctx := context.Background()
	tok := (&oauth2.Token{AccessToken: strings.Repeat("a", 1024), TokenType: "Bearer",
		RefreshToken: strings.Repeat("r", 64), Expiry: t0.Add(time.Hour), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": strings.Repeat("i", 1024), "scope": "openid offline_access"})
	for _, bc := range []struct {
		name  string
		store refreshtoken.Store
	}{
		{"store=redisstore", redisstore.New(rdb, "refreshtoken:saveload:plain")},
		{"store=redisstore+sealed", sealedstore.New(redisstore.New(rdb, "refreshtoken:saveload:sealed"), "sealed", benchKeys(b))},
	} {
		if err := bc.store.Save(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name+"/op=Save", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if err := bc.store.Save(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/op=Load", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if got, err := bc.store.Load(ctx); err != nil || got.RefreshToken != tok.RefreshToken {
					b.Fatalf("Load = %v, %v; want the saved token", got != nil, err)
				}
			}
		})
	}
}

// benchKeys is a keyring of one new AES-256 key.
func benchKeys(tb testing.TB) *sealedstore.Keyring {
	secret := make([]byte, 32)
	rand.Read(secret)
	key, err := sealedstore.AESKey("bench-1", secret)
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := sealedstore.NewKeyring(key)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}
