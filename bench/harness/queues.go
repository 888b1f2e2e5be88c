package harness

import (
	"cmp"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/mgmt/metrics"
)

// The queue-scaling scenario: for each queue count N, a lab whose veths
// have N RX and N TX queues, the generator sending from N TX workers (flow
// f on queue f mod N) and counting at the sink with N receivers, and each
// DUT with N workers: l2fwd and natd one per queue pair (natd's
// interfaces.*.queues [0..N-1] and N workers), nftables with RPS over the
// DUT's N CPUs. Every DUT gets an unpaced trial (its maximum forwarded
// rate and CPU per packet) and a zero-loss search; the CPUs come from
// PlanLayout.

// QueueRun is one queue count of the scaling scenario.
type QueueRun struct {
	Queues int    `json:"queues"`
	Layout Layout `json:"layout"`
	// Runs is how many times each DUT ran here: Options.QueueRuns, or 1
	// where the layout shares cores.
	Runs int `json:"runs"`
	// Cells hold each DUT's figures: ZeroLossPPS, Max (the unpaced
	// trial), CPUPerMpkt (CPU-µs per packet in the unpaced trial).
	Cells []Cell `json:"cells"`
	// NatdRxByQueue is the frames natd's workers received on dut-in, by
	// queue, over all its trials: proof that every worker had traffic.
	NatdRxByQueue []float64 `json:"natd_rx_by_queue,omitempty"`
	Error         string    `json:"error,omitempty"`
}

// queueScaling runs the scenario for every count of Options.Queues, each
// in its own lab (removed before the next), and puts the main lab back
// afterwards.
func (r *runner) queueScaling() {
	mainEnv, mainMAC, trials := r.env, r.dutMAC, r.o.MaxTrials
	defer func() { r.env, r.dutMAC, r.o.MaxTrials = mainEnv, mainMAC, trials }()
	if r.o.QueueMaxTrials > 0 {
		r.o.MaxTrials = r.o.QueueMaxTrials
	}
	for _, n := range r.o.Queues {
		if r.ctx.Err() != nil {
			return
		}
		qr := QueueRun{Queues: n}
		l, err := PlanLayout(runtime.NumCPU(), n)
		if err != nil {
			qr.Error = err.Error()
			r.res.Queues = append(r.res.Queues, qr)
			continue
		}
		qr.Layout = l
		r.logf("== %d queue pair(s): %s", n, l.Note)
		if l.Shared {
			r.warn("%s", l.Note)
		}
		env, err := r.newLab(l, cpuMask(l.DUT))
		if err != nil {
			qr.Error = err.Error()
			r.warn("queues %d: lab: %v", n, err)
			r.closeEnv(env)
			r.res.Queues = append(r.res.Queues, qr)
			continue
		}
		// The DUTs take turns, run after run, rather than each running its
		// repeats back to back: the machine's slow stretches (other
		// work, the host) then fall on every DUT alike, and the ratios
		// between DUTs of one run are measured minutes apart at most.
		// Repeats pin down the scaling ratios; a layout whose sides share
		// cores shows no scaling (its note says so), so it runs once.
		runs := max(r.o.QueueRuns, 1)
		if l.Shared && runs > 1 {
			r.logf("   one run of each DUT, not %d: the cores are shared", runs)
			runs = 1
		}
		qr.Runs = runs
		byDUT := make(map[string][]Cell, len(r.o.DUTs))
		for run, name := range queueTurns(r.o.DUTs, runs) {
			if r.ctx.Err() != nil {
				break
			}
			if runs > 1 {
				r.logf("   %s, run %d of %d", name, run, runs)
			}
			if c, ok := r.queueCell(name, &qr); ok {
				byDUT[name] = append(byDUT[name], c)
			}
		}
		for _, name := range r.o.DUTs {
			if cs := byDUT[name]; len(cs) > 0 {
				c := pickQueueCell(cs)
				if len(cs) > 1 {
					r.logf("%-8s %d queue pair(s), %d runs: zero-loss %s (the median run's)", name, n, len(cs), zeroLossRunsText(c.Runs))
				}
				qr.Cells = append(qr.Cells, c)
			}
		}
		r.closeEnv(env)
		r.res.Queues = append(r.res.Queues, qr)
	}
}

