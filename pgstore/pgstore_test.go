package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// TestConformance: two Stores on one key, each with its own pool, are two
// processes' handles on one row.
func TestConformance(t *testing.T) {
	pg := startPostgres(t)
	a, b := pg.Pool(), pg.Pool()
	var keys atomic.Int32
	refreshtokentest.TestSharedStore(t, func(*testing.T) (refreshtokentest.SharedStore, refreshtokentest.SharedStore) {
		key := fmt.Sprintf("conformance:%d", keys.Add(1))
		return pgstore.New(a, key), pgstore.New(b, key)
	})
}

func TestRoundTrip(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	st := pgstore.New(pg.Pool(), "test:user-1")

	if tok, err := st.Load(ctx); tok != nil || err != nil {
		t.Fatalf("Load of an empty store = %v, %v; want nil, nil", tok, err)
	}
	full := (&oauth2.Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1",
		Expiry: time.Date(2026, 11, 25, 13, 0, 0, 123456000, time.UTC), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": "id-1", "scope": "openid offline_access",
			"refresh_token_expiry": "2026-12-25T13:00:00.5Z", "refresh_token_family_issued": "2026-11-25T12:00:00Z",
			"dpop_jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
	opt := cmp.Comparer(func(a, b *oauth2.Token) bool {
		return a.AccessToken == b.AccessToken && a.TokenType == b.TokenType && a.RefreshToken == b.RefreshToken &&
			a.Expiry.Equal(b.Expiry) && a.ExpiresIn == b.ExpiresIn &&
			a.Extra("id_token") == b.Extra("id_token") && a.Extra("scope") == b.Extra("scope") &&
			a.Extra("refresh_token_expiry") == b.Extra("refresh_token_expiry") &&
			a.Extra("refresh_token_family_issued") == b.Extra("refresh_token_family_issued") &&
			a.Extra("dpop_jkt") == b.Extra("dpop_jkt")
	})
	for _, tc := range []struct {
		name      string
		tok, want *oauth2.Token
	}{
		{"every field", full, full},
		{"refresh token only", &oauth2.Token{RefreshToken: "rt-2"}, &oauth2.Token{RefreshToken: "rt-2"}},
		{"access token that never expires", &oauth2.Token{AccessToken: "at-3", TokenType: "Bearer"}, &oauth2.Token{AccessToken: "at-3", TokenType: "Bearer"}},
		{"nanoseconds, kept to the microsecond below", &oauth2.Token{AccessToken: "at-4", Expiry: time.Date(2026, 11, 25, 13, 0, 0, 999, time.UTC)},
			&oauth2.Token{AccessToken: "at-4", Expiry: time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.Save(ctx, tc.tok); err != nil {
				t.Fatal(err)
			}
			got, err := st.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, opt); diff != "" {
				t.Errorf("Load after Save (-want +got):\n%s", diff)
			}
		})
	}
	if err := st.Save(ctx, &oauth2.Token{TokenType: "Bearer"}); err == nil {
		t.Error("Save of a token with no access and no refresh token succeeded; want an error")
	}
}

