package nat

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
)

// Hostile input at the NAT layer (issue 11): packets an outsider or a
// subscriber can send to make the NAT hold state, answer errors with
// errors, speak for another subscriber, or give up its frames. This file:
// sessions opened from outside.

// noneOut injects frame on side and expects nothing out anywhere.
func (h *harness) noneOut(side Side, frame []byte) {
	h.t.Helper()
	h.inject(side, frame)
	if n := len(h.collect(Inside)) + len(h.collect(Outside)); n != 0 {
		h.t.Fatalf("want the frame dropped, but %d frames came out (drops %v)", n, h.drops())
	}
}

// Defect 2: only a SYN opens a TCP session from outside, on a port forward
// and on a static mapping too.
func TestInboundBareTCPToRulesOpensNoSession(t *testing.T) {
	h := newHarness(t, forwardConfig())
	targets := []struct {
		dst   string
		dport uint16
	}{
		{"198.18.0.100", 8080}, // port forward on the pool address
		{"198.18.0.200", 22},   // port forward on its own address
		{"198.18.0.160", 443},  // static mapping
	}
	flags := []string{"A", "R", "RA", "F", "FA", "SA", "SR", "SF"}
	before := h.counters().Drops(drop.Filtered)
	sent := 0
	for _, tg := range targets {
		for i := 0; i < 100; i++ {
			h.noneOut(Outside, tcp("198.18.0.9", uint16(20000+i), tg.dst, tg.dport, flags[i%len(flags)]))
			sent++
		}
	}
	if n := h.sessionCount(); n != 0 {
		t.Fatalf("%d bare non-SYN segments from outside created %d sessions", sent, n)
	}
	if got := h.counters().Drops(drop.Filtered) - before; got != uint64(sent) {
		t.Fatalf("%d of %d refused segments counted as filtered (drops %v)", got, sent, h.drops())
	}
	if h.eng.InboundSessions() != 0 {
		t.Fatalf("inbound count %d with no session", h.eng.InboundSessions())
	}
	// A SYN still opens a connection through each.
	for _, tg := range targets {
		h.one(Outside, tcp("198.18.0.9", 30000, tg.dst, tg.dport, "S"), Inside)
	}
	if n := h.sessionCount(); n != len(targets) {
		t.Fatalf("%d sessions after %d SYNs", n, len(targets))
	}
	h.checkNoLeaks()
}

// Defect 2: sessions opened from outside are bounded engine-wide and per
// rule, and the counts come back when the sessions end.
func TestInboundSessionLimits(t *testing.T) {
	c := forwardConfig()
	c.Limits.InboundSessions = 6
	c.Limits.InboundSessionsPerRule = 4
	h := newHarness(t, c)
	syn := func(i int, dst string, dport uint16) []byte {
		return tcp("198.18.0.9", uint16(20000+i), dst, dport, "S")
	}
	// One rule takes its 4, then is refused.
	for i := 0; i < 4; i++ {
		h.one(Outside, syn(i, "198.18.0.100", 8080), Inside)
	}
	h.none(Outside, syn(4, "198.18.0.100", 8080), drop.RuleSessions)
	// Another rule (the static mapping) still has room: until the global
	// limit.
	for i := 0; i < 2; i++ {
		h.one(Outside, syn(10+i, "198.18.0.160", 443), Inside)
	}
	h.none(Outside, syn(12, "198.18.0.160", 443), drop.InboundSessions)
	h.none(Outside, syn(13, "198.18.0.200", 22), drop.InboundSessions)
	if got := h.eng.InboundSessions(); got != 6 {
		t.Fatalf("inbound count %d, want 6", got)
	}
	// Sessions opened from inside are not inbound sessions.
	h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)
	if got := h.eng.InboundSessions(); got != 6 {
		t.Fatalf("an outbound session changed the inbound count to %d", got)
	}
	// The sessions end (operator flush of one rule's, expiry of the rest):
	// the counts and the rule records go with them.
	n := h.eng.FlushSessions(SessionFilter{OutsideAddr: netip.MustParseAddr("198.18.0.100"), OutsidePort: 8080})
	if n != 4 {
		t.Fatalf("flushed %d", n)
	}
	if got := h.eng.InboundSessions(); got != 2 {
		t.Fatalf("inbound count %d after flushing 4 of 6", got)
	}
	for i := 0; i < 4; i++ {
		h.one(Outside, syn(20+i, "198.18.0.100", 8080), Inside)
	}
	h.clock.Advance(5 * time.Minute)
	h.housekeep()
	if h.sessionCount() != 0 || h.eng.InboundSessions() != 0 || h.eng.ruleRecords() != 0 {
		t.Fatalf("after expiry: %d sessions, inbound count %d, %d rule records",
			h.sessionCount(), h.eng.InboundSessions(), h.eng.ruleRecords())
	}
	// A reload that lifts the per-rule limit applies to the next packet.
	c.Limits.InboundSessionsPerRule = 0
	c.Limits.InboundSessions = 0
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		h.one(Outside, syn(40+i, "198.18.0.100", 8080), Inside)
	}
	if got := h.eng.InboundSessions(); got != 10 {
		t.Fatalf("inbound count %d, want 10", got)
	}
	h.checkNoLeaks()
}

