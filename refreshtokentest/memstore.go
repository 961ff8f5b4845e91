package refreshtokentest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Store has the methods of refreshtoken.Store: every refreshtoken.Store
// is one. (This package cannot name refreshtoken's types: that package's
// tests use this one.)
type Store interface {
	Load(ctx context.Context) (*oauth2.Token, error)
	Save(ctx context.Context, tok *oauth2.Token) error
}

// SharedStore has the methods of refreshtoken.SharedStore: every
// refreshtoken.SharedStore is one.
type SharedStore interface {
	Store
	Lock(ctx context.Context) (expires time.Time, unlock func(context.Context) error, err error)
	SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (saved bool, err error)
}

var _ SharedStore = (*MemoryStore)(nil)

// MemoryStore is a refreshtoken.SharedStore in memory, for tests: the
// processes of a fleet are sources that share one MemoryStore. It keeps a
// token's fields as the persistent stores do (the access and refresh
// tokens, type, expiry without its monotonic reading, ExpiresIn, and the
// id_token, scope and refresh token lifetime extras), and its lock is a lease on its own clock.
// Faults set with [MemoryStore.SetFaults] make it fail as a store that is
// down, loses replies or loses locks would; [MemoryStore.Stats] counts its
// calls.
//
// Make one with [NewMemoryStore]. Only Lock, the one call that waits,
// heeds its context. A MemoryStore is safe for concurrent use by multiple
// goroutines.
type MemoryStore struct {
	clock func() time.Time
	lease time.Duration

	mu     sync.Mutex
	tok    *oauth2.Token // mu guards all below; the store's own copy, nil if empty
	faults StoreFaults
	stats  StoreStats
	// holder is the Lock call that holds the lock, 0 if none; its lease
	// ends at leaseEnd, by clock. lastHolder numbers the Lock calls.
	holder, lastHolder uint64
	leaseEnd           time.Time
	// freed is closed, and replaced, whenever the lock is released, to
	// wake the Lock calls waiting for it.
	freed chan struct{}
}

// StoreFaults are the failures a [MemoryStore] simulates. The zero value
// is none.
type StoreFaults struct {
	// Load, if not nil, is returned by Load, which reads nothing.
	Load error
	// Save, if not nil, is returned by Save and SaveIfCurrent, which store
	// nothing unless SaveLands is set.
	Save error
	// SaveLands makes Save and SaveIfCurrent store the token all the same
	// (SaveIfCurrent only if the stored token is current) before they
	// return the Save error: a reply lost on the way back.
	SaveLands bool
	// LoseLock makes every lock lost as soon as it is taken: Lock returns
	// as if it held it, the next Lock takes it at once, and the holder's
	// unlock reports that it no longer held it.
	LoseLock bool
}

// StoreStats counts the calls a [MemoryStore] has had.
type StoreStats struct {
	Loads   int // calls to Load
	Saves   int // calls to Save and SaveIfCurrent
	Stored  int // of which stored their token, faults or not
	Refused int // calls to SaveIfCurrent refused for a token that was not current
	Locks   int // locks taken
	Waits   int // calls to Lock that found the lock held, and waited
	Unlocks int // calls to unlock that released the lock
}

// NewMemoryStore returns an empty MemoryStore whose leases last lease
// (30 s if lease <= 0), by clock (time.Now if nil). The expiry that Lock
// returns is on the local wall clock, as refreshtoken.SharedStore asks:
// now plus the time the lease has left by clock, so that a source bounds
// its request correctly with a fake clock too.
func NewMemoryStore(clock func() time.Time, lease time.Duration) *MemoryStore {
	if clock == nil {
		clock = time.Now
	}
	if lease <= 0 {
		lease = 30 * time.Second
	}
	return &MemoryStore{clock: clock, lease: lease, freed: make(chan struct{})}
}

// The keys of refreshtoken.ExtraRefreshTokenExpiry,
// refreshtoken.ExtraRefreshTokenFamily and refreshtoken.ExtraDPoPThumbprint:
// what a source knows of its refresh token's lifetime and of the DPoP key
// it is bound to, which a store keeps.
const (
	refreshExpiryKey = "refresh_token_expiry"
	refreshFamilyKey = "refresh_token_family_issued"
	dpopThumbKey     = "dpop_jkt"
)

// keptExtras are the string extras a store keeps.
var keptExtras = []string{"id_token", "scope", refreshExpiryKey, refreshFamilyKey, dpopThumbKey}

// copyToken returns a copy of tok as a store keeps it: the fields a
// source relies on, the expiry without its monotonic reading, and the
// string extras id_token, scope, refresh_token_expiry,
// refresh_token_family_issued and dpop_jkt.
func copyToken(tok *oauth2.Token) *oauth2.Token {
	if tok == nil {
		return nil
	}
	c := &oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshToken: tok.RefreshToken,
		Expiry: tok.Expiry.Round(0), ExpiresIn: tok.ExpiresIn}
	extra := map[string]any{}
	for _, k := range keptExtras {
		if v, ok := tok.Extra(k).(string); ok && v != "" {
			extra[k] = v
		}
	}
	return c.WithExtra(extra)
}

