// Package flowtable is the NAT session table: the structure every worker
// consults for every packet, that several workers insert into concurrently,
// and that the expirer and the management plane walk in the background.
//
// # Layout
//
// A Table is three preallocated, pointer-free arrays, so the garbage collector
// never scans them and nothing is allocated after New:
//
//   - records: one 64-byte, cache-line-sized record per session. A record
//     holds both keys of the session (the inside and the outside view of the
//     flow), a last-seen tick, an engine-defined state word and two
//     engine-defined user words.
//   - buckets: the hash index. A bucket is one cache line: a meta word, eight
//     16-bit tags packed four to a word, and eight 32-bit references. A slot
//     is a tag (16 bits of the key's xxhash, never zero) and a reference
//     ref+1, where ref = record<<1 | keyIndex (0 means empty). Each session
//     occupies two slots, one per key, and both lead to the same record. A
//     lookup compares its tag with four tags at a time (SWAR), so scanning a
//     bucket costs two loads and a few arithmetic operations.
//   - next: the links of a lock-free free list of record numbers.
//
// # Concurrency
//
// Readers never lock and never write. Each record carries a generation
// number: odd while the record is free or being torn down, even while it is
// live. A reader loads the generation, copies the record, and loads the
// generation again; only if both loads show the same even generation is the
// copy used. Keys are written only while the record is not live, so a
// validated copy is never torn, and because the reader compares the full key
// after validation, a slot that now leads to a recycled record can cause at
// most a miss, never a false hit.
//
// A live record's state and user words change only through the gated
// writes (CompareAndSwapState, CompareAndSwapUser, AddUser), which name the
// generation the caller looked up. A gated write first pins the record: it
// raises a pin count kept in the high bits of the generation word, with a
// compare-and-swap that succeeds only if the generation is still the named
// one. Delete waits for the pins to drop before it claims the record, so a
// pinned record cannot be freed and recycled under the write: the check of
// the generation and the write are one atomic step as far as any other
// incarnation of the record can tell. Without it a caller that looked up a
// session, was delayed, and then updated "its" record would update whoever
// had been given the record since: a reference counted on the wrong entry
// is a port or a pairing that is never released. Readers ignore the pins.
//
// Writers (Insert) serialise per home bucket: an insert takes a spin bit in
// the meta word of the home bucket of each of its keys, in bucket order, so
// two inserts of the same key cannot both succeed. Slots themselves are
// claimed with compare-and-swap on the reference, so inserts with different
// home buckets that race for the same overflow slot are safe. A slot's tag
// is published after its reference and cleared before it, and a tag alone
// never decides anything: a reader that pairs a tag with a stale reference
// reads a record whose key does not match, which is a miss. This is the same split as DPDK's
// rte_hash in lock-free read/write-concurrency mode: lock-free readers,
// briefly serialised writers.
//
// Probe chains end with overflow counts rather than tombstones. The meta word
// of every bucket counts the keys that were stored beyond it by a probe that
// passed through it. A reader stops at the first bucket whose count is zero.
// An insert raises the counts along its path before it publishes its slot,
// and a delete clears its slot before it lowers them, so at every instant a
// visible key's path is covered by non-zero counts. Deleted slots become
// empty at once and are reused; the table never degrades with churn.
//
// Delete is claimed by a compare-and-swap of the generation from even to odd,
// so the expirer and the management plane may race to delete the same
// session and exactly one wins.
//
// # Ageing
//
// Every record has a last-seen tick from a coarse clock the caller reads once
// per batch. The unit is the caller's (the NAT engine uses milliseconds).
// Ticks are 32 bits and wrap (at one per millisecond, every 49.7 days), so
// every comparison of ticks is modular: idle time is now - Seen modulo 2^32,
// which is right as long as timeouts stay below 2^31 ticks. The
// incremental expirer visits a bounded number of records per call and
// removes those whose idle time has reached the timeout the caller computes
// for each entry; it never evicts a live, non-idle session, and an Insert
// into a full table fails rather than evicting anything (RFC 6888 REQ-11).
package flowtable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"
)