// floodInboundSYNs has both workers of h (newHarnessN(t, c, 2)) take SYNs
// from distinct sources in net.1-2.1-hosts to forwardConfig's forward and
// static mapping, until the returned stop is called; stop waits for the
// workers and returns how many SYNs were let inside in all.
func (h *harness) floodInboundSYNs(net string, hosts int) (stop func() int64) {
	var done atomic.Bool
	var wg sync.WaitGroup
	var opened atomic.Int64
	for wi := 0; wi < 2; wi++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, ps := h.workers[wi], h.wports[wi]
			for i := 0; !done.Load(); i++ {
				dst, dport := "198.18.0.100", uint16(8080)
				if i%2 == 1 {
					dst, dport = "198.18.0.160", 443
				}
				ps[Outside].Inject(tcp(fmt.Sprintf("%s.%d.%d", net, 1+wi, 1+i%hosts), uint16(1024+i%60000), dst, dport, "S"))
				w.Poll()
				opened.Add(int64(len(ps[Inside].Drain())))
				ps[Outside].Drain()
			}
		}()
	}
	return func() int64 {
		done.Store(true)
		wg.Wait()
		return opened.Load()
	}
}

// Defect 2, concurrently: two workers open sessions through the same rules
// while the control plane flushes them; the counts never pass their limits
// and return to zero with the last session.
func TestInboundSessionLimitsConcurrent(t *testing.T) {
	c := forwardConfig()
	c.Limits.InboundSessions = 80
	c.Limits.InboundSessionsPerRule = 50
	h := newHarnessN(t, c, 2)
	stop := h.floodInboundSYNs("198.18", 200)
	deadline := time.Now().Add(time.Second)
	flushes := 0
	for time.Now().Before(deadline) || flushes < 20 {
		if n := h.eng.InboundSessions(); n > 80 {
			t.Errorf("%d inbound sessions, limit 80", n)
		}
		if n := h.eng.sessions.Len(); n > 80 {
			t.Errorf("%d sessions, inbound limit 80", n)
		}
		if flushes%3 == 0 {
			h.eng.FlushSessions(SessionFilter{})
		}
		flushes++
		time.Sleep(time.Millisecond)
	}
	if opened := stop(); opened <= 80 {
		t.Fatalf("only %d sessions opened in all: the flushes did not give the counts back", opened)
	}
	h.eng.FlushSessions(SessionFilter{})
	if h.eng.InboundSessions() != 0 || h.eng.ruleRecords() != 0 || h.sessionCount() != 0 {
		t.Fatalf("after the last flush: inbound count %d, %d rule records, %d sessions",
			h.eng.InboundSessions(), h.eng.ruleRecords(), h.sessionCount())
	}
}
