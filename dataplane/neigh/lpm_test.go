package neigh

import (
	"math/rand/v2"
	"testing"
)

// refLookup is the slowest reference: scan every route in the kernel's
// order and keep the longest matching prefix, the lowest metric among
// equal lengths, and the first one among equal routes.
func refLookup(rs []route, dst uint32) (route, bool) {
	best, found := route{}, false
	for _, r := range rs {
		m := uint32(0)
		if r.plen > 0 {
			m = ^uint32(0) << (32 - uint32(r.plen))
		}
		if dst&m != r.prefix {
			continue
		}
		if !found || r.plen > best.plen || (r.plen == best.plen && r.metric < best.metric) {
			best, found = r, true
		}
	}
	return best, found
}

// lookupRoute is the linear scan Resolve used before the fib: the first
// route of rs (sorted by sortRoutes) that contains dst, or nil. It stays
// as the reference the fib is checked against.
func lookupRoute(rs []route, dst uint32) *route {
	for i := range rs {
		if dst&rs[i].mask == rs[i].prefix {
			return &rs[i]
		}
	}
	return nil
}

// wantHops is what the fib must answer for dst, per the linear scan.
func wantHops(sorted []route, dst uint32) (hopSet, bool) {
	r := lookupRoute(sorted, dst)
	if r == nil || r.kind != kindForward {
		return hopSet{}, false
	}
	h := hopSet{n: r.nhops}
	copy(h.gw[:h.n], r.gw[:])
	return h, true
}

// checkFIB compares f with the linear scan over sorted at dst.
func checkFIB(t testing.TB, f *fib, sorted []route, dst uint32) {
	t.Helper()
	want, ok := wantHops(sorted, dst)
	got := f.lookup(dst)
	if (got != nil) != ok {
		t.Fatalf("dst %08x: fib found=%v, linear scan found=%v (%d routes)", dst, got != nil, ok, len(sorted))
	}
	if ok && *got != want {
		t.Fatalf("dst %08x: fib %+v, linear scan %+v (%d routes)", dst, *got, want, len(sorted))
	}
}

func randRoute(rng *rand.Rand, bases []uint32) route {
	plen := rng.IntN(33)
	if rng.IntN(3) == 0 {
		plen = []int{0, 8, 16, 24, 32}[rng.IntN(5)]
	}
	m := prefixMask(plen)
	r := route{
		prefix: (bases[rng.IntN(len(bases))] ^ rng.Uint32()>>uint(rng.IntN(33)+0)) & m,
		mask:   m,
		plen:   uint8(plen),
		metric: uint32(rng.IntN(4)),
		kind:   uint8(rng.IntN(2)),
		nhops:  uint8(1 + rng.IntN(maxNextHops)),
	}
	// Several fields distinguish otherwise equal prefixes, so the test sees
	// which of two equal-prefix routes won; gateways from a small pool
	// make routes share hop sets too.
	for i := range int(r.nhops) {
		if rng.IntN(4) != 0 {
			r.gw[i] = 0xc6120000 | uint32(rng.IntN(8))
		}
	}
	return r
}

// probeAddrs returns addresses worth looking up in rs: inside and at both
// ends of each route's prefix, just outside it, and random ones near the
// bases.
func probeAddrs(rng *rand.Rand, rs []route, bases []uint32, n int) []uint32 {
	out := make([]uint32, 0, n)
	for len(out) < n {
		if len(rs) > 0 && rng.IntN(4) != 0 {
			r := rs[rng.IntN(len(rs))]
			switch rng.IntN(4) {
			case 0:
				out = append(out, r.prefix)
			case 1:
				out = append(out, r.prefix|^r.mask)
			case 2:
				out = append(out, r.prefix-1, r.prefix|^r.mask+1)
			default:
				out = append(out, r.prefix|rng.Uint32()&^r.mask)
			}
			continue
		}
		out = append(out, bases[rng.IntN(len(bases))]^rng.Uint32()>>uint(rng.IntN(33)))
	}
	return out
}

var testBases = []uint32{0x0a000000, 0xc6120000, 0xc6126300, 0xc0a80100, 0x08080808, 0, 0xffffffff}

func TestLookupRouteMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		n := rng.IntN(40)
		rs := make([]route, n)
		for i := range rs {
			rs[i] = randRoute(rng, testBases)
		}
		sorted := append([]route(nil), rs...)
		sortRoutes(sorted)
		for _, dst := range probeAddrs(rng, rs, testBases, 300) {
			want, ok := refLookup(rs, dst)
			got := lookupRoute(sorted, dst)
			if (got != nil) != ok {
				t.Fatalf("iter %d dst %08x: got %v, reference found=%v", iter, dst, got, ok)
			}
			if ok && *got != want {
				t.Fatalf("iter %d dst %08x: got %+v, want %+v", iter, dst, *got, want)
			}
		}
	}
}

