package nat

import (
	"testing"

	"github.com/xnat/xnat/dataplane/drop"
)

func TestBasicUDPRoundTrip(t *testing.T) {
	h := newHarness(t, testConfig())
	out := h.one(Inside, udp("10.0.0.2", 40000, "198.18.0.2", 53), Outside)
	e := eps(out)
	if e.src != "198.18.0.100" || e.sport != 40000 || e.dst != "198.18.0.2" || e.dport != 53 || e.ttl != 63 {
		t.Fatalf("outbound translated to %v ttl %d", e, e.ttl)
	}
	if eth := ethOf(out); [6]byte(eth.SrcMAC) != macNATOut || [6]byte(eth.DstMAC) != macGateway {
		t.Fatalf("outbound MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	back := h.one(Outside, udp("198.18.0.2", 53, "198.18.0.100", 40000), Inside)
	e = eps(back)
	if e.src != "198.18.0.2" || e.dst != "10.0.0.2" || e.dport != 40000 || e.sport != 53 {
		t.Fatalf("inbound translated to %v", e)
	}
	if eth := ethOf(back); [6]byte(eth.DstMAC) != insideMAC([4]byte{10, 0, 0, 2}) {
		t.Fatalf("inbound dst MAC %v", eth.DstMAC)
	}
	h.none(Outside, udp("198.18.0.2", 53, "198.18.0.100", 40001), drop.NoSession)
	h.checkNoLeaks()
}
