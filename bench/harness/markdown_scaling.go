package harness

import (
	"fmt"
	"slices"
	"strings"
)

// mdQueues writes the queue-scaling scenario: one row per queue count and
// DUT, with its speed-up over one queue pair and its ratio to l2fwd.
func mdQueues(w func(string, ...any), r *Results) {
	if len(r.Queues) == 0 {
		return
	}
	w("## Scaling across queues\n\n")
	w("N queue pairs on multi-queue veths (`numtxqueues N numrxqueues N`), 64-byte UDP frames, %d flows spread over the generator's N TX queues; l2fwd and natd run N workers (one per queue pair), nftables forwards with RPS over the DUT's N CPUs. *Zero loss* is the binary search's answer; *max* the unpaced trial, whose DUT CPU time gives the CPU per packet (CPU-µs per forwarded packet: DUT cores / Mpps). *×N=1* is the zero-loss rate over the same DUT's at one queue pair, *×l2fwd* over l2fwd's at the same N.%s\n\n", queueFlows(r), queueRunsNote(r.Settings.QueueRuns))
	w("| N | CPUs (generator / DUT / sink) | DUT | zero loss | max forwarded | CPU-µs/packet | ×N=1 | ×l2fwd | zero loss of each run, Mpps (max/min) |\n|---|---|---|---|---|---|---|---|---|\n")
	one := map[string]float64{}
	for _, q := range r.Queues {
		l2 := 0.0
		for _, c := range q.Cells {
			if q.Queues == 1 {
				one[c.DUT] = c.ZeroLossPPS
			}
			if c.DUT == L2fwd {
				l2 = c.ZeroLossPPS
			}
		}
		cpus := fmt.Sprintf("%s / %s / %s", cpuList(q.Layout.GenTx), cpuList(q.Layout.DUT), cpuList(q.Layout.GenRx))
		if q.Layout.Shared {
			cpus += " (shared)"
		}
		if q.Error != "" {
			w("| %d | %s | – | error: %s | | | | | |\n", q.Queues, cpus, q.Error)
		}
		for _, c := range q.Cells {
			w("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", q.Queues, cpus, c.DUT, zeroLossCell(&c), pps(maxFwd(&c)),
				num(c.CPUPerMpkt), ratioText(c.ZeroLossPPS, one[c.DUT]), ratioText(c.ZeroLossPPS, l2), runsCell(c.Runs))
		}
	}
	w("\n")
	for _, q := range r.Queues {
		w("- N = %d: %s.", q.Queues, q.Layout.Note)
		if q.Runs == 1 && r.Settings.QueueRuns > 1 {
			w(" One run of each DUT, not %d: the cores are shared.", r.Settings.QueueRuns)
		}
		if len(q.NatdRxByQueue) > 0 {
			w(" natd's frames received on dut-in by queue: %v.", q.NatdRxByQueue)
		}
		w("\n")
	}
	w("\n")
}

// queueRunsNote says, for a run that repeated each queue count, how the
// runs were taken and which one a row shows.
func queueRunsNote(n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf(" Each DUT ran %d times at each N, the DUTs taking turns (l2fwd, xnat, nftables, then again), so that a slow stretch of the machine falls on all of them; a row is the run with the median zero-loss rate, whole (its maximum and CPU are that run's), and the last column lists every run in order, with the spread as the highest over the lowest.", n)
}

// runsCell is the last column of the scaling table: every run's zero-loss
// rate and their spread, or "–" for a cell measured once.
func runsCell(runs []CellRun) string {
	if len(runs) < 2 {
		return "–"
	}
	lo, hi := 0.0, 0.0
	for _, x := range runs {
		if x.Error != "" {
			continue
		}
		if lo == 0 || x.ZeroLossPPS < lo {
			lo = x.ZeroLossPPS
		}
		hi = max(hi, x.ZeroLossPPS)
	}
	return fmt.Sprintf("%s (%s)", zeroLossRunsText(runs), ratioText(hi, lo))
}