// TestFIBMatchesLinearScan compares the fib with the linear scan on random
// route sets: /0 to /32, overlapping and equal prefixes with different
// metrics, duplicates, reject routes, on-link and ECMP routes.
func TestFIBMatchesLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	sizes := []int{0, 1, 2, 5, 40, 300, 3000}
	iters := 40
	if testing.Short() {
		iters = 10
	}
	for _, n := range sizes {
		it := iters
		if n >= 1000 { // each probe scans every route
			it = max(1, iters/10)
		}
		for range it {
			rs := make([]route, n)
			for i := range rs {
				rs[i] = randRoute(rng, testBases)
				if n > 0 && rng.IntN(8) == 0 { // the same prefix again
					p := rs[rng.IntN(i+1)]
					rs[i].prefix, rs[i].mask, rs[i].plen = p.prefix, p.mask, p.plen
				}
			}
			sortRoutes(rs)
			f := buildFIB(rs)
			if (f == nil) != (n == 0) {
				t.Fatalf("%d routes built fib %v", n, f)
			}
			for _, dst := range probeAddrs(rng, rs, testBases, 400) {
				checkFIB(t, f, rs, dst)
			}
		}
	}
}

// TestFIBEdges pins the cases the random sets may hit rarely.
func TestFIBEdges(t *testing.T) {
	rs := []route{
		mkRoute("0.0.0.0/0", 10, "198.18.0.1"),
		mkRoute("0.0.0.0/0", 5, "198.18.0.2"), // lower metric wins
		reject("10.0.0.0/8"),
		mkRoute("10.1.0.0/16", 0),                         // on-link inside the reject
		mkRoute("10.1.2.0/24", 0, "10.1.0.1", "10.1.0.2"), // ECMP
		mkRoute("10.1.2.128/25", 0, "10.1.0.3"),           // level 3
		mkRoute("10.1.2.130/31", 0, "10.1.0.4"),           // level 4
		mkRoute("10.1.2.131/32", 0, "10.1.0.5"),           // host route
		mkRoute("10.1.2.131/32", 1, "10.1.0.6"),           // loses on metric
		reject("10.1.2.132/30"),                           // reject deep down
		mkRoute("255.255.255.255/32", 0, "198.18.0.9"),    // last address
		mkRoute("128.0.0.0/1", 7, "198.18.0.3"),           // half the space
		mkRoute("128.0.0.0/1", 7, "198.18.0.4"),           // equal: first wins
		mkRoute("192.0.2.0/24", 3, "198.18.0.5"),          // equal prefix,
		mkRoute("192.0.2.0/24", 2, "198.18.0.6"),          // lower metric later
		mkRoute("203.0.113.0/24", 0, "198.18.0.2"),        // the default's next hop
	}
	sortRoutes(rs)
	f := buildFIB(rs)
	for _, c := range []struct {
		dst string
		gw  string // "" means no route
	}{
		{"1.2.3.4", "198.18.0.2"},
		{"10.9.9.9", ""},
		{"10.1.9.9", "0.0.0.0"},
		{"10.1.2.129", "10.1.0.3"},
		{"10.1.2.130", "10.1.0.4"},
		{"10.1.2.131", "10.1.0.5"},
		{"10.1.2.133", ""},
		{"10.1.2.136", "10.1.0.3"},
		{"255.255.255.255", "198.18.0.9"},
		{"255.255.255.254", "198.18.0.3"},
		{"128.0.0.0", "198.18.0.3"},
		{"192.0.2.77", "198.18.0.6"},
		{"203.0.113.1", "198.18.0.2"},
	} {
		h := f.lookup(u32(c.dst))
		if c.gw == "" {
			if h != nil {
				t.Errorf("%s: got %+v, want no route", c.dst, *h)
			}
			continue
		}
		if h == nil || h.n != 1 || h.gw[0] != u32(c.gw) {
			t.Errorf("%s: got %+v, want via %s", c.dst, h, c.gw)
		}
		checkFIB(t, f, rs, u32(c.dst))
	}
	if h := f.lookup(u32("10.1.2.5")); h == nil || h.n != 2 {
		t.Errorf("ECMP route: got %+v", h)
	}
	// Routes sharing next hops share one hopSet: 9 distinct sets among
	// the 11 winning routes.
	if got := len(f.hops) - 1; got != 9 {
		t.Errorf("%d hop sets, want 9: %+v", got, f.hops)
	}
}

