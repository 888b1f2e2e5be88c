package main

import (
	"strings"
	"testing"
)

// The limits against hostile traffic are read from the file, and a
// held_fragments larger than a quarter of the AF_XDP frames is refused
// before natd starts (the worker would refuse it too, later).
func TestConfigHostileTrafficLimits(t *testing.T) {
	const base = `
interfaces:
  inside: {name: in0}
  outside: {name: out0}
xdp: {frames: 1024, ring_size: 256}
nat:
  inside_prefixes: [10.0.0.0/8]
  pools: [{name: main, addresses: [198.18.0.100]}]
  limits:
    inbound_sessions: 1000
    inbound_sessions_per_rule: 100
    held_fragment_bytes: 50000
    held_fragments_per_source: 8
    held_fragment_bytes_per_source: 9000
`
	c, err := ParseConfig("t.yaml", []byte(base+"    held_fragments: 256\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := c.NAT.Limits
	if l.InboundSessions != 1000 || l.InboundSessionsPerRule != 100 || l.HeldFragmentBytes != 50000 ||
		l.HeldFragmentsPerSource != 8 || l.HeldFragmentBytesPerSource != 9000 || l.HeldFragments != 256 {
		t.Fatalf("limits read as %+v", l)
	}
	_, err = ParseConfig("t.yaml", []byte(base+"    held_fragments: 257\n"))
	if err == nil || !strings.Contains(err.Error(), "nat.limits.held_fragments") || !strings.Contains(err.Error(), "xdp.frames") {
		t.Fatalf("held_fragments above a quarter of 1024 frames: %v", err)
	}
	_, err = ParseConfig("t.yaml", []byte(strings.Replace(base, "inbound_sessions_per_rule: 100", "inbound_sessions_per_rule: -1", 1)))
	if err == nil || !strings.Contains(err.Error(), "nat.limits.inbound_sessions_per_rule") {
		t.Fatalf("a negative limit: %v", err)
	}
}
