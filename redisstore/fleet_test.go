package redisstore_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/redisstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// The fleet tests run the test binary again as worker processes
// (runWorker), which share one refresh token through a real Redis against
// a refreshtokentest server in the test process. Processes share no fake
// clock, so these tests run on real time, with margins far above what
// they need (a refresh takes milliseconds; its early window is 0.5 s to
// 2 s). A slower machine only makes the lifetimes take longer; the counts
// asserted (refreshes, reuse events, errors) do not depend on speed, except
// that a worker stalled for a whole early window would fail.

// workerEnv carries a worker's configuration, as JSON.
const workerEnv = "REDISSTORE_FLEET_WORKER"

// TestMain runs a worker when the binary is started as one, and the tests
// otherwise.
func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the tests that stop Redis cause many.
	redis.SetLogger(quietLogger{})
	if cfg := os.Getenv(workerEnv); cfg != "" {
		os.Exit(runWorker(cfg))
	}
	os.Exit(m.Run())
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

type workerConfig struct {
	TokenURL, APIURL string
	RedisAddr, Key   string
	RefreshToken     string
	Goroutines       int
	Pace             time.Duration // between calls of one goroutine
	Early, Jitter    time.Duration
	Timeout, Lease   time.Duration
	ClientID, Secret string
	// Users, if set, makes the worker run a Pool over these Redis keys,
	// one per user, of at most PoolSize sources, instead of one source:
	// each call is for the next user.
	Users    []string
	PoolSize int
}

// workerResult is what a worker saw, printed as its last line.
type workerResult struct {
	Tokens      int64 // tokens handed out by Token
	Expired     int64 // of which already expired when handed out
	Errors      int64 // Token calls that failed
	FirstError  string
	APICalls    int64
	APIRejected int64 // API calls answered 401
}

// fleetSettings are the workers' timings: 4 s tokens, refreshed from 2 s
// to 2.5 s of age (the early window), handed out until 3 s (the margin is
// a quarter of the lifetime); a refresh gives up after 400 ms, within
// three quarters of its 600 ms lease, and a waiter waits up to 800 ms for
// the lock, longer than the lease.
func fleetSettings(srv *refreshtokentest.Server, rs *redisServer, key, rt string) workerConfig {
	return workerConfig{
		TokenURL: srv.TokenURL, APIURL: srv.APIURL, RedisAddr: rs.Addr(), Key: key, RefreshToken: rt,
		Goroutines: 4, Pace: 2 * time.Millisecond,
		Early: 2 * time.Second, Jitter: 500 * time.Millisecond,
		Timeout: 400 * time.Millisecond, Lease: 600 * time.Millisecond,
		ClientID: srv.Config().ClientID, Secret: srv.Config().ClientSecret,
	}
}

const workerLifetime = 4 * time.Second

// pidHeader names the worker that sent a token request, so that a test can
// kill the process that holds the lock.
const pidHeader = "X-Worker-Pid"

type pidTransport struct{}

func (pidTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(pidHeader, strconv.Itoa(os.Getpid()))
	return http.DefaultTransport.RoundTrip(r)
}

