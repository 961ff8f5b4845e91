package sealedstore_test

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// FuzzLoad: whatever a hostile or broken store holds, Load does not
// panic, and either opens a real entry or fails with one of the three
// sentinels.
func FuzzLoad(f *testing.F) {
	key, err := sealedstore.AESKey("k1", make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	keys, err := sealedstore.NewKeyring(key)
	if err != nil {
		f.Fatal(err)
	}
	mem := refreshtokentest.NewMemoryStore(nil, 0)
	if err := sealedstore.New(mem, "user-1", keys).Save(context.Background(), secretToken()); err != nil {
		f.Fatal(err)
	}
	good := mem.Stored()
	f.Add(good.AccessToken, good.RefreshToken)
	f.Add("sealed.v1.k1.", "")
	f.Add("sealed.v1..AAAA", "sha256.")
	f.Add("sealed.v1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x")
	f.Add("at-plain", "rt-plain")
	f.Fuzz(func(t *testing.T, entry, hash string) {
		mem := refreshtokentest.NewMemoryStore(nil, 0)
		mem.Put(&oauth2.Token{AccessToken: entry, RefreshToken: hash})
		tok, err := sealedstore.New(mem, "user-1", keys).Load(context.Background())
		switch {
		// Only an entry sealed under the key opens: the seed's (sealed by
		// this process or, when fuzzing, by the coordinator, with another
		// nonce), never a forged one.
		case err == nil && tok.RefreshToken != "rt-SECRET-refresh":
			t.Fatalf("Load of a forged entry opened it, to refresh token %q", tok.RefreshToken)
		case err != nil && !errors.Is(err, sealedstore.ErrCannotOpen) && !errors.Is(err, sealedstore.ErrUnknownKey) && !errors.Is(err, sealedstore.ErrNotSealed):
			t.Fatalf("Load = %v; want one of the sentinels", err)
		}
	})
}
