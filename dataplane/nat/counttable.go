package nat

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/xnat/xnat/flowtable"
)

// countTable is a table of reference counts with one key each: the
// engine's filter permissions and rule session counts (the perms table).
// Such an entry needs its key and its count, nothing else: no second key,
// no last-seen tick, no state word, no first user word. In a flowtable it
// took a 64-byte record and 16 bytes of index; here it takes a 24-byte
// record (countRec) and 12.8 bytes of index (lineindex.go), 36.8 bytes in
// all.
//
// It offers the part of flowtable.Table's interface that the engine uses
// on reference-counted entries (refTable, Lookup, Insert, Len), with the
// same meaning, so that acquireRef and releaseRef serve both: an Entry
// read from it has Keys[0] and User[1] (the count, refDead included) and
// zeros elsewhere, and Insert takes one key, state 0 and User[0] 0.
//
// Concurrency, as in the flowtable: readers never lock. A record's count
// word carries a generation in its high half that rises each time the
// record is given to a new entry, so a reader checks that the generation
// did not move while it copied the key, and every compare-and-swap of a
// count names the generation the caller looked up: it cannot land on the
// record's next entry. Inserts serialise on their key's home bucket. Every
// goroutine may use a countTable.
type countTable struct {
	lineIndex
	recs []countRec
	free freeList // free records link through k0
	_    [56]byte
}

// refTable is what acquireRef and releaseRef need of a table of
// reference-counted entries: a flowtable.Table or a countTable.
type refTable interface {
	LoadUser(id uint32, i int) uint64
	CompareAndSwapUser(id uint32, gen uint64, i int, old, new uint64) (swapped, live bool)
	Alive(id uint32, gen uint64) bool
	Get(id uint32, e *flowtable.Entry) bool
	Delete(id uint32, gen uint64) bool
}

// countRec is one entry: its key, packed as flowtable packs keys, and its
// count word:
//
//	bits  0..30  the count
//	bit  31      dead: the count reached zero and its owner is deleting it
//	bits 32..63  generation
//
// The low half is zero while the record is free (a live entry counts at
// least one, or is dead), and keys are written only then.
type countRec struct {
	k0, k1 atomic.Uint64
	cw     atomic.Uint64
}

const (
	countDead = 1 << 31
	countMax  = countDead - 1
)

// newCountTable returns a table of capacity entries.
func newCountTable(capacity int) *countTable {
	t := &countTable{}
	t.lineIndex = makeLineIndex(t, int64(capacity))
	t.recs = flowtable.AllocArray[countRec](t, capacity)
	// Record 0 is popped first; linking them faults them in.
	t.free.init(capacity, t.setNext)
	return t
}

// Len returns the number of entries.
func (t *countTable) Len() int { return t.free.inUse(len(t.recs)) }

// Cap returns the capacity in entries.
func (t *countTable) Cap() int { return len(t.recs) }

// BytesPerEntry is the table's memory per entry of capacity.
func (t *countTable) BytesPerEntry() float64 {
	return float64(t.bytes()+int64(len(t.recs))*24) / float64(len(t.recs))
}

// countPack packs a key as flowtable does.
func countPack(k *flowtable.Key) (uint64, uint64) {
	return uint64(binary.LittleEndian.Uint32(k.Src[:])) | uint64(binary.LittleEndian.Uint32(k.Dst[:]))<<32,
		uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
}

func countUnpack(w0, w1 uint64) flowtable.Key {
	var k flowtable.Key
	binary.LittleEndian.PutUint32(k.Src[:], uint32(w0))
	binary.LittleEndian.PutUint32(k.Dst[:], uint32(w0>>32))
	k.SrcPort, k.DstPort, k.Proto = uint16(w1), uint16(w1>>16), uint8(w1>>32)
	return k
}

// keyHash hashes a packed key; its high half is the slot fingerprint,
// forced non-zero.
func (t *countTable) keyHash(w0, w1 uint64) (h uint64, fp uint32) {
	h = t.hash(t.hash(w0) ^ w1)
	return h, uint32(h>>32) | 1
}

