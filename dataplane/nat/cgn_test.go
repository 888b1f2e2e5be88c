package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
)

func cgnConfig(g CGN, pools ...string) Config {
	c := DefaultConfig()
	c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/22")}
	var ps []netip.Prefix
	for _, p := range pools {
		ps = append(ps, netip.MustParsePrefix(p))
	}
	c.Pools = []Pool{{Name: "cgn", Addresses: ps}}
	c.Limits.MaxSessions = 4096
	c.Limits.MaxSubscribers = 1024
	c.CGN = g
	return c
}

func eventsOf(evs []Event, t EventType) []Event {
	var out []Event
	for _, e := range evs {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

// TestCGNBlockAllocateExhaustRelease: a subscriber gets a block when it
// first needs a port, another when that one is full, up to max_blocks;
// ports inside a block are random; exhaustion is an event and a counted
// drop; blocks are freed after the port hold-down once their last session
// ends; only block events are logged.
func TestCGNBlockAllocateExhaustRelease(t *testing.T) {
	h := newHarness(t, cgnConfig(CGN{PortAllocation: AllocBlock, BlockSize: 64, MaxBlocks: 2}, "198.18.0.100/32"))
	var ports []uint16
	blocks := map[uint16]bool{}
	for i := 0; i < 128; i++ {
		e := eps(h.one(Inside, udp("10.0.0.2", uint16(10000+i), "198.18.0.2", 53), Outside))
		if e.src != "198.18.0.100" || e.sport < 1024 {
			t.Fatalf("flow %d left from %s:%d", i, e.src, e.sport)
		}
		ports = append(ports, e.sport)
		blocks[(e.sport-1024)/64] = true
	}
	if len(blocks) != 2 {
		t.Fatalf("128 ports in %d blocks of 64, want 2", len(blocks))
	}
	seq := 0
	for i := 1; i < 64; i++ {
		if ports[i] == ports[i-1]+1 {
			seq++
		}
	}
	if seq > 16 {
		t.Fatalf("%d of 63 ports follow their predecessor: not random inside the block", seq)
	}
	h.none(Inside, udp("10.0.0.2", 20000, "198.18.0.2", 53), drop.PortExhausted)
	// Another subscriber's ports never fall in the first one's blocks.
	for i := 0; i < 10; i++ {
		e := eps(h.one(Inside, udp("10.0.0.3", uint16(10000+i), "198.18.0.2", 53), Outside))
		if blocks[(e.sport-1024)/64] {
			t.Fatalf("10.0.0.3 got port %d in a block of 10.0.0.2", e.sport)
		}
	}
	evs := h.eng.DrainEvents(nil)
	alloc := eventsOf(evs, BlockAllocated)
	if len(alloc) != 3 {
		t.Fatalf("%d block_allocated events, want 3: %+v", len(alloc), evs)
	}
	for _, ev := range alloc[:2] {
		if netip.AddrFrom4(ev.InsideAddr).String() != "10.0.0.2" || netip.AddrFrom4(ev.OutsideAddr).String() != "198.18.0.100" ||
			ev.PortEnd != ev.OutsidePort+63 || (ev.OutsidePort-1024)%64 != 0 || !blocks[(ev.OutsidePort-1024)/64] {
			t.Fatalf("block event %+v does not describe a block of 10.0.0.2", ev)
		}
		if ev.UnixNano != h.clock.Now().UnixNano() {
			t.Fatalf("block event at %d, want the batch clock %d", ev.UnixNano, h.clock.Now().UnixNano())
		}
	}
	if n := len(eventsOf(evs, PortsExhausted)); n != 1 {
		t.Fatalf("%d ports_exhausted events, want 1", n)
	}
	for _, ty := range []EventType{SessionCreated, AddressBound} {
		if n := len(eventsOf(evs, ty)); n != 0 {
			t.Fatalf("%d %v events in block mode without log_sessions", n, ty)
		}
	}
	// Lookups: by outside port and by subscriber.
	hs := h.eng.LookupOutside(netip.MustParseAddr("198.18.0.100"), ports[5], nil)
	if len(hs) == 0 || hs[0].Source != "block" || hs[0].Subscriber.String() != "10.0.0.2" || hs[0].Held {
		t.Fatalf("lookup outside %d: %+v", ports[5], hs)
	}
	if v, ok := h.eng.LookupInside(netip.MustParseAddr("10.0.0.2")); !ok || len(v.Ranges) != 2 || v.Sessions != 128 {
		t.Fatalf("lookup inside: %+v", v)
	}
	if s := h.eng.CGNStats(); s.BlocksInUse != 3 || s.BlocksAllocated != 3 {
		t.Fatalf("stats %+v", s)
	}
	// Sessions expire; blocks stay held for the hold-down, then go.
	h.clock.Advance(301 * time.Second)
	h.housekeep()
	if n := h.sessionCount(); n != 0 {
		t.Fatalf("%d sessions after the UDP timeout", n)
	}
	if n := len(eventsOf(h.eng.DrainEvents(nil), BlockReleased)); n != 0 {
		t.Fatalf("%d blocks released before the hold-down ended", n)
	}
	if hs := h.eng.LookupOutside(netip.MustParseAddr("198.18.0.100"), ports[5], nil); len(hs) != 1 || !hs[0].Held || hs[0].Subscriber.String() != "10.0.0.2" {
		t.Fatalf("lookup of a held block: %+v", hs)
	}
	h.clock.Advance(121 * time.Second)
	h.housekeep()
	rel := eventsOf(h.eng.DrainEvents(nil), BlockReleased)
	if len(rel) != 3 {
		t.Fatalf("%d block_released events after the hold-down, want 3", len(rel))
	}
	for _, ev := range rel {
		if ev.UnixNano != h.clock.Now().UnixNano() || ev.PortEnd != ev.OutsidePort+63 {
			t.Fatalf("release event %+v", ev)
		}
	}
	if s := h.eng.CGNStats(); s.BlocksInUse != 0 || h.eng.cgn.blocks.Len() != 0 || s.BlocksFreed != 3 {
		t.Fatalf("after release: stats %+v, %d block records", s, h.eng.cgn.blocks.Len())
	}
	if hs := h.eng.LookupOutside(netip.MustParseAddr("198.18.0.100"), ports[5], nil); len(hs) != 0 {
		t.Fatalf("lookup of a freed block: %+v", hs)
	}
}

// TestCGNBlocksExhaustAddress: when an address has no free block left,
// new subscribers are refused with a counted drop.
func TestCGNBlocksExhaustAddress(t *testing.T) {
	h := newHarness(t, cgnConfig(CGN{PortAllocation: AllocBlock, BlockSize: 16128, MaxBlocks: 1}, "198.18.0.100/32"))
	// 64512 / 16128 = 4 blocks on the address.
	for i := 0; i < 4; i++ {
		h.one(Inside, udp(fmt.Sprintf("10.0.0.%d", 10+i), 5000, "198.18.0.2", 53), Outside)
	}
	h.none(Inside, udp("10.0.0.20", 5000, "198.18.0.2", 53), drop.PortExhausted)
	if n := len(eventsOf(h.eng.DrainEvents(nil), BlockAllocated)); n != 4 {
		t.Fatalf("%d blocks allocated, want 4", n)
	}
}

// TestCGNDeterministicFunction checks the function and its inverse over
// whole prefixes: every subscriber has one range, ranges never overlap,
// the order is the documented one, and the inverse of every port of a
// range is its subscriber.
func TestCGNDeterministicFunction(t *testing.T) {
	c := cgnConfig(CGN{PortAllocation: AllocDeterministic, PortsPerSubscriber: 2000}, "198.18.0.0/27", "198.18.1.0/29")
	c.InsidePrefixes = append(c.InsidePrefixes, netip.MustParsePrefix("10.1.0.0/24"))
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := NewDetMap(&c)
	if err != nil {
		t.Fatal(err)
	}
	// 1024 + 256 subscribers, K = 64512/2000 = 32 per address: 40 addresses.
	if m.Subscribers() != 1280 || m.PerAddress() != 32 || m.Addresses() != 40 {
		t.Fatalf("subscribers %d per address %d addresses %d", m.Subscribers(), m.PerAddress(), m.Addresses())
	}
	type slot struct {
		a  netip.Addr
		lo uint16
	}
	seen := map[slot]netip.Addr{}
	n := 0
	for e := range m.All() {
		ext, r, ok := m.Forward(e.Subscriber)
		if !ok || ext != e.Outside || r != e.Ports || r.Size() != 2000 {
			t.Fatalf("forward %v = %v %v, table says %+v", e.Subscriber, ext, r, e)
		}
		if o, dup := seen[slot{ext, r.Min}]; dup {
			t.Fatalf("%v and %v share %v %v", o, e.Subscriber, ext, r)
		}
		seen[slot{ext, r.Min}] = e.Subscriber
		for _, p := range []uint16{r.Min, r.Min + 999, r.Max} {
			if sub, rr, ok := m.Inverse(ext, p); !ok || sub != e.Subscriber || rr != r {
				t.Fatalf("inverse %v:%d = %v %v %v, want %v", ext, p, sub, rr, ok, e.Subscriber)
			}
		}
		n++
	}
	if n != 1280 {
		t.Fatalf("table has %d entries", n)
	}
	// The documented order.
	for _, c := range []struct {
		sub, ext string
		lo       uint16
	}{
		{"10.0.0.0", "198.18.0.0", 1024},
		{"10.0.0.1", "198.18.0.0", 3024},
		{"10.0.0.31", "198.18.0.0", 1024 + 31*2000},
		{"10.0.0.32", "198.18.0.1", 1024},
		{"10.0.3.255", "198.18.0.31", 1024 + 31*2000},
		{"10.1.0.0", "198.18.1.0", 1024}, // subscriber 1024, address 32
		{"10.1.0.255", "198.18.1.7", 1024 + 31*2000},
	} {
		ext, r, _ := m.Forward(netip.MustParseAddr(c.sub))
		if ext.String() != c.ext || r.Min != c.lo {
			t.Fatalf("%s -> %v %v, want %s from %d", c.sub, ext, r, c.ext, c.lo)
		}
	}
	// Ports nobody holds: well-known ports, the unused tail of an address.
	for _, p := range []uint16{80, 1023, 1024 + 32*2000, 65535} {
		if sub, _, ok := m.Inverse(netip.MustParseAddr("198.18.0.5"), p); ok {
			t.Fatalf("port %d belongs to %v", p, sub)
		}
	}
	if _, _, ok := m.Inverse(netip.MustParseAddr("198.18.2.1"), 5000); ok {
		t.Fatal("an address outside the pools has subscribers")
	}
}

// TestCGNDeterministicRefusesShortPool: the configuration is refused, with
// the numbers, when the pools cannot cover the inside prefixes.
func TestCGNDeterministicRefusesShortPool(t *testing.T) {
	c := cgnConfig(CGN{PortAllocation: AllocDeterministic, PortsPerSubscriber: 2000}, "198.18.0.0/27", "198.18.1.0/30")
	c.InsidePrefixes = append(c.InsidePrefixes, netip.MustParsePrefix("10.1.0.0/24"))
	err := c.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "ports_per_subscriber" {
		t.Fatalf("want a ports_per_subscriber error, got %v", err)
	}
	for _, want := range []string{"1280 subscribers", "40 addresses", "32 subscribers per address", "the pools have 36 addresses", "add 4 addresses", "at most 1814 ports per subscriber"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	c.CGN.PortsPerSubscriber = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ports_per_subscriber") {
		t.Fatalf("P = 0 accepted: %v", err)
	}
	c = cgnConfig(CGN{PortAllocation: AllocDeterministic, PortsPerSubscriber: 64}, "198.18.0.0/31")
	c.InsidePrefixes = append(c.InsidePrefixes, netip.MustParsePrefix("10.0.2.0/24"))
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("overlapping inside prefixes accepted: %v", err)
	}
}

// TestCGNDeterministicDataplane: subscribers translate to their address
// and range only, nothing is logged per session, a full range is a
// counted drop with an event, new mappings allocate nothing, and a reload
// that changes the function applies (natd warns with DetMoves).
func TestCGNDeterministicDataplane(t *testing.T) {
	cfg := cgnConfig(CGN{PortAllocation: AllocDeterministic, PortsPerSubscriber: 64}, "198.18.0.100/31")
	h := newHarness(t, cfg)
	m, _ := NewDetMap(&cfg)
	for _, sub := range []string{"10.0.0.5", "10.0.3.250"} {
		ext, r, _ := m.Forward(netip.MustParseAddr(sub))
		for i := 0; i < 64; i++ {
			e := eps(h.one(Inside, udp(sub, uint16(2000+i), "198.18.0.2", 53), Outside))
			if e.src != ext.String() || e.sport < r.Min || e.sport > r.Max {
				t.Fatalf("%s flow %d left from %s:%d, want %v %v", sub, i, e.src, e.sport, ext, r)
			}
			// The reply comes back.
			back := eps(h.one(Outside, udp("198.18.0.2", 53, e.src, e.sport), Inside))
			if back.dst != sub || back.dport != uint16(2000+i) {
				t.Fatalf("reply went to %s:%d", back.dst, back.dport)
			}
		}
		h.none(Inside, udp(sub, 3000, "198.18.0.2", 53), drop.PortExhausted)
	}
	evs := h.eng.DrainEvents(nil)
	if len(evs) != 2 || evs[0].Type != PortsExhausted || evs[1].Type != PortsExhausted {
		t.Fatalf("events %+v, want only the two exhaustions", evs)
	}
	hs := h.eng.LookupOutside(netip.MustParseAddr("198.18.0.101"), 1024+(1018-1008)*64+3, nil)
	if len(hs) == 0 || hs[0].Source != "deterministic" || hs[0].Subscriber.String() != "10.0.3.250" {
		t.Fatalf("lookup: %+v", hs)
	}
	// New subscribers' first mappings allocate nothing.
	frames := make([][]byte, 0, 40)
	for i := 0; i < 40; i++ {
		frames = append(frames, udp(fmt.Sprintf("10.0.1.%d", i), 4000, "198.18.0.2", 53))
	}
	i := 0
	allocs := testing.AllocsPerRun(len(frames)-1, func() {
		h.ports[Inside].Inject(frames[i])
		i++
		h.w.Poll()
	})
	if out := h.ports[Outside].Drain(); len(out) != len(frames) {
		t.Fatalf("%d of %d frames out (drops %v)", len(out), len(frames), h.drops())
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per new deterministic mapping", allocs)
	}
	// A reload that changes the function is applied; DetMoves says who moved.
	cfg2 := cfg
	cfg2.CGN.PortsPerSubscriber = 63
	if err := h.eng.ApplyConfig(cfg2); err != nil {
		t.Fatal(err)
	}
	m2, _ := NewDetMap(&cfg2)
	moved, sample := DetMoves(m, m2, 3)
	if moved != 1024 || len(sample) != 3 || sample[0].Subscriber.String() != "10.0.0.0" || sample[0].Ports != (PortRange{1024, 1086}) {
		t.Fatalf("moved %d, sample %+v", moved, sample)
	}
	cfg3 := cfg2
	cfg3.CGN.PortAllocation, cfg3.CGN.BlockSize, cfg3.CGN.MaxBlocks = AllocBlock, 512, 4
	if err := h.eng.ApplyConfig(cfg3); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("mode change on reload: %v", err)
	}
}

func TestCGNPortAllocationText(t *testing.T) {
	for _, s := range []string{"dynamic", "block", "deterministic"} {
		var a PortAllocation
		if err := a.UnmarshalText([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if b, _ := a.MarshalText(); string(b) != s {
			t.Fatalf("%s round-trips to %s", s, b)
		}
	}
	var a PortAllocation
	if err := a.UnmarshalText([]byte("pba")); err == nil {
		t.Fatal("pba accepted")
	}
}
