package refreshtokentest_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// eventually fails the test if cond does not become true within 5 s: a
// guard against hanging, not a timing claim.
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

// lockResult is what a Lock call in a goroutine returned.
type lockResult struct {
	expires time.Time
	unlock  func(context.Context) error
	err     error
}

// lockAsync calls m.Lock(ctx) in a goroutine and delivers its result.
func lockAsync(m *refreshtokentest.MemoryStore, ctx context.Context) <-chan lockResult {
	c := make(chan lockResult, 1)
	go func() {
		var r lockResult
		r.expires, r.unlock, r.err = m.Lock(ctx)
		c <- r
	}()
	return c
}

func recvLock(t *testing.T, what string, c <-chan lockResult) lockResult {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// TestMemoryStoreConformance runs the checks of TestStore too.
func TestMemoryStoreConformance(t *testing.T) {
	refreshtokentest.TestSharedStore(t, func(*testing.T) (a, b refreshtokentest.SharedStore) {
		m := refreshtokentest.NewMemoryStore(nil, time.Minute)
		return m, m
	})
}

var errDown = errors.New("test: store down")

func TestMemoryStoreFaults(t *testing.T) {
	ctx := context.Background()
	old := &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}
	tok := &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}
	for _, tc := range []struct {
		name       string
		faults     refreshtokentest.StoreFaults
		call       func(m *refreshtokentest.MemoryStore) error
		wantErr    error
		wantStored *oauth2.Token
		wantStats  refreshtokentest.StoreStats
	}{
		{
			name:   "Load fails",
			faults: refreshtokentest.StoreFaults{Load: errDown},
			call: func(m *refreshtokentest.MemoryStore) error {
				got, err := m.Load(ctx)
				if got != nil {
					t.Errorf("Load with a fault = %v, want nil", got)
				}
				return err
			},
			wantErr: errDown, wantStored: old, wantStats: refreshtokentest.StoreStats{Loads: 1},
		},
		{
			name:    "Save fails",
			faults:  refreshtokentest.StoreFaults{Save: errDown},
			call:    func(m *refreshtokentest.MemoryStore) error { return m.Save(ctx, tok) },
			wantErr: errDown, wantStored: old, wantStats: refreshtokentest.StoreStats{Saves: 1},
		},
		{
			name:   "SaveIfCurrent fails",
			faults: refreshtokentest.StoreFaults{Save: errDown},
			call: func(m *refreshtokentest.MemoryStore) error {
				_, err := m.SaveIfCurrent(ctx, tok, "rt-0")
				return err
			},
			wantErr: errDown, wantStored: old, wantStats: refreshtokentest.StoreStats{Saves: 1},
		},
		{
			name:    "Save lands, its reply is lost",
			faults:  refreshtokentest.StoreFaults{Save: errDown, SaveLands: true},
			call:    func(m *refreshtokentest.MemoryStore) error { return m.Save(ctx, tok) },
			wantErr: errDown, wantStored: tok, wantStats: refreshtokentest.StoreStats{Saves: 1, Stored: 1},
		},
		{
			name:   "SaveIfCurrent lands, its reply is lost",
			faults: refreshtokentest.StoreFaults{Save: errDown, SaveLands: true},
			call: func(m *refreshtokentest.MemoryStore) error {
				_, err := m.SaveIfCurrent(ctx, tok, "rt-0")
				return err
			},
			wantErr: errDown, wantStored: tok, wantStats: refreshtokentest.StoreStats{Saves: 1, Stored: 1},
		},
		{
			name:   "SaveIfCurrent refused, its reply is lost",
			faults: refreshtokentest.StoreFaults{Save: errDown, SaveLands: true},
			call: func(m *refreshtokentest.MemoryStore) error {
				_, err := m.SaveIfCurrent(ctx, tok, "rt-other")
				return err
			},
			wantErr: errDown, wantStored: old, wantStats: refreshtokentest.StoreStats{Saves: 1, Refused: 1},
		},
		{
			name:   "SaveIfCurrent refused",
			faults: refreshtokentest.StoreFaults{},
			call: func(m *refreshtokentest.MemoryStore) error {
				if saved, err := m.SaveIfCurrent(ctx, tok, "rt-other"); saved || err != nil {
					t.Errorf("SaveIfCurrent of a token that is not current = %v, %v; want false, nil", saved, err)
				}
				return nil
			},
			wantStored: old, wantStats: refreshtokentest.StoreStats{Saves: 1, Refused: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := refreshtokentest.NewMemoryStore(nil, 0)
			m.Put(old)
			m.SetFaults(tc.faults)
			if err := tc.call(m); !errors.Is(err, tc.wantErr) {
				t.Errorf("error = %v, want %v", err, tc.wantErr)
			}
			if got := m.Stored(); got.AccessToken != tc.wantStored.AccessToken {
				t.Errorf("Stored() = %q, want %q", got.AccessToken, tc.wantStored.AccessToken)
			}
			if diff := cmp.Diff(tc.wantStats, m.Stats()); diff != "" {
				t.Errorf("Stats() (-want +got):\n%s", diff)
			}
			m.SetFaults(refreshtokentest.StoreFaults{})
			if got, err := m.Load(ctx); err != nil || got.AccessToken != tc.wantStored.AccessToken {
				t.Errorf("Load once the faults are cleared = %v, %v; want %q", got, err, tc.wantStored.AccessToken)
			}
		})
	}
}

