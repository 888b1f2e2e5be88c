package gen

import "math"

// Pacer is a token bucket that meters frames at a target rate, consulted
// once per batch with one clock reading.
//
// Arithmetic is integer, in units of 2^-16 ns ("ticks"): a frame costs
// cost = 1e9 * 2^16 / pps ticks (rounded, relative error < 2^-16 / cost),
// elapsed time adds elapsed_ns * 2^16 ticks of credit, and the credit left
// after a Take is capped at burst frames, and one Take adds at most one
// burst's worth, so a generator that fell behind (or was idle) does not
// fire a long burst to catch up: at most two bursts go back to back. With burst = the batch size the long-run rate is exact
// provided Take is called at least once per burst of frame times; a
// caller that comes back less often loses the excess (it could not have
// sent faster anyway).
//
// A Pacer is owned by one TX worker goroutine.
type Pacer struct {
	cost   uint64 // ticks per frame
	cap    uint64 // credit cap, ticks
	credit uint64
	last   int64 // ns of the last Take
}

const tickShift = 16

// NewPacer returns a pacer for pps frames per second (> 0) allowing bursts
// of up to burst frames, starting at time now (ns) with one full burst of
// credit.
func NewPacer(pps float64, burst int, now int64) *Pacer {
	c := math.Round(1e9 * (1 << tickShift) / pps)
	// At most 2^46 ticks (about 17 minutes per frame), so the cap of a
	// burst of up to 2^16 frames is at most 2^62 and credit plus a clamped
	// refill never overflows 64 bits.
	c = max(1, min(c, 1<<46))
	burst = max(1, min(burst, 1<<16))
	p := &Pacer{cost: uint64(c), last: now}
	p.cap = p.cost * uint64(burst)
	p.credit = p.cap
	return p
}

// Take returns how many of up to max frames may be sent at time now and
// takes their credit.
func (p *Pacer) Take(now int64, max int) int {
	if el := now - p.last; el > 0 {
		p.last = now
		// Credit beyond a burst is discarded below anyway; clamping the
		// elapsed time first keeps the shift from overflowing after a
		// long pause.
		add := min(uint64(el), p.cap>>tickShift)
		p.credit += add << tickShift
	}
	n := p.credit / p.cost
	if n > uint64(max) {
		n = uint64(max)
	}
	p.credit -= n * p.cost
	// Cap what is left, not what was there: a caller that comes back
	// every burst time keeps the fraction of a frame it has earned.
	p.credit = min(p.credit, p.cap)
	return int(n)
}

// Refund gives back the credit of n frames taken but not sent (no free
// UMEM frame), so the rate is not lowered by a transient shortage.
func (p *Pacer) Refund(n int) {
	p.credit = min(p.credit+uint64(n)*p.cost, p.cap)
}

// Wait returns the nanoseconds from now until one frame's credit will be
// available (0 if it is).
func (p *Pacer) Wait(now int64) int64 {
	c := p.credit
	if el := now - p.last; el > 0 {
		c += uint64(min(el, 1<<40)) << tickShift
	}
	if c >= p.cost {
		return 0
	}
	return int64((p.cost - c + 1<<tickShift - 1) >> tickShift)
}
