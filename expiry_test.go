package refreshtoken

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestSchedule(t *testing.T) {
	def := window{early: DefaultEarlyRefresh, jitter: DefaultJitter}
	tests := []struct {
		name          string
		w             window
		issued        time.Time
		life          time.Duration // expiry = t0 + life
		r             float64
		wantRefresh   time.Duration // after t0
		wantExpired   time.Duration // after t0
		reason        string
		zeroSchedule  bool
		noExpiryInput bool
	}{
		{name: "1 h, no jitter draw", w: def, issued: t0, life: time.Hour, r: 0,
			wantRefresh: 58 * time.Minute, wantExpired: time.Hour - 10*time.Second},
		{name: "1 h, largest jitter draw", w: def, issued: t0, life: time.Hour, r: 1,
			wantRefresh: 58*time.Minute + 30*time.Second, wantExpired: time.Hour - 10*time.Second},
		{name: "24 h (seed's expires_in 86400)", w: def, issued: t0, life: 24 * time.Hour, r: 0,
			wantRefresh: 24*time.Hour - 2*time.Minute, wantExpired: 24*time.Hour - 10*time.Second},
		{name: "60 s", w: def, issued: t0, life: time.Minute, r: 1,
			wantRefresh: 40 * time.Second, wantExpired: 50 * time.Second,
			reason: "window clamped to 30 s, jitter to (30-10)/2 = 10 s"},
		{name: "10 s", w: def, issued: t0, life: 10 * time.Second, r: 0,
			wantRefresh: 5 * time.Second, wantExpired: 7500 * time.Millisecond,
			reason: "window clamped to 5 s, margin to 2.5 s"},
		{name: "10 s, largest jitter draw", w: def, issued: t0, life: 10 * time.Second, r: 1,
			wantRefresh: 6250 * time.Millisecond, wantExpired: 7500 * time.Millisecond,
			reason: "jitter clamped to (5-2.5)/2 = 1.25 s"},
		{name: "caller's token, lifetime unknown", w: def, issued: time.Time{}, life: 30 * time.Second, r: 0,
			wantRefresh: 30*time.Second - 2*time.Minute, wantExpired: 20 * time.Second,
			reason: "no clamping: the full window and margin apply"},
		{name: "early refresh off", w: window{}, issued: t0, life: time.Hour, r: 0.5,
			wantRefresh: time.Hour, wantExpired: time.Hour - 10*time.Second,
			reason: "expires before it goes stale: callers wait at the margin"},
		{name: "never expires", w: def, issued: t0, noExpiryInput: true, zeroSchedule: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expiry := t0.Add(tt.life)
			if tt.noExpiryInput {
				expiry = time.Time{}
			}
			// r is in [0, 1); 1 stands for the largest draw.
			r := tt.r
			if r == 1 {
				r = 1 - 1e-12
			}
			refreshAt, expiredAt := tt.w.schedule(tt.issued, expiry, r)
			if tt.zeroSchedule {
				if !refreshAt.IsZero() || !expiredAt.IsZero() {
					t.Errorf("schedule = %v, %v; want zero times", refreshAt, expiredAt)
				}
				return
			}
			if got := refreshAt.Sub(t0); (got - tt.wantRefresh).Abs() > time.Millisecond {
				t.Errorf("refreshAt = t0%+v, want t0%+v (%s)", got, tt.wantRefresh, tt.reason)
			}
			if got := expiredAt.Sub(t0); got != tt.wantExpired {
				t.Errorf("expiredAt = t0%+v, want t0%+v (%s)", got, tt.wantExpired, tt.reason)
			}
		})
	}
}