// TestLoadRefusesWhatIsNotAToken: rows written by something other than a
// Store (an operator, an attacker with write access, a bug) are refused
// with an error that quotes none of their values; a row that holds only a
// lease is no token.
func TestLoadRefusesWhatIsNotAToken(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	pool := pg.Pool()
	const secret = "rt-SECRET-in-a-broken-value"
	big := strings.Repeat("A", 5<<20)
	for _, tc := range []struct {
		name string
		sql  string
		args []any
		want string // "" for nil, nil
	}{
		{"negative expires_in", `(key, refresh_token, expires_in) VALUES ($1, $2, -5)`, []any{secret}, "bad expires_in"},
		{"no token in it", `(key, scope) VALUES ($1, $2)`, []any{secret}, "neither"},
		{"empty tokens", `(key, access_token, refresh_token, scope) VALUES ($1, '', '', $2)`, []any{secret}, "neither"},
		{"infinite expiry", `(key, refresh_token, expiry) VALUES ($1, $2, 'infinity')`, []any{secret}, "loading"},
		{"more than 5 MiB", `(key, access_token, refresh_token) VALUES ($1, $2, $3)`, []any{big, secret}, "more than"},
		{"a lease and no token", `(key, lock_owner, lock_until) VALUES ($1, $2, now() + interval '1 hour')`, []any{secret}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "broken:" + tc.name
			if _, err := pool.Exec(ctx, `INSERT INTO refreshtoken_tokens `+tc.sql, append([]any{key}, tc.args...)...); err != nil {
				t.Fatal(err)
			}
			tok, err := pgstore.New(pool, key).Load(ctx)
			if tc.want == "" {
				if tok != nil || err != nil {
					t.Fatalf("Load = %v, %v; want nil, nil", tok, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, %v; want an error saying %q", tok, err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "AAAA") {
				t.Errorf("error %q quotes the stored value", err)
			}
		})
	}
}

// TestSaveRefusesWhatPostgreSQLCannotHold: a token PostgreSQL's text
// cannot hold is refused before anything is sent (the server's error would
// quote the bytes), and what is stored stays.
func TestSaveRefusesWhatPostgreSQLCannotHold(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	st := pgstore.New(pg.Pool(), "unstorable:user-1")
	stored := &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}
	if err := st.Save(ctx, stored); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  *oauth2.Token
	}{
		{"a NUL byte", &oauth2.Token{AccessToken: "at-SECRET", RefreshToken: "rt-SECRET\x00"}},
		{"not UTF-8", &oauth2.Token{AccessToken: "at-SECRET\xff\xfe", RefreshToken: "rt-SECRET"}},
		// id_token and scope are dropped instead: TestOddScopeKeepsTheRotation.
		{"a kept extra not UTF-8", (&oauth2.Token{AccessToken: "at-SECRET"}).WithExtra(map[string]any{"dpop_jkt": "SECRET\xc3("})},
		{"more than 5 MiB", &oauth2.Token{AccessToken: "at-SECRET" + strings.Repeat("A", 5<<20), RefreshToken: "rt-SECRET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, save := range []func() error{
				func() error { return st.Save(ctx, tc.tok) },
				func() error { _, err := st.SaveIfCurrent(ctx, tc.tok, "rt-0"); return err },
			} {
				err := save()
				if err == nil || !strings.Contains(err.Error(), "refusing") {
					t.Fatalf("save = %v; want an error refusing the token", err)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Errorf("error %q holds a secret", err)
				}
			}
			if got, err := st.Load(ctx); err != nil || got == nil || got.RefreshToken != "rt-0" {
				t.Errorf("Load = %v, %v; want the token stored before", got, err)
			}
		})
	}
}

func TestSaveIfCurrent(t *testing.T) {
	pg := startPostgres(t)
	pool := pg.Pool()
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		stored    *oauth2.Token // nil: nothing stored
		previous  string
		wantSaved bool
	}{
		{"nothing stored", nil, "rt-0", true},
		{"previous is stored", &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}, "rt-0", true},
		{"a newer token is stored", &oauth2.Token{AccessToken: "at-other", RefreshToken: "rt-other"}, "rt-0", false},
		{"stored token has no refresh token", &oauth2.Token{AccessToken: "at-0"}, "rt-0", true},
		{"the new token is stored already (a retried save)", &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}, "rt-0", true},
		{"no previous refresh token, one stored", &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := pgstore.New(pool, "cas:"+tc.name)
			if tc.stored != nil {
				if err := st.Save(ctx, tc.stored); err != nil {
					t.Fatal(err)
				}
			}
			tok := &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}
			saved, err := st.SaveIfCurrent(ctx, tok, tc.previous)
			if err != nil || saved != tc.wantSaved {
				t.Fatalf("SaveIfCurrent = %v, %v; want %v, nil", saved, err, tc.wantSaved)
			}
			want := tok
			if !saved {
				want = tc.stored
			}
			if got, _ := st.Load(ctx); got == nil || got.RefreshToken != want.RefreshToken || got.AccessToken != want.AccessToken {
				t.Errorf("stored %+v, want %+v", got, want)
			}
		})
	}
}