// countUser converts a count word's low half to the engine's User[1] form
// (refDead for dead) and back.
func countUser(c uint64) uint64 {
	v := c & countMax
	if c&countDead != 0 {
		v |= refDead
	}
	return v
}

// countWord is the count word of generation gen counting user (User[1]
// form); ok is false if user is no live count (zero, or too large).
func countWord(gen, user uint64) (c uint64, ok bool) {
	c = user &^ refDead
	if c > countMax {
		return 0, false
	}
	if user&refDead != 0 {
		c |= countDead
	}
	return gen<<32 | c, c != 0
}

// read copies live record id into e if its key is (w0, w1), or any key
// when match is false.
func (t *countTable) read(id uint32, w0, w1 uint64, match bool, e *flowtable.Entry) bool {
	r := &t.recs[id]
	c := r.cw.Load()
	if uint32(c) == 0 {
		return false
	}
	a0, a1 := r.k0.Load(), r.k1.Load()
	c2 := r.cw.Load()
	if c2>>32 != c>>32 || uint32(c2) == 0 || match && (a0 != w0 || a1 != w1) {
		return false
	}
	*e = flowtable.Entry{ID: id, Gen: c2 >> 32, Keys: [2]flowtable.Key{countUnpack(a0, a1)}}
	e.User[1] = countUser(c2)
	return true
}

// Lookup finds the entry with key k.
func (t *countTable) Lookup(k *flowtable.Key, e *flowtable.Entry) bool {
	w0, w1 := countPack(k)
	h, fp := t.keyHash(w0, w1)
	return t.lookupHashed(w0, w1, h, fp, e)
}

func (t *countTable) lookupHashed(w0, w1, h uint64, fp uint32, e *flowtable.Entry) bool {
	return t.lookup(h, fp, func(ref uint32) bool { return t.read(ref, w0, w1, true, e) })
}

// Insert adds an entry of key k0 with count user[1]. k1 must be NoKey and
// state and user[0] zero: the table keeps nothing else. If k0 belongs to a
// live entry it returns Exists and that entry in e; if the table is full,
// Full. now is not kept.
func (t *countTable) Insert(k0, k1 *flowtable.Key, state uint32, user [2]uint64, now uint32, e *flowtable.Entry) flowtable.InsertResult {
	if *k1 != flowtable.NoKey || state != 0 || user[0] != 0 {
		panic("nat: a count table entry has one key and a count")
	}
	w0, w1 := countPack(k0)
	h, fp := t.keyHash(w0, w1)
	b := t.home(h)
	t.lock(b)
	defer t.unlock(b)
	if t.lookupHashed(w0, w1, h, fp, e) {
		return flowtable.Exists
	}
	id, next, gen, c, ok := t.pop(user[1])
	if !ok {
		return flowtable.Full
	}
	t.prefetchNext(next)
	r := &t.recs[id]
	// Plain stores: the record is free until its count word's store
	// below (flowtable.StoreUnpublished).
	flowtable.StoreUnpublished(&r.k0, w0)
	flowtable.StoreUnpublished(&r.k1, w1)
	// Index first, publish after: a reader that finds the slot early
	// sees a free record and skips it.
	t.place(b, uint64(fp)<<32|uint64(id+1))
	r.cw.Store(c)
	*e = flowtable.Entry{ID: id, Gen: gen, Keys: [2]flowtable.Key{*k0}}
	e.User[1] = user[1]
	return flowtable.Inserted
}

// Get copies live entry id into e.
func (t *countTable) Get(id uint32, e *flowtable.Entry) bool {
	return int(id) < len(t.recs) && t.read(id, 0, 0, false, e)
}

// Alive reports whether entry id is still live at generation gen.
func (t *countTable) Alive(id uint32, gen uint64) bool {
	return int(id) < len(t.recs) && countAlive(&t.recs[id].cw, gen)
}

// countAlive reports whether count word cw is live at generation gen.
func countAlive(cw *atomic.Uint64, gen uint64) bool {
	c := cw.Load()
	return c>>32 == gen && uint32(c) != 0
}

// LoadUser loads user word i (0 or 1) of record id, whatever entry holds
// it now (see flowtable.Table.LoadUser).
func (t *countTable) LoadUser(id uint32, i int) uint64 {
	if i == 0 {
		return 0
	}
	return countUser(t.recs[id].cw.Load())
}

