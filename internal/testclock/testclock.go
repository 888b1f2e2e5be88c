// Package testclock is the settable clock the tests give the NAT engine
// (nat.Options.Clock): time moves only when a test advances it, so a test
// can run hours of timeouts in microseconds and never depends on the
// machine's speed.
package testclock

import (
	"sync"
	"time"
)

// Clock is a settable clock. Its methods may be called from any goroutine:
// the engine's workers read it while the test advances it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock that reads t until it is advanced.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
