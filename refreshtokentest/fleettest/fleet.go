// Package fleettest is a test helper for implementations of
// [refreshtoken.SharedStore]: it runs a fleet of processes that share
// refresh tokens through the store under test, against a
// [refreshtokentest.Server], and checks that the fleet refreshes as one
// process would: each token once per lifetime, in its early window, by
// one process; no refresh token sent twice; no caller failing or handed an
// expired token. It checks this under load, over many sources (a Pool),
// with the process that holds the lock killed mid-refresh, and with the
// store's server stopped and started again.
//
// The workers are the test binary run again. The store's package calls
// [Main] first in its TestMain, which in a worker makes the worker's store
// from the [Backend]'s Config and runs the worker, and calls [Run] from a
// test with a Backend over a server of the test's own. For a store on
// Redis:
//
//	func TestMain(m *testing.M) {
//		fleettest.Main(func(addr string) (func(string, time.Duration) refreshtoken.Store, func(), error) {
//			rdb := redis.NewClient(&redis.Options{Addr: addr})
//			return func(key string, lease time.Duration) refreshtoken.Store {
//				return redisstore.New(rdb, key, redisstore.WithLease(lease))
//			}, func() { rdb.Close() }, nil
//		})
//		os.Exit(m.Run())
//	}
//
//	func TestFleet(t *testing.T) {
//		fleettest.Run(t, func(t *testing.T) fleettest.Backend {
//			return newRedisBackend(t) // starts a redis-server for t
//		})
//	}
//
// The module makes every store itself, so the fleet runs as well over a
// store wrapped in another (one that encrypts what it keeps, say): wrap
// the store in open's newStore and in [Backend.NewStore] alike.
//
// Processes share no fake clock, so the fleet runs on real time, with
// margins far above what it needs (a refresh takes milliseconds; its early
// window is 0.5 s to 2 s). A slower machine only makes the lifetimes take
// longer; the counts asserted (refreshes, reuse events, errors) do not
// depend on speed, except that a worker stalled for a whole early window
// would fail. Run takes about a minute.
//
// [BenchmarkRefresh] and [BenchmarkSaveLoad] measure a store the same way
// for every module: a refresh's latency and round trips, and the cost of
// a Save and a Load, each plain and sealed by sealedstore, beside no
// store and x/oauth2 in the same run.
package fleettest

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// Backend is the shared store under test, as the test process sees it:
// a server of the test's own (a redis-server, a PostgreSQL), its data kept
// until the test ends.
type Backend interface {
	// Config is what a worker needs to reach the server (an address, a
	// DSN); it is passed to Main's open in the worker, through the
	// environment.
	Config() string
	// NewStore returns a handle of the test process on key's token, to
	// seed it; it must be the store the workers make for key.
	NewStore(key string) refreshtoken.Store
	// Locked reports whether a refresh lease on key is held now.
	Locked(key string) bool
	// Stop shuts the server down, keeping its data, and returns once it
	// no longer serves.
	Stop()
	// Restart starts the server again on the same address with its data,
	// and returns once it serves.
	Restart()
}

// Run runs the fleet tests as subtests of t: Fleet, KillLockHolder,
// ServerRestart and Pool. newBackend is called with each subtest's t
// (KillLockHolder's two cases each call it), and must give a new server,
// or empty storage, each time. The workers' stores are made with a lease
// of 600 ms, which the store must keep to some tens of milliseconds. The
// test binary's TestMain must call [Main].
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("Fleet", func(t *testing.T) { testFleet(t, newBackend(t)) })
	t.Run("KillLockHolder", func(t *testing.T) { testKillLockHolder(t, newBackend) })
	t.Run("ServerRestart", func(t *testing.T) { testServerRestart(t, newBackend(t)) })
	t.Run("Pool", func(t *testing.T) { testPool(t, newBackend(t)) })
}

// fleetSettings are the workers' timings: 4 s tokens, refreshed from 2 s
// to 2.5 s of age (the early window), handed out until 3 s (the margin is
// a quarter of the lifetime); a refresh gives up after 400 ms, within
// three quarters of its 600 ms lease, and a waiter waits up to 800 ms for
// the lock, longer than the lease.
func fleetSettings(srv *refreshtokentest.Server, b Backend, key, rt string) workerConfig {
	return workerConfig{
		TokenURL: srv.TokenURL, APIURL: srv.APIURL, StoreConfig: b.Config(), Key: key, RefreshToken: rt,
		Goroutines: 4, Pace: 2 * time.Millisecond,
		Early: 2 * time.Second, Jitter: 500 * time.Millisecond,
		Timeout: 400 * time.Millisecond, Lease: 600 * time.Millisecond,
		ClientID: srv.Config().ClientID, Secret: srv.Config().ClientSecret,
	}
}

const workerLifetime = 4 * time.Second

