package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
)

// TestCountTablesAllocatedOnDemand: the default engine has neither count
// table, and pays nothing for them; an engine that filters address-
// dependently has the permissions table, one with a per-rule limit the
// rule table, sized by the sessions from outside.
func TestCountTablesAllocatedOnDemand(t *testing.T) {
	e := newTestEngine(t, testConfig(), Options{Workers: 1})
	if m := e.TableMemory(); m.Permissions != 0 || m.Rules != 0 || e.perms.Load() != nil || e.rules.Load() != nil {
		t.Fatalf("the default engine has count tables: %+v", m)
	}
	e = newTestEngine(t, adfConfig(), Options{Workers: 1})
	m := e.TableMemory()
	if p := e.perms.Load(); p == nil || p.Cap() != testConfig().Limits.MaxSessions || m.Permissions < 24 {
		t.Fatalf("an engine with address-dependent filtering: permissions table %v, %.1f B per session slot", p, m.Permissions)
	}
	if m.Rules != 0 || m.PerSessionSlot() != m.Sessions+m.Bindings+m.Permissions+m.Ports {
		t.Fatalf("the rule table counted without a per-rule limit: %+v", m)
	}
	c := forwardConfig()
	c.Limits.InboundSessions = 100
	c.Limits.InboundSessionsPerRule = 10
	e = newTestEngine(t, c, Options{Workers: 3})
	if r := e.rules.Load(); r == nil || r.Cap() != 100+3 || e.perms.Load() != nil {
		t.Fatalf("rule table %v, permissions table %v; want a rule table of 103 and no permissions", r, e.perms.Load())
	}
	// Unlimited sessions from outside: as many as the session table holds.
	c.Limits.InboundSessions = 0
	e = newTestEngine(t, c, Options{Workers: 2})
	if r := e.rules.Load(); r.Cap() != c.Limits.MaxSessions+1+2 {
		t.Fatalf("rule table of %d with no inbound limit, want %d", r.Cap(), c.Limits.MaxSessions+3)
	}
}

// TestCountTableNoMemory: a configuration whose count table the system
// has no memory for is refused with a clear error, and changes nothing.
func TestCountTableNoMemory(t *testing.T) {
	h := newHarness(t, testConfig())
	h.eng.memAvailable = func() (int64, bool) { return 4 << 10, true }
	err := h.eng.ApplyConfig(adfConfig())
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "filtering.udp" || !strings.Contains(err.Error(), "MiB available") {
		t.Fatalf("ApplyConfig with no memory for the permissions table: %v", err)
	}
	if h.eng.perms.Load() != nil || h.eng.Snapshot().Config.Filtering[UDP] != FilterEndpointIndependent {
		t.Fatal("the refused configuration changed the engine")
	}
	c := forwardConfig()
	c.Limits.InboundSessionsPerRule = 5
	if err := h.eng.ApplyConfig(c); !errors.As(err, &fe) || fe.Field != "limits.inbound_sessions_per_rule" {
		t.Fatalf("ApplyConfig with no memory for the rule table: %v", err)
	}
	h.eng.memAvailable = memAvailable
	if err := h.eng.ApplyConfig(adfConfig()); err != nil {
		t.Fatal(err)
	}
	if h.eng.perms.Load() == nil {
		t.Fatal("no permissions table once memory was there")
	}
}

