package pgstore_test

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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// countingConn counts the writes on a connection to PostgreSQL: pgx sends
// each statement's messages in one write and waits for the answer, so a
// write is a round trip.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// statementCounter is a pgx tracer that counts statements.
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// countingPool returns a pool of pg whose round trips (writes) and
// statements are counted, with its one connection made already, so that
// the counts are the store's alone.
func countingPool(tb testing.TB, pg *PGServer) (pool *pgxpool.Pool, roundTrips *atomic.Int64, statements *statementCounter) {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(pg.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	roundTrips, statements = new(atomic.Int64), new(statementCounter)
	var d net.Dialer
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, roundTrips}, nil
	}
	cfg.ConnConfig.Tracer = statements
	cfg.MinConns, cfg.MaxConns = 1, 1
	if pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if err := pool.Ping(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return pool, roundTrips, statements
}

// TestOneRoundTripPerStatement: each operation of a Store is one
// statement in one round trip, on a new connection as on a used one.
func TestOneRoundTripPerStatement(t *testing.T) {
	pg := startPostgres(t)
	pool, roundTrips, statements := countingPool(t, pg)
	ctx := context.Background()
	st := pgstore.New(pool, "roundtrips:user-1")
	tok := &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: t0, ExpiresIn: 3600}
	var unlock func(context.Context) error
	for i := range 2 {
		for _, op := range []struct {
			name string
			call func() error
		}{
			{"Load", func() error { _, err := st.Load(ctx); return err }},
			{"Save", func() error { return st.Save(ctx, tok) }},
			{"SaveIfCurrent", func() error { _, err := st.SaveIfCurrent(ctx, tok, "rt-0"); return err }},
			{"Lock", func() error {
				var err error
				_, unlock, err = st.Lock(ctx)
				return err
			}},
			{"unlock", func() error { return unlock(ctx) }},
		} {
			r, s := roundTrips.Load(), statements.n.Load()
			if err := op.call(); err != nil {
				t.Fatal(err)
			}
			if dr, ds := roundTrips.Load()-r, statements.n.Load()-s; dr != 1 || ds != 1 {
				t.Errorf("use %d: %s took %d round trips for %d statements, want 1 and 1", i+1, op.name, dr, ds)
			}
		}
	}
}

// BenchmarkRefresh: one source refreshing 2,000 times (with
// -benchtime 2000x) against refreshtokentest's server on loopback, each
// refresh a caller's Token for an expired token: with no store (and
// x/oauth2's refresh, which has none, in the same run), with
// refreshtokentest's MemoryStore (the protocol without a database), and
// with pgstore on a local PostgreSQL with fsync on, as in production (and
// as redisstore's benchmark runs Redis: appendfsync always). It reports the
// latency of a refresh (median and p99) and the store's round trips and
// statements per refresh.
func BenchmarkRefresh(b *testing.B) {
	pg := startPostgres(b, "fsync=on")
	pool, roundTrips, statements := countingPool(b, pg)
	var runs int // a new key for each run: each has a new token server
	for _, bc := range []struct {
		name  string
		store func() refreshtoken.Store
	}{
		{"store=none", func() refreshtoken.Store { return nil }},
		{"store=none-xoauth2", nil}, // x/oauth2's refresh, which has no store
		{"store=memory", func() refreshtoken.Store { return refreshtokentest.NewMemoryStore(nil, 0) }},
		{"store=pgstore", func() refreshtoken.Store {
			runs++
			return pgstore.New(pool, fmt.Sprintf("bench:%d", runs))
		}},
		{"store=pgstore+sealed", func() refreshtoken.Store {
			runs++
			key := fmt.Sprintf("bench:%d", runs)
			return sealedstore.New(pgstore.New(pool, key), key, benchKeys(b))
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
			refreshes, r0, s0 := srv.Stats().Refreshes, roundTrips.Load(), statements.n.Load()
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
			if strings.HasPrefix(bc.name, "store=pgstore") {
				b.ReportMetric(float64(roundTrips.Load()-r0)/float64(b.N), "round-trips/refresh")
				b.ReportMetric(float64(statements.n.Load()-s0)/float64(b.N), "statements/refresh")
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
// PostgreSQL (fsync on), plain and sealed by
// sealedstore, in one run: what encryption adds to each, beside the
// round trip it rides on.
func BenchmarkSaveLoad(b *testing.B) {
	pg := startPostgres(b, "fsync=on")
	pool := pg.Pool()
	ctx := context.Background()
	tok := (&oauth2.Token{AccessToken: strings.Repeat("a", 1024), TokenType: "Bearer",
		RefreshToken: strings.Repeat("r", 64), Expiry: t0.Add(time.Hour), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": strings.Repeat("i", 1024), "scope": "openid offline_access"})
	for _, bc := range []struct {
		name  string
		store refreshtoken.Store
	}{
		{"store=pgstore", pgstore.New(pool, "saveload:plain")},
		{"store=pgstore+sealed", sealedstore.New(pgstore.New(pool, "saveload:sealed"), "sealed", benchKeys(b))},
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