// TestLock: one holder at a time; a holder that died frees the lock when
// its lease ends; a holder whose lease has ended can neither release its
// successor's lock nor save over the token its successor saved.
func TestLock(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	const key = "lock:user-1"
	a := pgstore.New(pg.Pool(), key, pgstore.WithLease(time.Hour))
	b := pgstore.New(pg.Pool(), key, pgstore.WithLease(200*time.Millisecond))

	before := time.Now()
	expires, unlockA, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if expires.Before(before.Add(time.Hour)) || expires.After(time.Now().Add(time.Hour)) {
		t.Errorf("lease ends at %v, want an hour after the call", expires)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, err = b.Lock(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("Lock while held = %v; want a deadline error saying it is locked", err)
	}
	if err := unlockA(ctx); err != nil {
		t.Fatal(err)
	}

	// b takes the lock, saves the token it starts from, and dies (it
	// never unlocks): its lease (200 ms) ends on its own, and a gets the
	// lock, waiting no longer than that.
	start := &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}
	if err := b.Save(ctx, start); err != nil {
		t.Fatal(err)
	}
	if _, unlockB, err := b.Lock(ctx); err != nil {
		t.Fatal(err)
	} else {
		defer func() {
			// b, back from its pause, releases a lock that is no longer
			// its own: a's must stay.
			if err := unlockB(ctx); err != nil {
				t.Error(err)
			}
			if !pg.LeaseHeld(key) {
				t.Error("a holder whose lease had ended released its successor's lock")
			}
			if err := unlockA(ctx); err != nil {
				t.Error(err)
			}
			if pg.LeaseHeld(key) {
				t.Error("unlock by the holder left the lock")
			}
		}()
	}
	// A guard, not a timing claim: a lease that never ended would hang
	// here until the test binary's timeout.
	guard, cancelGuard := context.WithTimeout(ctx, 10*time.Second)
	_, unlockA, err = a.Lock(guard)
	cancelGuard()
	if err != nil {
		t.Fatalf("Lock after the holder died = %v; want the lock once its 200 ms lease ended", err)
	}
	// a refreshes rt-0 and saves; b, paused past its lease with its own
	// refresh of rt-0, is refused.
	if saved, err := a.SaveIfCurrent(ctx, &oauth2.Token{AccessToken: "at-a", RefreshToken: "rt-a"}, "rt-0"); !saved || err != nil {
		t.Fatalf("a's SaveIfCurrent = %v, %v; want true, nil", saved, err)
	}
	if saved, err := b.SaveIfCurrent(ctx, &oauth2.Token{AccessToken: "at-b", RefreshToken: "rt-b"}, "rt-0"); saved || err != nil {
		t.Fatalf("paused b's SaveIfCurrent = %v, %v; want false, nil", saved, err)
	}
	if got, err := a.Load(ctx); err != nil || got.RefreshToken != "rt-a" {
		t.Errorf("Load = %v, %v; want a's token", got, err)
	}
}

// TestLockOnServerClock: the lease ends by the server's clock, whatever a
// client's: a lease written with an end long past is free.
func TestLockOnServerClock(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	pool := pg.Pool()
	const key = "clock:user-1"
	if _, err := pool.Exec(ctx, `INSERT INTO refreshtoken_tokens (key, lock_owner, lock_until)
		VALUES ($1, 'someone', clock_timestamp() - interval '1 second')`, key); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, unlock, err := pgstore.New(pool, key).Lock(short); err != nil {
		t.Fatalf("Lock of an ended lease = %v", err)
	} else if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNoSecretInErrorsOrString(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	st := pgstore.New(pg.Pool(), "secret:user-1")
	tok := &oauth2.Token{AccessToken: "at-SECRET", RefreshToken: "rt-SECRET"}
	if err := st.Save(ctx, tok); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	var errs []error
	_, err := st.Load(ctx)
	errs = append(errs, err, st.Save(ctx, tok))
	_, err = st.SaveIfCurrent(ctx, tok, "rt-SECRET-previous")
	errs = append(errs, err)
	_, _, err = st.Lock(ctx)
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Errorf("call %d succeeded with PostgreSQL down", i)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error %q holds a secret", err)
		}
	}
	// The pool's connection string holds a password here: %#v and %+v of
	// the Store must not print it.
	withPassword := pgstore.New(pg.PoolWithDSN("postgres://postgres:PASSWORD-SECRET@"+pg.Addr()+"/postgres"), "secret:user-1")
	for _, s := range []string{st.String(), fmt.Sprintf("%v %+v %#v %s", withPassword, withPassword, withPassword, withPassword)} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("%q holds a secret", s)
		}
	}
}

// TestSchemaInDocs: the SQL of docs/stores.md is the package's Schema.
func TestSchemaInDocs(t *testing.T) {
	doc, err := os.ReadFile("../docs/stores.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), pgstore.Schema) {
		t.Errorf("docs/stores.md does not hold pgstore.Schema:\n%s", pgstore.Schema)
	}
}

// TestLeastPrivilege: a role granted SELECT, INSERT and UPDATE on the
// table, as the package doc says, is enough for every operation.
func TestLeastPrivilege(t *testing.T) {
	pg := startPostgres(t)
	pg.exec(`CREATE ROLE app LOGIN`)
	pg.exec(`GRANT SELECT, INSERT, UPDATE ON refreshtoken_tokens TO app`)
	pool := pg.PoolWithDSN("postgres://app@" + pg.Addr() + "/postgres?sslmode=disable")
	ctx := context.Background()
	st := pgstore.New(pool, "privilege:user-1")
	if err := st.Save(ctx, &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}); err != nil {
		t.Fatal(err)
	}
	_, unlock, err := st.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if saved, err := st.SaveIfCurrent(ctx, &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}, "rt-0"); !saved || err != nil {
		t.Fatalf("SaveIfCurrent = %v, %v; want true, nil", saved, err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if tok, err := st.Load(ctx); err != nil || tok.RefreshToken != "rt-1" {
		t.Fatalf("Load = %v, %v; want the saved token", tok, err)
	}
}
