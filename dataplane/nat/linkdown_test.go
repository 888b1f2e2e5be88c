package nat

import (
	"testing"

	"github.com/xnat/xnat/dataplane/drop"
)

// TestEgressLinkDownCountsLinkDown: frames that an egress port refuses
// because its link is down are dropped as link_down, not tx_full (the
// alert XnatInterfaceDown and docs/operations.md name that reason), and
// the translation resumes when the link comes back.
func TestEgressLinkDownCountsLinkDown(t *testing.T) {
	h := newHarness(t, testConfig())
	h.ports[Outside].SetLinkUp(false)
	h.none(Inside, udp("10.0.0.2", 5000, "198.51.100.1", 53), drop.LinkDown)
	if n := h.counters().Drops(drop.TxFull); n != 0 {
		t.Errorf("tx_full = %d while the link was down, want 0", n)
	}
	h.ports[Outside].SetLinkUp(true)
	h.one(Inside, udp("10.0.0.2", 5000, "198.51.100.1", 53), Outside)
}
