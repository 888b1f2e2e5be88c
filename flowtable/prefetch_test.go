package flowtable

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestProbeLayout holds Probe to the layout prefetchHomes' assembly reads:
// the hash at offset 16, whose low half (the home bucket's input on a
// little-endian machine, the only kind with that assembly) comes first,
// and 32 bytes a probe.
func TestProbeLayout(t *testing.T) {
	var p Probe
	if off := unsafe.Offsetof(p.h); off != 16 {
		t.Errorf("offset of Probe.h = %d, want 16", off)
	}
	if size := unsafe.Sizeof(p); size != 32 {
		t.Errorf("sizeof(Probe) = %d, want 32", size)
	}
	p.h = 0x1122334455667788
	if lo := *(*uint32)(unsafe.Add(unsafe.Pointer(&p), 16)); lo != uint32(p.h) && prefetchAsm {
		t.Errorf("the first 4 bytes of Probe.h hold %#x, not its low half %#x", lo, uint32(p.h))
	}
}

// TestPrefetchHomesBounds runs the burst prefetch over empty, single and
// full bursts whose hashes reach both ends of the index (0 and 2^32-1 in
// the low half give the first and the last bucket). A prefetch never
// faults, so a wrong bucket address goes unseen; what the test catches is
// the loop itself going wrong: one that ran on past its length (a count
// tested after its decrement runs 2^64 times on an empty burst) reads its
// probes off the end of the stack and faults, or never returns.
func TestPrefetchHomesBounds(t *testing.T) {
	tb, err := New(1000)
	if err != nil {
		t.Fatal(err)
	}
	var ps [64]Probe
	for i := range ps {
		ps[i].h = uint64(i) << 32
		if i&1 != 0 {
			ps[i].h |= 0xffffffff
		}
	}
	for _, n := range []int{0, 1, 63, 64} {
		tb.PrefetchBurst(ps[:n])
		for i := range ps[:n] {
			if ps[i].ref != 0 {
				t.Fatalf("burst of %d: probe %d found slot %#x in an empty table", n, i, ps[i].ref)
			}
		}
	}
}

// TestPrefetchSlotsMatchesGo holds PrefetchBurst (the assembly where there
// is one) to its Go reference, prefetchSlotsGo, on random buckets: each
// slot empty, or a word with one of a few fingerprints (so that a bucket
// often holds a probe's fingerprint twice, and the first must win, or
// not at all) and a random reference, some beyond the table; and random
// probes with the same few fingerprints, 0 among them (which an empty
// slot matches, with reference 0), in bursts of every length up to 64.
func TestPrefetchSlotsMatchesGo(t *testing.T) {
	tb, err := New(3000)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 11))
	fps := []uint32{0, 1, 0x80000000, 0xffffffff, 0x12345678}
	word := func() uint64 {
		if r.IntN(3) == 0 {
			return 0
		}
		return slotWord(fps[r.IntN(len(fps))], r.Uint32N(2*uint32(len(tb.recs))+8)+1)
	}
	var asm, ref [64]Probe
	for round := range 2000 {
		for b := range tb.ix.buckets {
			for s := range tb.ix.buckets[b].Slots {
				tb.ix.buckets[b].Slots[s].Store(word())
			}
		}
		n := round%64 + 1
		for i := range n {
			h := uint64(fps[r.IntN(len(fps))])<<32 | uint64(r.Uint32())
			asm[i] = Probe{w0: r.Uint64(), w1: r.Uint64(), h: h, ref: r.Uint32()}
			ref[i] = asm[i]
		}
		tb.PrefetchBurst(asm[:n])
		tb.prefetchSlotsGo(ref[:n])
		for i := range n {
			if asm[i] != ref[i] {
				t.Fatalf("round %d, probe %d of %d (hash %#x): PrefetchBurst found slot %#x, the Go reference %#x",
					round, i, n, ref[i].h, asm[i].ref, ref[i].ref)
			}
		}
	}
}

// TestLinesBounds fills a Lines past its capacity, whose extra lines
// wrap around, not past the array, and flushes it empty, at each size
// the assembly's loop must stop at (none, one, all): a loop that ran on
// past its count would read addresses off the end of the array and fault
// on them, or never return.
func TestLinesBounds(t *testing.T) {
	tb := mustNew(t, 1000)
	var l Lines
	for _, n := range []int{0, 1, linesMax - 1, linesMax, linesMax + 7} {
		for i := range n {
			l.AddBucket(&tb.ix.buckets[uint64(i)%tb.ix.nb])
		}
		if l.n != n {
			t.Fatalf("%d adds: %d lines, want %d", n, l.n, n)
		}
		// The first slot holds the first add, or the first beyond
		// the capacity that wrapped onto it.
		first := uint64(0)
		if n > linesMax {
			first = linesMax % tb.ix.nb
		}
		if n > 0 && l.a[0] != uintptr(unsafe.Pointer(&tb.ix.buckets[first])) {
			t.Fatalf("%d adds: first line %#x, want bucket %d's", n, l.a[0], first)
		}
		l.Flush()
		if l.n != 0 {
			t.Fatalf("%d adds: %d lines left after Flush", n, l.n)
		}
	}
}
