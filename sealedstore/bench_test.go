package sealedstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// BenchmarkSealed is the cost of sealing: Save and Load of a typical
// token (a 1 KiB JWT access token, an id_token, a refresh token) on a
// MemoryStore, plain and sealed with an AES key, in the same run. Go's
// benchmark framework reports ns/op; the difference is what sealing adds
// to every refresh (one Save) and every store load.
func BenchmarkSealed(b *testing.B) {
	ctx := context.Background()
	key, _ := newKey(b, "k1")
	tok := (&oauth2.Token{AccessToken: "eyJ" + strings.Repeat("a", 1021), TokenType: "Bearer",
		RefreshToken: "v1.M" + strings.Repeat("r", 60), Expiry: time.Now().Add(time.Hour), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": "eyJ" + strings.Repeat("i", 797), "scope": "openid offline_access"})
	for _, s := range []struct {
		name string
		st   func() refreshtoken.Store
	}{
		{"plain", func() refreshtoken.Store { return refreshtokentest.NewMemoryStore(nil, 0) }},
		{"sealed", func() refreshtoken.Store {
			return sealedstore.New(refreshtokentest.NewMemoryStore(nil, 0), "user-1", ring(b, key))
		}},
	} {
		b.Run(s.name+"/Save", func(b *testing.B) {
			st := s.st()
			b.ReportAllocs()
			for b.Loop() {
				if err := st.Save(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/Load", func(b *testing.B) {
			st := s.st()
			if err := st.Save(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.Load(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