// testFleet: several processes share one refresh token through the store,
// under load, for many token lifetimes: every token is refreshed exactly
// once, by one process, in its early window; no refresh token is sent
// twice; no caller is handed an expired token.
func testFleet(t *testing.T, b Backend) {
	const processes, generations = 4, 8
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Lifetime: workerLifetime})
	defer srv.Close()
	cfg := fleetSettings(srv, b, "fleet:user-1", srv.NewRefreshToken("openid"))

	start := time.Now()
	fleet := startFleet(t, processes, cfg)
	waitRefreshes(t, srv, generations)
	total := stopFleet(t, fleet)
	elapsed := time.Since(start)

	st := srv.Stats()
	if st.ReuseEvents != 0 || st.ReuseTolerated != 0 || st.ReplacedSent != 0 {
		t.Errorf("reuse events %d, tolerated %d, replaced tokens sent %d; want 0", st.ReuseEvents, st.ReuseTolerated, st.ReplacedSent)
	}
	if st.Rejected != 0 || st.Refreshes != st.TokenRequests {
		t.Errorf("%d token requests for %d refreshes, %d rejected; want one request per refresh", st.TokenRequests, st.Refreshes, st.Rejected)
	}
	// A process that missed another's refresh would refresh the new token
	// at once; each token is refreshed in its early window, from 2 s of
	// age, so none younger than a second.
	if st.YoungestRefreshed < workerLifetime/4 {
		t.Errorf("a token was refreshed at %v of age; want none before %v", st.YoungestRefreshed, workerLifetime/4)
	}
	// One process refreshing alone would refresh at most once per
	// lifetime less its early window, plus the first refresh at the start.
	if most := int(elapsed/(workerLifetime-cfg.Early)) + 1; st.Refreshes > most {
		t.Errorf("%d refreshes in %v; one process would make at most %d", st.Refreshes, elapsed, most)
	}
	t.Logf("%d processes × %d goroutines, %.1f s (%.1f lifetimes of %v tokens): %d refreshes in %d token requests, youngest token refreshed at %v; %d reuse events; %d tokens handed out, %d API calls, %d rejected",
		processes, cfg.Goroutines, elapsed.Seconds(), elapsed.Seconds()/workerLifetime.Seconds(), workerLifetime,
		st.Refreshes, st.TokenRequests, st.YoungestRefreshed.Round(time.Millisecond), st.ReuseEvents, total.Tokens, st.APICalls, st.APIRejected)
}

// testKillLockHolder: the process holding the lock is killed in the
// middle of its refresh. The others take the lock when its lease ends and
// go on, with no caller failing. If the server had not yet acted on the
// request, nothing is lost and nothing is reused. If it had rotated the
// refresh token, the new one died with the process: the next refresh sends
// the previous one again, which only the server's reuse interval (Auth0's
// rotation overlap period) can accept; it must be longer than the lease.
func testKillLockHolder(t *testing.T, newBackend func(t *testing.T) Backend) {
	for _, tc := range []struct {
		name         string
		processed    bool // the server rotates the refresh token before the kill takes effect
		wantTolerate int
	}{
		{"before the server acts", false, 0},
		{"after the server rotated", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			var armed atomic.Bool
			arrived := make(chan int, 1)
			release := make(chan struct{})
			srv := refreshtokentest.NewServer(refreshtokentest.Config{
				Lifetime:      workerLifetime,
				ReuseInterval: time.Minute,
				OnTokenRequest: func(r *http.Request) {
					if armed.CompareAndSwap(true, false) {
						pid, _ := strconv.Atoi(r.Header.Get(pidHeader))
						arrived <- pid
						<-release
					}
				},
			})
			defer srv.Close()
			key := "kill:user-1"
			cfg := fleetSettings(srv, b, key, srv.NewRefreshToken("openid"))
			fleet := startFleet(t, 3, cfg)

			waitRefreshes(t, srv, 2)
			if !tc.processed {
				// The request waits at the server, which drops it once the
				// client's connection is gone.
				srv.Inject(1, refreshtokentest.Fault{Latency: time.Hour})
			}
			armed.Store(true)
			pid := recv(t, "the next refresh", arrived)
			holder, ok := fleet[pid]
			if !ok {
				t.Fatalf("token request from pid %d, not a worker", pid)
			}
			if !b.Locked(key) {
				t.Fatal("a token request was sent without the lock held")
			}
			holder.kill()
			delete(fleet, pid)
			killed := time.Now()
			before := srv.Stats().Refreshes
			close(release)

			first := before + 1
			if tc.processed {
				first++ // the dead process's refresh counts too
			}
			waitRefreshes(t, srv, first)
			recovered := time.Since(killed)
			waitRefreshes(t, srv, srv.Stats().Refreshes+2) // and the fleet goes on
			stopFleet(t, fleet)

			st := srv.Stats()
			if st.ReuseEvents != 0 || st.ReuseTolerated != tc.wantTolerate {
				t.Errorf("reuse events %d, tolerated %d; want 0, %d", st.ReuseEvents, st.ReuseTolerated, tc.wantTolerate)
			}
			t.Logf("killed the lock holder mid-refresh; first refresh by another process %v later (lease %v); server: %d refreshes, %d reuse events, %d tolerated",
				recovered.Round(time.Millisecond), cfg.Lease, st.Refreshes, st.ReuseEvents, st.ReuseTolerated)
		})
	}
}

