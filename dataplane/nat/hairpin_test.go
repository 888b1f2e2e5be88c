package nat

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// Hairpinning: inside host A reaches inside host B through B's external
// address:port, and B sees A's external address:port as the source.

func TestRFC4787_REQ9_HairpinUDP(t *testing.T) {
	h := newHarness(t, testConfig())
	// B has a mapping: it talked to the outside first.
	bExt := eps(h.one(Inside, udp("10.0.0.3", 6000, "198.18.0.2", 7000), Outside))
	// A's own mapping, to learn its external endpoint.
	aExt := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside))

	got := eps(h.one(Inside, udp("10.0.0.2", 5000, bExt.src, bExt.sport), Inside))
	// REQ-9a: external source address and port.
	if got.src != aExt.src || got.sport != aExt.sport || got.dst != "10.0.0.3" || got.dport != 6000 {
		t.Fatalf("hairpinned packet arrived as %v, want %s:%d -> 10.0.0.3:6000", got, aExt.src, aExt.sport)
	}
	// B answers A's external endpoint, and it hairpins back to A.
	back := eps(h.one(Inside, udp("10.0.0.3", 6000, aExt.src, aExt.sport), Inside))
	if back.src != bExt.src || back.sport != bExt.sport || back.dst != "10.0.0.2" || back.dport != 5000 {
		t.Fatalf("hairpinned reply arrived as %v", back)
	}
	if h.counters()[Hairpinned] != 2 {
		t.Fatalf("hairpinned counter %d", h.counters()[Hairpinned])
	}
}

func TestRFC5382_REQ8_HairpinTCPToForward(t *testing.T) {
	h := newHarness(t, forwardConfig())
	syn := eps(h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.100", 8080, "S"), Inside))
	if syn.dst != "10.0.0.50" || syn.dport != 80 || syn.src != "198.18.0.100" {
		t.Fatalf("hairpinned SYN arrived as %v", syn)
	}
	synack := eps(h.one(Inside, tcp("10.0.0.50", 80, syn.src, syn.sport, "SA"), Inside))
	if synack.dst != "10.0.0.2" || synack.dport != 5000 || synack.src != "198.18.0.100" || synack.sport != 8080 {
		t.Fatalf("hairpinned SYN-ACK arrived as %v", synack)
	}
}

func TestRFC5508_REQ7_HairpinEchoToStatic(t *testing.T) {
	c := testConfig()
	c.StaticMappings = []StaticMapping{{Inside: netip.MustParseAddr("10.0.0.60"), Outside: netip.MustParseAddr("198.18.0.160")}}
	h := newHarness(t, c)
	req := eps(h.one(Inside, echo("10.0.0.2", "198.18.0.160", 5, false), Inside))
	if req.dst != "10.0.0.60" || req.src != "198.18.0.100" {
		t.Fatalf("hairpinned echo arrived as %v", req)
	}
	rep := eps(h.one(Inside, echo("10.0.0.60", req.src, req.icmpID, true), Inside))
	if rep.dst != "10.0.0.2" || rep.icmpID != 5 || rep.src != "198.18.0.160" {
		t.Fatalf("hairpinned echo reply arrived as %v id %d", rep, rep.icmpID)
	}
}

func TestRFC5508_REQ7_HairpinnedError(t *testing.T) {
	h := newHarness(t, testConfig())
	bExt := eps(h.one(Inside, udp("10.0.0.3", 6000, "198.18.0.2", 7000), Outside))
	delivered, atB := h.oneRaw(Inside, udp("10.0.0.2", 5000, bExt.src, bExt.sport), Inside)
	// B's host refuses it with port unreachable about what it received.
	pk := h.one(Inside, icmpError("10.0.0.3", atB.src, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, delivered, false), Inside)
	outer := eps(pk)
	in := innerOf(t, pk)
	// REQ-7a: the outer destination equals the embedded source after
	// translation: A, with its original endpoint quoted.
	if outer.dst != "10.0.0.2" || in.src != "10.0.0.2" || in.sport != 5000 {
		t.Fatalf("hairpinned error: outer %v, embedded %v", outer, in)
	}
	if in.dst != bExt.src || in.dport != bExt.sport {
		t.Fatalf("embedded destination %v, want B's external endpoint", in)
	}
}
