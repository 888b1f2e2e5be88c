package nat

import (
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
)

// ageing tests run the expirer with a fake clock: a session must be alive
// one millisecond before its timeout and gone at it.

func (h *harness) sessionCount() int { return h.eng.sessions.Len() }

// establish opens the tests' standard TCP connection, 10.0.0.2:5000 to
// 198.18.0.2:80, through the NAT: SYN out, SYN-ACK back. It returns the
// endpoints of the translated SYN (its source is the mapping).
func (h *harness) establish() endpoints {
	out := eps(h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "S"), Outside))
	h.one(Outside, tcp("198.18.0.2", 80, out.src, out.sport, "SA"), Inside)
	return out
}

// expectExpiry advances the clock to just before d from the last activity,
// checks the session count is unchanged, then to d and checks it dropped by
// one.
func (h *harness) expectExpiry(t *testing.T, d time.Duration) {
	t.Helper()
	before := h.sessionCount()
	h.clock.Advance(d - time.Millisecond)
	h.housekeep()
	if got := h.sessionCount(); got != before {
		t.Fatalf("session expired %v early (count %d -> %d)", time.Millisecond, before, got)
	}
	h.clock.Advance(time.Millisecond)
	h.housekeep()
	if got := h.sessionCount(); got != before-1 {
		t.Fatalf("session did not expire at %v (count %d -> %d)", d, before, got)
	}
}

func TestRFC5382_REQ5_EstablishedTimeout(t *testing.T) {
	h := newHarness(t, testConfig())
	h.establish()
	h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "A"), Outside)
	h.expectExpiry(t, 7440*time.Second)
}

func TestRFC5382_REQ5_TransitoryTimeout(t *testing.T) {
	h := newHarness(t, testConfig())
	h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "S"), Outside) // half-open
	h.expectExpiry(t, 240*time.Second)
}

func TestRFC7857_TimeoutAfterRST(t *testing.T) {
	h := newHarness(t, testConfig())
	out := h.establish()
	h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "R"), Outside)
	// Not deleted at once (RFC 7857 section 2.2): packets still pass.
	h.one(Outside, tcp("198.18.0.2", 80, out.src, out.sport, "A"), Inside)
	h.expectExpiry(t, 240*time.Second)
}

func TestRFC5382_TimeoutAfterBothFIN(t *testing.T) {
	h := newHarness(t, testConfig())
	out := h.establish()
	h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "FA"), Outside)
	// One FIN: still established (RFC 5382 REQ-5: the transitory timeout
	// applies only once both directions have sent a FIN). The session
	// outlives the transitory timeout and still carries the established one.
	h.clock.Advance(240*time.Second + time.Second)
	h.housekeep()
	ss, _ := h.eng.Sessions(SessionFilter{}, 0, 10)
	if len(ss) != 1 || ss[0].Timeout != 7440*time.Second {
		t.Fatalf("after one FIN and 241 s: sessions %+v, want one with the established timeout 7440s", ss)
	}
	h.one(Outside, tcp("198.18.0.2", 80, out.src, out.sport, "FA"), Inside)
	h.expectExpiry(t, 240*time.Second)
}

func TestRFC5382_REQ2_SimultaneousOpen(t *testing.T) {
	h := newHarness(t, testConfig())
	out := eps(h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 6000, "S"), Outside))
	// The peer's own SYN (not a SYN-ACK) crosses ours.
	in := eps(h.one(Outside, tcp("198.18.0.2", 6000, out.src, out.sport, "S"), Inside))
	if in.dst != "10.0.0.2" || in.dport != 5000 {
		t.Fatalf("crossing SYN reached %v", in)
	}
	h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 6000, "SA"), Outside)
	h.one(Outside, tcp("198.18.0.2", 6000, out.src, out.sport, "SA"), Inside)
	// Both sides sent SYN: established, so the long timeout applies.
	h.expectExpiry(t, 7440*time.Second)
}

func TestRFC4787_REQ5_UDPTimeout(t *testing.T) {
	h := newHarness(t, testConfig())
	h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)
	h.expectExpiry(t, 300*time.Second)
}

func TestRFC4787_REQ5b_UDPTimeoutConfigurable(t *testing.T) {
	c := testConfig()
	c.Timeouts.UDP = 150 * time.Second
	h := newHarness(t, c)
	h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)
	h.expectExpiry(t, 150*time.Second)
}