// CompareAndSwapUser replaces the count (i must be 1) of entry id with new
// if the entry is still at generation gen and counts old, in one
// compare-and-swap of the count word. live is false when the entry is gone
// or was reused.
func (t *countTable) CompareAndSwapUser(id uint32, gen uint64, i int, old, new uint64) (swapped, live bool) {
	if i != 1 {
		panic("nat: a count table entry has one user word")
	}
	return swapCount(&t.recs[id].cw, gen, old, new)
}

// pop takes a free record off the table's free list for a new entry
// counting user (User[1] form): its number, and the generation and count
// word of that entry (nextCount). ok is false when no record is free:
// the table is full. The pop is freeList's (top, take); the link is the
// record's k0 (setNext). Each table names its own words: a pop generic
// over the two tables' records found them by a type switch on its
// dictionary (popEntry, about 13 instructions a new mapping more,
// bench-instr).
func (t *countTable) pop(user uint64) (id, next uint32, gen, c uint64, ok bool) {
	for {
		h, top, ok := t.free.top()
		if !ok {
			return 0, 0, 0, 0, false
		}
		r := &t.recs[top]
		if nx := r.k0.Load(); t.free.take(h, nx) {
			gen, c = nextCount(&r.cw, user)
			return top, uint32(nx), gen, c, true
		}
	}
}

// prefetchNext asks for the record of the free list's new top, number
// next-1 (pop), if there is one (flowtable's Table.prefetchNext says why).
func (t *countTable) prefetchNext(next uint32) {
	if next != 0 && int(next) <= len(t.recs) {
		flowtable.PrefetchLine(&t.recs[next-1])
	}
}

// nextCount returns the generation and count word of the next entry of
// the free record whose count word is cw, counting user (User[1] form).
func nextCount(cw *atomic.Uint64, user uint64) (gen, c uint64) {
	gen = cw.Load()>>32 + 1
	c, ok := countWord(gen, user)
	if !ok {
		panic("nat: a new entry must count 1..2^31-1")
	}
	return gen, c
}

// swapCount is CompareAndSwapUser on count word cw: a swap that succeeded
// reports the entry live, though its other holders may end it the next
// instant.
func swapCount(cw *atomic.Uint64, gen, old, new uint64) (swapped, live bool) {
	if casCount(cw, gen, old, new) {
		return true, true
	}
	return false, countAlive(cw, gen)
}

// casCount replaces the count in count word cw with new if the word is at
// generation gen and counts old (counts in User[1] form).
func casCount(cw *atomic.Uint64, gen, old, new uint64) bool {
	nc, ok := countWord(gen, new)
	if !ok {
		panic("nat: a count must stay 1..2^31-1 or dead")
	}
	// A count that no live entry can hold (a caller that loaded a free
	// record's word) matches nothing.
	oc, ok := countWord(gen, old)
	return ok && cw.CompareAndSwap(oc, nc)
}

// freeCount marks the entry of count word cw free if it is at generation
// gen and not free already. The caller then unindexes and frees it.
func freeCount(cw *atomic.Uint64, gen uint64) bool {
	for {
		c := cw.Load()
		if c>>32 != gen || uint32(c) == 0 {
			return false
		}
		if cw.CompareAndSwap(c, gen<<32) {
			return true
		}
	}
}

// Delete removes entry id if it is still at generation gen.
func (t *countTable) Delete(id uint32, gen uint64) bool {
	if int(id) >= len(t.recs) || !freeCount(&t.recs[id].cw, gen) {
		return false
	}
	r := &t.recs[id]
	// Free now (low half zero), so no reader accepts it; unindex it,
	// then give it back.
	h, fp := t.keyHash(r.k0.Load(), r.k1.Load())
	t.remove(t.home(h), uint64(fp)<<32|uint64(id+1))
	t.free.push(id, t.setNext)
	return true
}

// setNext keeps the free list in k0 of the free records (pop), which
// no reader uses while the count word's low half is zero.
func (t *countTable) setNext(id uint32, next uint64) { t.recs[id].k0.Store(next) }
