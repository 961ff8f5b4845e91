package pgstore_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest/fleettest"
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

// BenchmarkRefresh: a refresh with pgstore on a local PostgreSQL with
// fsync on, as in production (as redisstore's benchmark runs Redis:
// appendfsync always), against no store, x/oauth2's refresh and a
// MemoryStore in the same run, plain and sealed
// (fleettest.BenchmarkRefresh): the latency of a refresh (median and p99)
// and the store's round trips and statements per refresh.
func BenchmarkRefresh(b *testing.B) { fleettest.BenchmarkRefresh(b, benchStore(b)) }

// BenchmarkSaveLoad: a Save and a Load on a local PostgreSQL with fsync
// on, plain and sealed (fleettest.BenchmarkSaveLoad).
func BenchmarkSaveLoad(b *testing.B) { fleettest.BenchmarkSaveLoad(b, benchStore(b)) }

// benchStore is pgstore on a PostgreSQL of b's own, with fsync on, its
// round trips and statements counted.
func benchStore(b *testing.B) fleettest.BenchStore {
	pg := startPostgres(b, "fsync=on")
	pool, roundTrips, statements := countingPool(b, pg)
	return fleettest.BenchStore{
		Name:  "pgstore",
		New:   func(key string) refreshtoken.Store { return pgstore.New(pool, key) },
		Count: func() (int64, int64) { return roundTrips.Load(), statements.n.Load() },
		Unit:  "statements",
	}
}
