package harness

import (
	"fmt"
	"runtime"
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
		for _, name := range r.o.DUTs {
			if r.ctx.Err() != nil {
				break
			}
			if c, ok := r.queueCell(name, &qr); ok {
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
			qr.NatdRxByQueue = make([]float64, n)
			for q := range qr.NatdRxByQueue {
				qr.NatdRxByQueue[q] = metrics.Sum(m, "xnat_rx_packets_total", "interface", lab.DUTInside, "queue", strconv.Itoa(q))
			}
			r.logf("   natd frames received on dut-in by queue: %v", qr.NatdRxByQueue)
			for q, v := range qr.NatdRxByQueue {
				if v == 0 {
					r.warn("queues %d: natd's worker on queue %d received nothing", n, q)
				}
			}
		}
	}
	r.logf("%-8s %d queue pair(s): zero-loss %s, max forwarded %s, %s CPU-µs per packet", name, n, pps(c.ZeroLossPPS), pps(maxFwd(&c)), num(c.CPUPerMpkt))
	return c, true
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
