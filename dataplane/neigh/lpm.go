package neigh

import (
	"cmp"
	"slices"
)

// maxNextHops bounds the equal-cost next hops kept per route on one side.
// Further next hops of a multipath route are ignored (and the route still
// works through the first ones). It is a power of two: nextHop masks its
// index with it.
const maxNextHops = 4

// Route kinds.
const (
	kindForward uint8 = iota // forward to gw[...] (0 = on-link: the destination itself)
	kindReject               // blackhole, unreachable, prohibit, throw: no route
)

// route is one routing table entry as seen from one side, as the control
// goroutine converts it from netlink and the management plane lists it.
// Resolve never reads routes: it searches the side's fib, built from them.
// Addresses are IPv4 addresses read as big-endian uint32.
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

// sortRoutes puts routes in lookup order: longest prefix first, and among
// equal prefixes the lowest metric first, which is the kernel's own
// preference (the FIB picks the longest match, then the best priority). The
// sort is stable so equal routes keep the kernel's order. The first route
// in this order that contains an address is the one that serves it: the
// management plane lists routes in this order, and buildFIB breaks ties by
// it.
func sortRoutes(rs []route) {
	slices.SortStableFunc(rs, func(a, b route) int {
		if a.plen != b.plen {
			return cmp.Compare(b.plen, a.plen)
		}
		return cmp.Compare(a.metric, b.metric)
	})
}

// routeTable is one side's routes in both forms: the list (sorted by
// sortRoutes) for the management plane, and the fib Resolve searches. Both
// are immutable once built; snapshots share them until the routes change.
type routeTable struct {
	list []route
	fib  *fib // nil when list holds no route
}

// newRouteTable builds the fib of rs, which must be sorted by sortRoutes
// and is kept (not copied): the caller must not modify it afterwards.
func newRouteTable(rs []route) routeTable {
	return routeTable{list: rs, fib: buildFIB(rs)}
}

// hopSet is what a forwarding route leads to: its equal-cost next hops.
// Routes that share next hops (in a full BGP table, nearly all of them
// share a handful of gateways) share one hopSet, so the sets Resolve reads
// stay in cache however many routes there are.
type hopSet struct {
	gw [maxNextHops]uint32 // next hops; 0 means on-link
	n  uint8               // number of valid entries in gw
}

// nextHop returns the address to resolve for dst. Between equal-cost next
// hops it picks one by a hash of the destination, so a destination always
// leaves through the same gateway while different destinations spread (the
// kernel hashes the source too; Resolve only sees the destination).
func (h *hopSet) nextHop(dst uint32) uint32 {
	i := uint32(0)
	if h.n > 1 {
		i = spread(dst, uint32(h.n))
	}
	if gw := h.gw[i&(maxNextHops-1)]; gw != 0 {
		return gw
	}
	return dst
}
