package harness

import (
	"fmt"
	"math"
	"strings"
)

// queueTargets are the scaling targets, for a run that measured
// queues: xnat at 4 queue pairs reaches 3.5 times its rate at one, and at
// every N at least 0.9 times l2fwd's (zero-loss rates, 64-byte frames).
func queueTargets(r *Results) []Target {
	if len(r.Queues) == 0 {
		return nil
	}
	find := func(n int, dut string) (*Cell, *QueueRun) {
		for i := range r.Queues {
			q := &r.Queues[i]
			if q.Queues != n {
				continue
			}
			for j := range q.Cells {
				if q.Cells[j].DUT == dut {
					return &q.Cells[j], q
				}
			}
		}
		return nil, nil
	}
	shared := func(q *QueueRun) string {
		if q != nil && q.Layout.Shared {
			return " (cores shared: does not show scaling)"
		}
		return ""
	}
	var out []Target
	t := Target{Name: "xnat zero-loss throughput at 4 queue pairs vs 1", Want: ">= 3.50x"}
	x4, q4 := find(4, Xnat)
	x1, _ := find(1, Xnat)
	switch {
	case x4 == nil || x1 == nil:
		t.Detail = "not measured in this run (needs a machine with at least 9 cores)"
	case cellFailed(x4, x1) != "":
		t.Detail = cellFailed(x4, x1)
	case x1.ZeroLossPPS == 0:
		t.Detail = "no zero-loss rate at 1 queue pair"
	default:
		t.Measured = x4.ZeroLossPPS / x1.ZeroLossPPS
		t.Met = t.Measured >= 3.5
		t.Detail = fmt.Sprintf("%s at 4 vs %s at 1%s", pps(x4.ZeroLossPPS), pps(x1.ZeroLossPPS), shared(q4))
		if lo, hi, ok := crossRange(x4.Runs, x1.Runs); ok {
			t.Detail += fmt.Sprintf("; the median runs' ratio; runs at 4: %s Mpps, at 1: %s; every pairing of a run at 4 with one at 1 gives %.2f–%.2f",
				zeroLossRunsText(x4.Runs), zeroLossRunsText(x1.Runs), lo, hi)
		}
	}
	out = append(out, t)
	for _, q := range r.Queues {
		t := Target{Name: fmt.Sprintf("xnat zero-loss throughput vs l2fwd at %d queue pair(s)", q.Queues), Want: ">= 0.90x"}
		x, _ := find(q.Queues, Xnat)
		l, _ := find(q.Queues, L2fwd)
		switch {
		case x == nil || l == nil:
			t.Detail = "not measured in this run"
		case cellFailed(x, l) != "":
			t.Detail = cellFailed(x, l)
		case l.ZeroLossPPS == 0:
			t.Detail = "l2fwd found no zero-loss rate"
			t.Met = x.ZeroLossPPS > 0
		default:
			t.Measured = x.ZeroLossPPS / l.ZeroLossPPS
			t.Met = t.Measured >= 0.9
			t.Detail = fmt.Sprintf("xnat %s vs l2fwd %s%s", pps(x.ZeroLossPPS), pps(l.ZeroLossPPS), shared(&q))
			if rs := pairedRatios(x.Runs, l.Runs); len(rs) > 1 {
				t.Detail += fmt.Sprintf("; the median runs' ratio; run by run (the two measured in the same turn): %s", ratiosText(rs))
			}
		}
		out = append(out, t)
	}
	return out
}

// crossRange is the lowest and highest ratio of a run of a to a run of b,
// over every pairing of their runs without errors (the runs of two queue
// counts are measured in different labs, minutes apart: no pairing is
// more right than another). ok is false unless both were repeated.
func crossRange(a, b []CellRun) (lo, hi float64, ok bool) {
	if len(a) < 2 || len(b) < 2 {
		return 0, 0, false
	}
	for _, x := range a {
		for _, y := range b {
			if x.Error != "" || y.Error != "" || y.ZeroLossPPS <= 0 {
				continue
			}
			r := x.ZeroLossPPS / y.ZeroLossPPS
			if !ok || r < lo {
				lo = r
			}
			if !ok || r > hi {
				hi = r
			}
			ok = true
		}
	}
	return lo, hi, ok
}

// pairedRatios is the ratio of a's run i to b's run i, for the runs of two
// DUTs that took turns at one queue count; a pair with an error or a zero
// denominator is NaN.
func pairedRatios(a, b []CellRun) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	for i := range n {
		out[i] = math.NaN()
		if a[i].Error == "" && b[i].Error == "" && b[i].ZeroLossPPS > 0 {
			out[i] = a[i].ZeroLossPPS / b[i].ZeroLossPPS
		}
	}
	return out
}

// ratiosText lists ratios with two decimals, NaN as "–".
func ratiosText(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = "–"
		if !math.IsNaN(r) {
			parts[i] = fmt.Sprintf("%.2f", r)
		}
	}
	return strings.Join(parts, ", ")
}
