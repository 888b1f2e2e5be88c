// Package flowtable is the NAT session table: the structure every worker
// consults for every packet, that several workers insert into concurrently,
// and that the expirer and the management plane walk in the background.
//
// # Layout
//
// A Table is two preallocated, pointer-free arrays, so the garbage collector
// never scans them and nothing is allocated after New:
//
//   - records: one 64-byte, cache-line-sized record per session. A record
//     holds both keys of the session (the inside and the outside view of the
//     flow), a last-seen tick, an engine-defined state word and two
//     engine-defined user words. Free records are linked into a lock-free
//     free list through their first user word.
//   - buckets: the hash index. A bucket is one cache line: a meta word and
//     seven slots. A slot is one 64-bit word: a 32-bit fingerprint of the
//     key (the high half of its hash) and a 32-bit reference
//     ref+1, where ref = record<<1 | keyIndex; an empty slot is 0. The home
//     bucket comes from the low half of the hash. Each session occupies two
//     slots, one per key, and both lead to the same record. New sizes the
//     index for four keys per bucket at full capacity (16 bytes per key);
//     NewSingleKey sizes it for one key per entry. The index, its locks
//     and its overflow counts are index.go's Index, which the NAT
//     engine's compact tables use too.
//
// # One line decides, one line answers
//
// A lookup hashes the key and reads its home bucket: one cache line. The
// bucket decides which record, if any, can hold the key: the slot whose
// fingerprint matches. With the home bucket's index bits and 32 bits of
// fingerprint, the bucket points at a wrong record fewer than once in 2^29
// lookups. A miss (a new flow) is decided by that line alone, without
// touching any record, unless keys were stored beyond the bucket (its
// overflow count, below, is not zero); then the walk goes on to the next
// bucket. At four keys to seven slots that is rare (TestIndexOverflow
// measures it on a full table). The record is then read because it is the
// answer: a lookup returns the session's keys, state and user words, which
// live nowhere else. So a hit costs two cache lines, and they depend on each
// other: the bucket line, then the record line it names. What removes the
// second wait from the packet path is prefetching a burst
// (PrefetchBurst): every bucket of the burst is asked for first, so that
// their misses overlap; then each probe's slot is found in its (arriving)
// bucket and its record asked for, so that the record misses overlap too;
// each probe remembers its slot, and LookupProbe reads the record without
// scanning the bucket again. A burst of n lookups waits about two memory
// latencies, not 2n. The asking is done with prefetch instructions, which
// unlike loads hold up nothing while their lines travel (prefetch.go).
//
// The home-bucket scan is branch-free (pick): the seven fingerprints are
// compared and selected with conditional moves, so a lookup has no branch
// whose direction depends on where its key sits, nothing the processor
// must guess while the line is still on its way. The same holds for the
// choice between the record's two keys. Anything unusual (a key beyond its
// home bucket, two slots with one fingerprint, a remembered slot gone
// stale) takes the slot-by-slot walk.
//
// Find is the lookup for callers that need only which session holds a key
// (what a map from key to session number returns): the same bucket line,
// and of the record only the generation and the matched key, which it
// must read anyway because a fingerprint never decides alone. It still
// waits for two dependent lines; what it saves is the copy of the record
// (about 90 instructions: Go's atomic loads do not fold their addresses),
// so that in a loop of independent lookups more of them fit in the
// processor's reorder window and their misses overlap.
//
// ViewProbe is the lookup of the NAT's fast path: the same bucket line,
// and of the record the generation, the matched key, the other key and
// the state word (a View), seven words of the ten LookupProbe copies
// into an Entry; a packet that needs more of its session reads the rest
// with GetAt, which holds it to the View's generation.
//
// Memory: 64 bytes of record and 32 of index per two-key session (96
// bytes; BytesPerSession), 80 for a single-key entry. Reading the
// fingerprint from the bucket is what keeps it at that. A hit decided and
// verified by the bucket line alone needs the whole key there: 13 bytes
// of key and 4 of reference, three slots to a line, which at the load
// that keeps overflow rare (two keys to three slots) is 64 bytes of index
// per session, 128 with the record: the ceiling for the table,
// and 32 bytes over it for the engine's 160-byte target per session slot
// (issue 14). The record read would remain for every caller that needs
// the session's words, which on the packet path is every caller.
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
// Find verifies a hit the same way with less: the generation, the one key
// the slot names (chosen by an index, not a branch), and the generation
// again. The keys of a record change only while its generation is odd, so
// equal even loads around the key's show the key of that generation's
// session, and the Hit names (ID, Gen) as Lookup's Entry would. ViewProbe
// reads the other key and the state word between the same two loads, and
// compares the matched key in full after them: a View, like an Entry, is
// used only when both loads show one even generation, so its keys are
// never torn and its state is a value the session held in that
// generation (the state changes only through the gated writes, which
// leave the generation as it is). GetAt, the rest of a View's session,
// copies the record as Get does and accepts it only at the View's
// generation.
//
// Writers (Insert, InsertProbe) serialise per home bucket: an insert takes
// a spin bit in the meta word of the home bucket of each of its keys, so
// two inserts of the same key cannot both succeed. It waits for a bit
// only while it holds none, or holds the lower bucket's and waits for
// the higher's: one that finds its second bit taken lets its first go
// and takes both in bucket order, so no two inserts wait for each
// other. An insert takes its record from the free list and fills it
// before the bits, and gives it back if a key is taken. A slot is one word,
// fingerprint|reference, filled only under its own bucket's bit (the home's,
// or one Index.Place takes for an overflow slot), so inserts with different
// home buckets that reach the same overflow bucket are safe, and a reader
// never sees a fingerprint with another key's reference. A fingerprint never decides anything alone: a reader that
// follows a slot to a record whose key does not match (another key with the
// same fingerprint, or a record deleted and reused since the slot was read
// or remembered) treats it as no match. This is the same split as DPDK's
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
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"runtime"
	"sync/atomic"
)