const (
	slotsPerBucket = 8
	// maxLoad is the highest fraction of slots in use at full capacity.
	// Bucketed probing at one half keeps almost every lookup to one cache
	// line while costing 64*4/8 = 32 bytes of index per session.
	maxLoadNum, maxLoadDen = 1, 2
	// MaxCapacity bounds the record numbers so that ref+1 fits in 32 bits.
	MaxCapacity = 1 << 30

	metaLock     = 1
	metaOverflow = 2 // the overflow count lives in bits 1..63

	lanes = 0x0001_0001_0001_0001 // one in each 16-bit lane
	highs = 0x8000_8000_8000_8000 // the top bit of each lane

	// genMask selects the generation in a record's gen word. A record's
	// generation rises by two per session it holds: 2^47 sessions, which
	// at ten million insertions a second into one record would take half
	// a million years, so it never wraps and never repeats.
	genMask = 1<<48 - 1
	// pinOne is one gated write in flight (bits 48..63 of the gen word).
	// At most one pin per goroutine exists at a time, so 65535 goroutines
	// would have to write to one record at the same instant to overflow.
	pinOne = 1 << 48
)

// record is one session. Its size is exactly one cache line (asserted by a
// test). All fields are atomics because readers on other cores load them
// while the owner of a dying or newborn record stores them; on amd64 and
// arm64 these are plain loads and stores with ordering guarantees.
type record struct {
	// gen is the generation (bits 0..47, see genMask) and the number of
	// gated writes in flight (bits 48..63, see pinOne).
	gen   atomic.Uint64
	keys  [2][2]atomic.Uint64
	seen  atomic.Uint32
	state atomic.Uint32
	user  [2]atomic.Uint64
}

type bucket struct {
	meta atomic.Uint64
	tags [2]atomic.Uint64 // slot s's tag is lane s%4 of tags[s/4]
	refs [slotsPerBucket]atomic.Uint32
	_    [8]byte
}

// match returns, for each tag word, a mask with the top bit of every
// 16-bit lane whose tag may equal tag. Every real match is reported; a lane
// can also be reported falsely when a borrow from a matching lane below it
// runs into it, which the caller's key comparison rejects. Slot w*4+i is
// lane i of word w; nextSlot walks the masks.
func (b *bucket) match(tag uint16) (z0, z1 uint64) {
	rep := uint64(tag) * lanes
	x0 := b.tags[0].Load() ^ rep
	x1 := b.tags[1].Load() ^ rep
	return (x0 - lanes) &^ x0 & highs, (x1 - lanes) &^ x1 & highs
}

// nextSlot pops the lowest candidate from the masks of match and returns
// its slot, or -1 when none is left.
func nextSlot(z0, z1 *uint64) int {
	if *z0 != 0 {
		s := bits.TrailingZeros64(*z0) >> 4
		*z0 &= *z0 - 1
		return s
	}
	if *z1 != 0 {
		s := bits.TrailingZeros64(*z1)>>4 + 4
		*z1 &= *z1 - 1
		return s
	}
	return -1
}

// setTag sets slot s's tag, leaving the other lanes as they are.
func (b *bucket) setTag(s int, tag uint16) {
	w, sh := &b.tags[s/4], uint(s%4)*16
	for {
		v := w.Load()
		if w.CompareAndSwap(v, v&^(0xffff<<sh)|uint64(tag)<<sh) {
			return
		}
	}
}

// Entry is a consistent copy of one session record.
type Entry struct {
	// ID is the record number, stable for the life of the session.
	ID uint32
	// Dir is the index of the key a Lookup matched (0 or 1).
	Dir uint8
	// Gen is the generation the copy was taken at; pass it to Delete and
	// to the gated writes so that a recycled record is never changed by
	// mistake.
	Gen uint64
	// Keys are the session's two keys, as given to Insert.
	Keys [2]Key
	// Seen is the last-seen tick.
	Seen uint32
	// State is the engine-defined state word.
	State uint32
	// User holds the two engine-defined user words.
	User [2]uint64
}

// InsertResult says how an Insert ended.
type InsertResult uint8

