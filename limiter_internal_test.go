package refreshtoken

import (
	"math"
	"testing"
	"time"
)

// nowClock is a Clock that reads a fixed instant; its timers never fire.
type nowClock struct{ t time.Time }

func (c *nowClock) Now() time.Time                       { return c.t }
func (c *nowClock) After(time.Duration) <-chan time.Time { return nil }

// TestLimiterSlotsPerSecond: the slots the bucket gives, taken back to
// back, never put more than burst + rate - 1 requests in one calendar
// second (rate with a burst of 1, as NewLimiter documents), and keep the
// rate over a long run.
func TestLimiterSlotsPerSecond(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		rate  float64
		burst int
		start time.Time
	}{
		{"30/s burst 1", 30, 1, t0},
		{"30/s burst 1, off the second", 30, 1, t0.Add(999 * time.Millisecond)},
		{"30/s burst 30", 30, 30, t0},
		{"30/s burst 30, off the second", 30, 30, t0.Add(500 * time.Millisecond)},
		{"7/s burst 3", 7, 3, t0.Add(123 * time.Millisecond)},
		{"0.5/s burst 2", 0.5, 2, t0},
		{"100/s burst 0 (is 1)", 100, 0, t0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &nowClock{tc.start}
			l := NewLimiter(tc.rate, tc.burst, LimiterClock(clock))
			perSecond := map[int64]int{}
			const n = 3000
			var last time.Time
			for range n {
				at := l.next(clock.t)
				l.take(at)
				perSecond[at.Unix()]++
				last = at
			}
			ceiling := max(tc.burst, 1) + int(tc.rate) - 1
			if tc.rate < 1 {
				ceiling = max(tc.burst, 1)
			}
			for sec, got := range perSecond {
				if got > ceiling {
					t.Errorf("%d requests in the second %d, want at most %d", got, sec-t0.Unix(), ceiling)
				}
			}
			// The steady rate: n requests, less the burst, take
			// (n-burst)/rate seconds, within a slot.
			want := time.Duration(float64(n-max(tc.burst, 1)) / tc.rate * float64(time.Second))
			if got := last.Sub(tc.start); got < want || got > want+l.interval {
				t.Errorf("%d requests took %v, want %v", n, got, want)
			}
		})
	}
}

// TestLimiterHold: the server's word moves the next slot to its end, and
// only one request goes then, whatever the burst; a word that ends sooner
// than the slots already given changes nothing.
func TestLimiterHold(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := &nowClock{t0}
	l := NewLimiter(10, 5, LimiterClock(clock))
	l.holdFor(30 * time.Second)
	if got, want := l.next(t0), t0.Add(30*time.Second); !got.Equal(want) {
		t.Fatalf("next slot = %v, want the end of the hold %v", got, want)
	}
	if ok, in := l.allow(0); ok || in != 30*time.Second {
		t.Fatalf("allow() = %v, %v; want false, 30s", ok, in)
	}
	holds := l.holds
	l.holdFor(time.Second) // sooner: no change
	if l.holds != holds {
		t.Error("a shorter hold voided the slots given")
	}
	clock.t = t0.Add(30 * time.Second)
	if ok, _ := l.allow(0); !ok {
		t.Fatal("allow() at the end of the hold = false")
	}
	if ok, in := l.allow(0); ok || in != 100*time.Millisecond {
		t.Errorf("second allow() at the end of the hold = %v, %v; want false, 100ms", ok, in)
	}
}

// TestLimiterHugeBurst: a burst whose tolerance would overflow a
// Duration does not wrap around into no burst at all.
func TestLimiterHugeBurst(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	l := NewLimiter(1, math.MaxInt, LimiterClock(&nowClock{t0}))
	for i := range 1000 {
		if ok, _ := l.allow(0); !ok {
			t.Fatalf("allow() #%d = false", i)
		}
	}
}

// TestLimiterZero: the zero Limiter lets everything through, except
// during the server's word.
func TestLimiterZero(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	l := &Limiter{clock: &nowClock{t0}}
	for i := range 1000 {
		if ok, _ := l.allow(0); !ok {
			t.Fatalf("allow() #%d = false", i)
		}
	}
	l.holdFor(time.Minute)
	if ok, in := l.allow(0); ok || in != time.Minute {
		t.Errorf("allow() during a hold = %v, %v; want false, 1m", ok, in)
	}
}

// TestNewLimiterPanics: a rate that is not a positive finite number is a
// programming error.
func TestNewLimiterPanics(t *testing.T) {
	for _, rate := range []float64{0, -1, math.NaN(), math.Inf(1), 1e-12} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLimiter(%v, 1) did not panic", rate)
				}
			}()
			NewLimiter(rate, 1)
		}()
	}
}