const (
	// keysPerBucket is the mean number of keys per bucket at full
	// capacity: 4 of 7 slots. A bucket overflows only when more than 7
	// of the keys hash to it, which at a Poisson mean of 4 is 5% of the
	// buckets, so almost every lookup stays in one cache line, and the
	// index costs 64/4 = 16 bytes per key, 32 per two-key session.
	keysPerBucket = 4
	// MaxCapacity bounds the record numbers so that ref+1 fits in 32 bits.
	MaxCapacity = 1 << 30

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
	keys  [2][2]atomic.Uint64
	seen  atomic.Uint32
	state atomic.Uint32
	user  [2]atomic.Uint64
	// gen is the generation (bits 0..47, see genMask) and the number of
	// gated writes in flight (bits 48..63, see pinOne). It is last, so
	// that user word 1 and it are one aligned 16-byte pair (offsets 48
	// and 56, TestLayoutSizes), which CompareAndSwapUser swaps as one.
	gen atomic.Uint64
}

// The index (index.go) is an array of Buckets: a meta word (insert lock
// and overflow count) and seven slots. A Table's slot is one word,
// fingerprint<<32 | ref, and 0 when empty, so a reader always sees a
// fingerprint together with the reference it was stored with.

// slotWord is the slot of reference ref for a key with fingerprint fp.
func slotWord(fp, ref uint32) uint64 { return uint64(fp)<<32 | uint64(ref) }

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
	recs []record
	ix   Index // the buckets (index.go)
	// maxKeys is the number of keys an entry may have, 1 or 2; the
	// index is sized for maxKeys keys per entry of capacity.
	maxKeys int
	seed    hashSeed // secret key of the hash, set in New

	// head is the free list's top: pops<<32 | (record+1), 0 if empty.
	// Its high half counts the pops (mod 2^32) and pushes counts the
	// pushes back, so that Len is their difference (see pop).
	head   atomic.Uint64
	pushes atomic.Uint32
	_      [52]byte

	// Owned by the goroutine that calls Expire.
	cursor        uint32
	expireScratch Entry
}

// ErrCapacity reports an unusable capacity.
var ErrCapacity = errors.New("flowtable: capacity out of range")

// New returns a table that holds up to capacity sessions of one or two
// keys each. All memory is allocated here; the table never grows.
func New(capacity int) (*Table, error) { return newTable(capacity, 2) }

// NewSingleKey returns a table that holds up to capacity entries of one key
// each (Insert's second key is NoKey), with an index half the size of New's.
// An Insert with two keys returns Full and changes nothing: the index has
// room for one key per entry only.
func NewSingleKey(capacity int) (*Table, error) { return newTable(capacity, 1) }

func newTable(capacity, maxKeys int) (*Table, error) {
	if capacity < 1 || capacity > MaxCapacity {
		return nil, fmt.Errorf("%w: %d (want 1..%d)", ErrCapacity, capacity, MaxCapacity)
	}
	keys := uint64(capacity) * uint64(maxKeys)
	nb := (keys + keysPerBucket - 1) / keysPerBucket
	if nb < 2 {
		nb = 2
	}
	t := &Table{ix: Index{nb: nb}, maxKeys: maxKeys, seed: newHashSeed()}
	var m1, m2 mapping
	t.recs, m1 = allocArray[record](capacity)
	t.ix.buckets, m2 = allocArray[Bucket](int(nb))
	t.releaseLater(m1, m2)
	// Free records have odd generations. Thread the free list so that
	// record 0 is popped first; it makes tests and dumps easier to read.
	for i := range t.recs {
		t.recs[i].gen.Store(1)
		if i+1 < capacity {
			t.recs[i].user[0].Store(uint64(i + 2))
		}
	}
	t.head.Store(1)
	// Fault in the index now (the loop above already wrote every record
	// and link).
	t.ix.faultIn()
	return t, nil
}

// Cap returns the capacity in sessions.
func (t *Table) Cap() int { return len(t.recs) }

// Len returns the number of live sessions: the records popped from the
// free list less those pushed back. A count of its own cost every insert
// a locked add on a line every inserter shares; without it and four other
// locked instructions a new session at a million sessions took 7.7% less
// time (docs/engineering.md, "Ports in pairs, and locked instructions").
// Read while inserts and deletes run, it may count a record being filled
// or freed as live.
func (t *Table) Len() int {
	pushed := t.pushes.Load() // first: then pushed <= popped below
	popped := uint32(t.head.Load() >> 32)
	return min(int(popped-pushed), len(t.recs))
}

// BytesPerSession is the memory the table holds per session of capacity:
// the record and its share of the index (both keys included, for a table
// from New). The free list is threaded through the free records.
func (t *Table) BytesPerSession() float64 {
	const recSize = 64
	total := float64(len(t.recs))*recSize + float64(t.ix.nb)*BucketSize
	return total / float64(len(t.recs))
}