// FuzzFIB compares the fib with the linear scan on route sets and
// addresses decoded from the input: 8 bytes per route (prefix, length,
// metric and kind, gateway), the addresses probed being the routes' ends
// and neighbours plus every 4 bytes of the input read as an address.
func FuzzFIB(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 8, 0, 1, 0, 10, 1, 0, 0, 16, 1, 0, 2})
	f.Add([]byte{0, 0, 0, 0, 0, 3, 0, 1, 0, 0, 0, 0, 0, 2, 0, 2, 198, 18, 0, 1, 32, 0x80, 0, 0})
	f.Add([]byte{255, 255, 255, 255, 32, 0, 9, 9, 255, 255, 255, 0, 24, 0x81, 0, 0, 255, 255, 255, 255, 31, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1024 { // 128 routes: the linear checks are quadratic
			data = data[:1024]
		}
		var rs []route
		for b := data; len(b) >= 8; b = b[8:] {
			plen := int(b[4]) % 33
			m := prefixMask(plen)
			r := route{
				prefix: (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) & m,
				mask:   m,
				plen:   uint8(plen),
				metric: uint32(b[5] & 3),
				nhops:  1 + b[6]%maxNextHops,
			}
			if b[5]&0x80 != 0 {
				r.kind = kindReject
			}
			for i := range int(r.nhops) {
				if b[7] != 0 {
					r.gw[i] = 0xc6120000 | uint32(b[7]) + uint32(i)
				}
			}
			rs = append(rs, r)
		}
		sortRoutes(rs)
		fb := buildFIB(rs)
		for _, r := range rs {
			for _, d := range []uint32{r.prefix, r.prefix | ^r.mask, r.prefix - 1, r.prefix | ^r.mask + 1} {
				checkFIB(t, fb, rs, d)
			}
		}
		for b := data; len(b) >= 4; b = b[4:] {
			checkFIB(t, fb, rs, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))
		}
	})
}

func TestFIBLookupAllocs(t *testing.T) {
	rs := []route{mkRoute("0.0.0.0/0", 0, "198.18.0.1"), mkRoute("10.1.2.131/32", 0, "10.1.0.5"), reject("10.0.0.0/8")}
	sortRoutes(rs)
	f := buildFIB(rs)
	var nilFIB *fib
	var sink uint32
	for _, dst := range []string{"1.1.1.1", "10.1.2.131", "10.1.2.132"} {
		d := u32(dst)
		if n := testing.AllocsPerRun(1000, func() {
			if h := f.lookup(d); h != nil {
				sink += h.nextHop(d)
			}
			if nilFIB.lookup(d) != nil {
				sink++
			}
		}); n != 0 {
			t.Errorf("lookup %s allocates %.1f times", dst, n)
		}
	}
	_ = sink
}

func TestPrefixMask(t *testing.T) {
	for _, c := range []struct {
		plen int
		want uint32
	}{{-1, 0}, {0, 0}, {1, 0x80000000}, {8, 0xff000000}, {24, 0xffffff00}, {31, 0xfffffffe}, {32, 0xffffffff}, {33, 0xffffffff}} {
		if got := prefixMask(c.plen); got != c.want {
			t.Errorf("prefixMask(%d) = %08x, want %08x", c.plen, got, c.want)
		}
	}
}

func TestNextHop(t *testing.T) {
	// On-link: the destination itself.
	h := hopSet{n: 1}
	if got := h.nextHop(0x0a000002); got != 0x0a000002 {
		t.Fatalf("on-link next hop = %08x", got)
	}
	// Gateway.
	h = hopSet{n: 1, gw: [maxNextHops]uint32{0xc6120002}}
	if got := h.nextHop(0x08080808); got != 0xc6120002 {
		t.Fatalf("gateway next hop = %08x", got)
	}
	// Equal-cost next hops: stable per destination, every one used, none
	// starved.
	h = hopSet{n: 3, gw: [maxNextHops]uint32{1, 2, 3}}
	counts := map[uint32]int{}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 30000 {
		d := rng.Uint32()
		nh := h.nextHop(d)
		if nh < 1 || nh > 3 {
			t.Fatalf("ECMP picked %d, not a next hop of the route", nh)
		}
		if again := h.nextHop(d); again != nh {
			t.Fatalf("ECMP not stable for %08x: %d then %d", d, nh, again)
		}
		counts[nh]++
	}
	for gw, n := range counts {
		if n < 8000 || n > 12000 {
			t.Fatalf("ECMP unbalanced: next hop %d got %d of 30000 (%v)", gw, n, counts)
		}
	}
	// Sequential destinations (one subnet) spread too, evenly.
	counts = map[uint32]int{}
	for d := uint32(0x0a000000); d < 0x0a000000+3000; d++ {
		counts[h.nextHop(d)]++
	}
	for gw, n := range counts {
		if len(counts) != 3 || n < 900 || n > 1100 {
			t.Fatalf("sequential destinations: next hop %d got %d of 3000 (%v)", gw, n, counts)
		}
	}
}
