package refreshtoken_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// countingSigner counts the signatures of its key, so that a benchmark
// can say how many a request or a Token() call costs.
type countingSigner struct {
	crypto.Signer
	signs atomic.Int64
}

func (c *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.signs.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

// dpopBenchSource returns a source holding a DPoP token for key (a
// public client's, from the test server, fresh for an hour) and the
// signature count of key. The token is fetched once here: the
// benchmarks measure the cached path.
func dpopBenchSource(b *testing.B, key crypto.Signer) (*refreshtoken.TokenSource, *countingSigner) {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Public: true, DPoP: true})
	b.Cleanup(srv.Close)
	cs := &countingSigner{Signer: key}
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}, refreshtoken.WithDPoP(cs))
	b.Cleanup(func() { ts.Close() })
	tok, err := ts.Token()
	if err != nil {
		b.Fatal(err)
	}
	if tok.Type() != "DPoP" {
		b.Fatalf("Type() = %q, want DPoP", tok.Type())
	}
	return ts, cs
}

// bearerBenchSource returns a source of the same kind holding a bearer
// token from the test server, fetched once.
func bearerBenchSource(b *testing.B) *refreshtoken.TokenSource {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	b.Cleanup(srv.Close)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")})
	b.Cleanup(func() { ts.Close() })
	if _, err := ts.Token(); err != nil {
		b.Fatal(err)
	}
	return ts
}

// lastProof answers at once, keeping the DPoP header of the last
// request.
type lastProof struct {
	resp  *http.Response
	proof string
}

func (l *lastProof) RoundTrip(req *http.Request) (*http.Response, error) {
	l.proof = req.Header.Get("DPoP")
	return l.resp, nil
}

// BenchmarkDPoP is the token path of one request with a DPoP token (a
// fresh proof per request, signed with an ES256 or an Ed25519 key), with a
// base that answers at once, against the same run's bearer Transport,
// x/oauth2's Transport, and the floor: one signature of a proof's signing
// input alone, as the proof signs it. What DPoP adds beyond the signature
// is DPoP - bearer - floor. signs/op counts the key's signatures.
func BenchmarkDPoP(b *testing.B) {
	base := answerAtOnce{resp: &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}}
	req, err := http.NewRequest(http.MethodGet, "http://api.example/v1/things", nil)
	if err != nil {
		b.Fatal(err)
	}
	type rt struct {
		name  string
		rt    http.RoundTripper
		signs *countingSigner // nil: no DPoP
	}
	rts := []rt{
		{name: "refreshtoken-Transport", rt: &refreshtoken.Transport{Source: bearerBenchSource(b), Base: base}},
		{name: "x-oauth2-NewClient", rt: &oauth2.Transport{Source: oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(benchToken())), Base: base}},
	}
	type floor struct {
		name  string
		sign  func() ([]byte, error)
		signs *countingSigner
	}
	var floors []floor
	for _, k := range []struct {
		alg string
		key crypto.Signer
	}{{"ES256", newECKey(b)}, {"Ed25519", newEdKey(b)}} {
		ts, cs := dpopBenchSource(b, k.key)
		tr := &refreshtoken.Transport{Source: ts, Base: base}
		rts = append(rts, rt{name: "refreshtoken-Transport-DPoP-" + k.alg, rt: tr, signs: cs})

		// The signing input of a real proof for req: its header and
		// payload, without the signature.
		rec := &lastProof{resp: base.resp}
		if _, err := (&refreshtoken.Transport{Source: ts, Base: rec}).RoundTrip(req); err != nil {
			b.Fatal(err)
		}
		i := strings.LastIndexByte(rec.proof, '.')
		if i < 0 {
			b.Fatalf("no DPoP proof sent: %q", rec.proof)
		}
		input := []byte(rec.proof[:i])
		sign := func() ([]byte, error) { return cs.Sign(rand.Reader, input, crypto.Hash(0)) }
		if k.alg == "ES256" {
			sign = func() ([]byte, error) {
				sum := sha256.Sum256(input)
				return cs.Sign(rand.Reader, sum[:], crypto.SHA256)
			}
		}
		floors = append(floors, floor{name: "floor-sign-" + k.alg, sign: sign, signs: cs})
	}
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		for _, f := range floors {
			b.Run("mode="+mode+"/impl="+f.name, func(b *testing.B) {
				before := f.signs.signs.Load()
				loop(b, parallel, func() []byte {
					sig, err := f.sign()
					if err != nil {
						b.Fatal(err)
					}
					return sig
				})
				reportSigns(b, f.signs, before, 1)
			})
		}
		for _, tr := range rts {
			b.Run("mode="+mode+"/impl="+tr.name, func(b *testing.B) {
				var before int64
				if tr.signs != nil {
					before = tr.signs.signs.Load()
				}
				loop(b, parallel, func() *http.Response {
					resp, err := tr.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					return resp
				})
				if tr.signs != nil {
					reportSigns(b, tr.signs, before, 1)
				}
			})
		}
	}
}

// reportSigns reports the signatures of cs since before per op, and fails
// b unless there were want per op.
func reportSigns(b *testing.B, cs *countingSigner, before int64, want int) {
	got := cs.signs.Load() - before
	if got != int64(want*b.N) {
		b.Errorf("%d signatures in %d ops, want %d per op", got, b.N, want)
	}
	b.ReportMetric(float64(got)/float64(b.N), "signs/op")
}
