package refreshtokentest

import (
	"sync"
	"time"
)

// Clock is a fake clock for tests: it moves only when told to. Share one
// between a token source (refreshtoken.WithClock(c.Now)), a [Server]
// ([Config].Clock), a [MemoryStore] and a limiter
// (refreshtoken.LimiterClock(c)), to test expiry and waits without
// sleeping. It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []timer // After's that have not fired
}

type timer struct {
	at time.Time
	c  chan time.Time
}

// NewClock returns a Clock that reads t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t, and fires the timers of After that are due.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.fire()
}

// Add moves the clock by d, and fires the timers of After that are due.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fire()
}

// After is [time.After] on the clock: the channel receives the clock's
// time once the clock has been moved d or more past now (at once if d is
// not positive).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.timers = append(c.timers, timer{at: c.now.Add(d), c: ch})
	c.fire()
	return ch
}

// Timers returns how many channels of After have not received yet: a test
// learns from it that the code it runs waits on the clock, before it moves
// the clock.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// fire sends on the channels of the timers due, and forgets them: called
// with mu held.
func (c *Clock) fire() {
	left := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			left = append(left, t)
		} else {
			t.c <- c.now // buffered, and sent once
		}
	}
	clear(c.timers[len(left):])
	c.timers = left
}
