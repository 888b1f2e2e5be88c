package harness

import (
	"fmt"
	"strings"
)

// notes explains how r was measured, including what its own figures say
// about the bottleneck.
func notes(r *Results) []string {
	s := r.Settings
	n := []string{
		"Lab: bench/lab's bench topology, gen `eth0` → `dut-in` [dut] `dut-out` → sink `eth0`, plain veth pairs with one queue each; XDP in native (driver) mode, AF_XDP in copy mode (veth has no zero-copy). The DUT routes 10.0.0.0/8 to the generator and 198.19.0.0/16 to the sink; both neighbours are resolved before each DUT starts.",
		fmt.Sprintf("Generator: bench/gen inside the harness process, one-way UDP, 64-byte frames (60 B + FCS) or simple IMIX (7×64, 4×576, 1×1518). TX worker on CPU %d, sink receiver on CPU %d, both at nice %d (see the scheduling note). Every frame carries a stream sequence number and a CLOCK_MONOTONIC TX stamp read by the receiver in the same process, so latency is one way. A frame counts as forwarded when the sink's XDP program redirects it to the receiver's socket (the program's own counter): the DUT's loss is frames sent minus frames forwarded, and a receiver thread that falls behind (its socket's drops are recorded as gen_rx_kernel_drops) does not count against the DUT.",
			s.GenTxCPU, s.GenRxCPU, s.Nice),
		fmt.Sprintf("Devices under test, one after the other in the same lab with the same generator settings: l2fwd (AF_XDP MAC-swapping forwarder, worker on CPU %d), xnat (natd, `poll_mode: busy`, one worker on CPU %d, pool %s, `max_sessions` %d) and the kernel (nftables `masquerade` on dut-out, ip_forward, conntrack; RPS spreads its receive softirq over both CPUs).",
			s.DUTCPU, s.DUTCPU, s.Pool, s.MaxSessions),
		"Flows: every scenario is a prefix of one layout, src 10.1.0.0–10.1.3.255 (1024 subscribers) × ports 1024–1055 × dst 198.19.0.1–.32 port 9, source address varying fastest: each destination sees at most 32768 flows, so masquerade's single address has ports for all of them. natd and conntrack see exactly the same 5-tuples.",
		"Warm-up: before the trials of each flow count, xnat and nftables get every flow once (connection-rate mode at 200 kpps, repeated until the DUT reports at least as many sessions as flows), so trials forward established sessions. A trial of T seconds at R pps touches the first R×T flows of the scenario (from flow 0, source address fastest); with 1M flows the whole table is populated but a short trial revisits only part of it.",
		fmt.Sprintf("Throughput (RFC 2544 §26.1): the maximum forwarded rate is the forwarded rate of an unpaced trial; the zero-loss search then bisects [0, unpaced offered rate], first trying the maximum forwarded rate, with %.1f s trials, until the bracket is narrower than %.0f%% or %d trials ran. A trial passes only if every frame sent is forwarded. A trial is repeated once, and the repeat decides, when the DUT lost at most %.1f%% of the frames (a thread of the shared machine descheduled for a few milliseconds loses a few hundred frames at any rate; a DUT past its capacity loses far more) or when the generator offered less than %.0f%% of the target rate (its CPU was taken). Every passing rate therefore had a whole trial without loss. A trial whose generator could not bind a queue that its previous trial's socket still held (EBUSY: the kernel releases it from a work item) is no measurement: it runs again after %.0f s, up to %d times, and a search that still fails is reported as not measured. The throughput reported is the highest rate the generator really offered in a passing trial.",
			s.TrialSeconds, 100*s.Resolution, s.MaxSearchTrials, 100*GlitchLoss, 100*ShortOffer, busyWait.Seconds(), busyRetries),
		fmt.Sprintf("Latency: %s at %.0f%% of each DUT's own zero-loss rate (same duration); percentiles from the receiver's HDR histogram (1 ns–10 s, 3 significant digits). The CDF chart joins the recorded points (min, p50, p90, p99, p99.9, max): bench/gen reports no finer percentiles.",
			latencyRunsNote(s.LatencyRuns), 100*s.LatencyLoad),
		"CPU: /proc/stat per CPU over the sending window (from the generator's first progress tick, 200 ms into the send, to 30 ms before its end). DUT CPU for natd and l2fwd is the process's user+system time (/proc/<pid>/stat): it includes the veth transmit and the sink's XDP receive, which run inside the DUT's sendto, but not the DUT's own receive (XDP redirect and copy into its UMEM), which veth runs in the sender's softirq on CPU 0. For nftables it is the softirq time of every CPU (/proc/stat): the kernel's receive, conntrack, NAT, forwarding, transmit and the sink's XDP receive, plus any other softirq the machine ran in the window. The kernel is built without IRQ time accounting, so softirq time is tick-sampled (100 Hz). A busy-polling DUT uses its whole core whatever the load, so CPU per packet is quoted at the maximum rate only.",
		fmt.Sprintf("Scheduling: every thread that moves frames runs at nice %d: the generator's workers, the DUT processes (natd, l2fwd) and the kernel's ksoftirqd threads (%s), so the three DUTs compete on equal terms with each other and ahead of the other work on this shared machine. Not SCHED_FIFO: a busy-polling FIFO thread exhausts its CPU's real-time budget (sched_rt_runtime_us) and gets every FIFO thread of that CPU throttled, and in trials made while building this harness, with the generator's receiver under SCHED_FIFO next to a busy-polling DUT, even l2fwd showed a p99 of tens of milliseconds (softirq work deferred to ksoftirqd waited behind it), against a few milliseconds with equal CFS priorities. %s",
			s.Nice, s.KsoftirqdNice, receiverNote(s)),
		"Session set-up rate: connection-rate mode, every frame a never-used UDP flow; each trial has its own 1024 sources × 32 ports × 128 destinations (so masquerade never runs out of ports for a destination). An unpaced trial first, then the zero-loss search as for throughput (without repeats: a repeat would send used flows); the set-up rate is the highest rate of new flows really offered with every one of them forwarded. natd is restarted (empty table) and conntrack flushed before it, and again whenever half of the table is taken.",
		"GC: natd's /metrics exports runtime/metrics through the Prometheus Go collector; `go_gc_cycles_total_gc_cycles_total`, `go_gc_heap_allocs_objects_total` and `go_gc_heap_allocs_bytes_total` are scraped before and after each natd trial and around a steady run; each scrape allocates inside natd, and the idle baseline (same scrapes, no traffic) shows how much. natd runs with its default heap floor (gc.heap_floor_mb, 256 MiB: GOGC off and a soft memory limit, docs/natd.md), under which neither the scrapes' garbage nor the runtime's two-minute timer starts a cycle; with Go's defaults each few MiB allocated would.",
	}
	if len(s.KernelTuning) > 0 {
		n = append(n, "Kernel tuning for the nftables DUT: "+strings.Join(s.KernelTuning, "; ")+". RFS steers flows towards the CPU of the socket that consumes them; forwarded traffic has no local socket, so only RPS changes anything here.")
	}
	n = append(n, bottleneckNotes(r)...)
	return n
}

