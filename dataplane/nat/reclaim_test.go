package nat

import (
	"fmt"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
)

// checkInboundCount asserts that the engine's count of sessions opened from
// outside (Limits.InboundSessions) equals the live sessions marked
// stInbound: a count out of step with them would refuse or admit wrongly
// for ever.
func (h *harness) checkInboundCount() {
	h.t.Helper()
	live := 0
	var cursor uint32
	for {
		ss, next := h.eng.Sessions(SessionFilter{}, cursor, 1000)
		for _, s := range ss {
			if s.Inbound {
				live++
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if got := h.eng.InboundSessions(); got != live {
		h.t.Fatalf("inbound count %d, but %d live sessions opened from outside", got, live)
	}
}

// synFlood sends SYNs from spoofed sources in 198.19.0.0/16 to dst:dport
// until one is refused with want, the inside host answering every other one
// with a SYN-ACK that nobody acknowledges. It returns the sessions opened.
func (h *harness) synFlood(dst string, dport uint16, want drop.Reason) int {
	h.t.Helper()
	for i := 0; i < 10000; i++ {
		src, sport := fmt.Sprintf("198.19.%d.%d", i/250, 1+i%250), uint16(1024+i)
		h.inject(Outside, tcp(src, sport, dst, dport, "S"))
		in := h.collect(Inside)
		if len(in) == 0 {
			if got := h.counters().Drops(want); got == 0 {
				h.t.Fatalf("SYN %d dropped, but not as %v (drops %v)", i, want, h.drops())
			}
			return i
		}
		if i%2 == 0 {
			e := eps(in[0])
			h.one(Inside, tcp(e.dst, e.dport, src, sport, "SA"), Outside)
		}
	}
	h.t.Fatal("the flood was never refused")
	return 0
}

// established opens an inbound connection through the forward with the
// full three-way handshake.
func (h *harness) establishedIn(src string, sport uint16) {
	h.t.Helper()
	h.one(Outside, tcp(src, sport, "198.18.0.100", 8080, "S"), Inside)
	h.one(Inside, tcp("10.0.0.50", 80, src, sport, "SA"), Outside)
	h.one(Outside, tcp(src, sport, "198.18.0.100", 8080, "A"), Inside)
}

// Defect 2 (hostile outside traffic): a SYN flood from spoofed sources
// fills limits.inbound_sessions with embryonic sessions. Under that
// pressure the housekeeper reclaims those idle for EmbryonicGrace, never an
// established one, and a legitimate client's SYN then gets in.
func TestReclaimEmbryonicUnderPressure(t *testing.T) {
	c := forwardConfig()
	c.Limits.InboundSessions = 64
	h := newHarness(t, c)
	const est = 4
	for i := 0; i < est; i++ {
		h.establishedIn("198.18.0.2", uint16(40000+i))
	}
	flood := h.synFlood("198.18.0.100", 8080, drop.InboundSessions)
	if flood != 64-est {
		t.Fatalf("the flood opened %d sessions, want %d", flood, 64-est)
	}
	h.checkInboundCount()
	legit := tcp("198.18.0.9", 50000, "198.18.0.100", 8080, "S")
	h.none(Outside, legit, drop.InboundSessions)

	// Within the grace nothing is reclaimed.
	h.clock.Advance(EmbryonicGrace / 2)
	h.housekeep()
	if got := h.eng.ReclaimedSessions(); got != 0 {
		t.Fatalf("%d sessions reclaimed within the grace", got)
	}
	h.none(Outside, legit, drop.InboundSessions)

	// After it, every embryonic session goes, the established ones stay.
	h.clock.Advance(EmbryonicGrace)
	h.housekeep()
	if got := h.eng.ReclaimedSessions(); got != uint64(flood) {
		t.Fatalf("%d sessions reclaimed, want the flood's %d", got, flood)
	}
	if got := h.eng.SessionCounts().ReclaimedPressure; got != uint64(flood) {
		t.Fatalf("SessionCounts.ReclaimedPressure %d, want %d", got, flood)
	}
	if n := h.sessionCount(); n != est {
		t.Fatalf("%d sessions left, want the %d established", n, est)
	}
	h.checkInboundCount()
	ev := h.eng.DrainEvents(nil)
	pressure := 0
	for _, e := range ev {
		if e.Type == SessionDeleted && DeleteReason(e.Reason) == DeletedPressure {
			pressure++
		}
	}
	if pressure != flood {
		t.Fatalf("%d deletion events with reason DeletedPressure, want %d", pressure, flood)
	}
	// The established sessions still pass traffic.
	for i := 0; i < est; i++ {
		h.one(Outside, tcp("198.18.0.2", uint16(40000+i), "198.18.0.100", 8080, "A"), Inside)
	}

	// The legitimate client's SYN, and its retransmission, get in.
	h.one(Outside, legit, Inside)
	h.one(Outside, legit, Inside)
	h.one(Inside, tcp("10.0.0.50", 80, "198.18.0.9", 50000, "SA"), Outside)
	h.one(Outside, tcp("198.18.0.9", 50000, "198.18.0.100", 8080, "A"), Inside)
	// Acknowledged, it is established: no pressure reclaims it.
	h.synFlood("198.18.0.100", 8080, drop.InboundSessions)
	h.clock.Advance(10 * EmbryonicGrace)
	h.housekeep()
	if n := h.sessionCount(); n != est+1 {
		t.Fatalf("%d sessions after a second flood was reclaimed, want %d", n, est+1)
	}
	h.one(Outside, tcp("198.18.0.9", 50000, "198.18.0.100", 8080, "A"), Inside)
	h.checkInboundCount()
	h.checkNoLeaks()
}

// A rule at limits.inbound_sessions_per_rule is pressure too.
func TestReclaimEmbryonicPerRule(t *testing.T) {
	c := forwardConfig()
	c.Limits.InboundSessionsPerRule = 16
	h := newHarness(t, c)
	if n := h.synFlood("198.18.0.160", 443, drop.RuleSessions); n != 16 {
		t.Fatalf("the flood opened %d sessions through the static mapping, want 16", n)
	}
	h.clock.Advance(2 * EmbryonicGrace)
	h.housekeep()
	if got := h.eng.ReclaimedSessions(); got != 16 {
		t.Fatalf("%d sessions reclaimed, want 16", got)
	}
	h.one(Outside, tcp("198.18.0.9", 50000, "198.18.0.160", 443, "S"), Inside)
	h.checkInboundCount()
	if h.eng.ruleRecords() != 1 {
		t.Fatalf("%d rule records, want 1", h.eng.ruleRecords())
	}
}

// Without pressure nothing is reclaimed early (RFC 5382 REQ-5: the
// transitory idle timeout is at least 4 minutes), and an inbound session
// whose SYN-ACK was never acknowledged is transitory: it does not hold its
// slot for the 2 h established timeout.
func TestEmbryonicInboundWithoutPressure(t *testing.T) {
	c := forwardConfig()
	c.Limits.InboundSessions = 64
	h := newHarness(t, c)
	for i := 0; i < 10; i++ {
		src := fmt.Sprintf("198.19.0.%d", 1+i)
		h.one(Outside, tcp(src, 1024, "198.18.0.100", 8080, "S"), Inside)
		h.one(Inside, tcp("10.0.0.50", 80, src, 1024, "SA"), Outside)
	}
	h.establishedIn("198.18.0.2", 40000)
	h.clock.Advance(4*time.Minute - time.Second)
	h.housekeep()
	if n := h.sessionCount(); n != 11 || h.eng.ReclaimedSessions() != 0 {
		t.Fatalf("%d sessions, %d reclaimed, before the transitory timeout without pressure", n, h.eng.ReclaimedSessions())
	}
	h.one(Outside, tcp("198.18.0.2", 40000, "198.18.0.100", 8080, "A"), Inside)
	h.clock.Advance(2 * time.Minute)
	h.housekeep()
	if n := h.sessionCount(); n != 1 {
		t.Fatalf("%d sessions after the transitory timeout, want only the established one", n)
	}
	h.checkInboundCount()
}

// Two workers flood SYNs to the forward and the static mapping while the
// housekeeper reclaims under pressure and the clock runs: the inbound
// count stays within its limit, matches the live sessions once the workers
// stop, and returns to zero with the last session.
func TestReclaimEmbryonicConcurrent(t *testing.T) {
	c := forwardConfig()
	c.Limits.InboundSessions = 100
	h := newHarnessN(t, c, 2)
	stop := h.floodInboundSYNs("198.19", 250)
	deadline := time.Now().Add(time.Second)
	for rounds := 0; time.Now().Before(deadline) || rounds < 50 || h.eng.ReclaimedSessions() == 0; rounds++ {
		if n := h.eng.InboundSessions(); n > 100 {
			t.Errorf("%d inbound sessions, limit 100", n)
		}
		h.clock.Advance(EmbryonicGrace / 4)
		h.eng.Housekeep(1024)
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatal("nothing reclaimed in 30 s")
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	h.checkInboundCount()
	h.eng.FlushSessions(SessionFilter{})
	if h.eng.InboundSessions() != 0 || h.sessionCount() != 0 || h.eng.ruleRecords() != 0 {
		t.Fatalf("after the flush: inbound count %d, %d sessions, %d rule records",
			h.eng.InboundSessions(), h.sessionCount(), h.eng.ruleRecords())
	}
}

// A UDP flood from spoofed sources to a forward, and connections that are
// over, fill limits.inbound_sessions too. Under pressure the housekeeper
// reclaims the UDP sessions idle for IdleInboundGrace and the closed TCP
// sessions idle for EmbryonicGrace, never an established one or a UDP flow
// still in use, and a legitimate SYN then gets in (TestE2EHostileOutside:
// after a SYN and UDP flood, legitimate clients were refused for the UDP
// timeout).
func TestReclaimIdleUDPAndClosedTCPUnderPressure(t *testing.T) {
	c := forwardConfig()
	c.Limits.InboundSessions = 64
	h := newHarness(t, c)
	// Two established connections, and two that closed with FINs both
	// ways.
	for i := 0; i < 4; i++ {
		h.establishedIn("198.18.0.2", uint16(40000+i))
	}
	for i := 2; i < 4; i++ {
		sport := uint16(40000 + i)
		h.one(Outside, tcp("198.18.0.2", sport, "198.18.0.100", 8080, "FA"), Inside)
		h.one(Inside, tcp("10.0.0.50", 80, "198.18.0.2", sport, "FA"), Outside)
	}
	// A UDP flow that stays alive, and a flood that does not.
	live := udp("198.18.0.3", 7000, "198.18.0.100", 5353)
	h.one(Outside, live, Inside)
	flood := 0
	for i := 0; ; i++ {
		f := udp(fmt.Sprintf("198.19.%d.%d", i/250, 1+i%250), uint16(1024+i), "198.18.0.100", 5353)
		h.inject(Outside, f)
		if len(h.collect(Inside)) == 0 {
			break
		}
		flood++
	}
	if flood != 64-5 {
		t.Fatalf("the UDP flood opened %d sessions, want %d", flood, 64-5)
	}
	h.checkInboundCount()
	legit := tcp("198.18.0.9", 50000, "198.18.0.100", 8080, "S")
	h.none(Outside, legit, drop.InboundSessions)

	// After EmbryonicGrace the closed connections go; the UDP sessions
	// have not been idle long enough.
	h.clock.Advance(EmbryonicGrace + time.Millisecond)
	h.one(Outside, live, Inside)
	h.housekeep()
	if got := h.eng.ReclaimedSessions(); got != 2 {
		t.Fatalf("%d sessions reclaimed after %v, want the 2 closed connections", got, EmbryonicGrace)
	}
	// After IdleInboundGrace the flood's sessions go too; the live flow
	// and the established connections stay.
	for d := time.Duration(0); d < IdleInboundGrace; d += time.Second {
		h.clock.Advance(time.Second)
		h.one(Outside, live, Inside)
	}
	h.housekeep()
	if got := h.eng.ReclaimedSessions(); got != uint64(2+flood) {
		t.Fatalf("%d sessions reclaimed, want %d", got, 2+flood)
	}
	if n := h.sessionCount(); n != 3 {
		t.Fatalf("%d sessions left, want 2 established and the live UDP flow", n)
	}
	h.checkInboundCount()
	h.one(Outside, legit, Inside)
	h.checkNoLeaks()
}