// hash mixes the two words of a packed key into 64 bits: the low half
// chooses the home bucket, the high half is the fingerprint (fpOf). It is
// two rounds of a full 64x64->128-bit multiply whose halves are folded
// together (the "multiply and fold" of wyhash and its kin): each round
// makes every output bit depend on every input bit of its operands, at
// the cost of one MUL, where XXH64 over 16 bytes (the hash before this
// one) took six multiplies, eight rotations and shifts and about thirty
// instructions; the hash was a tenth of an established packet's
// table work. hash_test.go checks its avalanche and its spread over
// buckets and fingerprints on the structured key sets NAT traffic makes
// (one host's ports, consecutive hosts, the port tables' keys) against
// XXH64's.
//
// The two words are first XORed with the table's secret seed (drawn from
// the operating system's random source in New), so that nobody outside
// the box can compute where a key lands. Without it, an attacker who
// can open sessions (port forwards, static 1:1 rules and endpoint-
// independent filtering all let outside hosts choose a session's remote
// address and port) could pick thousands of keys with one home bucket
// and one fingerprint, and turn every lookup of that bucket's path into
// a walk: a hash-flooding attack, which a fixed function (XXH64 with seed
// 0 before this one) leaves open. A multiplier is zero only when a key's
// word equals the secret, a chance of 2^-64 per key that no one can aim
// for, and even then only that key's relatives share a bucket.
func (s hashSeed) hash(w0, w1 uint64) uint64 {
	const (
		c2 = 0xbf58476d1ce4e5b9 // odd constants of SplitMix64
		c3 = 0x94d049bb133111eb
	)
	hi, lo := bits.Mul64(w0^s.k0, w1^s.k1)
	hi, lo = bits.Mul64(hi^c2, lo^c3)
	return hi ^ lo
}

// hashSeed is a table's secret hash key, fixed for its life.
type hashSeed struct{ k0, k1 uint64 }

// newHashSeed draws a seed from the operating system's random source.
// crypto/rand does not fail on Linux (getrandom); should it, the seed
// falls back to the runtime's own random generator, which is seeded
// from the same source at start-up.
func newHashSeed() hashSeed {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return hashSeed{mrand.Uint64(), mrand.Uint64()}
	}
	return hashSeed{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
}

func slotRef(id uint32, dir uint8) uint32 { return id<<1 | uint32(dir) + 1 }

// Lookup finds the session holding k. It never blocks and never writes.
func (t *Table) Lookup(k *Key, e *Entry) bool {
	w0, w1 := k.pack()
	h := t.seed.hash(w0, w1)
	return t.lookupHashed(w0, w1, h, e)
}

// lookupHashed is the lookup proper. The common case, a hit in the home
// bucket, takes no branch that depends on where the key sits: the scan of
// the seven slots selects the matching reference with masks, not jumps,
// and the record is read at once. A loop of independent lookups then has
// nothing to mispredict, so the processor runs ahead into the next lookup
// while this one's misses are outstanding. Everything else (a miss, a key
// stored beyond its home bucket, two slots with the same fingerprint, a
// reference gone stale) goes to lookupSlow.
func (t *Table) lookupHashed(w0, w1, h uint64, e *Entry) bool {
	fp := fpOf(h)
	bk := &t.ix.buckets[t.ix.Home(h)]
	ref := bk.pick(fp)
	if t.readRef(ref, w0, w1, e) {
		return true
	}
	if ref == 0 && bk.Meta.Load() < MetaOverflow {
		return false // nothing with this fingerprint here, nothing beyond
	}
	return t.lookupSlow(w0, w1, h, e)
}

// pick returns the reference of the slot whose fingerprint is fp, without
// branches: the OR of the references of all such slots, which is the one
// reference when exactly one slot matches (all but once in 2^29 lookups),
// 0 when none does, and a value the caller must check otherwise.
//
// The seven slots are written out: as a loop, the index arithmetic and the
// loop's own test cost as much as the selection.
func (b *Bucket) pick(fp uint32) uint32 {
	return sel(b.Slots[0].Load(), fp) | sel(b.Slots[1].Load(), fp) |
		sel(b.Slots[2].Load(), fp) | sel(b.Slots[3].Load(), fp) |
		sel(b.Slots[4].Load(), fp) | sel(b.Slots[5].Load(), fp) |
		sel(b.Slots[6].Load(), fp)
}

// sel returns the reference of slot word v if its fingerprint is fp, else
// 0. The compiler turns the condition into a conditional move (a compare
// and a CMOV per slot, checked in the disassembly), not a jump: five
// instructions a slot where the mask arithmetic it replaces took eight.
func sel(v uint64, fp uint32) uint32 {
	r := uint32(v)
	if uint32(v>>32) != fp {
		r = 0
	}
	return r
}

// lookupSlow walks the probe path slot by slot, following every slot
// whose fingerprint matches.
func (t *Table) lookupSlow(w0, w1, h uint64, e *Entry) bool {
	return t.walk(h, func(ref uint32) bool { return t.readRef(ref, w0, w1, e) })
}

// walk offers try the reference of every slot on hash h's probe path
// whose fingerprint is h's, in probe order, until try accepts one (true)
// or the path ends: at the first bucket whose overflow count is zero,
// beyond which no key of this home was stored. It is the slow path of
// every read (a key beyond its home bucket, two slots with one
// fingerprint, a stale hint); the closure does not escape, so the walk
// allocates nothing.
func (t *Table) walk(h uint64, try func(ref uint32) bool) bool {
	fp := fpOf(h)
	b := t.ix.Home(h)
	for probes := t.ix.nb; probes > 0; probes-- {
		bk := &t.ix.buckets[b]
		for s := range bk.Slots {
			v := bk.Slots[s].Load()
			if uint32(v>>32) == fp && try(uint32(v)) {
				return true
			}
		}
		if bk.Meta.Load() < MetaOverflow {
			return false
		}
		b = t.ix.Step(b)
	}
	return false
}

