package nat

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/xnat/xnat/dataplane/drop"
)

// The new-session pipeline (newsession.go) looks a burst's subscribers,
// mappings and ports up before it creates any session; these tests put
// into one burst the packets whose sessions depend on each other.

// TestNewSessionBurstSharesMapping sends, in one burst, flows of one
// inside endpoint to several destinations (and one flow twice), with the
// subscriber allowed a single port: the first packet creates the mapping,
// and every other one must find it (RFC 4787 REQ-1), not trust the
// pipeline's "no mapping" from before the first was created, which would
// ask for a second port and be refused.
func TestNewSessionBurstSharesMapping(t *testing.T) {
	c := testConfig()
	c.Limits.PortsPerSubscriber = 1
	h := newHarness(t, c)
	var frames [][]byte
	for d := 0; d < 6; d++ {
		frames = append(frames, udp("10.0.0.2", 5000, fmt.Sprintf("198.18.0.%d", 10+d), 7000))
	}
	frames = append(frames, udp("10.0.0.2", 5000, "198.18.0.10", 7000)) // the first flow again
	h.inject(Inside, frames...)
	out := h.collect(Outside)
	if len(out) != len(frames) {
		t.Fatalf("%d of %d frames out (drops %v)", len(out), len(frames), h.drops())
	}
	first := eps(out[0])
	for _, pk := range out {
		if e := eps(pk); e.src != first.src || e.sport != first.sport {
			t.Fatalf("one inside endpoint mapped to %s:%d and %s:%d in one burst", first.src, first.sport, e.src, e.sport)
		}
	}
	if n := h.eng.bindings.Len(); n != 1 {
		t.Errorf("%d mappings, want 1", n)
	}
	if n := h.eng.sessions.Len(); n != 6 {
		t.Errorf("%d sessions, want 6", n)
	}
	if n := h.counters().Drops(drop.SubscriberPorts); n != 0 {
		t.Errorf("%d packets refused for the subscriber's port quota", n)
	}
}

// TestNewSessionBurstPortPlan checks the ports the pipeline plans: a free
// preserved port is kept (RFC 4787 REQ-3's port preservation), a taken one
// (taken before the burst, or by an earlier packet of the same burst) is
// replaced by another port of the range, and no external endpoint is
// given twice.
func TestNewSessionBurstPortPlan(t *testing.T) {
	c := testConfig()
	c.CGN.PortAllocation = AllocDynamic
	h := newHarness(t, c)
	if e := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.9", 7000), Outside)); e.sport != 5000 {
		t.Fatalf("free port 5000 not preserved: got %d", e.sport)
	}
	// 5000 is taken now (on 10.0.0.2's address); 6000 is free but two
	// hosts want it in one burst.
	hosts := []string{"10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"}
	sports := []uint16{5000, 5000, 6000, 6000, 5001}
	var frames [][]byte
	for i, in := range hosts {
		frames = append(frames, udp(in, sports[i], "198.18.0.9", 7000))
	}
	h.inject(Inside, frames...)
	if out := h.collect(Outside); len(out) != len(frames) {
		t.Fatalf("%d of %d frames out (drops %v)", len(out), len(frames), h.drops())
	}
	ext := map[string]netip.AddrPort{"10.0.0.2": h.outsideOf("10.0.0.2")}
	owner := map[netip.AddrPort]string{ext["10.0.0.2"]: "10.0.0.2"}
	for _, in := range hosts {
		o := h.outsideOf(in)
		if prev, ok := owner[o]; ok {
			t.Fatalf("external endpoint %v given to %s and %s", o, prev, in)
		}
		owner[o], ext[in] = in, o
		if o.Port() < 1024 {
			t.Errorf("%s got port %d, outside the range 1024-65535", in, o.Port())
		}
	}
	if p := ext["10.0.0.5"].Port(); p != 6000 {
		t.Errorf("first of the burst to want free port 6000 got %d", p)
	}
	if p := ext["10.0.0.7"].Port(); p != 5001 {
		t.Errorf("free port 5001 not preserved: got %d", p)
	}
	h.checkNoLeaks()
}

// outsideOf returns the external endpoint of inside host in's only
// session.
func (h *harness) outsideOf(in string) netip.AddrPort {
	h.t.Helper()
	ss, _ := h.eng.Sessions(SessionFilter{InsideAddr: netip.MustParseAddr(in)}, 0, 10)
	if len(ss) != 1 {
		h.t.Fatalf("%s has %d sessions, want 1", in, len(ss))
	}
	return ss[0].Outside
}

// TestNewSessionBurstNoStaleMappingKey puts a new mapping behind a packet
// of the same inside endpoint that creates nothing (an echo reply, which
// opens no session), so that the plan of its own place in the burst has
// no mapping key prepared (pass 1 prepares it for an endpoint's first
// packet only), while that place's plan of the burst before holds
// another endpoint's. newHint.bindProbe takes the plan's key without
// comparing it with the packet's: the mapping must still be the packet's
// own, not an insert under the earlier burst's key (which exists, so
// every try would find it and the packet would be refused).
func TestNewSessionBurstNoStaleMappingKey(t *testing.T) {
	h := newHarness(t, testConfig())
	h.inject(Inside, udp("10.0.0.2", 5000, "198.18.0.9", 7000), udp("10.0.0.3", 5001, "198.18.0.9", 7000))
	if out := h.collect(Outside); len(out) != 2 {
		t.Fatalf("%d of 2 frames out (drops %v)", len(out), h.drops())
	}
	h.inject(Inside, echo("10.0.0.4", "198.18.0.9", 77, true), echo("10.0.0.4", "198.18.0.9", 77, false))
	if out := h.collect(Outside); len(out) != 1 {
		t.Fatalf("%d frames out, want the echo request alone (drops %v)", len(out), h.drops())
	}
	if n := h.eng.bindings.Len(); n != 3 {
		t.Errorf("%d mappings, want 3", n)
	}
	h.outsideOf("10.0.0.4")
	h.checkNoLeaks()
}