// TestMemoryStorePutAndStored: Put and Stored copy, apply no fault and
// count as nothing; a nil Put empties the store.
func TestMemoryStorePutAndStored(t *testing.T) {
	m := refreshtokentest.NewMemoryStore(nil, 0)
	if got := m.Stored(); got != nil {
		t.Fatalf("Stored() of a new store = %v, want nil", got)
	}
	m.SetFaults(refreshtokentest.StoreFaults{Load: errDown, Save: errDown})
	tok := (&oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: time.Now().Add(time.Hour), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": "id-1", "scope": "openid", "other": "dropped", "refresh_token_expiry": "2026-12-25T13:00:00Z"})
	m.Put(tok)
	tok.AccessToken = "at-changed"
	got := m.Stored()
	if got.AccessToken != "at-1" || got.Extra("id_token") != "id-1" || got.Extra("scope") != "openid" || got.Extra("other") != nil ||
		got.Extra("refresh_token_expiry") != "2026-12-25T13:00:00Z" {
		t.Errorf("Stored() = %+v with id_token %v, scope %v, other %v; want the token Put, with id_token, scope and the refresh token's expiry only",
			got, got.Extra("id_token"), got.Extra("scope"), got.Extra("other"))
	}
	if got.Expiry.String() != got.Expiry.Round(0).String() || !got.Expiry.Equal(tok.Expiry) {
		t.Errorf("Stored().Expiry = %v, want %v without its monotonic reading", got.Expiry, tok.Expiry)
	}
	got.RefreshToken = "rt-changed"
	if m.Stored().RefreshToken != "rt-1" {
		t.Error("changing the token Stored returned changed the store")
	}
	m.Put(nil)
	if got := m.Stored(); got != nil {
		t.Errorf("Stored() after Put(nil) = %v, want nil", got)
	}
	if s := m.Stats(); s != (refreshtokentest.StoreStats{}) {
		t.Errorf("Stats() = %+v, want none: Put and Stored are not calls of a source", s)
	}
}

// TestMemoryStoreLease: on a fake clock, a waiter takes the lock when the
// holder's lease ends, and the late holder's unlock reports that and
// leaves its successor's lock alone.
func TestMemoryStoreLease(t *testing.T) {
	ctx := context.Background()
	clock := refreshtokentest.NewClock(t0)
	m := refreshtokentest.NewMemoryStore(clock.Now, time.Minute)
	expires, unlockA, err := m.Lock(ctx)
	if left := time.Until(expires); err != nil || left <= 0 || left > time.Minute {
		t.Fatalf("Lock() = %v (%v left), %v; want a minute from now, nil", expires, left, err)
	}
	b := lockAsync(m, ctx)
	eventually(t, "the second Lock to wait", func() bool { return m.Stats().Waits == 1 })
	clock.Add(time.Minute - time.Nanosecond)
	if !m.Locked() {
		t.Fatal("Locked() = false before the lease ends")
	}
	clock.Add(time.Nanosecond)
	rb := recvLock(t, "the lock after the lease ended", b)
	if left := time.Until(rb.expires); rb.err != nil || left <= 0 || left > time.Minute {
		t.Fatalf("Lock() after the lease ended = %v (%v left), %v; want a minute from now, nil", rb.expires, left, rb.err)
	}
	if err := unlockA(ctx); err == nil {
		t.Error("unlock after the lease ended = nil, want an error saying the lock was lost")
	}
	if !m.Locked() {
		t.Fatal("a late unlock released its successor's lock")
	}
	if err := rb.unlock(ctx); err != nil {
		t.Errorf("unlock = %v", err)
	}
	if err := rb.unlock(ctx); err != nil {
		t.Errorf("second unlock = %v, want nil", err)
	}
	if m.Locked() {
		t.Error("Locked() = true after unlock")
	}
	if s := m.Stats(); s.Locks != 2 || s.Waits != 1 || s.Unlocks != 1 {
		t.Errorf("Stats() = %+v, want 2 locks, 1 wait, 1 unlock", s)
	}
}

// TestMemoryStoreUnlockWakesWaiter: a waiter takes the lock when it is
// released, with the clock standing still.
func TestMemoryStoreUnlockWakesWaiter(t *testing.T) {
	ctx := context.Background()
	clock := refreshtokentest.NewClock(t0)
	m := refreshtokentest.NewMemoryStore(clock.Now, time.Minute)
	_, unlock, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := lockAsync(m, ctx)
	eventually(t, "the second Lock to wait", func() bool { return m.Stats().Waits == 1 })
	if err := unlock(ctx); err != nil {
		t.Fatalf("unlock = %v", err)
	}
	if r := recvLock(t, "the waiter's lock", b); r.err != nil {
		t.Fatalf("Lock() after unlock = %v", r.err)
	}
	if !m.Locked() {
		t.Error("Locked() = false while the waiter holds the lock")
	}
}

// TestMemoryStoreLockContext: a Lock whose context ends while it waits,
// or has ended before, returns an error wrapping the context's.
func TestMemoryStoreLockContext(t *testing.T) {
	clock := refreshtokentest.NewClock(t0)
	m := refreshtokentest.NewMemoryStore(clock.Now, time.Minute)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := m.Lock(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with a cancelled context on a free lock = %v, want context.Canceled", err)
	}
	if m.Locked() {
		t.Fatal("a Lock that failed took the lock")
	}
	if _, _, err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := lockAsync(m, ctx)
	eventually(t, "the second Lock to wait", func() bool { return m.Stats().Waits == 1 })
	cancel()
	if r := recvLock(t, "the cancelled Lock", b); !errors.Is(r.err, context.Canceled) {
		t.Errorf("Lock cancelled while waiting = %v, want context.Canceled", r.err)
	}
}

// TestMemoryStoreLoseLock: with LoseLock, a lock is free as soon as it is
// taken, and its holder's unlock reports that.
func TestMemoryStoreLoseLock(t *testing.T) {
	ctx := context.Background()
	clock := refreshtokentest.NewClock(t0)
	m := refreshtokentest.NewMemoryStore(clock.Now, time.Minute)
	m.SetFaults(refreshtokentest.StoreFaults{LoseLock: true})
	expires, unlockA, err := m.Lock(ctx)
	if left := time.Until(expires); err != nil || left <= 0 || left > time.Minute {
		t.Fatalf("Lock() = %v (%v left), %v; want a minute from now, nil", expires, left, err)
	}
	if m.Locked() {
		t.Error("Locked() = true with LoseLock")
	}
	m.SetFaults(refreshtokentest.StoreFaults{})
	_, unlockB, err := m.Lock(ctx)
	if err != nil {
		t.Fatalf("Lock() after a lost lock = %v", err)
	}
	if err := unlockA(ctx); err == nil {
		t.Error("unlock of a lost lock = nil, want an error")
	}
	if !m.Locked() {
		t.Error("the unlock of a lost lock released the next holder's")
	}
	if err := unlockB(ctx); err != nil {
		t.Errorf("unlock = %v", err)
	}
	if s := m.Stats(); s.Locks != 2 || s.Waits != 0 || s.Unlocks != 1 {
		t.Errorf("Stats() = %+v, want 2 locks, no wait, 1 unlock", s)
	}
}
