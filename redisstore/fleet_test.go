package redisstore_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/redisstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest/fleettest"
)

// TestMain runs a fleet worker when the binary is started as one
// (fleettest.Main), and the tests otherwise.
func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the tests that stop Redis cause many.
	redis.SetLogger(quietLogger{})
	fleettest.Main(openFleetStore)
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// openFleetStore makes a worker's stores, on the Redis at addr.
func openFleetStore(addr string) (func(string, time.Duration) refreshtoken.Store, func(), error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	return func(key string, lease time.Duration) refreshtoken.Store {
		return redisstore.New(rdb, key, redisstore.WithLease(lease))
	}, func() { rdb.Close() }, nil
}

// TestFleet runs the fleet tests (package fleettest) on a redis-server of
// each test's own.
func TestFleet(t *testing.T) {
	fleettest.Run(t, func(t *testing.T) fleettest.Backend {
		rs := startRedis(t)
		return fleetBackend{rs, rs.Client()}
	})
}

// fleetBackend is the test process's view of the fleet's Redis.
type fleetBackend struct {
	*redisServer // Stop and Restart
	rdb          *redis.Client
}

func (b fleetBackend) Config() string { return b.Addr() }

func (b fleetBackend) NewStore(key string) refreshtoken.Store { return redisstore.New(b.rdb, key) }

func (b fleetBackend) Locked(key string) bool {
	return b.rdb.Exists(context.Background(), key+":lock").Val() == 1
}
