package refreshtokentest

import (
	"testing"
	"time"
)

// TestRefreshLifetimes: the server refuses a refresh token past its
// absolute lifetime (from the family's first issue, not extended by
// rotation) or its inactivity lifetime (from its issue or last use), with
// invalid_grant as Auth0 does, and tells the seconds left when asked to.
func TestRefreshLifetimes(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		cfg        Config
		steps      []time.Duration // waits before each refresh that succeeds
		last       time.Duration   // the wait before the refresh refused
		wantLeft   []int64         // the field of each successful answer
		noRotation bool
	}{
		{name: "absolute", cfg: Config{RefreshAbsolute: 3 * time.Hour, RefreshExpiresInField: "refresh_token_expires_in"},
			steps: []time.Duration{time.Hour, time.Hour, 59 * time.Minute}, last: time.Minute, wantLeft: []int64{7200, 3600, 60}},
		{name: "inactivity", cfg: Config{RefreshInactivity: time.Hour, RefreshExpiresInField: "refresh_expires_in"},
			steps: []time.Duration{59 * time.Minute, 59 * time.Minute, 59 * time.Minute}, last: time.Hour, wantLeft: []int64{3600, 3600, 3600}},
		{name: "inactivity without rotation", cfg: Config{RefreshInactivity: time.Hour, NoRotation: true, RefreshExpiresInField: "refresh_expires_in"},
			steps: []time.Duration{59 * time.Minute, 59 * time.Minute}, last: time.Hour, wantLeft: []int64{3600, 3600}},
		{name: "both: the earlier", cfg: Config{RefreshAbsolute: 90 * time.Minute, RefreshInactivity: time.Hour, RefreshExpiresInField: "refresh_token_expires_in"},
			steps: []time.Duration{45 * time.Minute}, last: 45 * time.Minute, wantLeft: []int64{2700}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := NewClock(t0)
			tc.cfg.Clock = clock.Now
			s := NewServer(tc.cfg)
			defer s.Close()
			rt := s.NewRefreshToken("offline_access")
			for i, d := range tc.steps {
				clock.Add(d)
				status, body := post(t, s, refreshForm(s, rt), false)
				if status != 200 {
					t.Fatalf("refresh %d: %d %v", i, status, body)
				}
				if got, _ := body[tc.cfg.RefreshExpiresInField].(float64); int64(got) != tc.wantLeft[i] {
					t.Errorf("refresh %d: %s = %v, want %d", i, tc.cfg.RefreshExpiresInField, body[tc.cfg.RefreshExpiresInField], tc.wantLeft[i])
				}
				if next, ok := body["refresh_token"].(string); ok {
					rt = next
				}
			}
			clock.Add(tc.last)
			if status, body := post(t, s, refreshForm(s, rt), false); status != 403 || body["error"] != "invalid_grant" {
				t.Errorf("expired refresh token: %d %v, want 403 invalid_grant", status, body)
			}
			if got := s.Stats().RefreshExpired; got != 1 {
				t.Errorf("RefreshExpired = %d, want 1", got)
			}
		})
	}
	// Without lifetimes, nothing is sent and nothing expires.
	s := NewServer(Config{RefreshExpiresInField: "refresh_token_expires_in"})
	defer s.Close()
	if _, body := post(t, s, refreshForm(s, s.NewRefreshToken("")), false); body["refresh_token_expires_in"] != nil {
		t.Errorf("refresh_token_expires_in = %v without a lifetime, want none", body["refresh_token_expires_in"])
	}
}
