package redisstore_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/redisstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest/fleettest"
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

// BenchmarkRefresh: a refresh with redisstore on a local redis-server
// with durable writes (appendfsync always, as the tests run it), against
// no store, x/oauth2's refresh and a MemoryStore in the same run, plain and
// sealed (fleettest.BenchmarkRefresh): the latency of a refresh (median
// and p99) and Redis's round trips and commands per refresh. pgstore's
// benchmark of the same name measures the same for PostgreSQL.
func BenchmarkRefresh(b *testing.B) { fleettest.BenchmarkRefresh(b, benchStore(b)) }

// BenchmarkSaveLoad: a Save and a Load on a local redis-server, plain and
// sealed (fleettest.BenchmarkSaveLoad).
func BenchmarkSaveLoad(b *testing.B) { fleettest.BenchmarkSaveLoad(b, benchStore(b)) }

// benchStore is redisstore on a redis-server of b's own, its round trips
// and commands counted.
func benchStore(b *testing.B) fleettest.BenchStore {
	rs := startRedis(b)
	rdb := rs.Client()
	var count counter
	rdb.AddHook(&count)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
	return fleettest.BenchStore{
		Name:  "redisstore",
		New:   func(key string) refreshtoken.Store { return redisstore.New(rdb, "refreshtoken:"+key) },
		Count: func() (int64, int64) { return count.writes.Load(), count.commands.Load() },
		Unit:  "commands",
	}
}