// fpOf is the slot fingerprint of a hash: its high 32 bits. The home
// bucket comes from the low 32 bits, so the two are independent, and a
// lookup follows a wrong slot with probability 2^-32 per slot. A
// fingerprint may be 0: what marks a slot empty is the whole word being 0,
// and a stored word never is, since its reference is at least 1. An empty
// slot then "matches" fingerprint 0 with reference 0, which pick's OR
// ignores, readRef refuses, and at worst sends a prefetch (find) back
// empty-handed, one key in 2^32.
func fpOf(h uint64) uint32 { return uint32(h >> 32) }

// refRecord decodes slot reference ref (record<<1 | key index, plus
// one; slotRef): the record's number, which of its two keys the slot
// indexes, and whether ref names a record of this table at all. 0, the
// reference of no record, does not, nor does a reference beyond the table
// (pick's OR of two references, or a Probe prefetched on another table).
// One comparison decides both: ref 0 decodes to record 2^31-1, beyond
// every table (MaxCapacity is 2^30). Compared as an int, as the index
// is, so that the compiler drops the bounds check of the caller's
// t.recs[id]. It is every read's first step (openRef, viewRef), and it
// inlines into each (TestInlining), so the one decode costs no call.
func (t *Table) refRecord(ref uint32) (id, dir uint32, ok bool) {
	id, dir = (ref-1)>>1, (ref-1)&1
	return id, dir, int(id) < len(t.recs)
}

// openRef opens the seqlock read of the record of slot reference ref for
// readRef and verifyRef: the decode (refRecord), the record, and its
// generation, loaded first. ok is false when ref names no record of the
// table. It inlines into both (TestInlining). (viewRef, the fast path's,
// decodes with refRecord and loads the generation itself: through
// openRef it counted two instructions more a packet, a matter of
// register allocation, make bench-instr.)
func (t *Table) openRef(ref uint32) (r *record, g uint64, id, dir uint32, ok bool) {
	if id, dir, ok = t.refRecord(ref); !ok {
		return nil, 0, id, dir, false
	}
	r = &t.recs[id]
	return r, r.gen.Load() & genMask, id, dir, true
}

