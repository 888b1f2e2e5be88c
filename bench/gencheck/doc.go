// Package gencheck answers one question about the benchmark rig rather
// than about the pipeline: is the traffic generator (cmd/trafficgen) the
// bottleneck? It measures trafficgen's rate into a drop sink and compares
// it, in the same run and lab, with trafgen from netsniff-ng sending the
// same 64-byte UDP frame (TestGenCheck, behind XNAT_BENCH=1; run.sh runs it
// and records the result under bench/results/gencheck).
//
// The sink is the DUT's inside veth of lab.NewBench with a two-instruction
// XDP_DROP program: on veth the XDP program runs in the sender's softirq,
// so the sink costs both generators the same per frame, and its counter
// (veth's rx_queue_0_xdp_drops) is exact.
package gencheck
