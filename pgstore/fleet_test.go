package pgstore_test

import (
	"context"
	"crypto/sha256"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest/fleettest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// TestMain runs a fleet worker when the binary is started as one
// (fleettest.Main), and the tests otherwise.
func TestMain(m *testing.M) {
	fleettest.Main(openFleetStore)
	os.Exit(m.Run())
}

// sealedPrefix starts the Config of a fleet whose stores are sealed
// (package sealedstore) with fleetKeys.
const sealedPrefix = "sealed "

// fleetKeys are the keys of a sealed fleet: the same in every worker, as
// a deployment's key is, and a test's own.
func fleetKeys() *sealedstore.Keyring {
	sum := sha256.Sum256([]byte("pgstore fleet test key"))
	key, err := sealedstore.AESKey("fleet-1", sum[:])
	if err != nil {
		panic(err)
	}
	keys, err := sealedstore.NewKeyring(key)
	if err != nil {
		panic(err)
	}
	return keys
}

// fleetStore returns the store of key in pool, sealed if keys is not nil:
// the workers and the test process make it alike.
func fleetStore(pool *pgxpool.Pool, keys *sealedstore.Keyring, key string, opts ...pgstore.Option) refreshtoken.Store {
	st := pgstore.New(pool, key, opts...)
	if keys == nil {
		return st
	}
	return sealedstore.New(st, key, keys)
}

// openFleetStore makes a worker's stores, on the PostgreSQL its config
// names, with statements cancelled at the server when their context ends,
// as the package doc advises.
func openFleetStore(config string) (func(string, time.Duration) refreshtoken.Store, func(), error) {
	dsn, sealed := strings.CutPrefix(config, sealedPrefix)
	var keys *sealedstore.Keyring
	if sealed {
		keys = fleetKeys()
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, nil, err
	}
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	// pgxpool's default, 4 connections on this machine, is fewer than a
	// worker's statements in flight (4 callers, and the Pool's refreshes
	// in the background): a statement that waits for a connection spends
	// its refresh timeout (400 ms here) waiting. go-redis's pool, which
	// redisstore's workers use, has 20.
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, nil, err
	}
	return func(key string, lease time.Duration) refreshtoken.Store {
		return fleetStore(pool, keys, key, pgstore.WithLease(lease))
	}, pool.Close, nil
}

// TestFleet runs the fleet tests (package fleettest) on a PostgreSQL of
// each test's own.
func TestFleet(t *testing.T) {
	fleettest.Run(t, func(t *testing.T) fleettest.Backend {
		pg := startPostgres(t)
		return fleetBackend{pg, pg.Pool(), nil}
	})
}

// TestFleetSealed runs them again with every store sealed by
// sealedstore, as a fleet that encrypts its tokens at rest does: the
// wrapper keeps the fleet's lock and compare (on the refresh token's
// hash) working across processes.
func TestFleetSealed(t *testing.T) {
	fleettest.Run(t, func(t *testing.T) fleettest.Backend {
		pg := startPostgres(t)
		return fleetBackend{pg, pg.Pool(), fleetKeys()}
	})
}

// fleetBackend is the test process's view of the fleet's PostgreSQL.
type fleetBackend struct {
	*PGServer // Stop and Restart
	pool      *pgxpool.Pool
	keys      *sealedstore.Keyring // nil: not sealed
}

func (b fleetBackend) Config() string {
	if b.keys != nil {
		return sealedPrefix + b.DSN()
	}
	return b.DSN()
}

func (b fleetBackend) NewStore(key string) refreshtoken.Store { return fleetStore(b.pool, b.keys, key) }

func (b fleetBackend) Locked(key string) bool { return b.LeaseHeld(key) }
