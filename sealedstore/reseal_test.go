package sealedstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// keyOf returns the id of the key the inner store's entry is sealed under.
func keyOf(t *testing.T, mem *refreshtokentest.MemoryStore) string {
	t.Helper()
	kid, _, _ := strings.Cut(strings.TrimPrefix(mem.Stored().AccessToken, "sealed.v1."), ".")
	return kid
}

// mustLoad returns the store's token, and fails the test unless its
// refresh token is want.
func mustLoad(t *testing.T, st interface {
	Load(context.Context) (*oauth2.Token, error)
}, want string) {
	t.Helper()
	tok, err := st.Load(context.Background())
	if err != nil || tok == nil || tok.RefreshToken != want {
		t.Fatalf("Load = %v, %v; want the token with refresh token %q", tok, err, want)
	}
}

// TestKeyRotation: an entry under k1 is read with the ring (k2, old k1),
// new writes use k2, Reseal moves the old entry to k2, and then a ring
// without k1 reads it.
func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	k1, _ := newKey(t, "k1")
	k2, _ := newKey(t, "k2")
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	before := sealedstore.New(mem, "user-1", ring(t, k1))
	during := sealedstore.New(mem, "user-1", ring(t, k2, k1))
	after := sealedstore.New(mem, "user-1", ring(t, k2))

	if err := before.Save(ctx, secretToken()); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, during, "rt-SECRET-refresh")
	if _, err := after.Load(ctx); !errors.Is(err, sealedstore.ErrUnknownKey) {
		t.Fatalf("Load of an entry under k1 by a ring without k1 = %v; want ErrUnknownKey", err)
	}

	if err := during.Save(ctx, &oauth2.Token{AccessToken: "at-2", RefreshToken: "rt-2"}); err != nil {
		t.Fatal(err)
	}
	if got := keyOf(t, mem); got != "k2" {
		t.Errorf("a Save with the ring (k2, old k1) sealed under %q; want k2", got)
	}
	mustLoad(t, after, "rt-2")

	// An entry left under k1 (a process not yet given k2 saved it).
	if err := before.Save(ctx, &oauth2.Token{AccessToken: "at-3", RefreshToken: "rt-3"}); err != nil {
		t.Fatal(err)
	}
	if resealed, err := sealedstore.Reseal(ctx, during); !resealed || err != nil {
		t.Fatalf("Reseal of an entry under k1 = %v, %v; want true, nil", resealed, err)
	}
	if got := keyOf(t, mem); got != "k2" {
		t.Errorf("after Reseal, the entry is under %q; want k2", got)
	}
	mustLoad(t, after, "rt-3")
	if resealed, err := sealedstore.Reseal(ctx, during); resealed || err != nil {
		t.Errorf("Reseal of an entry under the current key = %v, %v; want false, nil", resealed, err)
	}
}

// TestResealPlain: a store's plain token (the store before encryption was
// turned on) is refused by Load, and Reseal seals it, in a shared store
// and in a file.
func TestResealPlain(t *testing.T) {
	ctx := context.Background()
	k1, _ := newKey(t, "k1")
	keys := ring(t, k1)
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	path := filepath.Join(t.TempDir(), "token.json")
	for name, inner := range map[string]interface {
		Load(context.Context) (*oauth2.Token, error)
		Save(context.Context, *oauth2.Token) error
	}{"MemoryStore": mem, "filestore": filestore.New(path)} {
		t.Run(name, func(t *testing.T) {
			if err := inner.Save(ctx, secretToken()); err != nil {
				t.Fatal(err)
			}
			st := sealedstore.New(inner, "user-1", keys)
			if _, err := st.Load(ctx); !errors.Is(err, sealedstore.ErrNotSealed) || !strings.Contains(err.Error(), "Reseal") {
				t.Fatalf("Load of a plain token = %v; want ErrNotSealed, naming Reseal", err)
			}
			if resealed, err := sealedstore.Reseal(ctx, st); !resealed || err != nil {
				t.Fatalf("Reseal of a plain token = %v, %v; want true, nil", resealed, err)
			}
			mustLoad(t, st, "rt-SECRET-refresh")
			raw, err := inner.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if l := leaks(raw.AccessToken+raw.RefreshToken, secrets...); len(l) > 0 {
				t.Errorf("after Reseal, the inner store holds %q", l)
			}
		})
	}
	if resealed, err := sealedstore.Reseal(ctx, sealedstore.New(refreshtokentest.NewMemoryStore(nil, 0), "u", keys)); resealed || err != nil {
		t.Errorf("Reseal of an empty store = %v, %v; want false, nil", resealed, err)
	}
	if _, err := sealedstore.Reseal(ctx, mem); err == nil {
		t.Error("Reseal of a store not from New = nil error")
	}
}

// TestResealDamaged: Reseal opens an entry under the current key, and
// reports one that does not open, rather than leave it unnoticed.
func TestResealDamaged(t *testing.T) {
	k1, _ := newKey(t, "k1")
	keys := ring(t, k1)
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	mem.Put(&oauth2.Token{AccessToken: sealedEntry(t, "alice", keys).AccessToken, RefreshToken: sealedEntry(t, "alice", keys).RefreshToken})
	if _, err := sealedstore.Reseal(context.Background(), sealedstore.New(mem, "bob", keys)); !errors.Is(err, sealedstore.ErrCannotOpen) {
		t.Errorf("Reseal of another identity's entry = %v; want ErrCannotOpen", err)
	}
}

// rotatingStore is a MemoryStore on which, after the first Load, another
// process saves a rotated token: what a running source does between
// Reseal's Load and its save.
type rotatingStore struct {
	*refreshtokentest.MemoryStore
	rotate func()
}

func (s *rotatingStore) Load(ctx context.Context) (*oauth2.Token, error) {
	tok, err := s.MemoryStore.Load(ctx)
	if s.rotate != nil {
		s.rotate()
		s.rotate = nil
	}
	return tok, err
}

// TestResealKeepsRotation: on a shared store, a rotation saved between
// Reseal's Load and its save is not overwritten with the older token:
// Reseal's compare fails, and it reseals the new token instead.
func TestResealKeepsRotation(t *testing.T) {
	ctx := context.Background()
	k1, _ := newKey(t, "k1")
	k2, _ := newKey(t, "k2")
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	oldProcess := sealedstore.New(mem, "user-1", ring(t, k1))
	if err := oldProcess.Save(ctx, &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1"}); err != nil {
		t.Fatal(err)
	}
	rs := &rotatingStore{MemoryStore: mem}
	rs.rotate = func() {
		saved, err := oldProcess.(interface {
			SaveIfCurrent(context.Context, *oauth2.Token, string) (bool, error)
		}).SaveIfCurrent(ctx, &oauth2.Token{AccessToken: "at-2", RefreshToken: "rt-2"}, "rt-1")
		if !saved || err != nil {
			t.Errorf("the rotation meanwhile = %v, %v", saved, err)
		}
	}
	st := sealedstore.New(rs, "user-1", ring(t, k2, k1))
	if resealed, err := sealedstore.Reseal(ctx, st); !resealed || err != nil {
		t.Fatalf("Reseal with a rotation meanwhile = %v, %v; want true, nil (the rotated token resealed)", resealed, err)
	}
	if got := mem.Stats().Refused; got != 1 {
		t.Errorf("the inner store refused %d saves; want 1 (Reseal's first, over the rotation)", got)
	}
	mustLoad(t, st, "rt-2")
	if got := keyOf(t, mem); got != "k2" {
		t.Errorf("the rotated token is under %q; want k2", got)
	}
}
