package fleettest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// BenchStore is a store under benchmark, for [BenchmarkRefresh] and
// [BenchmarkSaveLoad]. Both run it plain and sealed by sealedstore.
type BenchStore struct {
	// Name names it in the sub-benchmarks: "store=<Name>".
	Name string
	// New returns the store of key, on a server of the benchmark's own.
	New func(key string) refreshtoken.Store
	// Count, if not nil, returns the round trips (writes on the store's
	// connections) and the operations (Unit: commands, statements) the
	// stores of New have made so far.
	Count func() (roundTrips, operations int64)
	Unit  string
}

// benchT0 is the benchmarks' start on their fake clock.
var benchT0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// BenchmarkRefresh measures a refresh with a store: one source refreshes
// b.N times (as -benchtime 1000x asks) against a refreshtokentest server
// on loopback, each refresh a caller's Token for an expired token. It runs
// with no store, with x/oauth2's refresh (which has none) as the baseline
// of the same run, with refreshtokentest's MemoryStore (the shared-store
// protocol without a server), and with st, plain and sealed. It reports
// the latency of a refresh (median and p99, ms/refresh-p50 and -p99) and,
// with st.Count, st's round trips and operations per refresh.
func BenchmarkRefresh(b *testing.B, st BenchStore) {
	var runs int // a new key for each run: each has a new token server
	for _, bc := range []struct {
		name  string
		store func() refreshtoken.Store // nil: x/oauth2
		count func() (int64, int64)
	}{
		{"store=none", func() refreshtoken.Store { return nil }, nil},
		{"store=none-xoauth2", nil, nil},
		{"store=memory", func() refreshtoken.Store { return refreshtokentest.NewMemoryStore(nil, 0) }, nil},
		{"store=" + st.Name, func() refreshtoken.Store {
			runs++
			return st.New(fmt.Sprintf("bench:%d", runs))
		}, st.Count},
		{"store=" + st.Name + "+sealed", func() refreshtoken.Store {
			runs++
			key := fmt.Sprintf("bench:%d", runs)
			return sealedstore.New(st.New(key), key, benchKeys(b))
		}, st.Count},
	} {
		b.Run(bc.name, func(b *testing.B) {
			clock := refreshtokentest.NewClock(benchT0)
			srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
			defer srv.Close()
			token := xoauth2Refresh(srv)
			if bc.store != nil {
				opts := []refreshtoken.Option{refreshtoken.WithClock(clock.Now)}
				if s := bc.store(); s != nil {
					opts = append(opts, refreshtoken.WithStore(s))
				}
				ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid")}, opts...)
				defer ts.Close()
				token = ts.Token
			}
			if _, err := token(); err != nil {
				b.Fatal(err)
			}
			var r0, o0 int64
			if bc.count != nil {
				r0, o0 = bc.count()
			}
			refreshes := srv.Stats().Refreshes
			took := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				clock.Add(time.Hour) // the token has expired: Token refreshes
				start := time.Now()
				if _, err := token(); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			if n := srv.Stats().Refreshes - refreshes; n != b.N {
				b.Fatalf("%d refreshes for %d expiries", n, b.N)
			}
			slices.Sort(took)
			b.ReportMetric(percentile(took, 0.5), "ms/refresh-p50")
			b.ReportMetric(percentile(took, 0.99), "ms/refresh-p99")
			if bc.count != nil {
				r, o := bc.count()
				b.ReportMetric(float64(r-r0)/float64(b.N), "round-trips/refresh")
				b.ReportMetric(float64(o-o0)/float64(b.N), st.Unit+"/refresh")
			}
		})
	}
}

// xoauth2Refresh returns a function that refreshes with x/oauth2 at each
// call, as its ReuseTokenSource does at each expiry: a TokenSource of the
// config over the latest refresh token, with no access token.
func xoauth2Refresh(srv *refreshtokentest.Server) func() (*oauth2.Token, error) {
	rt := srv.NewRefreshToken("openid")
	return func() (*oauth2.Token, error) {
		tok, err := srv.Config().TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt}).Token()
		if err == nil {
			rt = tok.RefreshToken
		}
		return tok, err
	}
}

// percentile is the p-th quantile of sorted, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(p*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// BenchmarkSaveLoad measures a Save and a Load of a token of a real
// token's size (a 1 KB JWT, an ID token, a 64-character refresh token)
// in st, plain and sealed by sealedstore, in one run: what encryption
// adds to each, beside the round trip it rides on.
func BenchmarkSaveLoad(b *testing.B, st BenchStore) {
	ctx := context.Background()
	tok := (&oauth2.Token{AccessToken: strings.Repeat("a", 1024), TokenType: "Bearer",
		RefreshToken: strings.Repeat("r", 64), Expiry: benchT0.Add(time.Hour), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": strings.Repeat("i", 1024), "scope": "openid offline_access"})
	for _, bc := range []struct {
		name  string
		store refreshtoken.Store
	}{
		{"store=" + st.Name, st.New("saveload:plain")},
		{"store=" + st.Name + "+sealed", sealedstore.New(st.New("saveload:sealed"), "saveload:sealed", benchKeys(b))},
	} {
		if err := bc.store.Save(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name+"/op=Save", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if err := bc.store.Save(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/op=Load", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if got, err := bc.store.Load(ctx); err != nil || got.RefreshToken != tok.RefreshToken {
					b.Fatalf("Load = %v, %v; want the saved token", got != nil, err)
				}
			}
		})
	}
}

// benchKeys is a keyring of one new AES-256 key.
func benchKeys(tb testing.TB) *sealedstore.Keyring {
	secret := make([]byte, 32)
	rand.Read(secret)
	key, err := sealedstore.AESKey("bench-1", secret)
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := sealedstore.NewKeyring(key)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}
