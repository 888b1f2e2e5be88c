package nat

import (
	"fmt"
	"net/netip"
	"sort"
	"testing"

	"github.com/xnat/xnat/dataplane/drop"
)

func poolConfig(prefix string) Config {
	c := testConfig()
	c.Pools = []Pool{{Name: "main", Addresses: []netip.Prefix{netip.MustParsePrefix(prefix)}}}
	return c
}

func TestRFC4787_REQ1_EndpointIndependentMapping(t *testing.T) {
	h := newHarness(t, testConfig())
	a := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside))
	b := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.3", 8000), Outside))
	if a.src != b.src || a.sport != b.sport {
		t.Fatalf("same inside endpoint mapped to %s:%d and %s:%d", a.src, a.sport, b.src, b.sport)
	}
	// RFC 5382 REQ-1: the same for TCP.
	c := eps(h.one(Inside, tcp("10.0.0.2", 6000, "198.18.0.2", 80, "S"), Outside))
	d := eps(h.one(Inside, tcp("10.0.0.2", 6000, "198.18.0.3", 443, "S"), Outside))
	if c.src != d.src || c.sport != d.sport {
		t.Fatalf("RFC 5382 REQ-1: TCP endpoint mapped to %s:%d and %s:%d", c.src, c.sport, d.src, d.sport)
	}
}

func TestRFC4787_REQ2_RFC6888_REQ2_PairedPooling(t *testing.T) {
	h := newHarness(t, poolConfig("198.18.1.0/28"))
	used := map[string]bool{}
	for host := 2; host < 40; host++ {
		src := fmt.Sprintf("10.0.1.%d", host)
		var addrs []string
		addrs = append(addrs, eps(h.one(Inside, udp(src, 1000+uint16(host), "198.18.0.2", 7000), Outside)).src)
		addrs = append(addrs, eps(h.one(Inside, tcp(src, 2000, "198.18.0.3", 80, "S"), Outside)).src)
		addrs = append(addrs, eps(h.one(Inside, echo(src, "198.18.0.4", 77, false), Outside)).src)
		addrs = append(addrs, eps(h.one(Inside, udp(src, 3000, "198.18.0.9", 9), Outside)).src)
		for _, a := range addrs[1:] {
			if a != addrs[0] {
				t.Fatalf("subscriber %s got addresses %v: not paired", src, addrs)
			}
		}
		used[addrs[0]] = true
	}
	if len(used) < 4 {
		t.Fatalf("38 subscribers used only %d of 16 pool addresses", len(used))
	}
}

func TestRFC4787_REQ3_NoPortOverloading(t *testing.T) {
	h := newHarness(t, testConfig())
	seen := map[uint16]string{}
	for host := 2; host < 50; host++ {
		src := fmt.Sprintf("10.0.0.%d", host)
		e := eps(h.one(Inside, udp(src, 4444, "198.18.0.2", 7000), Outside))
		if prev, ok := seen[e.sport]; ok {
			t.Fatalf("external port %d given to %s and %s", e.sport, prev, src)
		}
		seen[e.sport] = src
	}
	// RFC 5382 REQ-7: the same for TCP.
	tseen := map[uint16]bool{}
	for host := 2; host < 50; host++ {
		e := eps(h.one(Inside, tcp(fmt.Sprintf("10.0.0.%d", host), 4444, "198.18.0.2", 80, "S"), Outside))
		if tseen[e.sport] {
			t.Fatalf("RFC 5382 REQ-7: TCP port %d overloaded", e.sport)
		}
		tseen[e.sport] = true
	}
}

func TestPortPreservation(t *testing.T) {
	onlyIn(t, "blocks and deterministic ranges never preserve ports", AllocDynamic)
	h := newHarness(t, testConfig())
	if e := eps(h.one(Inside, udp("10.0.0.2", 33333, "198.18.0.2", 7000), Outside)); e.sport != 33333 {
		t.Fatalf("free source port 33333 mapped to %d", e.sport)
	}
	if e := eps(h.one(Inside, udp("10.0.0.3", 33333, "198.18.0.2", 7000), Outside)); e.sport == 33333 {
		t.Fatal("port 33333 given twice")
	}
}

