package fleettest

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

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// workerEnv carries a worker's configuration, as JSON.
const workerEnv = "REFRESHTOKEN_FLEETTEST_WORKER"

type workerConfig struct {
	TokenURL, APIURL string
	StoreConfig, Key string // StoreConfig is the Backend's Config, for Main's open
	RefreshToken     string
	Goroutines       int
	Pace             time.Duration // between calls of one goroutine
	Early, Jitter    time.Duration
	Timeout, Lease   time.Duration
	ClientID, Secret string
	// Users, if set, makes the worker run a Pool over these store keys,
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

// pidHeader names the worker that sent a token request, so that a test can
// kill the process that holds the lock.
const pidHeader = "X-Worker-Pid"

type pidTransport struct{}

func (pidTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(pidHeader, strconv.Itoa(os.Getpid()))
	return http.DefaultTransport.RoundTrip(r)
}

// Main runs a worker and exits when the test binary was started as one by
// [Run]; otherwise it returns at once. Call it first in the TestMain of the
// package that calls Run.
//
// open is given the [Backend]'s Config and returns newStore, which makes
// the worker's store of a key with the lease given (the worker's store
// must be a [refreshtoken.SharedStore]), and closeStores, called when the
// worker is done (it may be nil).
func Main(open func(config string) (newStore func(key string, lease time.Duration) refreshtoken.Store, closeStores func(), err error)) {
	cfg := os.Getenv(workerEnv)
	if cfg == "" {
		return
	}
	os.Exit(runWorker(cfg, open))
}

// runWorker is a replica: Goroutines goroutines call Token and the API
// until stdin closes. It prints "ready", "failing" whenever the source's
// Err turns non-nil, and at the end "result" and its workerResult.
func runWorker(cfgJSON string, open func(string) (func(string, time.Duration) refreshtoken.Store, func(), error)) int {
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

	newStore, closeStores, err := open(cfg.StoreConfig)
	if err != nil {
		log.Printf("fleettest: opening the store: %v", err)
		return 2
	}
	if closeStores != nil {
		defer closeStores()
	}
	// A store that is not shared would fail the fleet in ways that do not
	// say why.
	firstKey := cfg.Key
	if len(cfg.Users) > 0 {
		firstKey = cfg.Users[0]
	}
	store := newStore(firstKey, cfg.Lease)
	if _, ok := store.(refreshtoken.SharedStore); !ok {
		log.Printf("fleettest: the worker's store is a %T, not a refreshtoken.SharedStore", store)
		return 2
	}

	conf := &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.Secret,
		Endpoint: oauth2.Endpoint{TokenURL: cfg.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: pidTransport{}})
	opts := []refreshtoken.Option{refreshtoken.WithEarlyRefresh(cfg.Early), refreshtoken.WithJitter(cfg.Jitter),
		refreshtoken.WithRefreshTimeout(cfg.Timeout)}
	var ts *refreshtoken.TokenSource
	var token func() (*oauth2.Token, error)
	if len(cfg.Users) > 0 {
		pool := refreshtoken.NewPool(ctx, conf, func(key string) refreshtoken.Store {
			return newStore(key, cfg.Lease)
		}, append(opts, refreshtoken.WithPoolSize(cfg.PoolSize))...)
		defer pool.Close()
		var next atomic.Uint64
		token = func() (*oauth2.Token, error) {
			return pool.Token(context.Background(), cfg.Users[next.Add(1)%uint64(len(cfg.Users))])
		}
	} else {
		ts = refreshtoken.New(ctx, conf, &oauth2.Token{RefreshToken: cfg.RefreshToken},
			append(opts, refreshtoken.WithStore(store))...)
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
	// -test.run=^$: a binary whose TestMain does not call Main runs no
	// test, rather than the fleet again.
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
		t.Fatalf("worker exited before it was ready (does TestMain call fleettest.Main?): %s", w.stderr.String())
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

// waitUnlocked waits until no refresh lease on key is held; a guard of a
// minute, far above the milliseconds a save takes.
func waitUnlocked(t *testing.T, b Backend, key string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for b.Locked(key) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the lease on %q to be released", key)
		}
		time.Sleep(5 * time.Millisecond)
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