// TestADFLiveReconfiguration turns address-dependent filtering on, off and
// on again while sessions live: the permissions table is allocated once,
// permissions are enforced while the filtering asks for them, and the
// references of sessions made under one configuration are released into
// the kept table whenever those sessions end.
func TestADFLiveReconfiguration(t *testing.T) {
	h := newHarness(t, testConfig())
	// Under endpoint-independent filtering: no table, anyone comes in.
	out := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside))
	h.one(Outside, udp("198.18.0.5", 9000, out.src, out.sport), Inside)
	if h.eng.perms.Load() != nil {
		t.Fatal("a permissions table under endpoint-independent filtering")
	}

	if err := h.eng.ApplyConfig(adfConfig()); err != nil {
		t.Fatal(err)
	}
	perms := h.eng.perms.Load()
	if perms == nil || h.eng.TableMemory().Permissions == 0 {
		t.Fatal("address-dependent filtering turned on without a permissions table")
	}
	// The mapping sends to two remotes: each is a permission.
	for _, r := range []string{"198.18.0.7", "198.18.0.20"} {
		if o := eps(h.one(Inside, udp("10.0.0.2", 5000, r, 7000), Outside)); o.src != out.src || o.sport != out.sport {
			t.Fatalf("the mapping moved: %v, was %v", o, out)
		}
	}
	if n := perms.Len(); n != 2 {
		t.Fatalf("%d permissions, want 2", n)
	}
	// A remote it sent to comes in from any port; one it never sent to
	// is filtered (RFC 4787 REQ-8). Sessions made before the filtering
	// changed gave no permission: 198.18.0.2 too must wait for the
	// mapping to send to it again.
	in := eps(h.one(Outside, udp("198.18.0.7", 9001, out.src, out.sport), Inside))
	if in.dst != "10.0.0.2" || in.dport != 5000 {
		t.Fatalf("admitted to %v", in)
	}
	h.none(Outside, udp("198.18.0.8", 9000, out.src, out.sport), drop.Filtered)
	h.none(Outside, udp("198.18.0.2", 7001, out.src, out.sport), drop.Filtered)
	if n := perms.Len(); n != 2 {
		t.Fatalf("%d permissions after an admitted remote, want still 2", n)
	}

	// Off again: anyone comes in, and the table stays.
	if err := h.eng.ApplyConfig(testConfig()); err != nil {
		t.Fatal(err)
	}
	h.one(Outside, udp("198.18.0.8", 9000, out.src, out.sport), Inside)
	if h.eng.perms.Load() != perms || h.eng.Snapshot().perms != perms {
		t.Fatal("turning the filtering off replaced the permissions table")
	}
	// A session made under address-dependent filtering ends now: its
	// reference goes back into the kept table.
	if n := h.eng.FlushSessions(SessionFilter{RemoteAddr: netip.MustParseAddr("198.18.0.20")}); n != 1 {
		t.Fatalf("flushed %d sessions to 198.18.0.20", n)
	}
	if n := perms.Len(); n != 1 {
		t.Fatalf("%d permissions after the last session to 198.18.0.20 ended, want 1", n)
	}

	// On again: the same table, and the permission still held by the
	// sessions with 198.18.0.7 admits it.
	if err := h.eng.ApplyConfig(adfConfig()); err != nil {
		t.Fatal(err)
	}
	if h.eng.perms.Load() != perms {
		t.Fatal("the permissions table was allocated twice")
	}
	h.one(Outside, udp("198.18.0.7", 9002, out.src, out.sport), Inside)
	h.none(Outside, udp("198.18.0.9", 9000, out.src, out.sport), drop.Filtered)
	h.none(Outside, udp("198.18.0.20", 7000, out.src, out.sport), drop.Filtered)
	h.expireAll() // every table empty, the kept permissions table included
	if n := perms.Len(); n != 0 {
		t.Fatalf("%d permissions after every session ended", n)
	}
	h.checkNoLeaks()
}