const (
	// Inserted means a new session now holds both keys.
	Inserted InsertResult = iota
	// Exists means one of the keys already belongs to a live session; the
	// returned entry is that session.
	Exists
	// Full means the table is at capacity. Nothing was evicted.
	Full
)

func (r InsertResult) String() string {
	switch r {
	case Inserted:
		return "inserted"
	case Exists:
		return "exists"
	case Full:
		return "full"
	}
	return "unknown"
}

// NoKey, as the second key of an Insert, makes a single-key entry: only the
// first key is indexed. Protocol 0 never names a flow the NAT translates.
var NoKey = Key{}

// Table is the session table. All methods are safe for concurrent use,
// except that at most one goroutine at a time may call Expire.
type Table struct {
	recs    []record
	buckets []bucket
	next    []atomic.Uint32 // free-list links, next[i] = successor+1
	nb      uint64          // number of buckets

	// head is the free list's top: (aba tag)<<32 | (record+1), 0 if empty.
	head atomic.Uint64
	_    [56]byte
	live atomic.Int64
	_    [56]byte

	// Owned by the goroutine that calls Expire.
	cursor        uint32
	expireScratch Entry
}

// ErrCapacity reports an unusable capacity.
var ErrCapacity = errors.New("flowtable: capacity out of range")

// New returns a table that holds up to capacity sessions. All memory is
// allocated here; the table never grows.
func New(capacity int) (*Table, error) {
	if capacity < 1 || capacity > MaxCapacity {
		return nil, fmt.Errorf("%w: %d (want 1..%d)", ErrCapacity, capacity, MaxCapacity)
	}
	keys := uint64(capacity) * 2
	nb := (keys*maxLoadDen + slotsPerBucket*maxLoadNum - 1) / (slotsPerBucket * maxLoadNum)
	if nb < 2 {
		nb = 2
	}
	t := &Table{nb: nb}
	var m1, m2, m3 mapping
	t.recs, m1 = allocArray[record](capacity)
	t.buckets, m2 = allocArray[bucket](int(nb))
	t.next, m3 = allocArray[atomic.Uint32](capacity)
	t.releaseLater(m1, m2, m3)
	// Free records have odd generations. Thread the free list so that
	// record 0 is popped first; it makes tests and dumps easier to read.
	for i := range t.recs {
		t.recs[i].gen.Store(1)
		if i+1 < capacity {
			t.next[i].Store(uint32(i + 2))
		}
	}
	t.head.Store(1)
	// Fault in the index now: the first write to each page of a fresh
	// allocation costs a page fault, and that must not happen to a
	// worker inserting a session at line rate. (The loop above already
	// wrote every record and link.)
	for b := 0; b < len(t.buckets); b += pageSize / bucketSize {
		t.buckets[b].meta.Store(0)
	}
	return t, nil
}

const (
	pageSize   = 4096
	bucketSize = 64 // asserted by TestLayoutSizes
)

// Cap returns the capacity in sessions.
func (t *Table) Cap() int { return len(t.recs) }

// Len returns the number of live sessions.
func (t *Table) Len() int { return int(t.live.Load()) }

// BytesPerSession is the memory the table holds per session of capacity:
// the record, its share of the index (both keys included) and its free-list
// link.
func (t *Table) BytesPerSession() float64 {
	const recSize, bucketSize, linkSize = 64, 64, 4
	total := float64(len(t.recs))*(recSize+linkSize) + float64(t.nb)*bucketSize
	return total / float64(len(t.recs))
}

// hash returns XXH64 (seed 0) of the 16 bytes of a packed key: w0 and w1
// in little-endian order. It is the xxhash algorithm specialised to one
// fixed length, so that it inlines into the lookup instead of calling the
// library's assembly for every packet; hash_test.go checks it against
// github.com/cespare/xxhash/v2 on random keys.
func hash(w0, w1 uint64) uint64 {
	const (
		p1 = 11400714785074694791
		p2 = 14029467366897019727
		p3 = 1609587929392839161
		p4 = 9650029242287828579
		p5 = 2870177450012600261
	)
	h := uint64(p5 + KeySize)
	h ^= bits.RotateLeft64(w0*p2, 31) * p1
	h = bits.RotateLeft64(h, 27)*p1 + p4
	h ^= bits.RotateLeft64(w1*p2, 31) * p1
	h = bits.RotateLeft64(h, 27)*p1 + p4
	h ^= h >> 33
	h *= p2
	h ^= h >> 29
	h *= p3
	h ^= h >> 32
	return h
}

