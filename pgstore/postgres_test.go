package pgstore_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenfresh/refreshtoken/pgstore"
)

// PGServer is a PostgreSQL server of the test's own, on a free loopback
// port, with its data in a temporary directory and the table of
// pgstore.Schema created. Stop and Restart keep the data, as an
// operator's restart does; a multi-process rig reaches it by DSN.
type PGServer struct {
	t    testing.TB
	bin  string // directory of initdb and postgres
	dir  string // the temporary directory: data/ and postgres.log
	port int
	cred *syscall.Credential // the unprivileged user to run as, when we are root
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	// settings are postgres -c options, after the harness's own.
	settings []string
}

// startPostgres starts a PostgreSQL server for t and stops it at t's end,
// with settings (such as "fsync=on") as postgres -c options.
// Without initdb and postgres (in PATH or /usr/lib/postgresql/*/bin) the
// test is skipped, unless PGSTORE_REQUIRE_POSTGRES is set (CI sets it),
// when it fails.
func startPostgres(t testing.TB, settings ...string) *PGServer {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		if os.Getenv("PGSTORE_REQUIRE_POSTGRES") != "" {
			t.Fatalf("%v, and PGSTORE_REQUIRE_POSTGRES is set; install it: apt-get install postgresql", err)
		}
		t.Skipf("%v; install it (apt-get install postgresql) to run the tests against a real PostgreSQL", err)
	}
	p := &PGServer{t: t, bin: bin, settings: settings}
	// t.TempDir's parent is private to root: a directory of our own, which
	// the server's user owns.
	if p.dir, err = os.MkdirTemp("", "pgstore-test-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(p.dir) })
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		if p.cred, err = postgresUser(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p.dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	// --no-sync: a test's cluster need not survive an OS crash.
	if out, err := p.command("initdb", "-D", p.data(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// Another process may take the free port between its discovery and
	// the server's bind: try a few.
	for range 5 {
		if p.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if err = p.start(); err == nil {
			t.Cleanup(p.Stop)
			p.exec(pgstore.Schema)
			return p
		}
	}
	t.Fatalf("starting postgres: %v", err)
	return nil
}

// postgresBin finds the directory of initdb and postgres: the PATH, or
// Debian's /usr/lib/postgresql/<version>/bin, the newest first.
func postgresBin() (string, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(initdb), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb and postgres not found")
}

// postgresUser is the credential of the user "postgres", which Debian's
// postgresql package creates.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and no user postgres to run PostgreSQL as: %v", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (p *PGServer) data() string { return filepath.Join(p.dir, "data") }

// command is a command of the server's binaries, run as the server's user.
func (p *PGServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

// Addr is the server's host:port.
func (p *PGServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// DSN is the connection string of the server's database, as the
// superuser "postgres" with no password (trust, on loopback only).
func (p *PGServer) DSN() string {
	return "postgres://postgres@" + p.Addr() + "/postgres?sslmode=disable"
}

// Pool returns a new pool of the server, closed at the test's end.
func (p *PGServer) Pool() *pgxpool.Pool {
	p.t.Helper()
	return p.PoolWithDSN(p.DSN())
}

// PoolWithDSN returns a new pool that connects with dsn (another role, a
// password), closed at the test's end. It connects at its first use.
func (p *PGServer) PoolWithDSN(dsn string) *pgxpool.Pool {
	p.t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		p.t.Fatal(err)
	}
	// As the package doc advises: a statement whose context ends is
	// cancelled at the server too, not run later.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(pool.Close)
	return pool
}

// start runs postgres and waits until it accepts a connection.
func (p *PGServer) start() error {
	// fsync off: the cluster lives as long as the test and need not
	// survive an OS crash, and Stop is a clean shutdown, which writes every
	// committed change to the data files all the same; Restart therefore
	// finds all the data. It makes commits much cheaper on a busy disk.
	args := []string{"-D", p.data(), "-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "max_connections=200"}
	for _, s := range p.settings {
		args = append(args, "-c", s)
	}
	cmd := p.command("postgres", args...)
	log, err := os.OpenFile(filepath.Join(p.dir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(p.done)

	deadline := time.After(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, p.DSN())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(filepath.Join(p.dir, "postgres.log"))
			return fmt.Errorf("postgres exited: %s", out)
		case <-deadline:
			p.Stop()
			return fmt.Errorf("postgres on port %d does not answer: %v", p.port, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Stop shuts the server down as an operator would (SIGINT: fast shutdown,
// which ends the connections and writes the data out) and waits for it to
// exit.
func (p *PGServer) Stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// Restart starts the server again, on the same port and data.
func (p *PGServer) Restart() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("restarting postgres: %v", err)
	}
}

// exec runs sql on a connection of its own, failing the test on an error.
func (p *PGServer) exec(sql string, args ...any) {
	p.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		p.t.Fatalf("%s: %v", sql, err)
	}
}

// KillConnections ends every client connection but the one it uses, as a
// server's crash of those backends or a network cut would: the pools
// reconnect at their next use.
func (p *PGServer) KillConnections() {
	p.t.Helper()
	p.exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`)
}

// LeaseHeld reports whether the lease of key is held now, by the server's
// clock.
func (p *PGServer) LeaseHeld(key string) bool {
	p.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var held bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM refreshtoken_tokens
		WHERE key = $1 AND lock_until > clock_timestamp())`, key).Scan(&held)
	if err != nil {
		p.t.Fatal(err)
	}
	return held
}
