package nat

import (
	"math/rand/v2"
	"runtime"
	"sync/atomic"

	"github.com/xnat/xnat/flowtable"
)

// lineIndex is the hash index of the engine's compact tables (the port
// table, porttable.go, and the count table, counttable.go): an array of
// cache-line buckets, each a meta word and seven one-word slots, laid out
// and run like the flowtable's index. What a slot holds is the table's
// business (a whole port, or a fingerprint and a record number); a slot
// of 0 is empty.
//
// The meta word holds an insert lock (bit 0) and an overflow count (bits
// 1..63): the number of keys stored beyond the bucket by inserts whose
// probe passed through it. A lookup stops at the first bucket whose count
// is zero. An insert raises the counts along its path before it publishes
// its slot; a delete clears its slot before it lowers them, so a visible
// key's path is always covered. Deleted slots are empty at once: no
// tombstones, so churn never degrades the index. Inserts serialise on the
// lock of their key's home bucket, so two inserts of one key cannot both
// succeed; lookups and deletes take no lock.
//
// The index has a bucket per lineKeysPerBucket keys of capacity: 64/5 =
// 12.8 bytes per key. A bucket overflows only when more than seven of its
// keys hash to it: 13% of the buckets at a Poisson mean of five, at full
// capacity, so a lookup then reads a second line now and then; 3% at
// three-quarters full, and these tables are sized for their worst case.
// The flowtable's index runs at four keys to a bucket (5% overflow), for
// the packet path; these serve new sessions only, and ten million
// sessions must fit in 2 GiB (issue 14): at four, the engine took 224
// bytes per session slot, at five 210. Home buckets come from a seeded hash: the keys of these tables
// are partly chosen by hosts (the ports port preservation keeps, the
// remote addresses of permissions), which must not be able to aim them all
// at one probe chain.
//
// Every goroutine may use a lineIndex.
type lineIndex struct {
	buckets []lineBucket
	nb      uint64
	seed    uint64
}

// lineBucket is one cache line of a lineIndex.
type lineBucket struct {
	meta  atomic.Uint64
	slots [lineSlots]atomic.Uint64
}

const (
	lineSlots         = 7
	lineKeysPerBucket = 5
	lineBucketSize    = 64 // bytes, asserted by TestLineBucketSize
	lineLock          = 1
	lineOverflow      = 2 // the overflow count lives in bits 1..63
)

// makeLineIndex returns an index for keys keys of the table owner, faulted
// in: a worker inserting at line rate must not take the page fault of a
// fresh page. The buckets live where a flowtable's do, outside the Go heap
// when big (flowtable.AllocArray), until owner is unreachable.
func makeLineIndex[O any](owner *O, keys int64) lineIndex {
	nb := uint64(keys+lineKeysPerBucket-1) / lineKeysPerBucket
	if nb < 2 {
		nb = 2
	}
	x := lineIndex{buckets: flowtable.AllocArray[lineBucket](owner, int(nb)), nb: nb, seed: rand.Uint64()}
	for b := 0; b < len(x.buckets); b += 4096 / lineBucketSize {
		x.buckets[b].meta.Store(0)
	}
	return x
}

// bytes is the index's memory.
func (x *lineIndex) bytes() int64 { return int64(x.nb) * lineBucketSize }