// TestScheduleBounds checks the policy's promises over lifetimes from 1 s
// to 30 days and the whole jitter range: at most one refresh per half
// lifetime, refresh before expiry, and a long token used for all but a
// small fraction of its life.
func TestScheduleBounds(t *testing.T) {
	w := window{early: DefaultEarlyRefresh, jitter: DefaultJitter}
	for _, life := range []time.Duration{time.Second, 3 * time.Second, 10 * time.Second, time.Minute, 5 * time.Minute, time.Hour, 24 * time.Hour, 30 * 24 * time.Hour} {
		for _, r := range []float64{0, 0.25, 0.5, 0.999999} {
			refreshAt, expiredAt := w.schedule(t0, t0.Add(life), r)
			if used := refreshAt.Sub(t0); used < life/2 {
				t.Errorf("life %v, r %v: refresh after %v, before half the lifetime", life, r, used)
			}
			if !refreshAt.Before(expiredAt) {
				t.Errorf("life %v, r %v: refreshAt %v not before expiredAt %v: callers would wait", life, r, refreshAt.Sub(t0), expiredAt.Sub(t0))
			}
			if !expiredAt.Before(t0.Add(life)) {
				t.Errorf("life %v: expiredAt not before expiry", life)
			}
			if life >= 24*time.Hour {
				if unused := t0.Add(life).Sub(refreshAt); float64(unused) > 0.002*float64(life) {
					t.Errorf("life %v: %v of the lifetime unused, want under 0.2%%", life, unused)
				}
			}
		}
	}
}

func TestStateAt(t *testing.T) {
	refreshAt, expiredAt := t0.Add(58*time.Minute), t0.Add(59*time.Minute+50*time.Second)
	tests := []struct {
		name                 string
		now                  time.Time
		refreshAt, expiredAt time.Time
		want                 state
	}{
		{name: "well before", now: t0, refreshAt: refreshAt, expiredAt: expiredAt, want: fresh},
		{name: "just before the window", now: refreshAt.Add(-time.Nanosecond), refreshAt: refreshAt, expiredAt: expiredAt, want: fresh},
		{name: "window opens", now: refreshAt, refreshAt: refreshAt, expiredAt: expiredAt, want: stale},
		{name: "just before the margin", now: expiredAt.Add(-time.Nanosecond), refreshAt: refreshAt, expiredAt: expiredAt, want: stale},
		{name: "margin reached", now: expiredAt, refreshAt: refreshAt, expiredAt: expiredAt, want: expired},
		{name: "past expiry", now: t0.Add(2 * time.Hour), refreshAt: refreshAt, expiredAt: expiredAt, want: expired},
		{name: "never expires", now: t0.Add(1000 * time.Hour), want: fresh},
		{name: "never expires, back-off ended", now: t0.Add(time.Minute), refreshAt: t0, want: stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stateAt(tt.now, tt.refreshAt, tt.expiredAt); got != tt.want {
				t.Errorf("stateAt() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHandOutExpiry(t *testing.T) {
	expiry := t0.Add(time.Hour)
	refreshAt := t0.Add(58 * time.Minute)
	tests := []struct {
		name      string
		now       time.Time
		refreshAt time.Time
		expiry    time.Time
		want      time.Time
		reason    string
	}{
		{name: "fresh", now: t0, refreshAt: refreshAt, expiry: expiry, want: refreshAt.Add(10 * time.Second),
			reason: "Valid() turns false exactly when the window opens"},
		{name: "stale", now: refreshAt.Add(time.Second), refreshAt: refreshAt, expiry: expiry, want: refreshAt.Add(11 * time.Second),
			reason: "Valid() is already false: x/oauth2 asks again on its next call"},
		{name: "near expiry", now: expiry.Add(-5 * time.Second), refreshAt: refreshAt, expiry: expiry, want: expiry,
			reason: "never later than the real expiry"},
		{name: "short token", now: t0, refreshAt: t0.Add(5 * time.Second), expiry: t0.Add(10 * time.Second), want: t0.Add(10 * time.Second),
			reason: "never later than the real expiry"},
		{name: "never expires", now: t0, refreshAt: time.Time{}, expiry: time.Time{}, want: time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := handOutExpiry(tt.now, tt.refreshAt, tt.expiry); !got.Equal(tt.want) {
				t.Errorf("handOutExpiry() = %v, want %v (%s)", got, tt.want, tt.reason)
			}
		})
	}
}

func (s state) String() string { return [...]string{"fresh", "stale", "expired"}[s] }