// readRef copies the record of slot reference ref (ref+1, see slotRef)
// into e if it is live and its key dir (from the reference) equals
// (w0, w1). It is the seqlock read side. A reference that names no
// record of the table (openRef) never matches. One function, not a
// check and a call: the call's frame cost a tenth of a hit.
func (t *Table) readRef(ref uint32, w0, w1 uint64, e *Entry) bool {
	r, g, id, dir, ok := t.openRef(ref)
	if !ok || g&1 != 0 {
		return false
	}
	a0, a1 := r.keys[0][0].Load(), r.keys[0][1].Load()
	b0, b1 := r.keys[1][0].Load(), r.keys[1][1].Load()
	seen, state := r.seen.Load(), r.state.Load()
	u0, u1 := r.user[0].Load(), r.user[1].Load()
	if r.gen.Load()&genMask != g {
		return false
	}
	// Compare with key dir, selected by mask: which key a lookup
	// matches is as random as the traffic's direction, so a branch on
	// it would be mispredicted half the time.
	m := -uint64(dir)
	if a0^(a0^b0)&m != w0 || a1^(a1^b1)&m != w1 {
		return false
	}
	e.ID, e.Dir, e.Gen = id, uint8(dir), g
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
//
// A bad i panics before the record is pinned: with a pin left behind,
// Delete would wait for it for ever.
func (t *Table) AddUser(id uint32, gen uint64, i int, delta uint64) (v uint64, ok bool) {
	if uint(i) >= uint(len(record{}.user)) {
		panic("flowtable: AddUser: no such user word")
	}
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
//
// It is pin, the swap and unpin written out: through pin, the record
// came back as a pointer that was tested for nil again after the loop
// that had decided it, and the word's bounds were checked between the
// pin and the swap (about 5 instructions a new session, bench-instr).
// The word's address is taken first, so that a bad i panics before the
// pin, not with the record pinned.
func (t *Table) CompareAndSwapUser(id uint32, gen uint64, i int, old, new uint64) (swapped, live bool) {
	if int(id) >= len(t.recs) || gen&1 != 0 || gen > genMask {
		return false, false
	}
	r := &t.recs[id]
	if i == 1 && haveCAS16 {
		// User word 1 and the generation word are one aligned pair
		// (record), swapped from (old, gen) to (new, gen) in one atomic
		// step (casUser1, casp_amd64.s): the generation is checked and
		// the word swapped with no pin. The pin's compare-and-swap and
		// the unpin's add were two locked instructions of a new
		// session's subscriber reference, each about 2% of its time at
		// a million sessions (perf: the samples in this function sat
		// after its three locked instructions in equal thirds;
		// docs/engineering.md). Delete waits for pins, not for this
		// swap, and needs not: the swap lands on the generation it
		// names, and one after a Delete finds the generation moved.
		return casUser1(&r.user[1], old, gen, new)
	}
	u := &r.user[i]
	for {
		g := r.gen.Load()
		if g&genMask != gen {
			return false, false
		}
		if r.gen.CompareAndSwap(g, g+pinOne) { // as pin's
			break
		}
	}
	swapped = u.CompareAndSwap(old, new)
	unpin(r)
	return swapped, true
}

// LoadUser atomically loads user word i of record id, whatever session
// holds it now; a caller that must know the value belongs to the session
// it looked up checks Alive afterwards, or writes with CompareAndSwapUser.
func (t *Table) LoadUser(id uint32, i int) uint64 {
	return t.recs[id].user[i].Load()
}

// Insert adds a session with keys k0 and k1 (k1 may be NoKey), the given
// state and user words, last seen at now. If either key already belongs to a
// live session it returns Exists and that session in e; if the table is full
// it returns Full. On Inserted, e holds the new session.
func (t *Table) Insert(k0, k1 *Key, state uint32, user [2]uint64, now uint32, e *Entry) InsertResult {
	var p [2]Probe
	p[0].w0, p[0].w1 = k0.pack()
	p[0].h = t.seed.hash(p[0].w0, p[0].w1)
	if k1.Proto != 0 {
		p[1].w0, p[1].w1 = k1.pack()
		p[1].h = t.seed.hash(p[1].w0, p[1].w1)
	}
	return t.insert(&p[0], &p[1], state, user, now, e)
}

// InsertProbe is Insert for keys already prepared (Prepare, PrepareTuple):
// a caller that looked the keys up first, as a new session's does, does
// not pack and hash them again. p1 may be nil for a single-key entry. The
// probes are only read.
func (t *Table) InsertProbe(p0, p1 *Probe, state uint32, user [2]uint64, now uint32, e *Entry) InsertResult {
	if p1 == nil {
		p1 = &noProbe
	}
	return t.insert(p0, p1, state, user, now, e)
}

// noProbe is the second key of a single-key insert (insert only reads it):
// a package variable, since a local one was cleared on every insert.
var noProbe Probe

// insert is Insert proper. p1 is the second key, or a zero Probe (protocol
// 0, so w1>>32 is 0) for a single-key entry.
//
// Its common path makes two calls: indexPair, the work under the locks,
// and the prefetch. Everything else is inline, so that few of its values
// live across a call, where Go keeps them on the stack. The record is
// taken from the free list and filled, and e with it, before the locks:
// none of that needs them (the record is not live until its generation's
// store), it leaves less to keep across the call, and an insert that
// finds a key taken gives the record back (with pop's record, whose
// bounds it checked, and indexPair's checks and slots, about 73
// instructions a new session fewer than the checks, the record and two
// Places in turn under the locks: 2,692 to 2,619, bench-instr). Anything
// unusual (a lock taken, a line that cannot tell, a full home bucket, a
// key taken, no free record) is left to lockHomes, insertSlow and
// insertFull. A deferred unlock cost more than the rest of an
// uncontended insert's bookkeeping.
func (t *Table) insert(p0, p1 *Probe, state uint32, user [2]uint64, now uint32, e *Entry) InsertResult {
	if p1.w1>>32 != 0 && t.maxKeys < 2 { // protocol 0: NoKey
		return Full
	}
	r, id, next := t.pop()
	// The record of the free list's new top: the next insert's pop
	// reads its link and fills it, and free records are seldom in
	// cache; a pop's miss cannot overlap the next pop's, to which it
	// gives the address, so without asking for it every insert waited
	// for one memory latency of its own. Asked for after the insert's
	// work under the locks, where the call has little to save around
	// it; its address taken here, where it is a few instructions with
	// no test (recordLine: about 5 instructions a new session fewer
	// than a test and an index of the table after the call, 2,606 to
	// 2,600, bench-instr).
	line := t.recordLine(next)
	if r == nil {
		return t.insertFull(p0, p1, p1.w1>>32 != 0, e)
	}
	two := p1.w1>>32 != 0
	b0, b1 := p1.w0, p1.w1
	if !two || p1.h == p0.h && b0 == p0.w0 && b1 == p0.w1 {
		// Both keys equal would index one record twice under one
		// key. Callers never do this; treat it as a single-key
		// insert. Equal keys have equal hashes, compared first.
		two, b0, b1 = false, 0, 0
	}
	g := r.gen.Load() // odd: free, so nobody can hold a pin
	// Plain stores: the record is not live until its generation's
	// store below (StoreUnpublished).
	StoreUnpublished(&r.keys[0][0], p0.w0)
	StoreUnpublished(&r.keys[0][1], p0.w1)
	StoreUnpublished(&r.keys[1][0], b0)
	StoreUnpublished(&r.keys[1][1], b1)
	storeUnpublished32(&r.seen, now)
	storeUnpublished32(&r.state, state)
	StoreUnpublished(&r.user[0], user[0])
	StoreUnpublished(&r.user[1], user[1])
	e.ID, e.Dir, e.Gen = id, 0, g+1
	e.Keys[0].unpackFrom(p0.w0, p0.w1)
	e.Keys[1].unpackFrom(b0, b1)
	e.Seen, e.State, e.User = now, state, user
	// The home buckets' locks are taken by indexPair, which waits for
	// neither: an insert never waits while it holds a lock taken out of
	// bucket order. It waits only in lockHomes, for both in order, so
	// that no two inserts wait for each other (and the common case
	// sorts nothing). Both keys are indexed while the generation is
	// still odd: a reader that finds a slot early skips the record, and
	// a walker by ID (Expire, Range) cannot see, and so cannot delete, a
	// half-indexed session. A key's home, locked, answers alone for an
	// absent key, nearly always the case, and takes its slot. A slot
	// can always be found: every key belongs to a record popped from
	// the free list, so at most maxKeys*Cap() keys are ever placed, and
	// the index has 7/4 as many slots.
	bk0 := &t.ix.buckets[t.ix.Home(p0.h)]
	bk1, w1 := bk0, uint64(0)
	if two {
		bk1 = &t.ix.buckets[t.ix.Home(p1.h)]
		w1 = slotWord(fpOf(p1.h), slotRef(id, 1))
	}
	switch indexPair(bk0, slotWord(fpOf(p0.h), slotRef(id, 0)), bk1, w1, &r.gen, g+1) {
	case pairDone:
	case pairBusy:
		t.lockHomes(p0, p1, two)
		fallthrough
	default:
		return t.insertSlow(p0, p1, two, id, e)
	}
	prefetchAt(line)
	return Inserted
}

// What indexPair did.
const (
	// pairDone: both keys indexed, the record published, the locks
	// let go.
	pairDone = iota
	// pairSlow: the locks are held; nothing was stored, or the first
	// key's word alone, in its home bucket.
	pairSlow
	// pairBusy: a lock was taken; nothing is held or was stored.
	pairBusy
)

// indexPair is the common path of an insert's work under its locks, in
// one call: it takes the locks of b0 and b1, the homes of the keys
// whose slot words are w0 and w1 (b1 is b0 when they share it, and when
// w1 is 0: one key), by compare-and-swap, without waiting; if b0 shows
// alone that no key of w0's fingerprint (its high half) was stored
// (Lacks), it stores w0 in b0's first empty slot, a plain store under
// the lock as Place's, and then, unless w1 is 0, does the same for w1
// in b1; with both stored it publishes the record, storing g in its
// generation word gen, lets the locks go and returns pairDone. Anything
// else it leaves to the caller: a lock taken (pairBusy, nothing held or
// stored), or a line that cannot tell or has no empty slot (pairSlow,
// with the locks held, and either nothing stored or w0 alone, which the
// caller tells by w0's slot).
//
// One line for each key's check and store (the check brings it in for
// the store), and one call for all of it: the insert keeps fewer of its
// values on the stack across calls, and the buckets' addresses stay in
// registers from the locks to the unlocks. Against Lacks and Place a
// key, about 58 instructions a new session with Table.insert's other
// changes (2,692 to 2,634, bench-instr); 7 more for one call, not one a
// key (2,627), and 8 for the locks, the publication and the unlocks
// in it (2,619). Written out as Lacks and placeIn are: a loop over the
// two keys cost 8 instructions more than the call it saves.
func indexPair(b0 *Bucket, w0 uint64, b1 *Bucket, w1 uint64, gen *atomic.Uint64, g uint64) int {
	if !b0.TryLock() {
		return pairBusy
	}
	if b1 != b0 && !b1.TryLock() {
		b0.Unlock()
		return pairBusy
	}
	if b0.fpIn(0) == uint32(w0>>32) {
		return pairSlow
	}
	if b0.fpIn(1) == uint32(w0>>32) {
		return pairSlow
	}
	if b0.fpIn(2) == uint32(w0>>32) {
		return pairSlow
	}
	if b0.fpIn(3) == uint32(w0>>32) {
		return pairSlow
	}
	if b0.fpIn(4) == uint32(w0>>32) {
		return pairSlow
	}
	if b0.fpIn(5) == uint32(w0>>32) {
		return pairSlow
	}
	if b0.fpIn(6) == uint32(w0>>32) {
		return pairSlow
	}
	if b0.Meta.Load() >= MetaOverflow {
		return pairSlow
	}
	if loadSlot(&b0.Slots[0]) == 0 {
		storeLocked(&b0.Slots[0], w0)
		goto second
	}
	if loadSlot(&b0.Slots[1]) == 0 {
		storeLocked(&b0.Slots[1], w0)
		goto second
	}
	if loadSlot(&b0.Slots[2]) == 0 {
		storeLocked(&b0.Slots[2], w0)
		goto second
	}
	if loadSlot(&b0.Slots[3]) == 0 {
		storeLocked(&b0.Slots[3], w0)
		goto second
	}
	if loadSlot(&b0.Slots[4]) == 0 {
		storeLocked(&b0.Slots[4], w0)
		goto second
	}
	if loadSlot(&b0.Slots[5]) == 0 {
		storeLocked(&b0.Slots[5], w0)
		goto second
	}
	if loadSlot(&b0.Slots[6]) == 0 {
		storeLocked(&b0.Slots[6], w0)
		goto second
	}
	return pairSlow
second:
	if w1 == 0 {
		goto done
	}
	if b1.fpIn(0) == uint32(w1>>32) {
		return pairSlow
	}
	if b1.fpIn(1) == uint32(w1>>32) {
		return pairSlow
	}
	if b1.fpIn(2) == uint32(w1>>32) {
		return pairSlow
	}
	if b1.fpIn(3) == uint32(w1>>32) {
		return pairSlow
	}
	if b1.fpIn(4) == uint32(w1>>32) {
		return pairSlow
	}
	if b1.fpIn(5) == uint32(w1>>32) {
		return pairSlow
	}
	if b1.fpIn(6) == uint32(w1>>32) {
		return pairSlow
	}
	if b1.Meta.Load() >= MetaOverflow {
		return pairSlow
	}
	if loadSlot(&b1.Slots[0]) == 0 {
		storeLocked(&b1.Slots[0], w1)
		goto done
	}
	if loadSlot(&b1.Slots[1]) == 0 {
		storeLocked(&b1.Slots[1], w1)
		goto done
	}
	if loadSlot(&b1.Slots[2]) == 0 {
		storeLocked(&b1.Slots[2], w1)
		goto done
	}
	if loadSlot(&b1.Slots[3]) == 0 {
		storeLocked(&b1.Slots[3], w1)
		goto done
	}
	if loadSlot(&b1.Slots[4]) == 0 {
		storeLocked(&b1.Slots[4], w1)
		goto done
	}
	if loadSlot(&b1.Slots[5]) == 0 {
		storeLocked(&b1.Slots[5], w1)
		goto done
	}
	if loadSlot(&b1.Slots[6]) == 0 {
		storeLocked(&b1.Slots[6], w1)
		goto done
	}
	return pairSlow
done:
	gen.Store(g) // live
	if b1 != b0 {
		b1.Unlock()
	}
	b0.Unlock()
	return pairDone
}

// lockHomes takes the locks of the home buckets of p0 and of p1 (if two),
// in bucket order, for an insert that holds neither and found one taken.
func (t *Table) lockHomes(p0, p1 *Probe, two bool) {
	lo := t.ix.Home(p0.h)
	hi := lo
	if two {
		hi = t.ix.Home(p1.h)
	}
	if hi < lo {
		lo, hi = hi, lo
	}
	t.ix.Lock(lo)
	if hi != lo {
		t.ix.Lock(hi)
	}
}

// insertSlow is insert's end, under its locks, when indexPair did not
// index both keys: nothing is stored, or key 0 is, in its home bucket
// (where its slot word, unique to the record, tells which).
// It decides by walks what the lines could not (a key of a live session
// makes the insert Exists, with that session in e, and leaves no slot of
// the record behind) and places by walks the keys not placed; then it
// publishes the record, or gives it back, and unlocks.
func (t *Table) insertSlow(p0, p1 *Probe, two bool, id uint32, e *Entry) InsertResult {
	h0 := t.ix.Home(p0.h)
	h1 := h0
	if two {
		h1 = t.ix.Home(p1.h)
	}
	w0 := slotWord(fpOf(p0.h), slotRef(id, 0))
	placed0 := t.ix.buckets[h0].holds(w0)
	res := Inserted
	switch {
	case !placed0 && t.lookupSlow(p0.w0, p0.w1, p0.h, e),
		two && t.lookupSlow(p1.w0, p1.w1, p1.h, e):
		res = Exists
		if placed0 {
			t.ix.Remove(h0, w0)
		}
	default:
		if !placed0 {
			t.ix.Place(h0, w0)
		}
		if two {
			t.ix.Place(h1, slotWord(fpOf(p1.h), slotRef(id, 1)))
		}
		r := &t.recs[id]
		r.gen.Store(r.gen.Load() + 1) // live, at e.Gen
	}
	if h1 != h0 {
		t.ix.Unlock(h1)
	}
	t.ix.Unlock(h0)
	if res != Inserted {
		t.push(id) // never live, and in no slot
	}
	return res
}

// holds reports whether a slot of b holds w.
func (b *Bucket) holds(w uint64) bool {
	for s := range b.Slots {
		if b.Slots[s].Load() == w {
			return true
		}
	}
	return false
}

// insertFull is insert with no free record: Exists, with the session in
// e, if a live session holds either key, Full otherwise. It takes no
// lock: with the locks it could only also wait for an insert of one of
// the keys under way, and either answer is one that insert's moment
// allows.
func (t *Table) insertFull(p0, p1 *Probe, two bool, e *Entry) InsertResult {
	if t.lookupHashed(p0.w0, p0.w1, p0.h, e) || two && t.lookupHashed(p1.w0, p1.w1, p1.h, e) {
		return Exists
	}
	return Full
}

// absentAt reports whether bucket b, the home of a key with fingerprint
// fp, shows alone that the key is in no live session (Bucket.Lacks).
// False means only that the bucket cannot tell. It is the miss of a key
// about to be inserted (insert) or of a new flow's first packet
// (viewSlow).
func (t *Table) absentAt(b uint64, fp uint32) bool { return t.ix.buckets[b].Lacks(fp) }

// unplace removes reference ref, with the fingerprint of hash h, from
// the index.
func (t *Table) unplace(h uint64, ref uint32) {
	t.ix.Remove(t.ix.Home(h), slotWord(fpOf(h), ref))
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
		h := t.seed.hash(w0, w1)
		t.unplace(h, slotRef(id, uint8(i)))
	}
	t.push(id)
}

// pop and push keep the free list in user word 0 of the free records
// (successor+1), which no reader uses while the generation is odd. A pop
// that reads the link of a record another pop has just taken and started
// to fill fails its compare-and-swap, because the head's high half, the
// count of pops, moved. Only pops move it: a push keeps it, and counts
// itself in pushes, after its swap. That is still an ABA tag. A head word
// h read by a pop or a push comes back only if nothing was popped since
// (the count is the same, up to 2^32 pops in between); with pushes alone
// the top changes to each pushed record and never back to h's, which is
// on the list and so cannot be pushed again.
//
// pop returns the record it took, nil if none, with its number, whose
// bounds it has checked (a caller that indexed the records again checked
// them again), and the new top's number + 1 (0 if none), whose record the
// caller asks for (recordLine).
func (t *Table) pop() (r *record, id, next uint32) {
	for {
		h := t.head.Load()
		top := uint32(h)
		if top == 0 {
			return nil, 0, 0
		}
		r = &t.recs[top-1]
		nxt := uint32(r.user[0].Load())
		if t.head.CompareAndSwap(h, (h>>32+1)<<32|uint64(nxt)) {
			return r, top - 1, nxt
		}
	}
}

func (t *Table) push(id uint32) {
	for {
		h := t.head.Load()
		t.recs[id].user[0].Store(uint64(uint32(h)))
		if t.head.CompareAndSwap(h, h>>32<<32|uint64(id+1)) {
			t.pushes.Add(1)
			return
		}
	}
}

// Probe is a key prepared for lookup: packed and hashed once, so that a
// burst of lookups can be split into a prefetch pass and a lookup pass.
// A prefetch also remembers the slot reference its fingerprint matched, so
// that the lookup can go straight to the record.
type Probe struct {
	w0, w1, h uint64
	ref       uint32 // slot reference found by a prefetch, 0 if none
}

// Prepare packs and hashes k.
func (t *Table) Prepare(k *Key, p *Probe) {
	p.w0, p.w1 = k.pack()
	p.h = t.seed.hash(p.w0, p.w1)
	p.ref = 0
}

// PrepareTuple packs and hashes the key with the given fields, without
// going through a Key: the packet path builds keys from parsed headers,
// and assembling a Key from narrow stores only to read it back as wide
// words would stall on store forwarding.
func (t *Table) PrepareTuple(src, dst [4]byte, sport, dport uint16, proto uint8, p *Probe) {
	p.w0 = uint64(binary.LittleEndian.Uint32(src[:])) | uint64(binary.LittleEndian.Uint32(dst[:]))<<32
	p.w1 = uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32
	p.h = t.seed.hash(p.w0, p.w1)
	p.ref = 0
}

// PrepareAddrs is PrepareTuple with the addresses as big-endian integers
// (10.0.0.1 is 0x0a000001): Go passes a [4]byte through memory, an
// integer in a register.
func (t *Table) PrepareAddrs(src, dst uint32, sport, dport uint16, proto uint8, p *Probe) {
	// One word per pair of addresses, as PrepareTuple packs them
	// (written out again: through a shared helper neither would inline).
	p.w0 = uint64(bits.ReverseBytes32(src)) | uint64(bits.ReverseBytes32(dst))<<32
	p.w1 = uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32
	p.h = t.seed.hash(p.w0, p.w1)
	p.ref = 0
}

// Prefetch reads the home bucket of p and, for the first slot whose
// fingerprint matches, asks for the record it points to (prefetch.go),
// remembering the slot for LookupProbe. The bucket is read, not asked
// for: its slot must be found to know the record. Issued for a whole
// burst before any lookup, the record misses overlap with each other and
// with the next probes' buckets. PrefetchBurst does better for a burst
// whose probes sit in one array: all of its buckets before any record.
func (t *Table) Prefetch(p *Probe) {
	bk := &t.ix.buckets[t.ix.Home(p.h)]
	p.ref = bk.find(fpOf(p.h))
	if id, _, ok := t.refRecord(p.ref); ok {
		prefetchRecord(&t.recs[id])
	}
}

// find returns the reference of the first slot with fingerprint fp, or 0.
func (b *Bucket) find(fp uint32) uint32 {
	for s := range b.Slots {
		if v := b.Slots[s].Load(); uint32(v>>32) == fp {
			return uint32(v)
		}
	}
	return 0
}

// PrefetchBurst prefetches the lookups of a burst in two passes: first it
// asks for every probe's home bucket, so that all those cache misses are
// in flight together; then, with the buckets arriving, it finds each
// probe's fingerprint in its bucket and asks for the record the slot leads
// to, so that the record misses overlap too. Each probe remembers its
// slot, and LookupProbe then reads the record without scanning the bucket
// again. A burst of n lookups thus waits about two memory latencies, not
// 2n. The requests are prefetch instructions, which wait for nothing
// (prefetch.go): the first pass issues all n bucket misses at once, and
// the second stalls only on buckets still on their way.
func (t *Table) PrefetchBurst(ps []Probe) { t.prefetchBurst(ps) }

// LookupProbe is Lookup for a prepared key. After a prefetch it first
// tries the record the prefetch found: a live record whose key equals the
// probe's is the session holding it, whatever happened to the index since.
// Anything else (no slot found, the session deleted, the record reused)
// falls back to the full lookup, so a session inserted after the prefetch
// is still found.
func (t *Table) LookupProbe(p *Probe, e *Entry) bool {
	if t.readRef(p.ref, p.w0, p.w1, e) {
		return true
	}
	return t.lookupHashed(p.w0, p.w1, p.h, e)
}

// LookupBurst looks up a burst of at most 64 prepared keys: PrefetchBurst,
// then LookupProbe for each. Bit i of the result is set when ps[i] was
// found, and es[i] then holds its session; es must be at least as long as
// ps. It panics if ps holds more than 64 probes.
func (t *Table) LookupBurst(ps []Probe, es []Entry) (found uint64) {
	if len(ps) > 64 {
		panic("flowtable: LookupBurst of more than 64 probes")
	}
	es = es[:len(ps)]
	t.PrefetchBurst(ps)
	for i := range ps {
		if t.LookupProbe(&ps[i], &es[i]) {
			found |= 1 << i
		}
	}
	return found
}