// queueCell measures one DUT in the current (multi-queue) lab.
func (r *runner) queueCell(name string, qr *QueueRun) (Cell, bool) {
	n := r.env.layout.Queues
	d, err := r.newDUT(name)
	if err != nil {
		r.warn("queues %d: %s: %v", n, name, err)
		return Cell{}, false
	}
	if err := d.Start(); err != nil {
		r.warn("queues %d: %s: start: %v", n, name, err)
		return Cell{DUT: name, Flows: r.o.QueueFlows, Size: "64", Error: err.Error()}, true
	}
	defer func() {
		if err := d.Stop(); err != nil {
			r.warn("queues %d: %s: stop: %v", n, name, err)
		}
	}()
	if err := r.resolveNeighbours(); err != nil {
		r.warn("queues %d: %s: neighbours: %v", n, name, err)
	}
	var wu *Warmup
	if name != L2fwd {
		if wu, err = r.warmup(d, r.o.QueueFlows); err != nil {
			r.warn("queues %d: %s: warm-up: %v", n, name, err)
		}
	}
	c, _, _ := r.zeroLoss(d, r.o.QueueFlows, "64")
	c.Warmup = wu
	if nd, ok := d.(*natdDUT); ok {
		if m, err := nd.scrape(); err == nil {
			// Each run starts a fresh natd, so its counters are that
			// run's alone: the runs' sum is what the workers received
			// over the whole scenario.
			if len(qr.NatdRxByQueue) != n {
				qr.NatdRxByQueue = make([]float64, n)
			}
			got := make([]float64, n)
			for q := range got {
				got[q] = metrics.Sum(m, "xnat_rx_packets_total", "interface", lab.DUTInside, "queue", strconv.Itoa(q))
				qr.NatdRxByQueue[q] += got[q]
			}
			r.logf("   natd frames received on dut-in by queue: %v", got)
			for q, v := range got {
				if v == 0 {
					r.warn("queues %d: natd's worker on queue %d received nothing", n, q)
				}
			}
		}
	}
	r.logf("%-8s %d queue pair(s): zero-loss %s, max forwarded %s, %s CPU-µs per packet", name, n, pps(c.ZeroLossPPS), pps(maxFwd(&c)), num(c.CPUPerMpkt))
	return c, true
}

// queueTurns yields the order in which one queue count measures its DUTs:
// run 1 of every DUT, then run 2 of every DUT, and so on (runs < 1 means
// one run).
func queueTurns(duts []string, runs int) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		for run := 1; run <= max(runs, 1); run++ {
			for _, d := range duts {
				if !yield(run, d) {
					return
				}
			}
		}
	}
}

// pickQueueCell returns, of one DUT's runs at one queue count, the run
// whose zero-loss rate is the median (of an even number, the lower of the
// middle two), whole, so that its search and unpaced trial stay one run's,
// with every run's figures in Runs (more than one run only). Runs that
// ended in an error take no part in the median; if every run did, the
// last is returned.
func pickQueueCell(cells []Cell) Cell {
	var ok []Cell
	runs := make([]CellRun, 0, len(cells))
	for _, c := range cells {
		runs = append(runs, CellRun{ZeroLossPPS: c.ZeroLossPPS, MaxPPS: maxFwd(&c), CPUPerMpkt: c.CPUPerMpkt, Error: c.Error})
		if c.Error == "" {
			ok = append(ok, c)
		}
	}
	m := cells[len(cells)-1]
	if len(ok) > 0 {
		slices.SortStableFunc(ok, func(a, b Cell) int { return cmp.Compare(a.ZeroLossPPS, b.ZeroLossPPS) })
		m = ok[(len(ok)-1)/2]
	}
	if len(runs) > 1 {
		m.Runs = runs
	}
	return m
}

// zeroLossRunsText lists runs' zero-loss rates in Mpps, in the order they
// ran ("0.412, 0.398, 0.431"), an error as "error".
func zeroLossRunsText(runs []CellRun) string {
	var b strings.Builder
	for i, x := range runs {
		if i > 0 {
			b.WriteString(", ")
		}
		if x.Error != "" {
			b.WriteString("error")
			continue
		}
		fmt.Fprintf(&b, "%.3f", x.ZeroLossPPS/1e6)
	}
	return b.String()
}

func maxFwd(c *Cell) float64 {
	if c.Max == nil {
		return 0
	}
	return c.Max.ForwardedPPS
}

// DefaultQueues are the queue counts the full run measures on a machine
// with cores CPUs: 1 and 2 always (on fewer than 5 CPUs they share cores
// and show no scaling; the output says so), then 4, 6, ... while the DUT
// keeps its own cores (2N+1 <= cores).
func DefaultQueues(cores int) []int {
	q := []int{1, 2}
	for n := 4; 2*n+1 <= cores; n += 2 {
		q = append(q, n)
	}
	return q
}

// ParseQueues parses a -queues list ("1,2,4"); "0" or "" is none.
func ParseQueues(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" || f == "0" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 64 {
			return nil, fmt.Errorf("queues: %q is not a count in [1, 64]", f)
		}
		out = append(out, n)
	}
	return out, nil
}