// runWorker is a replica: Goroutines goroutines call Token and the API
// until stdin closes. It prints "ready", "failing" whenever the source's
// Err turns non-nil, and at the end "result" and its workerResult.
func runWorker(cfgJSON string) int {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		log.Print(err)
		return 2
	}
	var outMu sync.Mutex
	say := func(line string) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Println(line)
	}

	rdb := redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	conf := &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.Secret,
		Endpoint: oauth2.Endpoint{TokenURL: cfg.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: pidTransport{}})
	opts := []refreshtoken.Option{refreshtoken.WithEarlyRefresh(cfg.Early), refreshtoken.WithJitter(cfg.Jitter),
		refreshtoken.WithRefreshTimeout(cfg.Timeout)}
	var ts *refreshtoken.TokenSource
	var token func() (*oauth2.Token, error)
	if len(cfg.Users) > 0 {
		pool := refreshtoken.NewPool(ctx, conf, func(key string) refreshtoken.Store {
			return redisstore.New(rdb, key, redisstore.WithLease(cfg.Lease))
		}, append(opts, refreshtoken.WithPoolSize(cfg.PoolSize))...)
		defer pool.Close()
		var next atomic.Uint64
		token = func() (*oauth2.Token, error) {
			return pool.Token(context.Background(), cfg.Users[next.Add(1)%uint64(len(cfg.Users))])
		}
	} else {
		ts = refreshtoken.New(ctx, conf, &oauth2.Token{RefreshToken: cfg.RefreshToken},
			append(opts, refreshtoken.WithStore(redisstore.New(rdb, cfg.Key, redisstore.WithLease(cfg.Lease))))...)
		token = ts.Token
	}

	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	var res workerResult
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range cfg.Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(cfg.Pace): // a service does other work between calls
				}
				tok, err := token()
				if err != nil {
					atomic.AddInt64(&res.Errors, 1)
					firstErr.Do(func() { res.FirstError = err.Error() })
					continue
				}
				atomic.AddInt64(&res.Tokens, 1)
				if !tok.Expiry.IsZero() && !time.Now().Before(tok.Expiry) {
					atomic.AddInt64(&res.Expired, 1)
				}
				req, _ := http.NewRequest(http.MethodGet, cfg.APIURL, nil)
				tok.SetAuthHeader(req)
				resp, err := http.DefaultClient.Do(req)
				atomic.AddInt64(&res.APICalls, 1)
				if err != nil {
					atomic.AddInt64(&res.Errors, 1)
					firstErr.Do(func() { res.FirstError = err.Error() })
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					atomic.AddInt64(&res.APIRejected, 1)
				}
			}
		}()
	}
	if ts != nil {
		wg.Add(1)
		go watchErr(ts, stop, &wg, say)
	}
	say("ready")
	wg.Wait()
	if ts != nil {
		ts.Close()
	}
	b, _ := json.Marshal(&res)
	say("result " + string(b))
	return 0
}

// watchErr says "failing" whenever the source's Err turns non-nil.
func watchErr(ts *refreshtoken.TokenSource, stop <-chan struct{}, wg *sync.WaitGroup, say func(string)) {
	defer wg.Done()
	failing := false
	for {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		if now := ts.Err() != nil; now != failing {
			failing = now
			if failing {
				say("failing")
			}
		}
	}
}

// worker is a running worker process.
type worker struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  bytes.Buffer
	failing chan struct{} // a "failing" line
	result  chan workerResult
	exited  chan struct{}
}

func startWorker(t *testing.T, cfg workerConfig) *worker {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{failing: make(chan struct{}, 100), result: make(chan workerResult, 1), exited: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	w.cmd.Stderr = &w.stderr
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				close(ready)
			case line == "failing":
				w.failing <- struct{}{}
			case strings.HasPrefix(line, "result "):
				var r workerResult
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "result ")), &r); err != nil {
					t.Errorf("worker %d: bad result %q", w.cmd.Process.Pid, line)
				}
				w.result <- r
			}
		}
		w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(w.kill)
	select {
	case <-ready:
	case <-w.exited:
		t.Fatalf("worker exited before it was ready: %s", w.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("worker not ready after 30 s")
	}
	return w
}