// home maps a hash to its home bucket by multiply-shift range reduction
// (Lemire), which needs no power-of-two bucket count.
func (t *Table) home(h uint64) uint64 {
	return (uint64(uint32(h)) * t.nb) >> 32
}

func (t *Table) step(b uint64) uint64 {
	b++
	if b == t.nb {
		b = 0
	}
	return b
}

func slotRef(id uint32, dir uint8) uint32 { return id<<1 | uint32(dir) + 1 }

// Lookup finds the session holding k. It never blocks and never writes.
func (t *Table) Lookup(k *Key, e *Entry) bool {
	w0, w1 := k.pack()
	h := hash(w0, w1)
	return t.lookupHashed(w0, w1, h, e)
}

func (t *Table) lookupHashed(w0, w1, h uint64, e *Entry) bool {
	tag := tagOf(h)
	b := t.home(h)
	for probes := uint64(0); probes < t.nb; probes++ {
		bk := &t.buckets[b]
		z0, z1 := bk.match(tag)
		for s := nextSlot(&z0, &z1); s >= 0; s = nextSlot(&z0, &z1) {
			ref := bk.refs[s].Load()
			if ref != 0 && t.read((ref-1)>>1, uint8((ref-1)&1), w0, w1, e) {
				return true
			}
		}
		if bk.meta.Load()>>1 == 0 {
			return false
		}
		b = t.step(b)
	}
	return false
}

// tagOf is the slot tag of a hash: 16 of its high bits, never zero, so that
// an empty lane never matches.
func tagOf(h uint64) uint16 {
	if t := uint16(h >> 48); t != 0 {
		return t
	}
	return 1
}

// read copies record id into e if it is live and its key dir equals
// (w0, w1). It is the seqlock read side.
func (t *Table) read(id uint32, dir uint8, w0, w1 uint64, e *Entry) bool {
	r := &t.recs[id]
	g := r.gen.Load() & genMask
	if g&1 != 0 {
		return false
	}
	a0, a1 := r.keys[0][0].Load(), r.keys[0][1].Load()
	b0, b1 := r.keys[1][0].Load(), r.keys[1][1].Load()
	seen, state := r.seen.Load(), r.state.Load()
	u0, u1 := r.user[0].Load(), r.user[1].Load()
	if r.gen.Load()&genMask != g {
		return false
	}
	if dir == 0 {
		if a0 != w0 || a1 != w1 {
			return false
		}
	} else if b0 != w0 || b1 != w1 {
		return false
	}
	e.ID, e.Dir, e.Gen = id, dir, g
	e.Keys[0].unpackFrom(a0, a1)
	e.Keys[1].unpackFrom(b0, b1)
	e.Seen, e.State = seen, state
	e.User[0], e.User[1] = u0, u1
	return true
}

// Get copies the live record id into e.
func (t *Table) Get(id uint32, e *Entry) bool {
	if int(id) >= len(t.recs) {
		return false
	}
	r := &t.recs[id]
	g := r.gen.Load() & genMask
	if g&1 != 0 {
		return false
	}
	w := [4]uint64{r.keys[0][0].Load(), r.keys[0][1].Load(), r.keys[1][0].Load(), r.keys[1][1].Load()}
	seen, state := r.seen.Load(), r.state.Load()
	u0, u1 := r.user[0].Load(), r.user[1].Load()
	if r.gen.Load()&genMask != g {
		return false
	}
	e.ID, e.Dir, e.Gen = id, 0, g
	e.Keys[0].unpackFrom(w[0], w[1])
	e.Keys[1].unpackFrom(w[2], w[3])
	e.Seen, e.State = seen, state
	e.User[0], e.User[1] = u0, u1
	return true
}

