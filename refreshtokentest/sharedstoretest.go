package refreshtokentest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestSharedStore checks that a [SharedStore] keeps the contract of
// refreshtoken.SharedStore, and runs the checks of [TestStore] too.
// newStore returns two handles, a and b, on one new, empty storage, as two
// processes have them (a store in memory may return itself twice).
//
// The checks: what one handle saves the other loads; SaveIfCurrent stores
// only on an empty store or over the previous refresh token (not over a
// sign-out); Lock's lease
// ends in the future by time.Now; a second Lock, on either handle, waits
// until the lock is released, or its context ends and it returns an error
// wrapping the context's; a second unlock leaves the next holder's lock
// alone; two handles that take turns to lock, load and compare-and-save
// lose no save.
//
// The checks wait on real time and assert no speed. The store's leases
// must run on the real clock and last at least 20 s, so that none ends
// during a check: a lease that ends is for the store's own tests.
func TestSharedStore(t *testing.T, newStore func(t *testing.T) (a, b SharedStore)) {
	TestStore(t, func(t *testing.T) Store {
		a, _ := newStore(t)
		return a
	})
	ctx := context.Background()
	t.Run("HandlesShareStorage", func(t *testing.T) {
		a, b := newStore(t)
		want := fullToken()
		if err := a.Save(ctx, want); err != nil {
			t.Fatal(err)
		}
		checkLoad(t, b, "Load on one handle after Save on the other", want)
		next := &oauth2.Token{AccessToken: "at-b", RefreshToken: "rt-b"}
		if err := b.Save(ctx, next); err != nil {
			t.Fatal(err)
		}
		checkLoad(t, a, "Load on one handle after Save on the other", next)
	})
	for _, tc := range []struct {
		name      string
		stored    *oauth2.Token // nil: nothing stored
		previous  string
		wantSaved bool
	}{
		{"NothingStored", nil, "rt-0", true},
		{"PreviousStored", &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}, "rt-0", true},
		{"NewerStored", &oauth2.Token{AccessToken: "at-other", RefreshToken: "rt-other"}, "rt-0", false},
		// A process paused in a refresh must not bring a token back over
		// the sign-out of refreshtoken's Revoke.
		{"SignOutStored", &oauth2.Token{RefreshToken: "refreshtoken:signed-out"}, "rt-0", false},
	} {
		t.Run("SaveIfCurrent/"+tc.name, func(t *testing.T) {
			a, b := newStore(t)
			if tc.stored != nil {
				if err := a.Save(ctx, tc.stored); err != nil {
					t.Fatal(err)
				}
			}
			tok := fullToken()
			saved, err := b.SaveIfCurrent(ctx, tok, tc.previous)
			if err != nil || saved != tc.wantSaved {
				t.Fatalf("SaveIfCurrent with %s = %v, %v; want %v, nil", tc.name, saved, err, tc.wantSaved)
			}
			if saved {
				checkLoad(t, a, "Load after SaveIfCurrent stored a token", tok)
			} else {
				checkLoad(t, a, "Load after SaveIfCurrent refused a token", tc.stored)
			}
		})
	}
	t.Run("SharedContextEnded", func(t *testing.T) {
		a, b := newStore(t)
		checkSharedContextEnded(t, a, b)
	})
	t.Run("Lock", func(t *testing.T) {
		a, b := newStore(t)
		checkLock(t, a, b)
	})
	t.Run("LockCancelledWhileWaiting", func(t *testing.T) {
		a, b := newStore(t)
		_, unlock, err := a.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock(ctx)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, unlock, err := b.Lock(wctx)
			if err == nil {
				unlock(ctx)
			}
			done <- err
		}()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Lock while another holder has the lock, cancelled = %v; want an error wrapping context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Lock while another holder has the lock did not return within 10 s of its context's cancellation")
		}
	})
	t.Run("LockedCompareAndSave", func(t *testing.T) {
		a, b := newStore(t)
		checkLockedCompareAndSave(t, a, b)
	})
}

// checkSharedContextEnded calls b's SaveIfCurrent and Lock with a context
// that has ended: each must fail, or succeed and do its work; neither may
// leave a broken token or a lock behind.
func checkSharedContextEnded(t *testing.T, a, b SharedStore) {
	ctx := context.Background()
	ended, cancel := context.WithCancel(ctx)
	cancel()
	old := &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}
	if err := a.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	tok := fullToken()
	saved, err := b.SaveIfCurrent(ended, tok, old.RefreshToken)
	got, lerr := a.Load(ctx)
	switch {
	case lerr != nil:
		t.Fatalf("Load after a SaveIfCurrent with an ended context = %v", lerr)
	case err == nil && !saved:
		t.Errorf("SaveIfCurrent of a current token with an ended context = false, nil; want true or an error")
	case saved && tokenDiff(tok, got) != "":
		t.Errorf("Load after a SaveIfCurrent with an ended context stored its token: %s", tokenDiff(tok, got))
	case err != nil && tokenDiff(old, got) != "" && tokenDiff(tok, got) != "":
		t.Errorf("Load after a SaveIfCurrent with an ended context failed: %s; want the old token or the new one", tokenDiff(tok, got))
	}
	if _, unlock, err := b.Lock(ended); err == nil {
		if err := unlock(ctx); err != nil {
			t.Errorf("unlock of a lock taken with an ended context = %v", err)
		}
	}
	if !lockWithin(t, b, 10*time.Second) {
		t.Error("Lock after a Lock with an ended context did not get the lock within 10 s: the ended Lock left it held")
	}
}

