package refreshtoken

import (
	"context"
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
