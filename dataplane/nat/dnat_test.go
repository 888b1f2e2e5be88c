package nat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
)

func forwardConfig() Config {
	c := testConfig()
	c.PortForwards = []PortForward{
		// On the pool address: the port must never be allocated dynamically.
		{Proto: TCP, Outside: netip.MustParseAddrPort("198.18.0.100:8080"), Inside: netip.MustParseAddrPort("10.0.0.50:80")},
		{Proto: UDP, Outside: netip.MustParseAddrPort("198.18.0.100:5353"), Inside: netip.MustParseAddrPort("10.0.0.51:5353")},
		// On an address of its own.
		{Proto: TCP, Outside: netip.MustParseAddrPort("198.18.0.200:22"), Inside: netip.MustParseAddrPort("10.0.0.52:22")},
	}
	c.StaticMappings = []StaticMapping{{Inside: netip.MustParseAddr("10.0.0.60"), Outside: netip.MustParseAddr("198.18.0.160")}}
	return c
}

func TestPortForwardNewInboundAndReturn(t *testing.T) {
	h := newHarness(t, forwardConfig())
	in := eps(h.one(Outside, tcp("198.18.0.2", 40000, "198.18.0.100", 8080, "S"), Inside))
	if in.dst != "10.0.0.50" || in.dport != 80 || in.src != "198.18.0.2" || in.sport != 40000 {
		t.Fatalf("forwarded to %v", in)
	}
	back := eps(h.one(Inside, tcp("10.0.0.50", 80, "198.18.0.2", 40000, "SA"), Outside))
	if back.src != "198.18.0.100" || back.sport != 8080 {
		t.Fatalf("reply left as %v", back)
	}
	// A second client gets its own session through the same rule.
	in2 := eps(h.one(Outside, tcp("198.18.0.3", 40001, "198.18.0.100", 8080, "S"), Inside))
	if in2.dst != "10.0.0.50" || in2.dport != 80 {
		t.Fatalf("second client forwarded to %v", in2)
	}
	// The rule on its own address.
	ssh := eps(h.one(Outside, tcp("198.18.0.2", 50000, "198.18.0.200", 22, "S"), Inside))
	if ssh.dst != "10.0.0.52" || ssh.dport != 22 {
		t.Fatalf("ssh forwarded to %v", ssh)
	}
	// A port without a rule on the rule-only address is refused.
	h.none(Outside, tcp("198.18.0.2", 50000, "198.18.0.200", 23, "S"), drop.NoSession)
}

func TestPortForwardServerOpensFlowFromForwardedPort(t *testing.T) {
	h := newHarness(t, forwardConfig())
	e := eps(h.one(Inside, udp("10.0.0.51", 5353, "198.18.0.2", 5353), Outside))
	if e.src != "198.18.0.100" || e.sport != 5353 {
		t.Fatalf("forwarded server's own flow left as %v", e)
	}
}

func TestStaticPortsExcludedFromDynamicPool(t *testing.T) {
	c := forwardConfig()
	c.Ports[TCP] = PortRange{8079, 8081}
	h := newHarness(t, c)
	// Three ports, one of them forwarded: only two dynamic mappings fit,
	// even for an inside port equal to the forwarded one.
	got := map[uint16]bool{}
	for _, sport := range []uint16{8080, 8081} {
		e := eps(h.one(Inside, tcp("10.0.0.2", sport, "198.18.0.2", 80, "S"), Outside))
		if e.sport == 8080 {
			t.Fatal("forwarded port 8080 allocated dynamically")
		}
		got[e.sport] = true
	}
	h.none(Inside, tcp("10.0.0.2", 8082, "198.18.0.2", 80, "S"), drop.PortExhausted)
	// A new subscriber finds no address with a free port.
	h.none(Inside, tcp("10.0.0.9", 8080, "198.18.0.2", 80, "S"), drop.AddressExhausted)
	if len(got) != 2 {
		t.Fatalf("ports %v", got)
	}
}

func TestStaticMappingOneToOne(t *testing.T) {
	h := newHarness(t, forwardConfig())
	// Outbound keeps ports and uses the static address.
	e := eps(h.one(Inside, udp("10.0.0.60", 1111, "198.18.0.2", 9), Outside))
	if e.src != "198.18.0.160" || e.sport != 1111 {
		t.Fatalf("static host left as %v", e)
	}
	// New inbound connections on any port reach it.
	in := eps(h.one(Outside, tcp("198.18.0.9", 3333, "198.18.0.160", 443, "S"), Inside))
	if in.dst != "10.0.0.60" || in.dport != 443 {
		t.Fatalf("inbound to static address reached %v", in)
	}
	// So does an echo request, and the reply goes back out.
	req := eps(h.one(Outside, echo("198.18.0.9", "198.18.0.160", 99, false), Inside))
	if req.dst != "10.0.0.60" || req.icmpID != 99 {
		t.Fatalf("echo to static address reached %v", req)
	}
	rep := eps(h.one(Inside, echo("10.0.0.60", "198.18.0.9", 99, true), Outside))
	if rep.src != "198.18.0.160" || rep.icmpID != 99 {
		t.Fatalf("echo reply left as %v", rep)
	}
}