// hash is a seeded splitmix64 finaliser of v.
func (x *lineIndex) hash(v uint64) uint64 {
	z := v ^ x.seed
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// home maps a hash to its home bucket by multiply-shift on its low half.
func (x *lineIndex) home(h uint64) uint64 { return (uint64(uint32(h)) * x.nb) >> 32 }

func (x *lineIndex) step(b uint64) uint64 {
	b++
	if b == x.nb {
		b = 0
	}
	return b
}

// ended reports whether a walk may stop after bucket b: no key was stored
// beyond it.
func (x *lineIndex) ended(b uint64) bool { return x.buckets[b].meta.Load() < lineOverflow }

// lookup walks the probe path of hash h for an index whose slots hold a
// fingerprint (high half) and a reference plus one (low half): it calls
// try with the reference of each slot whose fingerprint is fp, until try
// returns true, and reports whether one did.
func (x *lineIndex) lookup(h uint64, fp uint32, try func(ref uint32) bool) bool {
	b := x.home(h)
	for n := uint64(0); n < x.nb; n++ {
		bk := &x.buckets[b]
		for s := range bk.slots {
			if v := bk.slots[s].Load(); v != 0 && uint32(v>>32) == fp && try(uint32(v)-1) {
				return true
			}
		}
		if x.ended(b) {
			return false
		}
		b = x.step(b)
	}
	return false
}

// place stores w in the first empty slot from bucket b on, raising the
// overflow count of every full bucket it passes first. The caller holds
// b's lock and has made sure the table has room: at most one key per
// capacity, and the index has 7/5 as many slots, so it always finds one.
func (x *lineIndex) place(b, w uint64) {
	for {
		bk := &x.buckets[b]
		for s := range bk.slots {
			if bk.slots[s].Load() == 0 && bk.slots[s].CompareAndSwap(0, w) {
				return
			}
		}
		bk.meta.Add(lineOverflow)
		b = x.step(b)
	}
}

// unwind lowers the overflow counts of the n buckets from b on: the path
// of a key freed n buckets beyond its home b, after its slot was cleared.
func (x *lineIndex) unwind(b, n uint64) {
	for ; n > 0; n-- {
		x.buckets[b].meta.Add(^uint64(lineOverflow - 1))
		b = x.step(b)
	}
}

// remove clears the slot holding w on the probe path from home bucket b,
// and lowers the overflow counts before it. Only the owner of the entry
// that w stands for removes it, so the slot holds w until then.
func (x *lineIndex) remove(b, w uint64) {
	start := b
	for n := uint64(0); n < x.nb; n++ {
		bk := &x.buckets[b]
		for s := range bk.slots {
			if bk.slots[s].Load() == w && bk.slots[s].CompareAndSwap(w, 0) {
				x.unwind(start, n)
				return
			}
		}
		b = x.step(b)
	}
	panic("nat: index slot of a live entry is missing")
}

// freeList is a lock-free stack of free record numbers, linked through a
// word of each free record (next reads it, setNext writes it); the top
// carries an ABA tag, so a pop that read the link of a record another pop
// has just taken fails its compare-and-swap.
type freeList struct {
	head atomic.Uint64 // (aba tag)<<32 | (record+1), 0 if empty
}

// init links records 0..n-1, 0 on top.
func (f *freeList) init(n int, setNext func(id uint32, next uint64)) {
	for i := 0; i+1 < n; i++ {
		setNext(uint32(i), uint64(i+2))
	}
	if n > 0 {
		f.head.Store(1)
	}
}

func (f *freeList) pop(next func(id uint32) uint64) (uint32, bool) {
	for {
		h := f.head.Load()
		top := uint32(h)
		if top == 0 {
			return 0, false
		}
		if f.head.CompareAndSwap(h, (h>>32+1)<<32|uint64(uint32(next(top-1)))) {
			return top - 1, true
		}
	}
}

func (f *freeList) push(id uint32, setNext func(id uint32, next uint64)) {
	for {
		h := f.head.Load()
		setNext(id, uint64(uint32(h)))
		if f.head.CompareAndSwap(h, (h>>32+1)<<32|uint64(id+1)) {
			return
		}
	}
}

func (x *lineIndex) lock(b uint64) {
	m := &x.buckets[b].meta
	for spins := 0; ; spins++ {
		v := m.Load()
		if v&lineLock == 0 && m.CompareAndSwap(v, v|lineLock) {
			return
		}
		if spins > 64 {
			// The holder may have been preempted; let it run.
			runtime.Gosched()
		}
	}
}

func (x *lineIndex) unlock(b uint64) {
	// Add, not Store: other inserters raise this bucket's overflow count
	// without holding its lock.
	x.buckets[b].meta.Add(^uint64(0))
}