// latencyRunsNote says how many latency trials a cell ran and which is
// reported.
func latencyRunsNote(n int) string {
	if n <= 1 {
		return "one trial"
	}
	return fmt.Sprintf("%d trials a cell, of which the one with the median p99 is reported whole (one trial's p99 on this shared machine can be a few milliseconds in which the host took the busy DUT's core, which hits l2fwd as hard as natd)", n)
}

// receiverNote says what sharing a CPU does to the generator's receiver.
func receiverNote(s Settings) string {
	if s.GenRxCPU == s.DUTCPU {
		return fmt.Sprintf("The receiver shares CPU %d with the DUT's worker (natd, l2fwd) or the kernel's RPS softirq; under CFS a busy-polling DUT is preempted only at slice boundaries, which puts milliseconds into the latency tail of l2fwd and xnat, and takes CPU from the receiver that the kernel DUT leaves it.", s.DUTCPU)
	}
	return fmt.Sprintf("The DUT's worker has CPU %d to itself (the tester is kept off the DUT's core, as RFC 2544 benchmarks do); the receiver shares CPU %d with the TX worker, which sleeps between paced batches more than 100 µs apart, and with the DUT's receive softirq. With two vCPUs nothing is left alone: every DUT's latency tail then includes the receiver's wait for CPU %d, milliseconds at p90 and beyond. (`-rx-cpu %d` puts the receiver next to the DUT instead: the kernel DUT's tail shrinks, the busy-polling DUTs' rates drop; bench/results/README.md compares the two.)", s.DUTCPU, s.GenRxCPU, s.GenRxCPU, s.DUTCPU)
}

// bottleneckNotes summarises, per DUT, how busy each CPU was in the
// unpaced trials.
func bottleneckNotes(r *Results) []string {
	var out []string
	for _, d := range r.Settings.DUTs {
		var c0, c1, soft0, cores []float64
		saturated := 0
		for _, c := range r.Cells {
			if c.DUT != d || c.Max == nil || len(c.Max.CPUs) < 2 {
				continue
			}
			b0, b1 := c.Max.CPUs[0].Busy(), c.Max.CPUs[1].Busy()
			c0, c1, soft0 = append(c0, b0), append(c1, b1), append(soft0, c.Max.CPUs[0].SoftIRQ)
			cores = append(cores, c.Max.DUTCores)
			if b0 >= 0.95 {
				saturated++
			}
		}
		if len(c0) == 0 {
			continue
		}
		s := fmt.Sprintf("Who was the bottleneck, %s: in its %d unpaced trials CPU 0 (generator TX, and the DUT's receive in the sender's softirq) was %.0f%% busy (median; %.0f%% softirq) and CPU 1 %.0f%%; the DUT itself used %.2f cores (median). CPU 0 was at least 95%% busy in %d of %d",
			d, len(c0), 100*Median(c0), 100*Median(soft0), 100*Median(c1), Median(cores), saturated, len(c0))
		if saturated*2 >= len(c0) {
			s += ": the sending CPU, which carries part of every DUT's receive work on veth, bounds these rates as much as the DUT does."
		} else {
			s += "."
		}
		out = append(out, s)
	}
	return out
}
