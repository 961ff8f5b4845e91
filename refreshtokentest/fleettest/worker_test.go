package fleettest

import (
	"errors"
	"testing"
	"time"

	"github.com/tokenfresh/refreshtoken"
)

// TestMainOutsideAWorker: in the test process, Main returns and opens
// nothing.
func TestMainOutsideAWorker(t *testing.T) {
	t.Setenv(workerEnv, "")
	Main(func(string) (func(string, time.Duration) refreshtoken.Store, func(), error) {
		t.Fatal("Main opened a store outside a worker")
		return nil, nil, nil
	})
}

// plainStore is a Store that is not a SharedStore; its methods are never
// called.
type plainStore struct{ refreshtoken.Store }

// TestWorkerRefuses: a worker that cannot run the fleet exits with code 2,
// before it says "ready", rather than fail it in ways that do not say why.
func TestWorkerRefuses(t *testing.T) {
	const cfg = `{"StoreConfig": "store-1", "Key": "fleet:user-1", "Lease": 600000000}`
	for _, tc := range []struct {
		name      string
		cfg       string
		openErr   error
		store     refreshtoken.Store
		wantClose bool
	}{
		{name: "configuration not JSON", cfg: `{"Key": `},
		{name: "store does not open", cfg: cfg, openErr: errors.New("connection refused")},
		{name: "store not shared", cfg: cfg, store: plainStore{}, wantClose: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			closed := false
			open := func(config string) (func(string, time.Duration) refreshtoken.Store, func(), error) {
				if config != "store-1" {
					t.Errorf("open(%q), want the Backend's Config %q", config, "store-1")
				}
				if tc.openErr != nil {
					return nil, nil, tc.openErr
				}
				return func(key string, lease time.Duration) refreshtoken.Store {
					if key != "fleet:user-1" || lease != 600*time.Millisecond {
						t.Errorf("newStore(%q, %v), want the worker's key and lease", key, lease)
					}
					return tc.store
				}, func() { closed = true }, nil
			}
			if code := runWorker(tc.cfg, open); code != 2 {
				t.Errorf("runWorker = %d, want 2", code)
			}
			if closed != tc.wantClose {
				t.Errorf("stores closed: %v, want %v", closed, tc.wantClose)
			}
		})
	}
}