// TestADFFlipUnderTraffic: two workers open sessions both ways while the
// control plane flips UDP filtering between endpoint-independent and
// address-dependent. Whatever snapshot each burst sees, the permissions
// table is allocated once and every reference is given back (the race
// detector watches the table's publication).
func TestADFFlipUnderTraffic(t *testing.T) {
	h := newHarnessN(t, testConfig(), 2)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var in [2]atomic.Int64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				host, sport := fmt.Sprintf("10.0.%d.%d", 3+w, 2+i%32), uint16(2000+i%1000)
				remote := fmt.Sprintf("198.18.0.%d", 2+i%8)
				h.wports[w][Inside].Inject(udp(host, sport, remote, 7000))
				h.workers[w].Poll()
				for _, f := range h.wports[w][Outside].Drain() {
					o := eps(verifyFrame(t, f))
					// A permitted remote, and one the mapping never
					// sent to, reply from other ports.
					h.wports[w][Outside].Inject(udp(remote, 7001, o.src, o.sport))
					h.wports[w][Outside].Inject(udp("198.18.1.1", 7001, o.src, o.sport))
				}
				h.workers[w].Poll()
				for _, f := range h.wports[w][Inside].Drain() {
					verifyFrame(t, f)
					in[w].Add(1)
				}
			}
		}()
	}
	var first *countTable
	deadline := time.Now().Add(300 * time.Millisecond)
	for i := 0; time.Now().Before(deadline) || i < 20; i++ {
		c := testConfig()
		if i%2 == 0 {
			c = adfConfig()
		}
		if err := h.eng.ApplyConfig(c); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = h.eng.perms.Load()
		} else if h.eng.perms.Load() != first {
			t.Fatal("the permissions table was replaced")
		}
		h.clock.Advance(time.Second)
		h.housekeep()
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if in[0].Load()+in[1].Load() == 0 || h.drops()[drop.Filtered.String()] == 0 {
		t.Fatalf("%d packets came in, drops %v: the filtering never let one in or never filtered one", in[0].Load()+in[1].Load(), h.drops())
	}
	h.eng.FlushSessions(SessionFilter{})
	h.expireAll()
	if first.Len() != 0 {
		t.Fatalf("%d permissions left", first.Len())
	}
	h.checkNoLeaks()
}

// TestRuleCountsOwnTable: the per-rule limit is enforced and its counts
// given back, in the rule table, with and without the permissions table;
// a permission and a rule count never share a table.
func TestRuleCountsOwnTable(t *testing.T) {
	for _, adf := range []bool{false, true} {
		t.Run(fmt.Sprintf("adf=%v", adf), func(t *testing.T) {
			c := forwardConfig()
			c.Limits.InboundSessionsPerRule = 3
			if adf {
				c.Filtering[UDP] = FilterAddressDependent
			}
			h := newHarness(t, c)
			if (h.eng.perms.Load() != nil) != adf || h.eng.rules.Load() == nil {
				t.Fatalf("permissions table %v, rule table %v", h.eng.perms.Load(), h.eng.rules.Load())
			}
			syn := func(i int) []byte { return tcp("198.18.0.9", uint16(30000+i), "198.18.0.100", 8080, "S") }
			for i := 0; i < 3; i++ {
				h.one(Outside, syn(i), Inside)
			}
			h.none(Outside, syn(3), drop.RuleSessions)
			// A mapping with a permission beside the rule.
			out := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside))
			h.one(Outside, udp("198.18.0.2", 7001, out.src, out.sport), Inside)
			wantPerms := 0
			if adf {
				wantPerms = 1
			}
			if h.eng.ruleRecords() != 1 || h.eng.permRecords() != wantPerms {
				t.Fatalf("%d rule records, %d permissions; want 1, %d", h.eng.ruleRecords(), h.eng.permRecords(), wantPerms)
			}
			// One session of the rule ends: room for one more.
			if n := h.eng.FlushSessions(SessionFilter{RemoteAddr: netip.MustParseAddr("198.18.0.9"), InsidePort: 80}); n != 3 {
				t.Fatalf("flushed %d of the rule's sessions", n)
			}
			if h.eng.ruleRecords() != 0 {
				t.Fatalf("%d rule records after the rule's last session", h.eng.ruleRecords())
			}
			for i := 4; i < 7; i++ {
				h.one(Outside, syn(i), Inside)
			}
			h.none(Outside, syn(7), drop.RuleSessions)
			h.expireAll()
			h.checkNoLeaks()
		})
	}
}

