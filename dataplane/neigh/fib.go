package neigh

import (
	"slices"
	"unsafe"
)

// fib is one side's routes compiled for longest-prefix match: a multibit
// trie of fixed strides 16, 8, 4 and 4 bits over the destination address,
// in four flat, pointer-free arrays of uint32 entries (the garbage
// collector never scans them, and a lookup allocates nothing and follows
// no pointer but the arrays').
//
// Every prefix is expanded to the stride boundary below it (controlled
// prefix expansion), so a lookup reads one entry per level and stops at
// the first entry that is not a child link: one read for a route of /16 or
// shorter, two for /17../24 (nearly every route of a BGP table), three for
// /25../28 and four for longer ones. The cost depends on the depth of the
// matching prefix, never on the number of routes; the first level (256
// KiB) stays in the cache of a busy worker, so a full table costs at most
// a miss or two on the deeper levels where a short table hits.
//
// An entry is one of:
//   - 0: no route (nothing matches, or the best match is a reject route);
//   - fibChild | c: the address continues in chunk c of the next level;
//   - v > 0: the best match forwards through hops[v].
//
// A fib is built once by the control goroutine (buildFIB) and never
// modified afterwards; any number of workers read it concurrently.
type fib struct {
	l1   *[1 << 16]uint32 // bits 31..16
	l2   []uint32         // chunks of 256 entries: bits 15..8
	l3   []uint32         // chunks of 16: bits 7..4
	l4   []uint32         // chunks of 16: bits 3..0
	hops []hopSet         // hops[0] is unused: entry 0 means no route
}

const fibChild = 1 << 31

// fibLevels describes the trie's levels: level t resolves address bits
// [shift, shift+bits), so after it a prefix of 32-shift bits is known.
var fibLevels = [4]struct{ shift, bits uint }{{16, 16}, {8, 8}, {4, 4}, {0, 4}}

// lookup returns the next hops of dst's longest matching prefix (the
// lowest metric among equal prefixes, the first in the kernel's order
// among equal metrics), or nil when no route serves dst. f may be nil (no
// routes). Any goroutine may call it; it takes no lock and allocates
// nothing.
func (f *fib) lookup(dst uint32) *hopSet {
	if f == nil {
		return nil
	}
	e := f.l1[dst>>16]
	if e&fibChild != 0 {
		e = f.l2[uint(e&^fibChild)<<8|uint(dst>>8&0xff)]
		if e&fibChild != 0 {
			e = f.l3[uint(e&^fibChild)<<4|uint(dst>>4&0xf)]
			if e&fibChild != 0 {
				e = f.l4[uint(e&^fibChild)<<4|uint(dst&0xf)]
			}
		}
	}
	if e == 0 {
		return nil
	}
	return &f.hops[e]
}

// buildFIB compiles rs (sorted by sortRoutes) into a fib, or returns nil
// for no routes. The control goroutine calls it when a side's routes
// change, off the packet path: workers keep using the previous snapshot's
// fib until the new one is published.
//
// Cost: one sort of the routes, then every route that wins its prefix
// writes its expanded range once. Routes are written shortest prefix
// first, so a longer prefix overwrites the part of a shorter one it
// covers, and no range is ever written by more than one route of each
// length; the routes that lose to an equal prefix (a higher metric, or a
// later duplicate) are skipped. Hence an entry is written at most once per
// prefix length its level resolves (17 for the first level), plus once when
// its chunk is made, whatever the routes. Memory: the 256 KiB first level, plus a 1 KiB chunk
// for each /16 holding a longer route (at most 64 MiB, for a table with a
// route longer than /16 in every /16), plus 64 B for each /24 or /28
// holding a longer route (at most 128 B per route), plus one hopSet per
// distinct set of next hops.
func buildFIB(rs []route) *fib {
	if len(rs) == 0 {
		return nil
	}
	w := sortedWinners(rs)
	f := &fib{hops: make([]hopSet, 1, 8)}
	// All four levels in one allocation, each with room for exactly the
	// chunks the routes need (its capacity: a level cannot grow into the
	// next one).
	var lv [len(fibLevels)][]uint32
	chunks := chunksNeeded(rs, w)
	total := 0
	for t, n := range chunks {
		total += n << fibLevels[t].bits
	}
	mem := make([]uint32, total)
	for t, n := range chunks {
		lv[t], mem = mem[:0:n<<fibLevels[t].bits], mem[n<<fibLevels[t].bits:]
	}
	lv[0] = lv[0][:1<<16]
	f.l1 = (*[1 << 16]uint32)(lv[0])
	sets := make(map[hopSet]uint32)
	for _, i := range w {
		r := &rs[i]
		v := uint32(0)
		if r.kind == kindForward {
			h := hopSet{n: r.nhops}
			copy(h.gw[:h.n], r.gw[:])
			if v = sets[h]; v == 0 {
				v = uint32(len(f.hops))
				f.hops = append(f.hops, h)
				sets[h] = v
			}
		}
		insertPrefix(&lv, r.prefix, uint(r.plen), v)
	}
	f.l2, f.l3, f.l4 = lv[1], lv[2], lv[3]
	if cap(f.hops) > 2*len(f.hops) { // held until the next route change
		f.hops = slices.Clone(f.hops)
	}
	return f
}

