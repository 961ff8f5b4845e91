package sealedstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

// source is a process's source over srv, on clock, with its token in st.
func source(t *testing.T, srv *refreshtokentest.Server, clock *refreshtokentest.Clock, st refreshtoken.Store, refreshToken string) *refreshtoken.TokenSource {
	t.Helper()
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: refreshToken},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0), refreshtoken.WithStore(st))
	t.Cleanup(func() { ts.Close() })
	return ts
}

// TestUnopenableSendsNothing: a source whose store holds an entry it
// cannot open (a wrong key, an unknown one, another identity's, a plain
// token) fails with the store's error and sends nothing, since the
// stored refresh token may be newer than its own.
func TestUnopenableSendsNothing(t *testing.T) {
	k1, _ := newKey(t, "k1")
	wrongK1, _ := newKey(t, "k1")
	k2, _ := newKey(t, "k2")
	for _, tc := range []struct {
		name     string
		keys     *sealedstore.Keyring
		identity string
		plain    bool
		want     error
	}{
		{"wrong key with the right id", ring(t, wrongK1), "user-1", false, sealedstore.ErrCannotOpen},
		{"unknown key id", ring(t, k2), "user-1", false, sealedstore.ErrUnknownKey},
		{"another identity's entry", ring(t, k1), "user-2", false, sealedstore.ErrCannotOpen},
		{"plain token", ring(t, k1), "user-1", true, sealedstore.ErrNotSealed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := refreshtokentest.NewClock(t0)
			srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
			defer srv.Close()
			mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
			stored := &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}
			if tc.plain {
				mem.Put(stored)
			} else if err := sealedstore.New(mem, "user-1", ring(t, k1)).Save(context.Background(), stored); err != nil {
				t.Fatal(err)
			}
			ts := source(t, srv, clock, sealedstore.New(mem, tc.identity, tc.keys), srv.NewRefreshToken(""))
			_, err := ts.Token()
			if !errors.Is(err, tc.want) {
				t.Fatalf("Token() with a store holding a %s = %v; want an error wrapping %v", tc.name, err, tc.want)
			}
			if l := leaks(err.Error(), srv.Secrets()...); len(l) > 0 {
				t.Errorf("Token() error %q holds a secret", err)
			}
			if got := srv.Stats().TokenRequests; got != 0 {
				t.Errorf("token requests = %d, want 0", got)
			}
		})
	}
}

// TestFleetRotates: sources of a fleet, each with its own sealed wrapper
// of one shared store, called by many goroutines at once through several
// lifetimes, refresh once per lifetime and never send a retired refresh
// token; the shared store never holds a secret.
func TestFleetRotates(t *testing.T) {
	const replicas, callers, lifetimes = 3, 8, 5
	k1, _ := newKey(t, "k1")
	keys := ring(t, k1)
	clock := refreshtokentest.NewClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	first := srv.NewRefreshToken("openid")
	var fleet []*refreshtoken.TokenSource
	for range replicas {
		fleet = append(fleet, source(t, srv, clock, sealedstore.New(mem, "user-1", keys), first))
	}
	for life := range lifetimes {
		var wg sync.WaitGroup
		errs := make(chan error, replicas*callers)
		for _, ts := range fleet {
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := ts.Token(); err != nil {
						errs <- err
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("lifetime %d: Token() = %v", life, err)
		}
		if l := leaks(fmt.Sprintf("%#v", mem.Stored()), srv.Secrets()...); len(l) > 0 {
			t.Errorf("lifetime %d: the shared store holds a secret", life)
		}
		clock.Add(2 * time.Hour) // every token expired
	}
	got := srv.Stats()
	if got.Refreshes != lifetimes || got.ReuseEvents != 0 || got.Rejected != 0 {
		t.Errorf("server stats: %d refreshes, %d reuse events, %d rejected; want %d, 0, 0", got.Refreshes, got.ReuseEvents, got.Rejected, lifetimes)
	}
}