func TestRFC4787_REQ6_OutboundRefresh(t *testing.T) {
	h := newHarness(t, testConfig())
	h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)
	h.clock.Advance(200 * time.Second)
	h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)
	h.expectExpiry(t, 300*time.Second)
}

func TestRFC4787_REQ6a_InboundRefresh(t *testing.T) {
	for _, refresh := range []bool{true, false} {
		c := testConfig()
		c.UDPInboundRefresh = refresh
		h := newHarness(t, c)
		out := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside))
		h.clock.Advance(200 * time.Second)
		h.one(Outside, udp("198.18.0.2", 7000, out.src, out.sport), Inside)
		if refresh {
			h.expectExpiry(t, 300*time.Second)
		} else {
			h.expectExpiry(t, 100*time.Second)
		}
	}
}

func TestRFC5508_REQ1_EchoMapping(t *testing.T) {
	h := newHarness(t, testConfig())
	req := eps(h.one(Inside, echo("10.0.0.2", "198.18.0.2", 4242, false), Outside))
	if req.src != "198.18.0.100" {
		t.Fatalf("echo left as %v", req)
	}
	rep := eps(h.one(Outside, echo("198.18.0.2", "198.18.0.100", req.icmpID, true), Inside))
	if rep.dst != "10.0.0.2" || rep.icmpID != 4242 {
		t.Fatalf("echo reply reached %v id %d", rep, rep.icmpID)
	}
	// REQ-1a: the identifier mapping is independent of the external host.
	req2 := eps(h.one(Inside, echo("10.0.0.2", "198.18.0.3", 4242, false), Outside))
	if req2.icmpID != req.icmpID || req2.src != req.src {
		t.Fatalf("same identifier to another host mapped to %d, first to %d", req2.icmpID, req.icmpID)
	}
	// Two hosts using one identifier get distinct external identifiers.
	other := eps(h.one(Inside, echo("10.0.0.3", "198.18.0.2", 4242, false), Outside))
	if other.icmpID == req.icmpID {
		t.Fatal("identifier overloaded across hosts")
	}
	// An unsolicited echo reply is dropped.
	h.none(Inside, echo("10.0.0.2", "198.18.0.2", 1, true), drop.NoSession)
}

func TestRFC5508_REQ2_ICMPTimeout(t *testing.T) {
	h := newHarness(t, testConfig())
	h.one(Inside, echo("10.0.0.2", "198.18.0.2", 4242, false), Outside)
	h.expectExpiry(t, 60*time.Second)
}

func TestRFC6888_REQ8_PortHoldDown(t *testing.T) {
	expectPortHoldDown(t, newHarness(t, onePortConfig()))
}

func TestAgeingReturnsEverything(t *testing.T) {
	h := newHarness(t, poolConfig("198.18.1.0/30"))
	for i := 0; i < 20; i++ {
		h.one(Inside, udp("10.0.0.2", uint16(1000+i), "198.18.0.2", 9), Outside)
		h.one(Inside, tcp("10.0.0.3", uint16(1000+i), "198.18.0.2", 80, "S"), Outside)
		h.one(Inside, echo("10.0.0.4", "198.18.0.2", uint16(i), false), Outside)
	}
	if h.eng.subs.Len() != 3 || h.eng.bindings.Len() != 60 || h.sessionCount() != 60 {
		t.Fatalf("subs %d bindings %d sessions %d", h.eng.subs.Len(), h.eng.bindings.Len(), h.sessionCount())
	}
	h.clock.Advance(time.Hour)
	h.housekeep()
	h.clock.Advance(3 * time.Minute)
	h.housekeep()
	if h.eng.subs.Len() != 0 || h.eng.bindings.Len() != 0 || h.sessionCount() != 0 {
		t.Fatalf("after expiry: subs %d bindings %d sessions %d", h.eng.subs.Len(), h.eng.bindings.Len(), h.sessionCount())
	}
	for _, a := range h.eng.registered() {
		for p := range a.ports {
			if n := a.ports[p].inUse.Load(); n != 0 {
				t.Fatalf("%v ports still in use on %v: %d", Proto(p), a.addr, n)
			}
		}
		if a.subs.Load() != 0 {
			t.Fatalf("address %v still counts %d subscribers", a.addr, a.subs.Load())
		}
	}
	h.checkNoLeaks()
}