// TestRuleTableLimitChanges: the per-rule limit turned on at run time
// allocates the rule table; a raise of limits.inbound_sessions beyond
// what that table holds is refused (a table cannot grow), one within it
// is taken, and turning the per-rule limit off keeps the table for the
// sessions that hold records in it.
func TestRuleTableLimitChanges(t *testing.T) {
	c := forwardConfig()
	c.Limits.InboundSessions = 8
	h := newHarness(t, c)
	h.one(Outside, tcp("198.18.0.9", 30000, "198.18.0.100", 8080, "S"), Inside) // no record: no limit yet
	if h.eng.rules.Load() != nil {
		t.Fatal("a rule table without a per-rule limit")
	}
	c.Limits.InboundSessionsPerRule = 2
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	rules := h.eng.rules.Load()
	if rules == nil || rules.Cap() != 8+1 {
		t.Fatalf("rule table %v, want 9 entries", rules)
	}
	// The session opened before the limit holds no record: the rule
	// counts only its new sessions.
	for i := 1; i < 3; i++ {
		h.one(Outside, tcp("198.18.0.9", uint16(30000+i), "198.18.0.100", 8080, "S"), Inside)
	}
	h.none(Outside, tcp("198.18.0.9", 30003, "198.18.0.100", 8080, "S"), drop.RuleSessions)
	c.Limits.InboundSessions = 9
	var fe *FieldError
	if err := h.eng.ApplyConfig(c); !errors.As(err, &fe) || fe.Field != "limits.inbound_sessions" {
		t.Fatalf("raising limits.inbound_sessions past the rule table: %v", err)
	}
	c.Limits.InboundSessions = 4
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	c.Limits.InboundSessionsPerRule = 0
	c.Limits.InboundSessions = 100
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	if h.eng.rules.Load() != rules || rules.Len() != 1 {
		t.Fatalf("rule table %p (was %p) with %d records after the limit was lifted", h.eng.rules.Load(), rules, rules.Len())
	}
	h.one(Outside, tcp("198.18.0.9", 30004, "198.18.0.100", 8080, "S"), Inside)
	h.expireAll()
	if rules.Len() != 0 {
		t.Fatalf("%d rule records after every session ended", rules.Len())
	}
	h.checkNoLeaks()
}

// TestZeroAllocCountTablePaths: new sessions that take a filtering
// permission or a rule count allocate nothing.
func TestZeroAllocCountTablePaths(t *testing.T) {
	cfg := forwardConfig()
	cfg.Filtering[UDP] = FilterAddressDependent
	cfg.Limits.InboundSessionsPerRule = 1 << 20
	r := newPerfRig(t, cfg)
	host, pub := [4]byte{10, 0, 0, 2}, [4]byte{198, 18, 0, 100}
	r.poll(Inside, 1, func(_ int, b []byte) int { return writeUDP(b, host, server, 5000, 7777, macInsideHost, macNATIn) })
	extPort := uint16(r.ports[Outside].last[34])<<8 | uint16(r.ports[Outside].last[35])
	n := 0
	runAllocCases(t, r, []allocCase{
		// A new remote each time: a new permission.
		{name: "adf-new-session-out", side: Inside, fill: func(_ int, b []byte) int {
			n++
			return writeUDP(b, host, [4]byte{198, 18, 1, byte(n)}, 5000, uint16(7000+n/256), macInsideHost, macNATIn)
		}},
		// The permitted remote from a new port: a new inbound session
		// on the permission.
		{name: "adf-new-session-in", side: Outside, fill: func(_ int, b []byte) int {
			n++
			return writeUDP(b, server, pub, uint16(10000+n), extPort, macGateway, macNATOut)
		}},
		{name: "adf-filtered", side: Outside, ran: DropCounter(drop.Filtered), fill: func(_ int, b []byte) int {
			return writeUDP(b, [4]byte{198, 18, 2, 1}, pub, 9, extPort, macGateway, macNATOut)
		}},
		// A client of the forwarded UDP service from a new port: a new
		// session counted on the rule.
		{name: "rule-new-session", side: Outside, fill: func(_ int, b []byte) int {
			n++
			return writeUDP(b, [4]byte{198, 18, 0, 9}, pub, uint16(20000+n), 5353, macGateway, macNATOut)
		}},
	})
}
