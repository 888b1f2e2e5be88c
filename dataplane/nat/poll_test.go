package nat

import (
	"testing"
	"time"
)

// steppingClock advances by step at every reading and counts the readings.
// Used by one goroutine.
type steppingClock struct {
	t     time.Time
	step  time.Duration
	reads int
}

func (c *steppingClock) Now() time.Time {
	c.reads++
	c.t = c.t.Add(c.step)
	return c.t
}

// pollFill writes UDP flow i from the inside, for loopPort.
func pollFill(i int, b []byte) int {
	src, sport := flowSrc(i)
	return writeUDP(b, src, server, sport, 7777, macInsideHost, macNATIn)
}

// TestPollClockReads checks when Poll reads the clock: once per Poll that
// receives frames, once at the first empty Poll after it (closing the busy
// interval), and otherwise once every idleHousekeeping empty Polls.
func TestPollClockReads(t *testing.T) {
	clk := &steppingClock{t: time.Unix(1_800_000_000, 0), step: time.Microsecond}
	r := newPerfRigClock(t, benchConfig(1024), clk)

	// Idle: 10 rounds of idleHousekeeping empty Polls.
	base := clk.reads
	for range 10 * idleHousekeeping {
		r.w.Poll()
	}
	if got := clk.reads - base; got != 10 {
		t.Fatalf("%d empty polls read the clock %d times, want 10", 10*idleHousekeeping, got)
	}

	// Traffic: every receiving Poll reads once, the first empty one after
	// it once, the next ones not at all.
	r.w.idle = 0
	base = clk.reads
	for range 5 {
		r.poll(Inside, 8, pollFill)
	}
	if got := clk.reads - base; got != 5 {
		t.Fatalf("5 receiving polls read the clock %d times, want 5", got)
	}
	r.w.Poll()
	r.w.Poll()
	r.w.Poll()
	if got := clk.reads - base; got != 6 {
		t.Fatalf("5 receiving polls and 3 empty ones read the clock %d times, want 6", got)
	}
}

// TestPollBusyTime checks the busy-time accounting against a clock that
// ticks once per reading: the interval after a reading by a receiving Poll
// is busy, every other interval idle, and together they are the whole.
func TestPollBusyTime(t *testing.T) {
	clk := &steppingClock{t: time.Unix(1_800_000_000, 0), step: time.Microsecond}
	r := newPerfRigClock(t, benchConfig(1024), clk)
	var c0 Counters
	r.poll(Inside, 4, pollFill) // the first reading starts the accounting
	r.w.Counters(&c0)
	reads0 := clk.reads

	// Pattern: 2*idleHousekeeping empty polls, then 3 receiving ones;
	// twice.
	wantBusy := 1 // the interval after the first reading
	for range 2 {
		for range 2 * idleHousekeeping {
			r.w.Poll()
		}
		for range 3 {
			r.poll(Inside, 4, pollFill)
		}
		wantBusy += 3 // each receiving poll's reading starts a busy interval
	}
	r.w.Poll() // the first empty poll after traffic: reads, closing the busy interval
	var c Counters
	r.w.Counters(&c)
	reads := clk.reads - reads0
	busy := time.Duration(c[BusyNanos] - c0[BusyNanos])
	total := time.Duration(c[PollNanos] - c0[PollNanos])
	if busy != time.Duration(wantBusy)*clk.step {
		t.Errorf("busy time %v, want %v", busy, time.Duration(wantBusy)*clk.step)
	}
	if total != time.Duration(reads)*clk.step {
		t.Errorf("poll time %v over %d readings of a %v clock, want %v", total, reads, clk.step, time.Duration(reads)*clk.step)
	}
	if got := c[Polls] - c0[Polls]; got != 2*(3+2*idleHousekeeping)+1 {
		t.Errorf("polls %d, want %d", got, 2*(3+2*idleHousekeeping)+1)
	}
	if got := c[BusyPolls] - c0[BusyPolls]; got != 6 {
		t.Errorf("busy polls %d, want 6", got)
	}
	// Per round: the first empty poll after traffic reads, and so do the
	// idleHousekeeping-th and 2*idleHousekeeping-th; each receiving poll
	// reads once. Then the final empty poll.
	if want := 2*(3+3) + 1; reads != want {
		t.Errorf("%d clock readings, want %d", reads, want)
	}
}