func TestRFC4787_REQ3a_WellKnownPorts(t *testing.T) {
	onlyIn(t, "blocks and deterministic ranges start at 1024, so well-known ports map into them (docs/cgn.md)", AllocDynamic)
	t.Run("low range configured", func(t *testing.T) {
		c := testConfig()
		c.Ports[UDP] = PortRange{1, 65535}
		h := newHarness(t, c)
		if e := eps(h.one(Inside, udp("10.0.0.2", 500, "198.18.0.2", 500), Outside)); e.sport != 500 {
			t.Fatalf("port 500 mapped to %d, want preserved", e.sport)
		}
		for host := 3; host < 30; host++ {
			e := eps(h.one(Inside, udp(fmt.Sprintf("10.0.0.%d", host), 500, "198.18.0.2", 500), Outside))
			if e.sport == 0 || e.sport > 1023 {
				t.Fatalf("well-known source port mapped to %d, outside 1-1023", e.sport)
			}
		}
		for host := 3; host < 30; host++ {
			e := eps(h.one(Inside, udp(fmt.Sprintf("10.0.0.%d", host), 5000, "198.18.0.2", 500), Outside))
			if e.sport < 1024 {
				t.Fatalf("REQ-3b: port 5000 mapped to well-known %d", e.sport)
			}
		}
	})
	t.Run("default range excludes them", func(t *testing.T) {
		c := testConfig()
		notes := c.Notices()
		if len(notes) == 0 {
			t.Fatal("no notice that well-known ports map above 1023")
		}
		h := newHarness(t, c)
		if e := eps(h.one(Inside, udp("10.0.0.2", 500, "198.18.0.2", 500), Outside)); e.sport < 1024 {
			t.Fatalf("port 500 mapped to %d with range 1024-65535", e.sport)
		}
	})
}

func TestRFC6056_RandomPortSelection(t *testing.T) {
	onlyIn(t, "a deterministic range is chosen by the function", AllocDynamic, AllocBlock)
	h := newHarness(t, testConfig())
	// Occupy port 7000 so that every later endpoint using it needs a
	// random port.
	var ports []int
	for host := 2; host < 200; host++ {
		e := eps(h.one(Inside, udp(fmt.Sprintf("10.0.%d.%d", host/250, host%250), 7000, "198.18.0.2", 9), Outside))
		if host > 2 {
			ports = append(ports, int(e.sport))
		}
	}
	sequential := 0
	for i := 1; i < len(ports); i++ {
		if d := ports[i] - ports[i-1]; d == 1 || d == -1 {
			sequential++
		}
	}
	if sequential > len(ports)/20 {
		t.Fatalf("%d of %d consecutive allocations are adjacent ports: sequential, not random", sequential, len(ports))
	}
	sort.Ints(ports)
	if spread := ports[len(ports)-1] - ports[0]; spread < 20000 {
		t.Fatalf("ports span only %d of 64512", spread)
	}
}

func TestPortSpacePartitionedPerWorker(t *testing.T) {
	onlyIn(t, "ports are dealt to workers only in dynamic mode", AllocDynamic)
	h := newHarnessN(t, testConfig(), 2)
	share := func(w int, p uint16) int { return int(p-1024) / chunkPorts % 2 }
	for wi, w := range h.workers {
		for i := 0; i < 30; i++ {
			f := udp(fmt.Sprintf("10.1.%d.%d", wi, i+2), 80, "198.18.0.2", 9) // port 80 < 1024: never preserved
			h.wports[wi][Inside].Inject(f)
			w.Poll()
			for _, f := range h.wports[wi][Outside].Drain() {
				e := eps(verifyFrame(t, f))
				if share(wi, e.sport) != wi {
					t.Fatalf("worker %d allocated port %d from worker %d's share", wi, e.sport, share(wi, e.sport))
				}
			}
		}
	}
}