// Touch records activity on session id at tick now. It stores only when the
// tick changed, so a busy session dirties its cache line once per tick, not
// once per packet. Touching a record recycled since the lookup refreshes an
// unrelated session by at most one tick, which is harmless.
func (t *Table) Touch(id uint32, now uint32) {
	r := &t.recs[id]
	if r.seen.Load() != now {
		r.seen.Store(now)
	}
}

// pin marks a gated write in flight on session id if it is live at
// generation gen, and returns the record; it returns nil if the session is
// gone or was recycled. The caller writes, then unpins. While the pin is
// held Delete waits, so the record stays at generation gen.
func (t *Table) pin(id uint32, gen uint64) *record {
	if int(id) >= len(t.recs) || gen&1 != 0 || gen > genMask {
		return nil
	}
	r := &t.recs[id]
	for {
		g := r.gen.Load()
		if g&genMask != gen {
			return nil
		}
		// Generations only rise, so this succeeds only if the record
		// was at gen from the load to here: never on a later
		// incarnation that happens to show the same words.
		if r.gen.CompareAndSwap(g, g+pinOne) {
			return r
		}
	}
}

func unpin(r *record) { r.gen.Add(^uint64(pinOne - 1)) }

// Alive reports whether session id is still live at generation gen.
func (t *Table) Alive(id uint32, gen uint64) bool {
	return int(id) < len(t.recs) && gen&1 == 0 && t.recs[id].gen.Load()&genMask == gen
}

// CompareAndSwapState updates the state word of session id if it is still
// at generation gen and holds old, in one atomic step: a session deleted
// and recycled after the caller looked it up is never changed.
func (t *Table) CompareAndSwapState(id uint32, gen uint64, old, new uint32) bool {
	r := t.pin(id, gen)
	if r == nil {
		return false
	}
	ok := r.state.CompareAndSwap(old, new)
	unpin(r)
	return ok
}

// AddUser adds delta to user word i of session id if it is still live at
// generation gen, in one atomic step, and returns the new value; ok is
// false, and nothing changed, if the session is gone or was recycled.
func (t *Table) AddUser(id uint32, gen uint64, i int, delta uint64) (v uint64, ok bool) {
	r := t.pin(id, gen)
	if r == nil {
		return 0, false
	}
	v = r.user[i].Add(delta)
	unpin(r)
	return v, true
}

// CompareAndSwapUser replaces user word i of session id with new if the
// session is still live at generation gen and the word holds old, in one
// atomic step: a caller that looked a session up, was delayed, and finds
// the same value in a recycled record changes nothing. The NAT engine keeps
// reference counts in user words. live is false when the session is gone or
// was recycled (and so swapped is false too).
func (t *Table) CompareAndSwapUser(id uint32, gen uint64, i int, old, new uint64) (swapped, live bool) {
	r := t.pin(id, gen)
	if r == nil {
		return false, false
	}
	swapped = r.user[i].CompareAndSwap(old, new)
	unpin(r)
	return swapped, true
}

// LoadUser atomically loads user word i of record id, whatever session
// holds it now; a caller that must know the value belongs to the session
// it looked up checks Alive afterwards, or writes with CompareAndSwapUser.
func (t *Table) LoadUser(id uint32, i int) uint64 {
	return t.recs[id].user[i].Load()
}

func (t *Table) lock(b uint64) {
	m := &t.buckets[b].meta
	for spins := 0; ; spins++ {
		v := m.Load()
		if v&metaLock == 0 && m.CompareAndSwap(v, v|metaLock) {
			return
		}
		if spins > 64 {
			// The holder may have been preempted; let it run.
			runtime.Gosched()
		}
	}
}

func (t *Table) unlock(b uint64) {
	// Add, not Store: other inserters adjust the overflow count of this
	// bucket without holding its lock.
	t.buckets[b].meta.Add(^uint64(0))
}