// stop ends the worker and returns what it saw.
func (w *worker) stop(t *testing.T) workerResult {
	t.Helper()
	w.stdin.Close()
	select {
	case r := <-w.result:
		<-w.exited
		return r
	case <-w.exited:
		t.Fatalf("worker %d exited without a result: %s", w.cmd.Process.Pid, w.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("worker %d did not stop", w.cmd.Process.Pid)
	}
	return workerResult{}
}

// kill ends the worker at once, as a crash or an OOM kill would.
func (w *worker) kill() {
	w.cmd.Process.Kill()
	<-w.exited
}

// startFleet starts n workers, mapped by pid.
func startFleet(t *testing.T, n int, cfg workerConfig) map[int]*worker {
	fleet := map[int]*worker{}
	for range n {
		w := startWorker(t, cfg)
		fleet[w.cmd.Process.Pid] = w
	}
	return fleet
}

// waitRefreshes waits until the server has made n refreshes; a guard of
// a minute, far above the few seconds a lifetime takes.
func waitRefreshes(t *testing.T, srv *refreshtokentest.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for srv.Stats().Refreshes < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for refresh %d; server: %+v", n, srv.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stopFleet stops every worker still running, and checks that no caller
// failed, was handed an expired token or had an API call rejected.
func stopFleet(t *testing.T, fleet map[int]*worker) (total workerResult) {
	t.Helper()
	for pid, w := range fleet {
		r := w.stop(t)
		if r.Tokens == 0 || r.Errors != 0 || r.Expired != 0 || r.APIRejected != 0 {
			t.Errorf("worker %d: %d tokens, %d errors (first: %q), %d expired tokens handed out, %d of %d API calls rejected; want tokens and no failure",
				pid, r.Tokens, r.Errors, r.FirstError, r.Expired, r.APIRejected, r.APICalls)
		}
		total.Tokens += r.Tokens
		total.APICalls += r.APICalls
	}
	return total
}

// TestFleet: several processes share one refresh token through Redis, under
// load, for many token lifetimes: every token is refreshed exactly once, by
// one process, in its early window; no refresh token is sent twice; no
// caller is handed an expired token.
func TestFleet(t *testing.T) {
	const processes, generations = 4, 8
	rs := startRedis(t)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Lifetime: workerLifetime})
	defer srv.Close()
	cfg := fleetSettings(srv, rs, "refreshtoken:fleet:user-1", srv.NewRefreshToken("openid"))

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

// TestFleetKillLockHolder: the process holding the lock is killed in the
// middle of its refresh. The others take the lock when its lease ends and
// go on, with no caller failing. If the server had not yet acted on the
// request, nothing is lost and nothing is reused. If it had rotated the
// refresh token, the new one died with the process: the next refresh sends
// the previous one again, which only the server's reuse interval (Auth0's
// rotation overlap period) can accept; it must be longer than the lease.
func TestFleetKillLockHolder(t *testing.T) {
	for _, tc := range []struct {
		name         string
		processed    bool // the server rotates the refresh token before the kill takes effect
		wantTolerate int
	}{
		{"before the server acts", false, 0},
		{"after the server rotated", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := startRedis(t)
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
			key := "refreshtoken:kill:user-1"
			cfg := fleetSettings(srv, rs, key, srv.NewRefreshToken("openid"))
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
			if rs.Client().Exists(context.Background(), key+":lock").Val() != 1 {
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

// TestFleetRedisRestart: Redis goes down just after a refresh and comes
// back (with its data) once a refresh has failed for want of it. Callers
// keep being handed their valid token meanwhile, and refreshing resumes.
// Tokens live 8 s here, so that the refresh that fails has 2 s (its
// early window) to succeed after a back-off of up to 1 s.
func TestFleetRedisRestart(t *testing.T) {
	const lifetime = 8 * time.Second
	rs := startRedis(t)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Lifetime: lifetime})
	defer srv.Close()
	cfg := fleetSettings(srv, rs, "refreshtoken:restart:user-1", srv.NewRefreshToken("openid"))
	cfg.Early, cfg.Jitter = lifetime/2, 300*time.Millisecond
	fleet := startFleet(t, 3, cfg)

	waitRefreshes(t, srv, 2)
	rs.Stop()
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
	recv(t, "a refresh to fail with Redis down", failing)
	if n := srv.Stats().Refreshes; n != down {
		t.Fatalf("%d refreshes while Redis was down, want none", n-down)
	}
	rs.Restart()
	waitRefreshes(t, srv, down+2)
	stopFleet(t, fleet)

	st := srv.Stats()
	if st.ReuseEvents != 0 || st.ReuseTolerated != 0 || st.Refreshes != st.TokenRequests {
		t.Errorf("reuse events %d, tolerated %d, %d token requests for %d refreshes; want 0, 0, equal", st.ReuseEvents, st.ReuseTolerated, st.TokenRequests, st.Refreshes)
	}
}

// TestFleetPool: several processes each run a Pool over the same users,
// each user's token in Redis under a key of its own, with fewer sources
// than users, so that every process evicts and makes again its sources all
// the time. For the whole fleet each user's token is refreshed once per
// lifetime, in its early window, by one process; no refresh token is sent
// twice; no caller fails or is handed an expired token.
func TestFleetPool(t *testing.T) {
	const processes, users, generations = 3, 12, 3
	rs := startRedis(t)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Lifetime: workerLifetime})
	defer srv.Close()
	cfg := fleetSettings(srv, rs, "", "")
	cfg.PoolSize = users / 2
	ctx := context.Background()
	for i := range users {
		key := fmt.Sprintf("refreshtoken:pool:user-%d", i)
		// The user signed in: one process saved their token.
		if err := redisstore.New(rs.Client(), key).Save(ctx, &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid")}); err != nil {
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