func TestAddressAndPortDependentMappingOverlap(t *testing.T) {
	onlyIn(t, "twelve subscribers share four ports, which blocks and ranges never do", AllocDynamic)
	c := testConfig()
	c.Mapping = AddressAndPortDependent
	for p := range c.Filtering {
		c.Filtering[p] = FilterAddressAndPortDependent
	}
	c.Ports[UDP] = PortRange{20000, 20003} // four ports
	h := newHarness(t, c)
	ports := map[uint16]int{}
	for i := 0; i < 12; i++ {
		// Different destinations: a port may serve several of them.
		f := udp(fmt.Sprintf("10.0.0.%d", 2+i), 30000, fmt.Sprintf("198.18.0.%d", 2+i), 9)
		e := eps(h.one(Inside, f, Outside))
		if e.sport < 20000 || e.sport > 20003 {
			t.Fatalf("port %d outside the range", e.sport)
		}
		ports[e.sport]++
	}
	if len(ports) != 4 {
		t.Fatalf("used %d of 4 ports: %v", len(ports), ports)
	}
	// Mapping depends on the destination: one inside endpoint, two
	// destinations, both translated, and each reply finds its way back.
	a := eps(h.one(Inside, udp("10.0.9.9", 1234, "198.18.0.50", 9), Outside))
	b := eps(h.one(Inside, udp("10.0.9.9", 1234, "198.18.0.51", 9), Outside))
	for _, x := range []endpoints{a, b} {
		back := eps(h.one(Outside, udp(x.dst, 9, x.src, x.sport), Inside))
		if back.dst != "10.0.9.9" || back.dport != 1234 {
			t.Fatalf("reply to %v reached %v", x, back)
		}
	}
}

func TestConfigValidateRejectsAPDMWithEIF(t *testing.T) {
	c := testConfig()
	c.Mapping = AddressAndPortDependent
	if err := c.Validate(); err == nil {
		t.Fatal("APDM with endpoint-independent filtering validated")
	}
}

func TestRFC4787_REQ8_RFC5382_REQ3_Filtering(t *testing.T) {
	cases := []struct {
		filter                  Filtering
		samePortOK, otherPortOK bool
		otherAddrOK             bool
	}{
		{FilterEndpointIndependent, true, true, true},
		{FilterAddressDependent, true, true, false},
		{FilterAddressAndPortDependent, true, false, false},
	}
	for _, tc := range cases {
		for _, proto := range []Proto{UDP, TCP} {
			t.Run(fmt.Sprintf("%v/%v", proto, tc.filter), func(t *testing.T) {
				c := testConfig()
				c.Filtering[proto] = tc.filter
				h := newHarness(t, c)
				mk := func(src string, sport uint16, dst string, dport uint16) []byte {
					if proto == UDP {
						return udp(src, sport, dst, dport)
					}
					return tcp(src, sport, dst, dport, "S")
				}
				out := eps(h.one(Inside, mk("10.0.0.2", 5000, "198.18.0.2", 7000), Outside))
				check := func(src string, sport uint16, ok bool) {
					t.Helper()
					f := mk(src, sport, out.src, out.sport)
					if ok {
						e := eps(h.one(Outside, f, Inside))
						if e.dst != "10.0.0.2" || e.dport != 5000 {
							t.Fatalf("admitted to %v", e)
						}
					} else {
						r := drop.Filtered
						h.none(Outside, f, r)
					}
				}
				check("198.18.0.2", 7000, tc.samePortOK)
				check("198.18.0.2", 7001, tc.otherPortOK)
				check("198.18.0.3", 7000, tc.otherAddrOK)
			})
		}
	}
}

func TestUnsolicitedTCPNonSYNRefused(t *testing.T) {
	h := newHarness(t, testConfig())
	out := eps(h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "S"), Outside))
	// EIF admits new connections to the mapping, but only a SYN opens one.
	h.none(Outside, tcp("198.18.0.7", 80, out.src, out.sport, "A"), drop.Filtered)
	h.one(Outside, tcp("198.18.0.7", 80, out.src, out.sport, "S"), Inside)
}