// Insert adds a session with keys k0 and k1 (k1 may be NoKey), the given
// state and user words, last seen at now. If either key already belongs to a
// live session it returns Exists and that session in e; if the table is full
// it returns Full. On Inserted, e holds the new session.
func (t *Table) Insert(k0, k1 *Key, state uint32, user [2]uint64, now uint32, e *Entry) InsertResult {
	var w [2][2]uint64
	var h [2]uint64
	w[0][0], w[0][1] = k0.pack()
	h[0] = hash(w[0][0], w[0][1])
	two := k1.Proto != 0
	hb := [2]uint64{t.home(h[0])}
	if two {
		w[1][0], w[1][1] = k1.pack()
		h[1] = hash(w[1][0], w[1][1])
		hb[1] = t.home(h[1])
	}

	// Lock the home buckets in ascending order to avoid deadlock.
	lo, hi := hb[0], hb[1]
	if !two || lo == hi {
		t.lock(lo)
		defer t.unlock(lo)
	} else {
		if lo > hi {
			lo, hi = hi, lo
		}
		t.lock(lo)
		defer t.unlock(lo)
		t.lock(hi)
		defer t.unlock(hi)
	}

	if t.lookupHashed(w[0][0], w[0][1], h[0], e) {
		return Exists
	}
	if two && t.lookupHashed(w[1][0], w[1][1], h[1], e) {
		return Exists
	}
	if two && w[0] == w[1] {
		// Both keys equal would index one record twice under one key.
		// Callers never do this; treat it as a single-key insert.
		two = false
	}
	if !two {
		w[1] = [2]uint64{}
	}

	id, ok := t.pop()
	if !ok {
		return Full
	}
	r := &t.recs[id]
	g := r.gen.Load() // odd: free, so nobody can hold a pin
	r.keys[0][0].Store(w[0][0])
	r.keys[0][1].Store(w[0][1])
	r.keys[1][0].Store(w[1][0])
	r.keys[1][1].Store(w[1][1])
	r.seen.Store(now)
	r.state.Store(state)
	r.user[0].Store(user[0])
	r.user[1].Store(user[1])
	// Index both keys while the generation is still odd: a reader that
	// finds a slot early skips the record, and a walker by ID (Expire,
	// Range) cannot see, and so cannot delete, a half-indexed session.
	t.place(h[0], slotRef(id, 0))
	if two {
		t.place(h[1], slotRef(id, 1))
	}
	r.gen.Store(g + 1) // live
	t.live.Add(1)
	e.ID, e.Dir, e.Gen = id, 0, g+1
	e.Keys[0].unpackFrom(w[0][0], w[0][1])
	e.Keys[1].unpackFrom(w[1][0], w[1][1])
	e.Seen, e.State, e.User = now, state, user
	return Inserted
}

// place stores reference ref in the first empty slot on the probe path of
// hash h, raising the overflow count of every full bucket it passes first,
// and then publishes the slot's tag.
//
// It cannot fail: every key belongs to a record popped from the free list,
// so at most 2*Cap() keys are ever placed, while the index has at least
// 4*Cap() slots.
func (t *Table) place(h uint64, ref uint32) {
	b := t.home(h)
	for {
		bk := &t.buckets[b]
		for s := range bk.refs {
			if bk.refs[s].Load() == 0 && bk.refs[s].CompareAndSwap(0, ref) {
				bk.setTag(s, tagOf(h))
				return
			}
		}
		bk.meta.Add(metaOverflow)
		b = t.step(b)
	}
}

// unwind lowers the overflow counts of n buckets starting at b.
func (t *Table) unwind(b, n uint64) {
	for ; n > 0; n-- {
		t.buckets[b].meta.Add(^uint64(metaOverflow - 1))
		b = t.step(b)
	}
}

// unplace removes reference ref from the probe path of hash h (tag first,
// so no reader starts following it) and lowers the overflow counts of the
// buckets before it.
func (t *Table) unplace(h uint64, ref uint32) {
	start := t.home(h)
	b := start
	for n := uint64(0); n < t.nb; n++ {
		bk := &t.buckets[b]
		for s := range bk.refs {
			if bk.refs[s].Load() == ref {
				bk.setTag(s, 0)
				if bk.refs[s].CompareAndSwap(ref, 0) {
					t.unwind(start, n)
					return
				}
			}
		}
		b = t.step(b)
	}
	panic("flowtable: slot of a live session is missing")
}

