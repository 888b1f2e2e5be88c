package nat

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// heapNow is the live heap after a full collection.
func heapNow() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// memConfig is a configuration with the pool prefix given, no other
// address. Addresses come from 198.19.0.0/16, outside the links'.
func memConfig(pool string) Config {
	c := testConfig()
	c.Pools = []Pool{{Name: "cgn", Addresses: []netip.Prefix{netip.MustParsePrefix(pool)}}}
	c.Limits.MaxSessions = 1 << 15
	return c
}

// poolAddressBytes measures the heap that one pool address costs: idle,
// and with ports of every protocol in use on it. It is the figure in
// docs/operations.md ("Memory per pool address"):
//
//	go test ./dataplane/nat/ -run TestMemoryPerPoolAddress -v
func poolAddressBytes(t testing.TB) (idle float64, busy float64) {
	h := newHarness(t, memConfig("198.19.0.1/32"))
	before := heapNow()
	if err := h.eng.ApplyConfig(memConfig("198.19.0.0/16")); err != nil {
		t.Fatal(err)
	}
	after := heapNow()
	idle = float64(after-before) / 65535 // one address was there before
	// 64 subscribers with 100 mappings each, on every protocol: the
	// ports' records live in the port table, preallocated with the
	// engine, so the heap must not move beyond the subscribers' events.
	before = heapNow()
	for host := 0; host < 64; host++ {
		src := fmt.Sprintf("10.0.9.%d", 2+host)
		for i := 0; i < 100; i++ {
			h.one(Inside, udp(src, uint16(2000+i), "198.18.0.2", 53), Outside)
			h.one(Inside, tcp(src, uint16(2000+i), "198.18.0.2", 80, "S"), Outside)
		}
	}
	after = heapNow()
	busy = float64(int64(after)-int64(before)) / 64
	runtime.KeepAlive(h)
	return idle, busy
}

// TestMemoryPerPoolAddress bounds what a pool address costs (issue 11,
// defect 5: 384 KiB per address, 6.1 GiB of heap for a /18). A /16 of
// public space must fit comfortably: here under 512 bytes per idle
// address, 32 MiB for the /16; ports in use cost no heap (their records
// are in the preallocated port table).
func TestMemoryPerPoolAddress(t *testing.T) {
	idle, busy := poolAddressBytes(t)
	t.Logf("heap per pool address: %.0f bytes idle; %.0f bytes more per address with 200 ports in use", idle, busy)
	if idle > 512 {
		t.Errorf("an idle pool address costs %.0f bytes of heap, want at most 512", idle)
	}
	if busy > 4096 {
		t.Errorf("200 ports in use cost %.0f bytes of heap per address, want at most 4096", busy)
	}
	h := newHarness(t, memConfig("198.19.0.1/32"))
	t.Logf("port table: %.0f bytes per port, %d ports", h.eng.portTab.BytesPerPort(), h.eng.portTab.Cap())
}

// TestReloadsDoNotGrowHeap applies 20 different /24 pools (issue 11,
// defect 5: the heap grew by 1.9 GiB): the addresses each reload removes
// have drained (nothing used them) and give their registry slots back.
func TestReloadsDoNotGrowHeap(t *testing.T) {
	h := newHarness(t, memConfig("198.19.0.0/24"))
	var base uint64
	for i := 0; i < 20; i++ {
		if err := h.eng.ApplyConfig(memConfig(fmt.Sprintf("198.19.%d.0/24", i))); err != nil {
			t.Fatal(err)
		}
		// Traffic on every pool, ended before the next reload.
		h.one(Inside, udp("10.0.0.2", uint16(3000+i), "198.18.0.2", 53), Outside)
		h.eng.FlushSessions(SessionFilter{})
		h.clock.Advance(5 * time.Minute)
		h.housekeep()
		if i == 1 {
			base = heapNow()
		}
	}
	grown := int64(heapNow()) - int64(base)
	if n := len(h.eng.addrIndex); n != 256 {
		t.Fatalf("%d addresses registered after 20 reloads, want the last /24's 256", n)
	}
	t.Logf("heap after 20 reloads: %+d bytes against the second", grown)
	if grown > 256<<10 {
		t.Fatalf("heap grew by %d bytes over 18 reloads of a /24", grown)
	}
}

