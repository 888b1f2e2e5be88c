package harness

import (
	"fmt"
	"math"
)

// FindCell returns the cell of dut at flows and size, or nil.
func FindCell(r *Results, dut string, flows int, size string) *Cell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.DUT == dut && c.Flows == flows && c.Size == size {
			return c
		}
	}
	return nil
}

// FlowLabel is "1", "1k", "100k", "1M".
func FlowLabel(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return fmt.Sprintf("%dM", n/1e6)
	case n >= 1e3 && n%1e3 == 0:
		return fmt.Sprintf("%dk", n/1e3)
	}
	return fmt.Sprint(n)
}

// SizeLabel is "64 B" or "IMIX".
func SizeLabel(s string) string {
	if s == "imix" {
		return "IMIX"
	}
	return s + " B"
}

// ratio is a/b, or 0 when b is 0 (JSON has no infinity).
func ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}

// cellFailed describes the first of cells whose measurement ended in an
// error (a trial that could not run), or returns "": such a cell's
// zero-loss rate is what the search had found before the error, not a
// measurement to compare.
func cellFailed(cells ...*Cell) string {
	for _, c := range cells {
		if c.Error != "" {
			return fmt.Sprintf("not measured: %s's search failed: %s", c.DUT, c.Error)
		}
	}
	return ""
}

// Targets evaluates the targets on r, each as a ratio measured in
// this one run.
func Targets(r *Results) []Target {
	var out []Target
	zeroLoss := func(num, den string, flows int, want float64) {
		t := Target{
			Name: fmt.Sprintf("%s zero-loss throughput vs %s, %s flows, 64 B", num, den, FlowLabel(flows)),
			Want: fmt.Sprintf(">= %.2fx", want),
		}
		a, b := FindCell(r, num, flows, "64"), FindCell(r, den, flows, "64")
		switch {
		case a == nil || b == nil:
			t.Detail = "not measured in this run"
		case cellFailed(a, b) != "":
			t.Detail = cellFailed(a, b)
		case b.ZeroLossPPS == 0:
			t.Detail = fmt.Sprintf("%s found no zero-loss rate (%s: %s)", den, num, pps(a.ZeroLossPPS))
			t.Met = a.ZeroLossPPS > 0
		default:
			t.Measured = a.ZeroLossPPS / b.ZeroLossPPS
			t.Met = t.Measured >= want
			t.Detail = fmt.Sprintf("%s %s vs %s %s", num, pps(a.ZeroLossPPS), den, pps(b.ZeroLossPPS))
			if !t.Met {
				t.Detail += fmt.Sprintf("; short by %.0f%% of the target", 100*(1-t.Measured/want))
			}
			t.Detail += ceilingNote(num, a.Search) + ceilingNote(den, b.Search)
		}
		out = append(out, t)
	}
	zeroLoss(Xnat, Kernel, 1000, 1.5)
	zeroLoss(Xnat, Kernel, 1000000, 1.5)
	zeroLoss(Xnat, L2fwd, 1000, 0.9)

	t := Target{Name: "xnat session set-up rate vs nftables", Want: ">= 2.00x"}
	var xs, ks *SessionRate
	for i := range r.SessionRates {
		switch r.SessionRates[i].DUT {
		case Xnat:
			xs = &r.SessionRates[i]
		case Kernel:
			ks = &r.SessionRates[i]
		}
	}
	switch {
	case xs == nil || ks == nil:
		t.Detail = "not measured in this run"
	default:
		t.Measured = ratio(xs.PerSecond, ks.PerSecond)
		t.Met = t.Measured >= 2
		t.Detail = fmt.Sprintf("xnat %s vs nftables %s new flows/s with zero loss", pps(xs.PerSecond), pps(ks.PerSecond))
		if !t.Met {
			t.Detail += fmt.Sprintf("; short by %.0f%% of the target", 100*(1-t.Measured/2))
		}
		t.Detail += ceilingNote(Xnat, xs.Search) + ceilingNote(Kernel, ks.Search)
	}
	out = append(out, t)

	for _, flows := range r.Settings.Flows {
		t := Target{Name: fmt.Sprintf("xnat p99 latency vs nftables at %.0f%% load, %s flows, 64 B", 100*r.Settings.LatencyLoad, FlowLabel(flows)),
			Want: "<= 1.00x"}
		a, b := FindCell(r, Xnat, flows, "64"), FindCell(r, Kernel, flows, "64")
		switch {
		case a == nil || b == nil || a.Latency == nil || b.Latency == nil || a.Latency.Latency == nil || b.Latency.Latency == nil:
			t.Detail = "not measured in this run"
		default:
			la, lb := a.Latency.Latency, b.Latency.Latency
			t.Measured = ratio(float64(la.P99), float64(lb.P99))
			t.Met = t.Measured > 0 && t.Measured <= 1
			t.Detail = fmt.Sprintf("xnat p99 %.1f µs at %s vs nftables %.1f µs at %s (each at its own %.0f%% load)",
				us(la.P99), pps(a.Latency.OfferedPPS), us(lb.P99), pps(b.Latency.OfferedPPS), 100*r.Settings.LatencyLoad)
			if len(a.LatencyP99s) > 1 || len(b.LatencyP99s) > 1 {
				t.Detail += fmt.Sprintf("; each the median of its runs' p99: xnat %s, nftables %s µs", p99List(a.LatencyP99s), p99List(b.LatencyP99s))
			}
			if !t.Met && t.Measured > 0 {
				t.Detail += fmt.Sprintf("; %.0f%% worse", 100*(t.Measured-1))
			}
		}
		out = append(out, t)
	}

	t = Target{Name: "xnat GC cycles while forwarding at steady state", Want: "0"}
	switch g := r.GC; {
	case g == nil || g.Steady == nil || g.Steady.GC == nil:
		t.Detail = "not measured in this run"
	default:
		s := g.Steady
		t.Measured = s.GC.Cycles
		t.Met = s.GC.Cycles == 0
		t.Detail = fmt.Sprintf("%.0f cycles, %.0f objects (%.0f bytes) allocated over %.1f s at %s; idle baseline over %.1f s: %.0f cycles, %.0f objects (the /metrics scrapes themselves)",
			s.GC.Cycles, s.GC.AllocObjects, s.GC.AllocBytes, s.GC.Seconds, pps(s.OfferedPPS), g.Idle.secs(), g.Idle.cycles(), g.Idle.objects())
	}
	out = append(out, t)
	return append(out, queueTargets(r)...)
}

// ceilingNote warns that a DUT's rate is a lower bound: it passed at the
// most the generator could offer.
func ceilingNote(dut string, s *SearchResult) string {
	if s == nil || !s.AtCeiling {
		return ""
	}
	return fmt.Sprintf("; %s lost nothing at the most the generator could offer, so its figure is a lower bound", dut)
}

func (g *GCDelta) secs() float64 {
	if g == nil {
		return 0
	}
	return g.Seconds
}

func (g *GCDelta) cycles() float64 {
	if g == nil {
		return 0
	}
	return g.Cycles
}

func (g *GCDelta) objects() float64 {
	if g == nil {
		return 0
	}
	return g.AllocObjects
}
