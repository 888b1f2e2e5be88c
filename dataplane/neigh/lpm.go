package neigh

import (
	"cmp"
	"slices"
)

// maxNextHops bounds the equal-cost next hops kept per route on one side.
// Further next hops of a multipath route are ignored (and the route still
// works through the first ones).
const maxNextHops = 4

// Route kinds.
const (
	kindForward uint8 = iota // forward to gw[...] (0 = on-link: the destination itself)
	kindReject               // blackhole, unreachable, prohibit, throw: no route
)

// route is one routing table entry as seen from one side. It is
// pointer-free so a side's route array costs the GC nothing. Addresses are
// IPv4 addresses read as big-endian uint32, so a prefix test is one AND and
// one compare.
type route struct {
	prefix uint32 // network address, already masked
	mask   uint32
	metric uint32 // kernel priority; lower wins between equal prefixes
	plen   uint8
	kind   uint8
	nhops  uint8 // number of valid entries in gw (≥ 1 for kindForward)
	_      uint8
	gw     [maxNextHops]uint32 // next hops; 0 means on-link
}

// prefixMask returns the netmask of a prefix length (0..32).
func prefixMask(plen int) uint32 {
	if plen <= 0 {
		return 0
	}
	if plen >= 32 {
		return ^uint32(0)
	}
	return ^uint32(0) << (32 - plen)
}

// sortRoutes orders routes for first-match lookup: longest prefix first,
// and among equal prefixes the lowest metric first, which is the kernel's
// own preference (the FIB picks the longest match, then the best
// priority). The sort is stable so equal routes keep the kernel's order.
func sortRoutes(rs []route) {
	slices.SortStableFunc(rs, func(a, b route) int {
		if a.plen != b.plen {
			return cmp.Compare(b.plen, a.plen)
		}
		return cmp.Compare(a.metric, b.metric)
	})
}

// lookupRoute returns the first route of rs (sorted by sortRoutes) that
// contains dst, or nil. Routes of a NAT namespace are few (connected
// routes, a default, a handful of statics), so a linear scan over a dense
// array beats any trie here.
func lookupRoute(rs []route, dst uint32) *route {
	for i := range rs {
		if dst&rs[i].mask == rs[i].prefix {
			return &rs[i]
		}
	}
	return nil
}

// nextHop returns the address to resolve for dst through r (kindForward).
// Between equal-cost next hops it picks one by a hash of the destination, so
// a destination always leaves through the same gateway while different
// destinations spread (the kernel hashes the source too; Resolve only sees
// the destination).
func (r *route) nextHop(dst uint32) uint32 {
	i := 0
	if r.nhops > 1 {
		i = int(uint64(mix32(dst)) * uint64(r.nhops) >> 32)
	}
	if gw := r.gw[i]; gw != 0 {
		return gw
	}
	return dst
}

// mix32 is a cheap 32-bit finaliser (the murmur3 fmix32 constants), used
// where the multiplicative hash's low-entropy top bits would bias a choice.
func mix32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	return x
}