// lockWithin reports whether s.Lock gets the lock before d has passed, and
// releases it.
func lockWithin(t *testing.T, s SharedStore, d time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, unlock, err := s.Lock(ctx)
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Lock with a deadline, while the lock is held = %v; want an error wrapping context.DeadlineExceeded", err)
		}
		return false
	}
	if err := unlock(context.Background()); err != nil {
		t.Errorf("unlock = %v", err)
	}
	return true
}

// checkLock takes the lock on a, and checks that a second Lock waits for
// it, and that a stale unlock leaves the next holder's lock alone.
func checkLock(t *testing.T, a, b SharedStore) {
	ctx := context.Background()
	before := time.Now()
	expires, unlockA, err := a.Lock(ctx)
	if err != nil {
		t.Fatalf("Lock of a free lock = %v", err)
	}
	if !expires.After(before) {
		t.Errorf("Lock returned a lease ending at %v, before the call (%v); want a time in the future", expires, before)
	}

	// b waits for the lock while the other checks run.
	type result struct {
		unlock func(context.Context) error
		err    error
	}
	started, got := make(chan struct{}), make(chan result, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		close(started)
		_, unlock, err := b.Lock(wctx)
		got <- result{unlock, err}
	}()
	<-started
	for name, s := range map[string]SharedStore{"the other handle": b, "the same handle": a} {
		if lockWithin(t, s, 100*time.Millisecond) {
			t.Errorf("Lock on %s, while another holder has the lock, took it", name)
		}
	}
	select {
	case r := <-got:
		t.Fatalf("Lock while another holder has the lock returned %v before the lock was released; want it to wait", r.err)
	default:
	}
	if err := unlockA(ctx); err != nil {
		t.Errorf("unlock by the holder = %v", err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("Lock waiting for the lock = %v; want the lock once its holder released it", r.err)
	}
	unlockB := r.unlock
	unlockA(ctx) // a stale holder's second unlock: its error, if any, is not checked
	if lockWithin(t, a, 100*time.Millisecond) {
		t.Error("a second unlock by a former holder released the current holder's lock")
	}
	if err := unlockB(ctx); err != nil {
		t.Errorf("unlock by the holder = %v", err)
	}
	if !lockWithin(t, a, 10*time.Second) {
		t.Error("Lock after the holder's unlock did not get the lock within 10 s")
	}
}

// checkLockedCompareAndSave has two handles refresh a token concurrently,
// each in turn under the lock: load, make the next token, SaveIfCurrent.
// Every save must be accepted, and the last one stored.
func checkLockedCompareAndSave(t *testing.T, a, b SharedStore) {
	const rounds = 10 // per handle
	ctx := context.Background()
	if err := a.Save(ctx, &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []SharedStore{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if err := refreshUnderLock(s); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := fmt.Sprint(2 * rounds)
	checkLoad(t, a, "Load after two handles refreshed concurrently under the lock", &oauth2.Token{AccessToken: "at-" + want, RefreshToken: "rt-" + want})
}

// refreshUnderLock replaces the token "rt-n" with "rt-n+1", holding the
// lock.
func refreshUnderLock(s SharedStore) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, unlock, err := s.Lock(ctx)
	if err != nil {
		return fmt.Errorf("Lock while two handles take turns = %w", err)
	}
	defer unlock(ctx)
	cur, err := s.Load(ctx)
	if err != nil || cur == nil {
		return fmt.Errorf("Load under the lock = %v, %v; want the stored token", cur, err)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(cur.RefreshToken, "rt-"))
	if err != nil {
		return fmt.Errorf("Load under the lock returned refresh token %q, which no handle saved", cur.RefreshToken)
	}
	next := &oauth2.Token{AccessToken: fmt.Sprintf("at-%d", n+1), RefreshToken: fmt.Sprintf("rt-%d", n+1)}
	if saved, err := s.SaveIfCurrent(ctx, next, cur.RefreshToken); !saved || err != nil {
		return fmt.Errorf("SaveIfCurrent under the lock, of the token loaded under it = %v, %v; want true, nil", saved, err)
	}
	return nil
}