func TestConfigSwapKeepsSessions(t *testing.T) {
	h := newHarness(t, testConfig())
	out := h.establish()
	// Replace the pool entirely and change timeouts.
	c := poolConfig("198.18.2.0/30")
	c.Timeouts.UDP = 10 * time.Minute
	gen := h.eng.Snapshot().Generation
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	if h.eng.Snapshot().Generation != gen+1 {
		t.Fatal("generation did not advance")
	}
	// The established session still translates both ways, with its old
	// external address, which stays public while it drains.
	if !h.eng.Snapshot().isPublic([4]byte{198, 18, 0, 100}) {
		t.Fatal("draining address no longer public")
	}
	e := eps(h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "A"), Outside))
	if e.src != out.src || e.sport != out.sport {
		t.Fatalf("after reload the session left as %v, before as %v", e, out)
	}
	h.one(Outside, tcp("198.18.0.2", 80, out.src, out.sport, "A"), Inside)
	// New subscribers use the new pool.
	n := eps(h.one(Inside, udp("10.0.0.77", 1, "198.18.0.2", 9), Outside))
	if p := netip.MustParseAddr(n.src); !netip.MustParsePrefix("198.18.2.0/30").Contains(p) {
		t.Fatalf("new subscriber got %s after the pool changed", n.src)
	}
	// Once its mappings expire, the old address is no longer answered for.
	h.clock.Advance(3 * time.Hour)
	h.housekeep()
	h.clock.Advance(3 * time.Minute)
	h.housekeep()
	if h.eng.Snapshot().isPublic([4]byte{198, 18, 0, 100}) {
		t.Fatal("drained address still public")
	}
}