func queueFlows(r *Results) int {
	for _, q := range r.Queues {
		for _, c := range q.Cells {
			if c.Flows > 0 {
				return c.Flows
			}
		}
	}
	return 0
}

func ratioText(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// mdKernelGen writes the kernel-generator scenario: per DUT and phase the
// spread over the repetitions, then every run.
func mdKernelGen(w func(string, ...any), r *Results) {
	k := r.KernelGen
	if k == nil {
		return
	}
	w("## Kernel generator (trafgen)\n\n")
	if k.Error != "" {
		w("Not run: %s.\n\n", k.Error)
		return
	}
	w("%s sends %d 64-byte UDP frames per phase at its top speed from CPU %d, source ports drawn at random from %d (one inside host, one server): `%s`. The DUT runs on CPU %d (natd busy-polling); nftables without RPS (rps_cpus=%s), so the kernel forwards in the sender's softirq. Each repetition starts from an empty table: *create* sets the sessions up while the frames arrive, *established* sends the same flows again. *Lost in the DUT's ring*: natd's own XDP socket statistics (RX ring full, fill ring empty); for nftables, the backlog drops of /proc/net/softnet_stat. *Veth*: frames the generator's veth could not hand to dut-in.\n\n",
		k.Tool, k.Frames, k.GenCPU, k.Flows, k.Command, k.DUTCPU, k.KernelRPS)
	w("| DUT | phase | runs | delivered Mpps (min–max) | lost (min–max) | lost in the DUT's ring (mean) | veth drops (mean) | DUT cores (mean) | frames per busy poll |\n|---|---|---|---|---|---|---|---|---|\n")
	type key struct{ dut, phase string }
	var order []key
	groups := map[key][]KernelGenRun{}
	for _, run := range k.Runs {
		kk := key{run.DUT, run.Phase}
		if _, ok := groups[kk]; !ok {
			order = append(order, kk)
		}
		groups[kk] = append(groups[kk], run)
	}
	for _, kk := range order {
		runs := groups[kk]
		var del, lost []float64
		var ring, veth, cores, rx, busy float64
		for _, x := range runs {
			del = append(del, x.DeliveredPPS/1e6)
			lost = append(lost, 100*x.LostRatio)
			ring += float64(x.DUTRingDrops)
			veth += float64(x.VethDropped)
			cores += x.DUTCores
			rx += float64(x.DUTReceived)
			busy += x.BusyPolls
		}
		n := float64(len(runs))
		burst := "–"
		if busy > 0 {
			burst = fmt.Sprintf("%.1f", rx/busy)
		}
		w("| %s | %s | %d | %.3f–%.3f | %.1f–%.1f%% | %.0f | %.0f | %.2f | %s |\n", kk.dut, kk.phase, len(runs),
			slices.Min(del), slices.Max(del), slices.Min(lost), slices.Max(lost), ring/n, veth/n, cores/n, burst)
	}
	w("\n<details><summary>Every run</summary>\n\n")
	w("| DUT | phase | # | sent | send time s | delivered | delivered Mpps | DUT received | DUT ring drops | of which RX ring full / fill ring empty | veth drops | sessions after | created | DUT cores | polls | busy polls | busy s / polled s | error |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range k.Runs {
		split := "–"
		if x.XSK != nil {
			split = fmt.Sprintf("%d / %d", x.XSK.RxRingFull, x.XSK.FillEmpty)
		}
		w("| %s | %s | %d | %d | %.3f | %d | %.3f | %d | %d | %s | %d | %d | %.0f | %.2f | %.0f | %.0f | %.2f / %.2f | %s |\n", x.DUT, x.Phase, x.Repeat,
			x.Sent, x.SendSeconds, x.Delivered, x.DeliveredPPS/1e6, x.DUTReceived, x.DUTRingDrops, split, x.VethDropped, x.Sessions, x.Created,
			x.DUTCores, x.Polls, x.BusyPolls, x.BusySeconds, x.PollSeconds, strings.ReplaceAll(x.Error, "|", "/"))
	}
	w("\n</details>\n\n")
}
