package flowtable

import (
	"runtime"
	"sync/atomic"
)

// The bucket index: an array of cache-line buckets, each a meta word and
// seven one-word slots, open-addressed from a key's home bucket onward. It
// is the Table's index (slots hold a fingerprint and a record reference,
// table.go) and, through Index, the index of the NAT engine's compact
// tables (dataplane/nat, whose slots hold a whole port, or a fingerprint
// and a record number). What a slot holds is its table's business, except
// that 0 marks it empty.
//
// The meta word holds an insert lock (bit 0, MetaLock) and an overflow
// count (bits 8..63, in units of MetaOverflow): the number of keys stored
// beyond the bucket by inserts whose probe passed through it. A lookup
// stops at the first bucket whose count is zero. An insert raises the
// counts along its path before it publishes its slot (Place), and a
// delete clears its slot before it lowers them (Remove), so at every
// instant a visible key's path is covered by non-zero counts. Deleted
// slots are empty at once: no tombstones, so churn never degrades the
// index. Inserts serialise on the lock of their key's home bucket, so two
// inserts of one key cannot both succeed; an empty slot is filled only
// under its own bucket's lock (the home's, or one Place takes beyond it),
// so inserts from different homes that reach one overflow bucket are
// safe too, and the holder fills it with a plain store (Place). Lookups
// and deletes take no lock.

// Bucket is one cache line of the index: the meta word and the slots.
// Whoever holds the index may read them; writes go through the index's
// methods (Lock, Place, Remove) or the bucket's own lock methods (Lock,
// TryLock, Unlock: the index's, for a caller that has the bucket's
// address), except that a table may change a slot it owns in place (a
// port's state bits) by compare-and-swap.
type Bucket struct {
	Meta  atomic.Uint64
	Slots [BucketSlots]atomic.Uint64
}

const (
	// BucketSlots is the number of slots in a Bucket.
	BucketSlots = 7
	// BucketSize is a Bucket's size in bytes: one cache line (asserted
	// by TestLayoutSizes).
	BucketSize = 64
	// MetaLock is a bucket's insert lock bit in its meta word.
	MetaLock = 1
	// MetaOverflow is one key stored beyond the bucket: the overflow
	// count lives in bits 8..63 of the meta word, so that the lock has
	// the low byte to itself and Unlock can be a store of that byte.
	MetaOverflow = 1 << 8

	pageSize = 4096
)

// Index is the bucket index: the Table's (its field ix) and the NAT
// engine's compact tables'. Its methods walk a probe path (Home, Step,
// Ended), serialise inserts per home bucket (Lock, Unlock) and keep the
// overflow counts (Place, Unwind, Remove). Every goroutine may use an
// Index.
type Index struct {
	buckets []Bucket
	nb      uint64 // number of buckets
}

// MakeIndex returns an index of buckets buckets (at least two) for the
// table owner, allocated as AllocArray does and faulted in.
func MakeIndex[O any](owner *O, buckets int) Index {
	buckets = max(buckets, 2)
	x := Index{buckets: AllocArray[Bucket](owner, buckets), nb: uint64(buckets)}
	x.faultIn()
	return x
}

// Buckets returns the bucket array, for a table's own reads of its slots.
func (x *Index) Buckets() []Bucket { return x.buckets }

// Len returns the number of buckets.
func (x *Index) Len() int { return len(x.buckets) }

// faultIn writes to every page of the bucket array: the first write to
// each page of a fresh allocation costs a page fault, and that must not
// happen to a worker inserting at line rate.
func (x *Index) faultIn() {
	for b := 0; b < len(x.buckets); b += pageSize / BucketSize {
		x.buckets[b].Meta.Store(0)
	}
}

// Home maps a hash to its home bucket by multiply-shift range reduction
// (Lemire) of its low half, which needs no power-of-two bucket count.
func (x *Index) Home(h uint64) uint64 {
	return (uint64(uint32(h)) * x.nb) >> 32
}

// Step is the bucket after b on a probe path, wrapping at the end.
func (x *Index) Step(b uint64) uint64 {
	b++
	if b == x.nb {
		b = 0
	}
	return b
}

// Ended reports whether a walk may stop after bucket b: no key was stored
// beyond it. The lock bit does not count.
func (x *Index) Ended(b uint64) bool { return x.buckets[b].Meta.Load() < MetaOverflow }

// Lacks is in lacks_le.go and lacks_other.go.

// Lock takes the insert lock of bucket b: one compare-and-swap from the
// word as it would be unlocked, so that the uncontended case is small;
// if the bucket is locked the swap fails and lockSlow waits.
func (x *Index) Lock(b uint64) { x.buckets[b].Lock() }

// Lock is Index.Lock of bucket bk, for a caller that has its address.
func (bk *Bucket) Lock() {
	if !bk.TryLock() {
		lockSlow(&bk.Meta)
	}
}

// TryLock takes the insert lock of bucket b if it is free, as Lock's
// first compare-and-swap does, and reports whether it did. It inlines,
// where Lock, with its call for the wait, does not: a caller on a hot
// path locks with TryLock and calls Lock only when that fails (about 15
// instructions a lock fewer than the call, make bench-instr).
func (x *Index) TryLock(b uint64) bool { return x.buckets[b].TryLock() }

// TryLock is Index.TryLock of bucket bk, for a caller that has its
// address: one bounds check and one address for the lock, the check of
// the line and the unlock of an insert (about 23 instructions a new
// session in Table.insert, make bench-instr).
func (bk *Bucket) TryLock() bool {
	v := bk.Meta.Load() &^ MetaLock
	return bk.Meta.CompareAndSwap(v, v|MetaLock)
}

