package nat

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"

	"github.com/xnat/xnat/flowtable"
)

// lineIndex is the hash index of the engine's compact tables (the port
// table, porttable.go, the count table, counttable.go, and the bind
// table, bindtable.go): the flowtable's bucket index (flowtable.Index:
// cache-line buckets of a meta word and seven one-word slots, overflow
// counts instead of tombstones, inserts locked per home bucket, lookups
// and deletes lock-free), with what is the engine's own: the number of
// keys per bucket, the seed of the tables' hash, and the walk over slots
// that hold a fingerprint and a record number. What a slot holds is the
// table's business (a whole port, or a fingerprint and a record number);
// a slot of 0 is empty.
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
	flowtable.Index
	// buckets and nb are the Index's buckets and their number, for the
	// tables' own walks over their slots.
	buckets []lineBucket
	nb      uint64
	seed    uint64
}

// lineBucket is one cache line of a lineIndex.
type lineBucket = flowtable.Bucket

const (
	lineKeysPerBucket = 5
	lineBucketSize    = flowtable.BucketSize
	lineOverflow      = flowtable.MetaOverflow // one key beyond, in the meta word
)

// makeLineIndex returns an index for keys keys of the table owner, faulted
// in, its buckets outside the Go heap when big, until owner is
// unreachable (flowtable.MakeIndex).
func makeLineIndex[O any](owner *O, keys int64) lineIndex {
	x := lineIndex{Index: flowtable.MakeIndex(owner, int((keys+lineKeysPerBucket-1)/lineKeysPerBucket)), seed: rand.Uint64()}
	x.buckets = x.Buckets()
	x.nb = uint64(len(x.buckets))
	return x
}

// bytes is the index's memory.
func (x *lineIndex) bytes() int64 { return int64(x.Len()) * lineBucketSize }

// hash is v XORed with the index's secret seed, multiplied by an odd
// constant into 128 bits, and the two halves, the high one XORed with a
// constant, multiplied again and folded, as the flowtable's hash folds its
// two words (flowtable's hashSeed.hash). Two MULs where the seeded
// splitmix64 finaliser before it took two IMULs and three shift-and-XORs:
// 10 instructions a hash against 14, and about 8 fewer a new session,
// which hashes three keys in its passes (bench-instr, 2,708 -> 2,700;
// Go's fixed registers for MUL, AX and DX, cost a few moves around it).
// The second product's low factor without a constant of its own (lo, not
// lo^c3 as in flowtable's) is 2,700 against 2,704; lo is zero only for
// the key equal to the seed. The first product alone, folded, is cheaper
// still (2,725 -> 2,705 in the eighth round) but no hash of these keys: a
// high bit of v changes it by a constant, and the fingerprints of
// consecutive hosts crowd (chi-square 86,292 against a bound of 17,470 in
// TestLineHashSpread, and input bit 0 sets an output bit always in
// TestLineHashAvalanche); so does the product of v under two seeds, (v^s0)
// times (v^s1), folded (bias 0.49). The tests hold the hash to the
// finaliser's spread over buckets and fingerprints and to strict avalanche
// on the key sets these tables see. Unlike the finaliser it is not a
// bijection of the key word, which no table needs: their slots lead to
// records (or, in the port table, hold words) whose whole key is compared.
func (x *lineIndex) hash(v uint64) uint64 {
	const (
		c1 = 0x9e3779b97f4a7c15 // odd constants of SplitMix64
		c2 = 0xbf58476d1ce4e5b9
	)
	hi, lo := bits.Mul64(v^x.seed, c1)
	hi, lo = bits.Mul64(hi^c2, lo)
	return hi ^ lo
}

// The tables' names for the index's methods (flowtable.Index).
func (x *lineIndex) home(h uint64) uint64 { return x.Home(h) }
func (x *lineIndex) step(b uint64) uint64 { return x.Step(b) }
func (x *lineIndex) ended(b uint64) bool  { return x.Ended(b) }
func (x *lineIndex) lock(b uint64)        { x.Lock(b) }
func (x *lineIndex) unlock(b uint64)      { x.Unlock(b) }
func (x *lineIndex) place(b, w uint64)    { x.Place(b, w) }
func (x *lineIndex) unwind(b, n uint64)   { x.Unwind(b, n) }
func (x *lineIndex) remove(b, w uint64)   { x.Remove(b, w) }

// lookup walks the probe path of hash h for an index whose slots hold a
// fingerprint (high half) and a reference plus one (low half): it calls
// try with the reference of each slot whose fingerprint is fp, until try
// returns true, and reports whether one did.
func (x *lineIndex) lookup(h uint64, fp uint32, try func(ref uint32) bool) bool {
	b := x.home(h)
	for n := uint64(0); n < x.nb; n++ {
		bk := &x.buckets[b]
		for s := range bk.Slots {
			if v := bk.Slots[s].Load(); v != 0 && uint32(v>>32) == fp && try(uint32(v)-1) {
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

// noFingerprint reports whether bucket b holds no slot of fingerprint fp
// (never 0: a table's fingerprints are forced non-zero) and no key was
// stored beyond it (flowtable.Bucket.Lacks): then no key of that
// fingerprint whose home is b was in the index when the bucket was read,
// and lookup would have answered no after this one line. Under b's insert
// lock the answer is exact: only an insert of home b places such a key.
func (x *lineIndex) noFingerprint(b uint64, fp uint32) bool { return x.buckets[b].Lacks(fp) }

// freeList is a lock-free stack of free record numbers, linked through a
// word of each free record (setNext writes it; top and take pop); the top
// carries an ABA tag, so a pop that read the link of a record another pop
// has just taken fails its compare-and-swap.
type freeList struct {
	// head is pops<<32 | (record+1), 0 if empty; pushes counts the
	// pushes. Only pops move the head's count, which is still an ABA
	// tag (flowtable's Table.pop says why), and the two counts give the
	// records in use (inUse) without a count of its own, which cost
	// every insert a locked add on a shared line.
	head   atomic.Uint64
	pushes atomic.Uint32
}

// top returns the list's head word h and its top record; ok is false
// when the list is empty. The record is the caller's once take(h, ...)
// succeeds.
func (f *freeList) top() (h uint64, id uint32, ok bool) {
	h = f.head.Load()
	return h, uint32(h) - 1, uint32(h) != 0
}

// take pops the top record of head word h, whose link word the caller
// read as next (its successor + 1), if the head is still h. The count of
// pops in the head's high half moves with every pop, so a head that was
// popped and pushed back since h was read fails the swap, and with it a
// next that another pop's new entry may have overwritten.
func (f *freeList) take(h, next uint64) bool {
	return f.head.CompareAndSwap(h, (h>>32+1)<<32|uint64(uint32(next)))
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

func (f *freeList) push(id uint32, setNext func(id uint32, next uint64)) {
	for {
		h := f.head.Load()
		setNext(id, uint64(uint32(h)))
		if f.head.CompareAndSwap(h, h>>32<<32|uint64(id+1)) {
			f.pushes.Add(1)
			return
		}
	}
}

// inUse returns the records popped and not pushed back, at most n (the
// list's records): read while others pop and push, a record being taken
// or given back may count.
func (f *freeList) inUse(n int) int {
	pushed := f.pushes.Load() // first: then pushed <= popped below
	popped := uint32(f.head.Load() >> 32)
	return min(int(popped-pushed), n)
}
