package gen

import (
	"math"
	"math/rand/v2"
	"testing"
)

// simulate drives a pacer with a fake clock: every call advances time by a
// random step in [0, maxStep) ns and takes up to batch frames. It returns
// the frames sent over span ns and the largest single Take.
func simulate(p *Pacer, start, span, maxStep int64, batch int, rng *rand.Rand) (sent int64, largest int) {
	now := start
	for now < start+span {
		n := p.Take(now, batch)
		sent += int64(n)
		largest = max(largest, n)
		now += rng.Int64N(maxStep)
	}
	return sent, largest
}

// TestPacerRate checks the pacer's arithmetic with a fake clock (no real
// time): the frames taken match the target within one burst plus 0.01%,
// for rates from 3 pps to 100 Mpps and call intervals both shorter and
// longer than a frame time, as long as the caller comes back before a
// burst's worth of credit has accrued (maxStep <= batch frame times).
func TestPacerRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		pps     float64
		maxStep int64
		batch   int
	}{
		{10, 1e6, 64}, {1000, 3e3, 64}, {1000, 5e6, 64}, {123456.7, 2e3, 32}, {1e6, 300, 64},
		{1e6, 60e3, 64}, {14.88e6, 50, 64}, {14.88e6, 4000, 64}, {100e6, 20, 256}, {3, 300e6, 1},
	} {
		// About a million calls per case.
		span := min(int64(10e9), c.maxStep/2*1_000_000)
		p := NewPacer(c.pps, c.batch, 1000)
		sent, largest := simulate(p, 1000, span, c.maxStep, c.batch, rng)
		want := c.pps * float64(span) / 1e9
		tol := float64(c.batch) + want*1e-4
		if math.Abs(float64(sent)-want) > tol {
			t.Errorf("%.1f pps, steps < %d ns: sent %d in %d ns, want %.0f ± %.0f", c.pps, c.maxStep, sent, span, want, tol)
		}
		if largest > c.batch {
			t.Errorf("%.1f pps: a Take returned %d > batch %d", c.pps, largest, c.batch)
		}
	}
}

// TestPacerSlowCaller: a caller that comes back only every 2 burst times
// gets one burst per visit (half the target) plus the initial burst: no
// catch-up.
func TestPacerSlowCaller(t *testing.T) {
	p := NewPacer(1e6, 64, 0)
	var sent int
	for now := int64(128_000); now <= 128_000*1000; now += 128_000 {
		sent += p.Take(now, 1<<10)
	}
	if sent != 64*1000+64 {
		t.Fatalf("sent %d, want one 64-frame burst per visit plus the initial one (64064)", sent)
	}
}

// TestPacerCapsBurst: after a long idle the credit is a burst, not the
// whole idle time's worth.
func TestPacerCapsBurst(t *testing.T) {
	p := NewPacer(1e6, 32, 0)
	if n := p.Take(0, 1000); n != 32 {
		t.Fatalf("initial burst %d, want 32", n)
	}
	if n := p.Take(0, 1000); n != 0 {
		t.Fatalf("no time passed but %d frames allowed", n)
	}
	if w := p.Wait(0); w != 1000 {
		t.Fatalf("Wait = %d ns, want 1000 (one frame at 1 Mpps)", w)
	}
	if n := p.Take(500, 1000); n != 0 {
		t.Fatalf("half a frame time gave %d frames", n)
	}
	if n := p.Take(1000, 1000); n != 1 {
		t.Fatalf("one frame time gave %d frames", n)
	}
	if n := p.Take(3600e9, 1000); n != 32 {
		t.Fatalf("after an hour idle: %d frames, want the burst 32", n)
	}
	if n := p.Take(3600e9, 1000); n != 0 {
		t.Fatalf("after an hour idle, second take: %d frames, want 0", n)
	}
	p.Refund(5)
	if n := p.Take(3600e9, 1000); n != 5 {
		t.Fatalf("refunded 5, got %d", n)
	}
	// The clock going backwards (never on CLOCK_MONOTONIC, but a caller
	// mixing readings) adds no credit.
	if n := p.Take(1, 1000); n != 0 {
		t.Fatalf("backwards clock gave %d frames", n)
	}
}

func TestPacerExtremes(t *testing.T) {
	// A rate so low its cost is clamped, and a huge one: no overflow, no
	// zero cost.
	for _, pps := range []float64{1e-9, 1e12} {
		p := NewPacer(pps, 1<<20, 0)
		if p.cost == 0 || p.cap/p.cost > 1<<16 {
			t.Fatalf("%g pps: cost %d cap %d", pps, p.cost, p.cap)
		}
		for _, now := range []int64{1, 1e9, 1e18, math.MaxInt64} {
			if n := p.Take(now, 1<<16); n < 0 || n > 1<<16 {
				t.Fatalf("%g pps at %d: %d", pps, now, n)
			}
			_ = p.Wait(now)
		}
	}
}

func TestPacerAllocatesNothing(t *testing.T) {
	p := NewPacer(1e6, 64, 0)
	var now int64
	if a := testing.AllocsPerRun(1000, func() {
		now += 700
		p.Take(now, 64)
		p.Wait(now)
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}
