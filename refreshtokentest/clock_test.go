package refreshtokentest

import (
	"testing"
	"time"
)

// TestClockAfter: a channel of After receives once the clock has moved to
// its time, by Add or Set, and not before; one for a time not ahead
// receives at once.
func TestClockAfter(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := NewClock(t0)
	now := c.After(0)
	second, minute := c.After(time.Second), c.After(time.Minute)
	if got := c.Timers(); got != 2 {
		t.Fatalf("Timers() = %d, want 2", got)
	}
	ready := func(ch <-chan time.Time) (time.Time, bool) {
		select {
		case v := <-ch:
			return v, true
		default:
			return time.Time{}, false
		}
	}
	if v, ok := ready(now); !ok || !v.Equal(t0) {
		t.Errorf("After(0) = %v, %v; want %v at once", v, ok, t0)
	}
	c.Add(999 * time.Millisecond)
	if _, ok := ready(second); ok {
		t.Error("After(1s) fired at 999ms")
	}
	c.Add(time.Millisecond)
	if v, ok := ready(second); !ok || !v.Equal(t0.Add(time.Second)) {
		t.Errorf("After(1s) at 1s = %v, %v; want %v", v, ok, t0.Add(time.Second))
	}
	c.Set(t0.Add(time.Hour))
	if v, ok := ready(minute); !ok || !v.Equal(t0.Add(time.Hour)) {
		t.Errorf("After(1m) after Set(1h) = %v, %v; want %v", v, ok, t0.Add(time.Hour))
	}
	if got := c.Timers(); got != 0 {
		t.Errorf("Timers() = %d, want 0", got)
	}
}
