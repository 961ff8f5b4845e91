package refreshtoken_test

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// t0 is the instant the fake clocks of the tests start at.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fakeClock is a clock that moves only when told to. The client and the
// token server share one, so expiry is tested without sleeping.
type fakeClock = refreshtokentest.Clock

func newFakeClock(t time.Time) *fakeClock { return refreshtokentest.NewClock(t) }

// eventually fails the test if cond does not become true within 5 s. It is a
// guard against hanging, not a timing claim: cond waits for work that other
// goroutines finish in microseconds, such as a background refresh landing.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// recv returns the next value from c, failing the test after 5 s.
func recv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// gate holds token requests at the server until released, so a test can
// keep a refresh in flight.
type gate struct {
	arrived chan struct{}
	release chan struct{}
	armed   atomic.Bool // for holdWhenArmed
}

func newGate() *gate {
	return &gate{arrived: make(chan struct{}, 100), release: make(chan struct{})}
}

// hold is a refreshtokentest OnTokenRequest hook.
func (g *gate) hold(*http.Request) {
	g.arrived <- struct{}{}
	<-g.release
}

// holdWhenArmed is a hook that holds requests only once armed is set, so
// that a test can first get a token unhindered.
func (g *gate) holdWhenArmed(r *http.Request) {
	if g.armed.Load() {
		g.hold(r)
	}
}

// ourGoroutines lists the goroutines running code of this package or of
// singleflight, other than tests.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var ours []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "refreshtoken.(*") || strings.Contains(g, "singleflight.") {
			ours = append(ours, g)
		}
	}
	return ours
}

// TestMain fails the run if, after every test, a goroutine still runs code
// of this package: every test closes its sources, and no goroutine may
// survive Close. (An equivalent of go.uber.org/goleak's VerifyTestMain,
// narrowed to this package, so that idle HTTP connections of the test
// servers do not count.)
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for len(ourGoroutines()) > 0 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		if left := ourGoroutines(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n\n%s\n", strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}
