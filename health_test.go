package refreshtoken_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// healthOnly compares Health without Err, which the tests check apart.
var healthOnly = cmpopts.IgnoreFields(refreshtoken.Health{}, "Err")

// TestHealth follows one-hour tokens issued at t0 (stale at t0+58m,
// expired at t0+59m50s, by setup's schedule).
func TestHealth(t *testing.T) {
	clock := newFakeClock(t0)
	_, ts := setup(t, clock, refreshtokentest.Config{})
	if diff := cmp.Diff(refreshtoken.Health{}, ts.Health()); diff != "" {
		t.Errorf("Health() before the first token (-want +got):\n%s", diff)
	}
	mustToken(t, ts)
	steps := []struct {
		at   time.Duration // after t0
		want refreshtoken.Health
	}{
		{at: 0, want: refreshtoken.Health{Ready: true, ValidFor: 59*time.Minute + 50*time.Second, RefreshIn: 58 * time.Minute}},
		{at: 10 * time.Minute, want: refreshtoken.Health{Ready: true, ValidFor: 49*time.Minute + 50*time.Second, RefreshIn: 48 * time.Minute}},
		// Stale: a refresh is due; Health starts none.
		{at: 59 * time.Minute, want: refreshtoken.Health{Ready: true, ValidFor: 50 * time.Second}},
		{at: 59*time.Minute + 50*time.Second, want: refreshtoken.Health{}},
	}
	for _, st := range steps {
		clock.Set(t0.Add(st.at))
		if diff := cmp.Diff(st.want, ts.Health()); diff != "" {
			t.Errorf("Health() at t0+%v (-want +got):\n%s", st.at, diff)
		}
	}
}

// TestHealthRejected: a rejection while the token is still valid leaves
// the source ready, until the token expires.
func TestHealthRejected(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	mustToken(t, ts)
	srv.Inject(1, refreshtokentest.Fault{Status: 403, Error: "invalid_grant"})
	clock.Set(t0.Add(58 * time.Minute))
	mustToken(t, ts) // stale: served, and the refresh is rejected in the background
	refreshtoken.WaitIdle(ts)

	h := ts.Health()
	// Served until its real expiry while refreshes fail.
	want := refreshtoken.Health{Ready: true, ValidFor: 2 * time.Minute, RefreshIn: -1, Rejected: true}
	if diff := cmp.Diff(want, h, healthOnly); diff != "" {
		t.Errorf("Health() after the rejection (-want +got):\n%s", diff)
	}
	if !errors.Is(h.Err, refreshtoken.ErrRefreshRejected) || h.Err != ts.Err() {
		t.Errorf("Health().Err = %v, want Err(), a rejection", h.Err)
	}
	clock.Set(t0.Add(time.Hour))
	if diff := cmp.Diff(refreshtoken.Health{Rejected: true}, ts.Health(), healthOnly); diff != "" {
		t.Errorf("Health() after expiry (-want +got):\n%s", diff)
	}
	if err := ts.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Fatal(err)
	}
	if h := ts.Health(); h.Rejected || h.Err != nil || h.Ready {
		t.Errorf("Health() after SetToken of a refresh token = %+v, want not rejected, not ready until a refresh", h)
	}
}

// TestHealthTransient: after a failed refresh the token is served to its
// real expiry, and RefreshIn is the time to the next attempt.
func TestHealthTransient(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	mustToken(t, ts)
	srv.Inject(1, refreshtokentest.Fault{Status: 503})
	clock.Set(t0.Add(58 * time.Minute))
	mustToken(t, ts)
	refreshtoken.WaitIdle(ts)
	var re *refreshtoken.RetryError
	h := ts.Health()
	if !errors.As(h.Err, &re) {
		t.Fatalf("Health().Err = %v, want a *RetryError", h.Err)
	}
	want := refreshtoken.Health{Ready: true, ValidFor: 2 * time.Minute, RefreshIn: re.RetryAt.Sub(clock.Now())}
	if diff := cmp.Diff(want, h, healthOnly); diff != "" {
		t.Errorf("Health() (-want +got):\n%s", diff)
	}
	if want.RefreshIn <= 0 {
		t.Errorf("RefreshIn = %v, want the back-off", want.RefreshIn)
	}
}

func TestHealthNeverExpires(t *testing.T) {
	clock := newFakeClock(t0)
	_, ts := setup(t, clock, refreshtokentest.Config{OmitExpiresIn: true})
	mustToken(t, ts)
	clock.Set(t0.Add(1000 * time.Hour))
	want := refreshtoken.Health{Ready: true, ValidFor: -1, RefreshIn: -1}
	if diff := cmp.Diff(want, ts.Health()); diff != "" {
		t.Errorf("Health() (-want +got):\n%s", diff)
	}
}

// A readiness endpoint: ready while the source hands out a token without
// waiting for a refresh.
func ExampleTokenSource_Health() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")})
	defer ts.Close()

	ready := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := ts.Health()
		if !h.Ready {
			// Err says why: a rejected refresh token needs a new sign-in.
			http.Error(w, "no access token", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok, token valid for %v\n", h.ValidFor.Round(time.Minute))
	})

	check := func() {
		rec := httptest.NewRecorder()
		ready.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	check() // no token fetched yet
	if _, err := ts.Token(); err != nil {
		fmt.Println(err)
	}
	check()
	// Output:
	// 503 no access token
	// 200 ok, token valid for 1h0m0s
}
