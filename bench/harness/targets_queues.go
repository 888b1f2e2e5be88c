package harness

import "fmt"

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
		}
		out = append(out, t)
	}
	return out
}