// TestAddressIndex65535RoundTrips: a session that owns its port on the
// address in registry slot 65,535 names it as 65,536 in its user word
// (and every field reads back through its accessor);
// 16 bits lost it into the worker's bits (issue 11, defect 5).
func TestAddressIndex65535RoundTrips(t *testing.T) {
	c0 := claim{hasBinding: true, hasSub: true, hasPerm: true, hasOwn: true, ownAddr: 65535}
	c0.binding.ID, c0.sub.ID, c0.perm.ID = 0, 1, 2
	u := sessionWords(&c0, 200)
	if got, ok := u.ownAddr(); !ok || got != 65535 {
		t.Fatalf("own address %d (%v) after packing, want 65535", got, ok)
	}
	if w := u.worker(); w != 200 {
		t.Fatalf("worker %d after packing, want 200", w)
	}
	if b, ok := u.binding(); !ok || b != 0 {
		t.Fatalf("binding %d (%v) after packing, want 0", b, ok)
	}
	if s, ok := u.subscriber(); !ok || s != 1 {
		t.Fatalf("subscriber %d (%v) after packing, want 1", s, ok)
	}
	if p, ok := u.perm(); !ok || p != 2 {
		t.Fatalf("permission %d (%v) after packing, want 2", p, ok)
	}
	// End to end: an address-and-port-dependent mapping on slot 65,535
	// returns its port when the session ends.
	c := memConfig("198.19.0.1/32")
	c.Mapping = AddressAndPortDependent
	for p := range c.Filtering {
		c.Filtering[p] = FilterAddressAndPortDependent
	}
	h := newHarness(t, c)
	h.eng.ctl.Lock()
	h.eng.nextSlot = 65535
	h.eng.ctl.Unlock()
	c.Pools[0].Addresses = []netip.Prefix{netip.MustParsePrefix("198.19.0.2/32")}
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	st := h.eng.addr(65535)
	if st == nil || st.addr != [4]byte{198, 19, 0, 2} {
		t.Fatalf("slot 65535 holds %v", st)
	}
	if e := eps(h.one(Inside, udp("10.0.0.2", 4000, "198.18.0.2", 53), Outside)); e.src != "198.19.0.2" {
		t.Fatalf("left from %s", e.src)
	}
	if st.ports[UDP].inUse.Load() != 1 {
		t.Fatal("no port in use on the address")
	}
	h.clock.Advance(time.Hour)
	h.housekeep()
	h.clock.Advance(time.Hour) // past hold-down
	h.housekeep()
	if n := st.ports[UDP].inUse.Load(); n != 0 {
		t.Fatalf("%d ports still in use after the session ended: the index did not round-trip", n)
	}
}

// TestZeroAllocNewMappings: creating mappings allocates nothing, frame by
// frame (testing.AllocsPerRun(1) is exact), on fresh ports all over the
// range, for new subscribers and for subscribers re-paired after their
// address left the pools: port records come from the preallocated port
// table, not the heap.
func TestZeroAllocNewMappings(t *testing.T) {
	h := newHarness(t, memConfig("198.19.0.0/24"))
	frames := make([][]byte, 0, 600)
	for i := 0; i < 300; i++ {
		// Source ports far apart, so that almost every mapping lands
		// on a port no earlier mapping was near.
		frames = append(frames, udp(fmt.Sprintf("10.0.%d.%d", 10+i/200, 2+i%200), uint16(1024+i*211), "198.18.0.2", 53))
	}
	run := func(phase string, fs [][]byte, pool string) {
		t.Helper()
		for i := 0; i+1 < len(fs); i += 2 {
			n := 0
			allocs := testing.AllocsPerRun(1, func() {
				h.ports[Inside].Inject(fs[i+n])
				n++
				h.w.Poll()
			})
			out := h.ports[Outside].Drain()
			if len(out) != 2 {
				t.Fatalf("%s: %d frames out for 2 new flows (drops %v)", phase, len(out), h.drops())
			}
			for _, f := range out {
				if src := eps(verifyFrame(t, f)).src; !netip.MustParsePrefix(pool).Contains(netip.MustParseAddr(src)) {
					t.Fatalf("%s: a new mapping left from %s, not from %s", phase, src, pool)
				}
			}
			if allocs != 0 {
				t.Fatalf("%s: %v allocations creating a mapping", phase, allocs)
			}
		}
	}
	run("new subscribers", frames, "198.19.0.0/24")
	if err := h.eng.ApplyConfig(memConfig("198.19.1.0/24")); err != nil {
		t.Fatal(err)
	}
	// The same subscribers, new flows: each is paired again.
	var again [][]byte
	for i := 0; i < 300; i++ {
		again = append(again, udp(fmt.Sprintf("10.0.%d.%d", 10+i/200, 2+i%200), uint16(1025+i*211), "198.18.0.2", 53))
	}
	run("re-paired subscribers", again, "198.19.1.0/24")
}

// TestMemoryPerSessionSlot bounds the engine's tables per session slot,
// from their layout: ten million sessions must fit in 2 GiB (issue 14),
// so at most 212 bytes a slot, beside natd's fixed 18 MiB or so.
// bench/memslot measures the same as resident memory. The tables must also
// live outside the Go heap, as the flowtables do (but under the race
// detector, which watches only the heap): a heap of a gigabyte of tables
// would let the collector wait for as much garbage again.
func TestMemoryPerSessionSlot(t *testing.T) {
	c := memConfig("198.19.0.1/32")
	c.Limits.MaxSessions = 1 << 20 // every table above flowtable's 4 MiB for mapping
	before := heapNow()
	e, err := New(c, Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	grown := int64(heapNow()) - int64(before)
	t.Logf("heap %+d bytes for an engine of %d sessions", grown, c.Limits.MaxSessions)
	if !raceEnabled && grown > 4<<20 {
		t.Errorf("an engine of %d sessions put %d bytes on the Go heap, want its tables outside it", c.Limits.MaxSessions, grown)
	}
	m := e.TableMemory()
	t.Logf("per session slot: sessions %.1f, bindings %.1f, permissions %.1f, ports %.1f (%.1f ports): %.1f bytes; subscribers %.1f per subscriber slot",
		m.Sessions, m.Bindings, m.Permissions, m.Ports, m.PortsPerSessionSlot, m.PerSessionSlot(), m.Subscribers)
	if got := m.PerSessionSlot(); got > 212 {
		t.Errorf("%.1f bytes per session slot: ten million sessions take %.2f GiB, want under 2", got, got*10e6/(1<<30))
	}
	runtime.KeepAlive(e)
}
