package refreshtoken_test

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

var poolKeys = flag.Int("pool.keys", 1_000_000, "keys held by the Pool benchmarks (1,000 with -short)")

// benchKeys is how many keys the Pool benchmarks hold.
func benchKeys() int {
	if testing.Short() {
		return 1000
	}
	return *poolKeys
}

// genStore is the store of one key, as a database outside the process
// would be: Load decodes a new token each time (an access token of about
// 800 bytes, as a JWT is, fresh for an hour), and keeps nothing in the
// heap; Save stores nothing.
type genStore string

func (k genStore) Load(context.Context) (*oauth2.Token, error) {
	at := "at-" + string(k) + "-" + strings.Repeat("x", 790-len(k)-4)
	return &oauth2.Token{AccessToken: at, TokenType: "Bearer", RefreshToken: "rt-" + string(k) + "-" + strings.Repeat("r", 40),
		Expiry: time.Now().Add(time.Hour), ExpiresIn: 3600}, nil
}

func (genStore) Save(context.Context, *oauth2.Token) error { return nil }

func genStoreOf(key string) refreshtoken.Store { return genStore(key) }

func benchKey(i int) string { return fmt.Sprintf("user-%07d", i) }

// benchConf is a token endpoint that is never called: every token is fresh.
var benchConf = &oauth2.Config{ClientID: "client-1", ClientSecret: "secret",
	Endpoint: oauth2.Endpoint{TokenURL: "https://tenant.example.com/oauth/token", AuthStyle: oauth2.AuthStyleInParams}}

// keyed is what the benchmarks compare: a Pool, and a plain sync.Map of
// x/oauth2 sources made from the same stores.
type keyed interface {
	token(ctx context.Context, key string) (*oauth2.Token, error)
	close()
}

type poolKeyed struct{ p *refreshtoken.Pool }

func (k poolKeyed) token(ctx context.Context, key string) (*oauth2.Token, error) {
	return k.p.Token(ctx, key)
}
func (k poolKeyed) close() { k.p.Close() }

// syncMapKeyed is the baseline: x/oauth2's ReuseTokenSource over its
// refresh grant per key, in a sync.Map, made from the key's store on its
// first use. It never evicts.
type syncMapKeyed struct{ m *sync.Map }

func (k syncMapKeyed) token(ctx context.Context, key string) (*oauth2.Token, error) {
	if ts, ok := k.m.Load(key); ok {
		return ts.(oauth2.TokenSource).Token()
	}
	tok, err := genStore(key).Load(ctx)
	if err != nil {
		return nil, err
	}
	ts, _ := k.m.LoadOrStore(key, oauth2.ReuseTokenSource(tok, benchConf.TokenSource(ctx, tok)))
	return ts.(oauth2.TokenSource).Token()
}
func (syncMapKeyed) close() {}

var keyedImpls = []struct {
	name string
	make func() keyed
}{
	{"impl=pool", func() keyed {
		return poolKeyed{refreshtoken.NewPool(context.Background(), benchConf, genStoreOf)}
	}},
	{"impl=x-oauth2-syncmap", func() keyed { return syncMapKeyed{new(sync.Map)} }},
}

// fill asks k for keys, each once, and returns the heap bytes
// per key it then holds (after a GC).
func fill(tb testing.TB, k keyed, keys []string) float64 {
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, key := range keys {
		if _, err := k.token(ctx, key); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(keys))
}

// BenchmarkPool holds -pool.keys keys (1,000,000 by default, 1,000 with
// -short) in a Pool and in a sync.Map of x/oauth2 sources, and reports
// the heap per key (B/key, in the "fill" run) and the cost of Token for a
// hot key (held: keys picked across all of them) and a cold one (made from
// its store on this call, its key formatted then), in parallel. fill's
// ns/op is the time to fill the keys, its allocs/op theirs. No request is sent: every token
// is fresh.
func BenchmarkPool(b *testing.B) {
	n := benchKeys()
	// The keys are made once, outside the measured span: the
	// application has them already.
	keys := make([]string, n)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	for _, impl := range keyedImpls {
		var k keyed
		b.Run(impl.name+"/op=fill", func(b *testing.B) {
			b.ReportAllocs()
			var perKey float64
			for range b.N {
				if k != nil {
					k.close()
				}
				k = impl.make()
				perKey = fill(b, k, keys)
			}
			b.ReportMetric(perKey, "B/key")
		})
		ctx := context.Background()
		b.Run(impl.name+"/op=hot", func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				// A stride that visits the keys in a scattered order.
				i := next.Add(1) * 7919
				for pb.Next() {
					i += 104729
					if _, err := k.token(ctx, keys[i%uint64(n)]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		cold := atomic.Int64{}
		cold.Store(int64(n))
		b.Run(impl.name+"/op=cold", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.token(ctx, benchKey(int(cold.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		k.close()
		k = nil
		runtime.GC()
	}
}
