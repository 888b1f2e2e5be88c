package nat

import (
	"math/rand/v2"
	"runtime"
	"sync/atomic"
)

// portTable holds every port in use, on every external address and
// protocol, in one preallocated, pointer-free array: a port that has an
// owner or is in hold-down is one 64-bit word, a free port is nothing.
//
// Why one word: a port's record needs only its identity and its 16-bit
// state (owner count and hold-down flag, see portSet), and both fit a
// word with room to spare:
//
//	bits  0..15  state: owners (0..14), portHeld (15); never 0 in a table
//	bits 16..31  port (or ICMP identifier)
//	bits 32..33  protocol (Proto)
//	bits 34..57  registry index of the address (below maxAddrSlots < 2^24)
//	bits 58..63  zero
//
// A slot holding 0 is empty. The key (bits 16..63) sits in the same word
// as the state, so every transition is one compare-and-swap of the word,
// and a compare-and-swap from a copy read before the slot was freed and
// taken by another port cannot succeed: the key differs. If the same port
// is freed and claimed again into the same slot with the same state in
// between, the swap does land, but on the same port in the same state, and
// the new state depends on nothing else: the result is the one the caller
// would have had on the new claim. (The flowtable records used before
// needed a nonce for this, because their key and user word were apart.)
// A registry index names one address for as long as any of its ports is
// in use (registry.go retires a slot only when portsIdle), so the index
// stands for the address.
//
// The index is a hash table in cache-line buckets, like the flowtable's: a
// meta word (insert lock, bit 0; overflow count, bits 1..63) and seven
// slots, with the key stored in the slot itself, so a lookup reads one
// line and nothing else. The table is sized for portKeysPerBucket keys per
// bucket at capacity, so 64/4 = 16 bytes per port in use; the flowtable
// record and index it replaces cost 96. A bucket overflows only when more
// than seven of its keys hash to it (5% of the buckets at a Poisson mean of
// 4, at capacity); a key stored beyond its home bucket raises the overflow
// count of every bucket it passed, and a lookup stops at the first bucket
// whose count is zero. Deleted slots become empty at once: no tombstones,
// so churn never degrades the table.
//
// Concurrency: lookups and state transitions are lock-free. Inserts of a
// new port serialise on the spin bit of the key's home bucket, so two
// claims of one port cannot both insert it. The overflow counts follow the
// flowtable's rule: an insert raises them along its path before it
// publishes its slot; the transition that frees a slot (state to 0) clears
// it first and lowers them after, so a visible key's path is always
// covered. Every goroutine may use a portTable.
//
// The home bucket comes from a seeded hash: with port preservation an
// inside host chooses the ports it asks for, and must not be able to aim
// them all at one probe chain.
type portTable struct {
	buckets  []portBucket
	nb       uint64
	seed     uint64
	capacity int64
	_        [64]byte
	live     atomic.Int64 // ports in the table
	_        [56]byte
}

// portBucket is one cache line of the port table.
type portBucket struct {
	meta  atomic.Uint64
	slots [portSlots]atomic.Uint64
}

const (
	portSlots         = 7
	portKeysPerBucket = 4
	portLock          = 1
	portOverflow      = 2 // the overflow count lives in bits 1..63

	portKeyShift   = 16
	portProtoShift = 32
	portAddrShift  = 34
)

// portKey is the key part of the word of port p of protocol proto on the
// address in registry slot idx.
func portKey(idx uint32, proto Proto, p uint16) uint64 {
	return uint64(idx)<<portAddrShift | uint64(proto)<<portProtoShift | uint64(p)<<portKeyShift
}

// newPortTable sizes the port table from the limits. Each port in use has
// an owner: an endpoint-independent binding, or with address-and-port-
// dependent mapping at least one session; both are bounded by
// MaxSessions. Ports in hold-down come on top: a port is held for the
// hold-down time after a mapping that lived at least the transitory
// timeout, so they stay below about half of the ports in use; the table
// takes that half again, and a port forward's claim or two. At 16 bytes a
// port that is 24 bytes per session slot.
func newPortTable(l Limits) (*portTable, error) {
	return makePortTable(int64(l.MaxSessions) + int64(l.MaxSessions)/2 + 1024), nil
}

// makePortTable returns a port table of n ports.
func makePortTable(n int64) *portTable {
	nb := uint64(n+portKeysPerBucket-1) / portKeysPerBucket
	t := &portTable{
		buckets:  make([]portBucket, nb),
		nb:       nb,
		seed:     rand.Uint64(),
		capacity: n,
	}
	// Fault the array in now: a worker claiming a port at line rate must
	// not take the page fault of a fresh page.
	for b := 0; b < len(t.buckets); b += 4096 / 64 {
		t.buckets[b].meta.Store(0)
	}
	return t
}

