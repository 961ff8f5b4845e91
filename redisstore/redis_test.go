package redisstore_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server of the test's own, on a free loopback port,
// with its data in the test's temporary directory and persistence on, as
// the package doc asks of a production Redis.
type redisServer struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// startRedis starts a redis-server for t and stops it at t's end. Without
// redis-server on the PATH the test is skipped, unless
// REDISSTORE_REQUIRE_REDIS is set (CI sets it), when it fails.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("REDISSTORE_REQUIRE_REDIS") != "" {
			t.Fatal("redis-server not found and REDISSTORE_REQUIRE_REDIS is set; install it: apt-get install redis-server")
		}
		t.Skip("redis-server not found; install it (apt-get install redis-server) to run the tests against a real Redis")
	}
	r := &redisServer{t: t, dir: t.TempDir()}
	// Another process may take the free port between its discovery and
	// redis-server's bind: try a few.
	var err error
	for range 5 {
		if r.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = r.start(); err == nil {
			t.Cleanup(r.Stop)
			return r
		}
	}
	t.Fatalf("starting redis-server: %v", err)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is host:port for redis.Options.
func (r *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// Client returns a new client of the server, closed at the test's end.
func (r *redisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), ContextTimeoutEnabled: true})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// start runs redis-server and waits until it answers PING.
func (r *redisServer) start() error {
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return err
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(r.done)

	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.After(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-r.done:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			return fmt.Errorf("redis-server exited: %s", log)
		case <-deadline:
			r.Stop()
			return fmt.Errorf("redis-server on port %d does not answer: %v", r.port, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Stop shuts the server down as an operator would (SIGTERM: it writes its
// data out) and waits for it to exit.
func (r *redisServer) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

// Restart starts the server again, on the same port and data.
func (r *redisServer) Restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("restarting redis-server: %v", err)
	}
}