// Load returns a copy of the stored token, or nil if there is none.
func (m *MemoryStore) Load(context.Context) (*oauth2.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Loads++
	if err := m.faults.Load; err != nil {
		return nil, err
	}
	return copyToken(m.tok), nil
}

// Save stores a copy of tok, replacing what is stored.
func (m *MemoryStore) Save(_ context.Context, tok *oauth2.Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Saves++
	return m.saveLocked(tok)
}

// SaveIfCurrent stores a copy of tok, as Save does, if the stored refresh
// token is previous or nothing is stored, and reports whether it did.
func (m *MemoryStore) SaveIfCurrent(_ context.Context, tok *oauth2.Token, previous string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Saves++
	if m.faults.Save != nil && !m.faults.SaveLands {
		return false, m.faults.Save
	}
	if m.tok != nil && m.tok.RefreshToken != previous {
		m.stats.Refused++
		return false, m.faults.Save
	}
	err := m.saveLocked(tok)
	return err == nil, err
}

// saveLocked stores tok unless a fault says otherwise, and returns the
// fault's error. Called with mu held.
func (m *MemoryStore) saveLocked(tok *oauth2.Token) error {
	if m.faults.Save != nil && !m.faults.SaveLands {
		return m.faults.Save
	}
	m.tok = copyToken(tok)
	m.stats.Stored++
	return m.faults.Save
}

// Lock takes the lock, waiting while another holder's lease runs, until
// ctx ends; a ctx that has ended already takes nothing. It returns when
// the lease ends (see NewMemoryStore), and a function that releases the
// lock if this holder still has it: it reports an error if the lock was
// lost or its lease had ended, and does nothing once it has released it.
func (m *MemoryStore) Lock(ctx context.Context) (expires time.Time, unlock func(context.Context) error, err error) {
	var tick *time.Ticker
	m.mu.Lock()
	defer m.mu.Unlock()
	for waited := false; ; waited = true {
		if err := ctx.Err(); err != nil {
			what := "MemoryStore.Lock"
			if waited {
				what = "MemoryStore locked by another holder"
			}
			return time.Time{}, nil, fmt.Errorf("refreshtokentest: %s: %w", what, err)
		}
		if now := m.clock(); m.holder == 0 || !now.Before(m.leaseEnd) {
			return m.takeLocked(now)
		}
		if !waited {
			m.stats.Waits++
			// A lease ends when the clock says so, which wakes no one: a
			// fake clock moved by a test is looked at every millisecond.
			tick = time.NewTicker(time.Millisecond)
			defer tick.Stop()
		}
		freed := m.freed
		m.mu.Unlock()
		select {
		case <-freed:
		case <-tick.C:
		case <-ctx.Done():
		}
		m.mu.Lock()
	}
}

// takeLocked gives the lock to a new holder at now, or, with the LoseLock
// fault, lets it go at once. Called with mu held.
func (m *MemoryStore) takeLocked(now time.Time) (time.Time, func(context.Context) error, error) {
	m.lastHolder++
	id := m.lastHolder
	m.holder, m.leaseEnd = id, now.Add(m.lease)
	m.stats.Locks++
	if m.faults.LoseLock {
		m.releaseLocked()
	}
	released := false // guarded by mu
	unlock := func(context.Context) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if released {
			return nil
		}
		released = true
		if m.holder != id {
			return errors.New("refreshtokentest: unlock of a MemoryStore lock that was lost or taken by another holder")
		}
		ended := !m.clock().Before(m.leaseEnd)
		m.releaseLocked()
		if ended {
			return errors.New("refreshtokentest: unlock of a MemoryStore lock whose lease had ended")
		}
		m.stats.Unlocks++
		return nil
	}
	return time.Now().Add(m.leaseEnd.Sub(now)), unlock, nil
}

// releaseLocked frees the lock and wakes its waiters. Called with mu held.
func (m *MemoryStore) releaseLocked() {
	m.holder = 0
	close(m.freed)
	m.freed = make(chan struct{})
}

// Locked reports whether a holder's lease is running, by the store's
// clock.
func (m *MemoryStore) Locked() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holder != 0 && m.clock().Before(m.leaseEnd)
}

// Stored returns a copy of the stored token, or nil if there is none. No
// fault applies, and it counts as no Load.
func (m *MemoryStore) Stored() *oauth2.Token {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copyToken(m.tok)
}

// Put replaces the stored token with a copy of tok, or empties the store
// if tok is nil, as another process or an operator would. No fault
// applies, and it counts as no Save.
func (m *MemoryStore) Put(tok *oauth2.Token) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tok = copyToken(tok)
}

// SetFaults sets the faults of the calls that start from now on.
func (m *MemoryStore) SetFaults(f StoreFaults) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = f
}

// Stats returns the counts so far.
func (m *MemoryStore) Stats() StoreStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}
