// Package harness is xnat's end-to-end benchmark: it stands outside the
// packet pipeline and measures the whole of it, in the namespace lab, against
// two references, and writes the record the README links to.
//
// Three devices under test (DUTs) forward the same traffic, one after the
// other, in one lab (bench/lab's gen -> dut -> sink) with the same generator
// (bench/gen, run in this process) and the same CPU pinning:
//
//   - l2fwd, the AF_XDP MAC-swapping forwarder: the I/O ceiling of the lab;
//   - natd, xnat itself, busy-polling;
//   - the Linux kernel with an nftables masquerade rule, RPS/RFS spreading
//     its softirq work over every core.
//
// For each DUT, flow count and frame size the harness measures the maximum
// forwarded rate (an unpaced trial), the RFC 2544 throughput (the highest
// offered rate with zero loss, by binary search over fixed-rate trials, see
// Search), the one-way latency percentiles at half that rate (of three
// trials, the one with the median p99: pickLatency), and the CPU
// the DUT spent per million packets. It also measures the session set-up
// rate (new flows per second) of the two NATs, natd's session capacity and
// memory per session, natd's garbage collections during steady forwarding
// (from its /metrics), and runs the Go micro-benchmarks of the packet core.
//
// Two more scenarios: scaling across queues (queues.go: for each N of
// Options.Queues a lab with N queue pairs, each DUT with N workers or RPS
// over N CPUs, placed by PlanLayout; Options.QueueRuns runs of each, the
// DUTs taking turns, the median zero-loss run reported), and a kernel
// packet generator
// (kernelgen.go: trafgen from netsniff-ng, a load this process does not
// generate, against natd and nftables, with natd's ring drops by cause).
//
// Results are a Results value: encoded as results.json, rendered as
// results.md (Markdown tables, RenderMarkdown) and drawn as throughput.png
// and latency.png (gonum/plot, see Charts).
//
// The pure parts (search, parsing of /proc and of `go test -bench` output,
// formatting) are tested without privileges; Run needs root and is driven
// by the xnatbench command (`make bench`, `make bench-quick`).
//
// Goroutines: Run is called from one goroutine and owns everything it
// creates; the generator's workers belong to bench/gen; a sampler goroutine
// per trial reads /proc and hands its result back over a channel.
package harness