// Len returns the number of ports in the table.
func (t *portTable) Len() int { return int(t.live.Load()) }

// Cap returns the number of ports the table can hold.
func (t *portTable) Cap() int { return int(t.capacity) }

// BytesPerPort is the table's memory per port of capacity.
func (t *portTable) BytesPerPort() float64 {
	return float64(t.nb) * 64 / float64(t.capacity)
}

// home returns the home bucket of key: a splitmix64 finaliser of the
// seeded key, reduced to the bucket count by multiply-shift.
func (t *portTable) home(key uint64) uint64 {
	z := key ^ t.seed
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	return (uint64(uint32(z)) * t.nb) >> 32
}

func (t *portTable) step(b uint64) uint64 {
	b++
	if b == t.nb {
		b = 0
	}
	return b
}

// portRef is where a port's word was found: the slot, its key's home
// bucket and how many buckets beyond it the slot lies (for unwinding the
// overflow counts when the slot is freed).
type portRef struct {
	slot       *atomic.Uint64
	home, dist uint64
}

// find looks key up: the slot that holds it and the word it held.
func (t *portTable) find(key uint64, r *portRef) (v uint64, ok bool) {
	b := t.home(key)
	r.home = b
	for n := uint64(0); n < t.nb; n++ {
		bk := &t.buckets[b]
		for s := range bk.slots {
			if v := bk.slots[s].Load(); v != 0 && v&^portState == key {
				r.slot, r.dist = &bk.slots[s], n
				return v, true
			}
		}
		if bk.meta.Load() < portOverflow {
			return 0, false // no key was stored beyond this bucket
		}
		b = t.step(b)
	}
	return 0, false
}

// has reports whether key is in the table.
func (t *portTable) has(key uint64) bool {
	var r portRef
	_, ok := t.find(key, &r)
	return ok
}

// insert adds key with state st (not 0). It fails if key is in the table
// already, or the table is full.
func (t *portTable) insert(key, st uint64) bool {
	var r portRef
	if _, ok := t.find(key, &r); ok {
		return false // taken: a look first costs no lock
	}
	b := r.home
	t.lock(b)
	defer t.unlock(b)
	if _, ok := t.find(key, &r); ok {
		return false
	}
	if t.live.Add(1) > t.capacity {
		t.live.Add(-1)
		return false
	}
	// It cannot run out of slots: at most cap keys are in the table, and
	// the buckets have 7/4 times as many.
	w := key | st
	for {
		bk := &t.buckets[b]
		for s := range bk.slots {
			if bk.slots[s].Load() == 0 && bk.slots[s].CompareAndSwap(0, w) {
				return true
			}
		}
		bk.meta.Add(portOverflow)
		b = t.step(b)
	}
}

// update applies f to the state of the port whose word was found at r,
// until the compare-and-swap succeeds or f refuses (ok false). It returns
// the old and new state. It fails (found false) if the slot no longer
// holds key. A new state of 0 frees the slot.
func (t *portTable) update(key uint64, r *portRef, f func(st uint64) (nst uint64, ok bool)) (st, nst uint64, found, ok bool) {
	for {
		v := r.slot.Load()
		if v == 0 || v&^portState != key {
			return 0, 0, false, false
		}
		st = v & portState
		nst, ok = f(st)
		if !ok {
			return st, st, true, false
		}
		w := key | nst
		if nst == 0 {
			w = 0
		}
		if r.slot.CompareAndSwap(v, w) {
			if nst == 0 {
				for b, n := r.home, r.dist; n > 0; n-- {
					t.buckets[b].meta.Add(^uint64(portOverflow - 1))
					b = t.step(b)
				}
				t.live.Add(-1)
			}
			return st, nst, true, true
		}
	}
}

// prefetch touches key's home bucket and returns a value derived from it
// (see flowtable.Table.Prefetch).
func (t *portTable) prefetch(key uint64) uint64 {
	return t.buckets[t.home(key)].meta.Load()
}

func (t *portTable) lock(b uint64) {
	m := &t.buckets[b].meta
	for spins := 0; ; spins++ {
		v := m.Load()
		if v&portLock == 0 && m.CompareAndSwap(v, v|portLock) {
			return
		}
		if spins > 64 {
			// The holder may have been preempted; let it run.
			runtime.Gosched()
		}
	}
}

func (t *portTable) unlock(b uint64) {
	// Add, not Store: other inserters raise this bucket's overflow count
	// without holding its lock.
	t.buckets[b].meta.Add(^uint64(0))
}
