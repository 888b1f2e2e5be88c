package neigh

import (
	"math/rand/v2"
	"testing"
)

// refLookup is the slow reference for lookupRoute: scan every route in the
// kernel's order and keep the longest matching prefix, the lowest metric
// among equal lengths, and the first one among equal routes.
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
	// which of two equal-prefix routes won.
	for i := range int(r.nhops) {
		r.gw[i] = rng.Uint32()
	}
	return r
}

func TestLookupRouteMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bases := []uint32{0x0a000000, 0xc6120000, 0xc6126300, 0xc0a80100, 0x08080808}
	for iter := range 300 {
		n := rng.IntN(40)
		rs := make([]route, n)
		for i := range rs {
			rs[i] = randRoute(rng, bases)
		}
		sorted := append([]route(nil), rs...)
		sortRoutes(sorted)
		for range 300 {
			var dst uint32
			if n > 0 && rng.IntN(4) != 0 {
				r := rs[rng.IntN(n)]
				dst = r.prefix | rng.Uint32()&^r.mask
			} else {
				dst = bases[rng.IntN(len(bases))] ^ rng.Uint32()>>uint(rng.IntN(33))
			}
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
	r := route{nhops: 1}
	if got := r.nextHop(0x0a000002); got != 0x0a000002 {
		t.Fatalf("on-link next hop = %08x", got)
	}
	// Gateway.
	r = route{nhops: 1, gw: [maxNextHops]uint32{0xc6120002}}
	if got := r.nextHop(0x08080808); got != 0xc6120002 {
		t.Fatalf("gateway next hop = %08x", got)
	}
	// Equal-cost next hops: stable per destination, every one used, none
	// starved.
	r = route{nhops: 3, gw: [maxNextHops]uint32{1, 2, 3}}
	counts := map[uint32]int{}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 30000 {
		d := rng.Uint32()
		nh := r.nextHop(d)
		if nh < 1 || nh > 3 {
			t.Fatalf("ECMP picked %d, not a next hop of the route", nh)
		}
		if again := r.nextHop(d); again != nh {
			t.Fatalf("ECMP not stable for %08x: %d then %d", d, nh, again)
		}
		counts[nh]++
	}
	for gw, n := range counts {
		if n < 8000 || n > 12000 {
			t.Fatalf("ECMP unbalanced: next hop %d got %d of 30000 (%v)", gw, n, counts)
		}
	}
	// Sequential destinations (one subnet) spread too.
	counts = map[uint32]int{}
	for d := uint32(0x0a000000); d < 0x0a000000+3000; d++ {
		counts[r.nextHop(d)]++
	}
	if len(counts) != 3 {
		t.Fatalf("sequential destinations use only %v", counts)
	}
}