// Delete removes session id if it is still at generation gen. It returns
// false if the session is gone or was recycled, or if another goroutine is
// deleting it. It waits for gated writes in flight on the session (a few
// instructions each) to finish.
func (t *Table) Delete(id uint32, gen uint64) bool {
	if int(id) >= len(t.recs) || gen&1 != 0 || gen > genMask {
		return false
	}
	r := &t.recs[id]
	for spins := 0; !r.gen.CompareAndSwap(gen, gen+1); spins++ {
		if r.gen.Load()&genMask != gen {
			return false
		}
		// Pinned: a gated write is in flight.
		if spins > 64 {
			// The writer may have been preempted; let it run.
			runtime.Gosched()
		}
	}
	// A single-key entry stored zero words as its second key; protocol
	// (bits 32..39 of the second word) is non-zero for every real key.
	t.retire(id, true, r.keys[1][1].Load()>>32 != 0)
	t.live.Add(-1)
	return true
}

// retire unindexes a record whose generation is already odd, so no reader
// accepts it any more, and frees it. key0 and key1 say which keys were
// placed in the index.
func (t *Table) retire(id uint32, key0, key1 bool) {
	r := &t.recs[id]
	for i, placed := range [2]bool{key0, key1} {
		if !placed {
			continue
		}
		w0, w1 := r.keys[i][0].Load(), r.keys[i][1].Load()
		h := hash(w0, w1)
		t.unplace(h, slotRef(id, uint8(i)))
	}
	t.push(id)
}

func (t *Table) pop() (uint32, bool) {
	for {
		h := t.head.Load()
		top := uint32(h)
		if top == 0 {
			return 0, false
		}
		nxt := t.next[top-1].Load()
		if t.head.CompareAndSwap(h, (h>>32+1)<<32|uint64(nxt)) {
			return top - 1, true
		}
	}
}

func (t *Table) push(id uint32) {
	for {
		h := t.head.Load()
		t.next[id].Store(uint32(h))
		if t.head.CompareAndSwap(h, (h>>32+1)<<32|uint64(id+1)) {
			return
		}
	}
}

// Probe is a key prepared for lookup: packed and hashed once, so that a
// burst of lookups can be split into a prefetch pass and a lookup pass.
type Probe struct {
	w0, w1, h uint64
}

// Prepare packs and hashes k.
func (t *Table) Prepare(k *Key, p *Probe) {
	p.w0, p.w1 = k.pack()
	p.h = hash(p.w0, p.w1)
}

// PrepareTuple packs and hashes the key with the given fields, without
// going through a Key: the packet path builds keys from parsed headers,
// and assembling a Key from narrow stores only to read it back as wide
// words would stall on store forwarding.
func (t *Table) PrepareTuple(src, dst [4]byte, sport, dport uint16, proto uint8, p *Probe) {
	p.w0 = uint64(binary.LittleEndian.Uint32(src[:])) | uint64(binary.LittleEndian.Uint32(dst[:]))<<32
	p.w1 = uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32
	p.h = hash(p.w0, p.w1)
}

// Prefetch touches the home bucket of p and, for the first slot whose tag
// matches, the record it points to, and returns a value derived from
// them. Go has no prefetch instruction; a plain load whose result the
// caller keeps serves the same purpose: issued for a whole burst before
// any lookup, the cache misses of all its packets overlap instead of
// following one another. The returned value means nothing; fold it into
// something the compiler cannot discard.
func (t *Table) Prefetch(p *Probe) uint64 {
	bk := &t.buckets[t.home(p.h)]
	z0, z1 := bk.match(tagOf(p.h))
	s := nextSlot(&z0, &z1)
	if s < 0 {
		return bk.meta.Load()
	}
	ref := bk.refs[s].Load()
	if ref == 0 {
		return 0
	}
	return t.recs[(ref-1)>>1].gen.Load()
}

// LookupProbe is Lookup for a prepared key.
func (t *Table) LookupProbe(p *Probe, e *Entry) bool {
	return t.lookupHashed(p.w0, p.w1, p.h, e)
}