func TestApplyConfigInvalidLeavesOldConfig(t *testing.T) {
	h := newHarness(t, testConfig())
	bad := testConfig()
	bad.InsidePrefixes = nil
	bad.Timeouts.UDP = time.Second
	err := h.eng.ApplyConfig(bad)
	if err == nil {
		t.Fatal("invalid config applied")
	}
	for _, field := range []string{"inside_prefixes", "timeouts.udp"} {
		if !contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	if h.eng.Snapshot().Generation != 2 { // New + SetLinks
		t.Fatalf("generation %d after a refused change", h.eng.Snapshot().Generation)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestConfigValidate(t *testing.T) {
	type mod func(*Config)
	cases := map[string]mod{
		"inside_prefixes[0]":       func(c *Config) { c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")} },
		"pools[0].addresses[0]":    func(c *Config) { c.Pools[0].Addresses = []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")} },
		"pools[1].name":            func(c *Config) { c.Pools = append(c.Pools, c.Pools[0]) },
		"ports.tcp":                func(c *Config) { c.Ports[TCP] = PortRange{2000, 1000} },
		"timeouts.tcp_established": func(c *Config) { c.Timeouts.TCPEstablished = time.Hour },
		"timeouts.icmp":            func(c *Config) { c.Timeouts.ICMP = 10 * time.Second },
		"limits.max_sessions":      func(c *Config) { c.Limits.MaxSessions = 0 },
		"static_mappings[0].inside": func(c *Config) {
			c.StaticMappings = []StaticMapping{{Inside: netip.MustParseAddr("192.0.2.1"), Outside: netip.MustParseAddr("198.18.9.9")}}
		},
		"static_mappings[0].outside": func(c *Config) {
			c.StaticMappings = []StaticMapping{{Inside: netip.MustParseAddr("10.1.1.1"), Outside: netip.MustParseAddr("198.18.0.100")}}
		},
		"port_forwards[1]": func(c *Config) {
			f := PortForward{Proto: TCP, Outside: netip.MustParseAddrPort("198.18.0.100:80"), Inside: netip.MustParseAddrPort("10.0.0.5:80")}
			c.PortForwards = []PortForward{f, f}
		},
		"port_forwards[0].proto": func(c *Config) {
			c.PortForwards = []PortForward{{Proto: ICMP, Outside: netip.MustParseAddrPort("198.18.0.100:80"), Inside: netip.MustParseAddrPort("10.0.0.5:80")}}
		},
	}
	for field, m := range cases {
		c := testConfig()
		m(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: invalid config validated", field)
			continue
		}
		if !contains(err.Error(), field+":") {
			t.Errorf("%s: error %q does not name the field", field, err)
		}
	}
	c := testConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
}

// TestForwardAddedOnBoundPort: a port forward added on the port of a live
// endpoint-independent mapping shares the port, which then no longer names
// the mapping (portSet.share): new remotes reach the forward's server, the
// mapping's sessions and its port go on. Removing the rule leaves the
// mapping its port, unnamed (docs/engineering.md, "The port table as the
// bindings' external index"): a remote it has not talked to is refused
// until it ends. When everything has ended, no session, mapping or port
// is left.
func TestForwardAddedOnBoundPort(t *testing.T) {
	c := testConfig()
	c.Filtering[UDP] = FilterEndpointIndependent
	h := newHarness(t, c)
	out := eps(h.one(Inside, udp("10.0.0.9", 5000, "198.18.0.3", 53), Outside))
	// A new remote reaches the mapping (RFC 4787 REQ-8, endpoint-
	// independent filtering): found from outside through its port.
	if e := eps(h.one(Outside, udp("198.18.0.4", 1000, out.src, out.sport), Inside)); e.dst != "10.0.0.9" || e.dport != 5000 {
		t.Fatalf("a new remote reached %v, want the mapping's 10.0.0.9:5000", e)
	}
	fc := c
	fc.PortForwards = []PortForward{{Proto: UDP, Outside: netip.AddrPortFrom(netip.MustParseAddr(out.src), out.sport), Inside: netip.MustParseAddrPort("10.0.0.77:7000")}}
	if err := h.eng.ApplyConfig(fc); err != nil {
		t.Fatal(err)
	}
	if e := eps(h.one(Outside, udp("198.18.0.5", 1000, out.src, out.sport), Inside)); e.dst != "10.0.0.77" || e.dport != 7000 {
		t.Fatalf("a new remote reached %v, want the forward's 10.0.0.77:7000", e)
	}
	if e := eps(h.one(Outside, udp("198.18.0.3", 53, out.src, out.sport), Inside)); e.dst != "10.0.0.9" || e.dport != 5000 {
		t.Fatalf("the mapping's session went to %v", e)
	}
	if e := eps(h.one(Inside, udp("10.0.0.9", 5000, "198.18.0.6", 53), Outside)); e.src != out.src || e.sport != out.sport {
		t.Fatalf("the mapping's new session left as %v, want %s:%d", e, out.src, out.sport)
	}
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	if e := eps(h.one(Inside, udp("10.0.0.9", 5000, "198.18.0.3", 53), Outside)); e.src != out.src || e.sport != out.sport {
		t.Fatalf("after the rule's removal the mapping left as %v", e)
	}
	h.none(Outside, udp("198.18.0.7", 1000, out.src, out.sport), drop.NoSession)
	h.eng.FlushSessions(SessionFilter{})
	h.clock.Advance(5 * time.Minute) // past the hold-down
	h.housekeep()
	if n, m, p := h.eng.sessions.Len(), h.eng.bindings.Len(), h.eng.portTab.Len(); n+m+p != 0 {
		t.Fatalf("left: %d sessions, %d mappings, %d ports", n, m, p)
	}
}

// TestSmallRangeFillsEveryPort fills a range of eight ports, one of them
// forwarded, with new mappings whose inside ports are out of the range, so
// that each takes a random candidate: as the range fills, most candidates
// are taken and the claim falls back to the candidate's pair
// (portSet.claimBeside) or to claimRandom. Every free port must be handed
// out once, the forwarded one never, and the mapping after the last gets
// port_exhausted. The range starts at an odd port, so that its first and
// last ports have no pair in it (pairs are ports 2k and 2k+1). Thirty
// engines, each with its own random stream.
func TestSmallRangeFillsEveryPort(t *testing.T) {
	for run := 0; run < 30; run++ {
		c := forwardConfig()
		c.Ports[TCP] = PortRange{8077, 8084}
		h := newHarness(t, c)
		got := map[uint16]bool{}
		for i := uint16(0); i < 7; i++ {
			e := eps(h.one(Inside, tcp("10.0.0.2", 20000+i, "198.18.0.2", 80, "S"), Outside))
			if e.sport < 8077 || e.sport > 8084 || e.sport == 8080 || got[e.sport] {
				t.Fatalf("run %d: mapping %d got port %d (have %v)", run, i, e.sport, got)
			}
			got[e.sport] = true
		}
		h.none(Inside, tcp("10.0.0.2", 20007, "198.18.0.2", 80, "S"), drop.PortExhausted)
	}
}
