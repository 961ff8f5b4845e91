package refreshtoken

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// TestRefreshRechecks: a caller that saw the token expired, but reached the
// refresh only after another caller's refresh had landed, must not refresh
// again. The window is too narrow to hit from outside, so the test hands
// the slow path the caller's old view directly.
func TestRefreshRechecks(t *testing.T) {
	now := func() time.Time { return t0 }
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: now})
	defer srv.Close()
	ts := New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}, WithClock(now))
	defer ts.Close()

	old := ts.cur.Load() // what the slow caller saw: no token
	first, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := ts.wait(context.Background(), old, now())
	if err != nil {
		t.Fatal(err)
	}
	if got.tok.AccessToken != first.AccessToken {
		t.Errorf("slow caller got %q, want the token already refreshed", got.tok.AccessToken)
	}
	if n := srv.Stats().TokenRequests; n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
}

// cachingSource is an inner source with a cache of its own, as
// x/oauth2's ReuseTokenSource, Google's and client credentials' are: it
// hands back the same one-hour token until 10 s before it expires.
type cachingSource struct {
	now    func() time.Time
	calls  int
	tokens []*oauth2.Token // issued so far; the last is current
}

func (s *cachingSource) Token() (*oauth2.Token, error) {
	s.calls++
	now := s.now()
	if n := len(s.tokens); n == 0 || !now.Before(s.tokens[n-1].Expiry.Add(-10*time.Second)) {
		s.tokens = append(s.tokens, &oauth2.Token{AccessToken: fmt.Sprint("inner-", n), Expiry: now.Add(time.Hour)})
	}
	return s.tokens[len(s.tokens)-1], nil
}

// TestCacheOverCachingSource: a source that hands back its cached token is
// asked again with back-off, and its token is not taken for a new one
// whose lifetime is the time it has left: it is never handed out within the
// 10 s safety margin. Each background refresh is run in place, as soon as
// it is due, so that the test does not race the clock.
func TestCacheOverCachingSource(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	src := &cachingSource{now: clock}
	ts := Cache(src, WithClock(clock))
	defer ts.Close()
	const hours = 3
	for ; now.Before(t0.Add(hours * time.Hour)); now = now.Add(time.Second) {
		if e := ts.cur.Load(); e.at(now) == stale && !e.fail.blocked(now) {
			ts.refresh()
		}
		e, _, err := ts.current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if left := e.tok.Expiry.Sub(now); left <= 10*time.Second {
			t.Fatalf("%v: handed out %s with %v left, within the safety margin", now.Sub(t0), e.tok.AccessToken, left)
		}
	}
	if per := src.calls / len(src.tokens); per > 15 {
		t.Errorf("inner source called %d times for %d tokens, want at most 15 per token", src.calls, len(src.tokens))
	}
	t.Logf("%d inner tokens over %d h, %d calls to the inner source", len(src.tokens), hours, src.calls)
}

// TestFresh: the Transport's quick check agrees with the state rules, with
// the default clock (monotonic readings) and with a set clock.
func TestFresh(t *testing.T) {
	tok := &oauth2.Token{AccessToken: "at"}
	now := time.Now()
	tests := []struct {
		name                 string
		refreshAt, expiredAt time.Time
		want                 bool
	}{
		{name: "fresh", refreshAt: now.Add(time.Hour), expiredAt: now.Add(2 * time.Hour), want: true},
		{name: "stale", refreshAt: now.Add(-time.Second), expiredAt: now.Add(time.Hour), want: false},
		{name: "expired", refreshAt: now.Add(-time.Hour), expiredAt: now.Add(-time.Second), want: false},
		{name: "window off, expired first", refreshAt: now.Add(time.Hour), expiredAt: now.Add(-time.Second), want: false},
		{name: "never expires", want: true},
		{name: "rejected, valid", expiredAt: now.Add(time.Hour), want: true},
		{name: "wall clock only", refreshAt: now.Add(time.Hour).Round(0), expiredAt: now.Add(2 * time.Hour).Round(0), want: true},
		{name: "wall clock only, stale", refreshAt: now.Add(-time.Minute).Round(0), expiredAt: now.Add(time.Hour).Round(0), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEntry(view{tok: tok, sched: schedule{refreshAt: tt.refreshAt, expiredAt: tt.expiredAt}})
			if got := (&TokenSource{config: &config{}}).fresh(e); got != tt.want {
				t.Errorf("fresh() with the default clock = %v, want %v", got, tt.want)
			}
			set := &TokenSource{config: &config{clock: func() time.Time { return now }}}
			if got := set.fresh(e); got != tt.want {
				t.Errorf("fresh() with a set clock = %v, want %v", got, tt.want)
			}
			if got, want := set.fresh(e), e.at(now) == fresh; got != want {
				t.Errorf("fresh() = %v, at() says %v", got, want)
			}
		})
	}
	if (&TokenSource{config: &config{}}).fresh(&entry{}) {
		t.Error("fresh() of an entry with no token = true")
	}
}

// TestOneMoreSaturates: the failure counts, int32 to keep a Pool's member
// small, stop at their maximum instead of wrapping to a negative count,
// which backoff would shift by.
func TestOneMoreSaturates(t *testing.T) {
	for _, tt := range []struct {
		name    string
		n, want int32
	}{
		{"first", 0, 1},
		{"below the maximum", math.MaxInt32 - 1, math.MaxInt32},
		{"at the maximum", math.MaxInt32, math.MaxInt32},
	} {
		n := tt.n
		if got := oneMore(&n); got != int(tt.want) || n != tt.want {
			t.Errorf("%s: oneMore(%d) = %d, n = %d, want %d", tt.name, tt.n, got, n, tt.want)
		}
	}
}
