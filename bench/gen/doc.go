// Package gen is xnat's AF_XDP traffic generator: it stands outside the
// pipeline, on both sides of the device under test, and feeds the NAT (or
// any forwarder) the frames a benchmark needs while measuring what comes
// out.
//
// On the sending side a TX worker per queue builds IPv4 UDP or TCP frames
// straight into the UMEM frames of its AF_XDP port (dataplane/afxdp): the
// flow's 5-tuple is computed from the flow index (FlowSpec, Cursor), the
// headers are copied from a per-size template (Builder) and the IPv4 and
// UDP/TCP checksums are finished from precomputed partial sums plus the few
// words that vary, so a frame costs a copy and a few adds and allocates
// nothing. Rate is "as fast as the ring takes it" or a target paced per
// batch by a token bucket (Pacer, one clock read per batch).
//
// Every frame's L4 payload starts with an 18-byte Mark: stream id, per-stream
// sequence number, TX timestamp (CLOCK_MONOTONIC ns) and flow index. On the
// far side of the DUT an RX worker per queue, on an AF_XDP socket in the
// sink's network namespace, counts per-stream packets received, lost and
// reordered and records latency in an HDR histogram (Recorder). Sender and
// receiver normally run in one process, so both stamps come from one clock.
//
// Modes (see Mode): one-way into a counting sink; bidirectional, where the
// sink is a reflector that swaps addresses, ports and MACs and sends each
// frame back through the DUT, recording the translated source it saw for
// each flow (the NAT mappings, as TRex's NAT learning does); and
// connection-rate, where every frame opens a never-used flow (a SYN, or the
// first UDP datagram of a tuple).
//
// Run ties it together and returns a Result that encodes to the JSON the
// trafficgen command prints. The pieces (FlowSpec, Builder, Pacer, Recorder,
// Reflect) are exported for the benchmark harness.
//
// Apart from measured runs, Hostile builds attack frames (spoofed TCP
// flags, ICMP errors quoting chosen packets, overlapping and tiny
// fragments, any TTL) and SendFrames replays prebuilt frames at line rate
// from one queue: the adversarial tests of cmd/natd flood natd with them.
//
// Goroutines: every worker owns its port, builder state and counters; the
// only shared per-packet state is the learned-mapping table (atomic
// words). Counters are published once per batch through per-worker atomics
// for the progress line.
package gen
