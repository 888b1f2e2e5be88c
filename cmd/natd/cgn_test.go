package main

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/xnat/xnat/dataplane/nat"
)

// TestWarnDetMoves: a configuration change that moves deterministic
// subscribers is logged with how many moved and which; one that moves
// nobody is not.
func TestWarnDetMoves(t *testing.T) {
	c := nat.DefaultConfig()
	c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	c.Pools = []nat.Pool{{Name: "p", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/30")}}}
	c.CGN.PortAllocation, c.CGN.PortsPerSubscriber = nat.AllocDeterministic, 1008
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	same := c
	warnDetMoves(log, &c, &same)
	if buf.Len() != 0 {
		t.Fatalf("warned without a move: %s", buf.String())
	}
	moved := c
	moved.Pools = []nat.Pool{{Name: "p", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.4/30")}}}
	warnDetMoves(log, &c, &moved)
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "moved=256") || !strings.Contains(out, "10.0.0.0->198.18.0.4:1024-2031") {
		t.Fatalf("warning: %s", out)
	}
}

// TestCGNConfigFile: the nat section's port-allocation fields and the
// logging section parse, with their defaults, and bad values are refused
// with their field.
func TestCGNConfigFile(t *testing.T) {
	base := "interfaces:\n  inside: {name: in0}\n  outside: {name: out0}\nnat:\n  inside_prefixes: [10.0.0.0/24]\n  pools: [{name: p, addresses: [198.18.0.0/30]}]\n"
	c, err := ParseConfig("t.yaml", []byte(base+"  port_allocation: block\n  max_blocks: 8\nlogging:\n  ipfix: {collector: \"192.0.2.1:4739\", transport: tcp, observation_domain: 9}\n  syslog: {server: \"192.0.2.2:514\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.NAT.CGN.PortAllocation != nat.AllocBlock || c.NAT.CGN.BlockSize != 512 || c.NAT.CGN.MaxBlocks != 8 {
		t.Fatalf("cgn %+v", c.NAT.CGN)
	}
	if c.Logging.IPFIX == nil || c.Logging.IPFIX.ObservationDomain != 9 || c.Logging.IPFIX.Transport.String() != "tcp" || c.Logging.Syslog == nil || c.Logging.IPFIXQueue != defaultExportQueue {
		t.Fatalf("logging %+v", c.Logging)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"  port_allocation: pba\n", `"pba" is not dynamic, block or deterministic`},
		{"  port_allocation: deterministic\n  ports_per_subscriber: 2000\n", "nat.ports_per_subscriber: the pools cannot cover"},
		{"  port_allocation: block\n  block_size: 4\n", "nat.block_size: 4 is out of range"},
		{"logging:\n  ipfix: {collector: nowhere}\n", "logging.ipfix"},
		{"logging:\n  syslog: {server: \"192.0.2.2:514\", transport: sctp}\n", `"sctp" is not udp or tcp`},
		{"logging:\n  ipfix: {collector: \"192.0.2.1:4739\", template_refresh: soon}\n", "logging.ipfix.template_refresh"},
	} {
		_, err := ParseConfig("t.yaml", []byte(base+bad.yaml))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want %q", bad.yaml, err, bad.want)
		}
	}
}