// testServerRestart: the store's server goes down just after a refresh
// and comes back (with its data) once a refresh has failed for want of it.
// Callers keep being handed their valid token meanwhile, and refreshing
// resumes. Tokens live 8 s here, so that the refresh that fails has 2 s
// (its early window) to succeed after a back-off of up to 1 s.
func testServerRestart(t *testing.T, b Backend) {
	const lifetime = 8 * time.Second
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Lifetime: lifetime})
	defer srv.Close()
	cfg := fleetSettings(srv, b, "restart:user-1", srv.NewRefreshToken("openid"))
	cfg.Early, cfg.Jitter = lifetime/2, 300*time.Millisecond
	fleet := startFleet(t, 3, cfg)

	waitRefreshes(t, srv, 2)
	// The server goes down once the refresh's save has landed, which its
	// lock's release shows. An outage from the token server's answer to
	// the save that outlasts the lease is the protocol's limit
	// (docs/stores.md): the next process sends the refresh token the store
	// still holds, which only the server's reuse interval accepts, as
	// KillLockHolder shows for a holder killed at that point.
	waitUnlocked(t, b, cfg.Key)
	b.Stop()
	down := srv.Stats().Refreshes
	failing := make(chan struct{}, 1)
	for _, w := range fleet {
		go func() {
			select {
			case <-w.failing:
				select {
				case failing <- struct{}{}:
				default:
				}
			case <-w.exited:
			}
		}()
	}
	recv(t, "a refresh to fail with the store's server down", failing)
	if n := srv.Stats().Refreshes; n != down {
		t.Fatalf("%d refreshes while the store's server was down, want none", n-down)
	}
	b.Restart()
	waitRefreshes(t, srv, down+2)
	stopFleet(t, fleet)

	st := srv.Stats()
	if st.ReuseEvents != 0 || st.ReuseTolerated != 0 || st.Refreshes != st.TokenRequests {
		t.Errorf("reuse events %d, tolerated %d, %d token requests for %d refreshes; want 0, 0, equal", st.ReuseEvents, st.ReuseTolerated, st.TokenRequests, st.Refreshes)
	}
}

// testPool: several processes each run a Pool over the same users, each
// user's token in the store under a key of its own, with fewer sources
// than users, so that every process evicts and makes again its sources all
// the time. For the whole fleet each user's token is refreshed once per
// lifetime, in its early window, by one process; no refresh token is sent
// twice; no caller fails or is handed an expired token.
func testPool(t *testing.T, b Backend) {
	const processes, users, generations = 3, 12, 3
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Lifetime: workerLifetime})
	defer srv.Close()
	cfg := fleetSettings(srv, b, "", "")
	cfg.PoolSize = users / 2
	ctx := context.Background()
	for i := range users {
		key := fmt.Sprintf("pool:user-%d", i)
		// The user signed in: one process saved their token.
		if err := b.NewStore(key).Save(ctx, &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid")}); err != nil {
			t.Fatal(err)
		}
		cfg.Users = append(cfg.Users, key)
	}

	start := time.Now()
	fleet := startFleet(t, processes, cfg)
	waitRefreshes(t, srv, users*generations)
	total := stopFleet(t, fleet)
	elapsed := time.Since(start)

	st := srv.Stats()
	if st.ReuseEvents != 0 || st.ReuseTolerated != 0 || st.ReplacedSent != 0 {
		t.Errorf("reuse events %d, tolerated %d, replaced tokens sent %d; want 0", st.ReuseEvents, st.ReuseTolerated, st.ReplacedSent)
	}
	if st.Rejected != 0 || st.Refreshes != st.TokenRequests {
		t.Errorf("%d token requests for %d refreshes, %d rejected; want one request per refresh", st.TokenRequests, st.Refreshes, st.Rejected)
	}
	// A process that missed another's refresh would refresh the new token
	// at once.
	if st.YoungestRefreshed < workerLifetime/4 {
		t.Errorf("a token was refreshed at %v of age; want none before %v", st.YoungestRefreshed, workerLifetime/4)
	}
	if most := users * (int(elapsed/(workerLifetime-cfg.Early)) + 1); st.Refreshes > most {
		t.Errorf("%d refreshes of %d users in %v; one process per user would make at most %d", st.Refreshes, users, elapsed, most)
	}
	t.Logf("%d processes × %d goroutines, Pools of %d sources over %d users, %.1f s: %d refreshes in %d token requests, youngest token refreshed at %v; %d reuse events; %d tokens handed out, %d API calls, %d rejected",
		processes, cfg.Goroutines, cfg.PoolSize, users, elapsed.Seconds(), st.Refreshes, st.TokenRequests,
		st.YoungestRefreshed.Round(time.Millisecond), st.ReuseEvents, total.Tokens, st.APICalls, st.APIRejected)
}

// recv returns the next value from c, failing the test after 10 s.
func recv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