func lockSlow(m *atomic.Uint64) {
	for spins := 0; ; spins++ {
		v := m.Load()
		if v&MetaLock == 0 && m.CompareAndSwap(v, v|MetaLock) {
			return
		}
		if spins > 64 {
			// The holder may have been preempted; let it run.
			runtime.Gosched()
		}
	}
}

func (x *Index) Unlock(b uint64) { x.buckets[b].Unlock() }

// Unlock is Index.Unlock of bucket bk, for a caller that has its address.
// Other inserters change the overflow count of the bucket without holding
// its lock, so the unlock may not store the whole word: on amd64 it
// stores the low byte, which only the lock holder writes (the count is in
// bits 8 and up), and elsewhere it subtracts the lock bit (unlockMeta).
func (bk *Bucket) Unlock() { unlockMeta(&bk.Meta) }

// Place stores slot word w (never 0) in the first empty slot on the probe
// path from bucket b, raising the overflow count of every bucket it
// passes first, and returns that slot. The caller holds the lock of its
// key's home bucket b and has made sure the index has room (a table never
// holds more keys than its index has slots), so Place always finds one.
// The slot holds w, or a word its table's transitions made of it, until
// its owner removes it: a table whose slots change in place (the NAT's
// port table) may keep it to change the word again without the walk.
//
// A slot goes from empty to a word only under its bucket's lock: in the
// home bucket, the caller's; beyond it, Place takes the bucket's lock for
// its store, and passes a bucket whose lock it cannot take at once as if
// it were full (its holder may be filling it; the key is then stored
// further on, and the passed bucket's count covers it, as any full
// bucket's does). Every other change of a slot is from a word: a delete's
// to empty (Remove), a port's state (the NAT's port table). So the holder
// of a bucket's lock that reads a slot empty is the only one that can
// change it, and stores its word plainly (storeLocked), where a compare-
// and-swap was a locked instruction a key (four a new session). Skipping
// a locked bucket, not waiting for it, is what keeps an insert that holds
// two homes (Table.insertSlow) from waiting on another that holds the
// bucket it needs and needs one of its homes. It never waits: the index
// always has empty slots in buckets no insert holds (at most two per
// inserting goroutine are held, and a full table fills at most five of
// every seven slots), so the walk meets one.
func (x *Index) Place(b, w uint64) *atomic.Uint64 { return x.PlaceIn(&x.buckets[b], b, w) }

// PlaceIn is Place for a caller that has the address of bucket b, bk
// (&Buckets()[b]): an insert, which has locked and checked it.
func (x *Index) PlaceIn(bk *Bucket, b, w uint64) *atomic.Uint64 { return placeIn(bk, w, x, b) }

// placeIn is PlaceIn, its arguments in another order: the receiver comes
// first in Go's register convention (AX), which the compare-and-swap of
// an earlier version needed for its old value (about 4 instructions a new
// session, bench-instr). One function for the home bucket and the walk:
// a call for the slots' stores cost about 11 instructions a new session
// (2,459 against 2,441, bench-instr).
func placeIn(bk *Bucket, w uint64, x *Index, b uint64) (s *atomic.Uint64) {
	taken := false // whether the walk took bk's lock: the home's is the caller's
	for {
		// The slots written out, as in Lacks: with the bucket's address
		// in a register (the caller's, then the walk's) a load, a test
		// and a branch a slot passed, where the loop over them, inlined
		// into the callers, took about 12 (3,155 to 3,147 instructions
		// a new session, four Places, make bench-instr). The loads are
		// plain (loadSlot): under the lock a slot read empty stays so.
		if loadSlot(&bk.Slots[0]) == 0 {
			s = &bk.Slots[0]
			goto store
		}
		if loadSlot(&bk.Slots[1]) == 0 {
			s = &bk.Slots[1]
			goto store
		}
		if loadSlot(&bk.Slots[2]) == 0 {
			s = &bk.Slots[2]
			goto store
		}
		if loadSlot(&bk.Slots[3]) == 0 {
			s = &bk.Slots[3]
			goto store
		}
		if loadSlot(&bk.Slots[4]) == 0 {
			s = &bk.Slots[4]
			goto store
		}
		if loadSlot(&bk.Slots[5]) == 0 {
			s = &bk.Slots[5]
			goto store
		}
		if loadSlot(&bk.Slots[6]) == 0 {
			s = &bk.Slots[6]
			goto store
		}
		bk.Meta.Add(MetaOverflow)
		if taken {
			bk.Unlock()
		}
		for {
			b = x.Step(b)
			bk = &x.buckets[b]
			if bk.TryLock() {
				break
			}
			bk.Meta.Add(MetaOverflow) // passed as full: see Place
		}
		taken = true
	}
store:
	storeLocked(s, w)
	if taken {
		bk.Unlock()
	}
	return s
}

// Unwind lowers the overflow counts of the n buckets from b on: the path
// of a key freed n buckets beyond its home b, after its slot was cleared.
func (x *Index) Unwind(b, n uint64) {
	for ; n > 0; n-- {
		x.buckets[b].Meta.Add(^uint64(MetaOverflow - 1))
		b = x.Step(b)
	}
}

// Remove clears the slot holding w on the probe path from home bucket b,
// and lowers the overflow counts before it. Only the owner of the entry
// that w stands for removes it, so the slot holds w until this
// compare-and-swap.
func (x *Index) Remove(b, w uint64) {
	start := b
	for n := uint64(0); n < x.nb; n++ {
		bk := &x.buckets[b]
		for s := range bk.Slots {
			if bk.Slots[s].Load() == w && bk.Slots[s].CompareAndSwap(w, 0) {
				x.Unwind(start, n)
				return
			}
		}
		b = x.Step(b)
	}
	panic("flowtable: index slot of a live entry is missing")
}