// sortedWinners returns the indexes in rs (sorted by sortRoutes) of the
// routes that win their prefix, shortest prefix first: of the routes with
// equal prefixes, the first in rs, which has the lowest metric and, among
// equal metrics, comes first in the kernel's order.
func sortedWinners(rs []route) []uint32 {
	// rs holds one run of routes per prefix length, longest first; sort
	// each run by prefix, then position.
	keys := make([]uint64, len(rs))
	for i := range rs {
		keys[i] = uint64(rs[i].prefix)<<32 | uint64(i)
	}
	w := make([]uint32, 0, len(rs))
	for hi := len(rs); hi > 0; {
		lo := hi - 1
		for lo > 0 && rs[lo-1].plen == rs[hi-1].plen {
			lo--
		}
		run := keys[lo:hi]
		slices.Sort(run)
		for j, k := range run {
			if j == 0 || k>>32 != run[j-1]>>32 {
				w = append(w, uint32(k))
			}
		}
		hi = lo
	}
	return w
}

// chunksNeeded counts the chunks each level of the trie will hold for the
// winning routes w of rs: one per entry of the level above that a longer
// prefix continues from. Allocating exactly that up front spares the build
// the copies (and the garbage) of growing the levels by appending.
func chunksNeeded(rs []route, w []uint32) (n [len(fibLevels)]int) {
	n[0] = 1
	var parents []uint32
	for t := 1; t < len(fibLevels); t++ {
		up := fibLevels[t-1]
		parents = parents[:0]
		for _, i := range w {
			if uint(rs[i].plen) > 32-up.shift {
				parents = append(parents, rs[i].prefix>>up.shift)
			}
		}
		slices.Sort(parents)
		n[t] = len(slices.Compact(parents))
	}
	return n
}

// insertPrefix writes v over every entry that prefix/plen covers. Prefixes
// must come shortest first: then the entries it overwrites are all values
// (a child link is only made for a longer prefix, which comes later), and a
// new child chunk starts as copies of the value it replaces, which is the
// best match so far for every address below it.
func insertPrefix(lv *[len(fibLevels)][]uint32, prefix uint32, plen uint, v uint32) {
	base := uint(0) // first entry of the current chunk
	for t := 0; ; t++ {
		l := fibLevels[t]
		i := base + uint(prefix>>l.shift)&(1<<l.bits-1)
		if known := 32 - l.shift; plen <= known {
			// The prefix's low bits are zero, so i is aligned.
			n := uint(1) << (known - plen)
			fill(lv[t][i:i+n], v)
			return
		}
		e := lv[t][i]
		if e&fibChild == 0 {
			// chunksNeeded made room for it.
			size := uint(1) << fibLevels[t+1].bits
			c := uint(len(lv[t+1])) / size
			lv[t+1] = lv[t+1][:(c+1)*size]
			fill(lv[t+1][c*size:], e)
			e = fibChild | uint32(c)
			lv[t][i] = e
		}
		base = uint(e&^fibChild) << fibLevels[t+1].bits
	}
}

// size returns the bytes the fib holds.
func (f *fib) size() int {
	if f == nil {
		return 0
	}
	return 4*(len(f.l1)+len(f.l2)+len(f.l3)+len(f.l4)) + int(unsafe.Sizeof(hopSet{}))*len(f.hops)
}

// fill sets every entry of s to v, by doubling copies: a /0 or /8 spans
// thousands of entries, and copy runs them as block moves.
func fill(s []uint32, v uint32) {
	if len(s) == 0 {
		return
	}
	s[0] = v
	for n := 1; n < len(s); n *= 2 {
		copy(s[n:], s[:n])
	}
}
