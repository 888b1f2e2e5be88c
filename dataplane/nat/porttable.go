package nat

import (
	"sync"
	"sync/atomic"

	"github.com/xnat/xnat/flowtable"
)

// portTable holds every port in use, on every external address and
// protocol, in one preallocated, pointer-free array: a port that has an
// owner or is in hold-down is one 64-bit word, a free port is nothing.
//
// Why one word: a port's record needs only its identity and its state
// (owner count and hold-down flag, see portSet), and both fit a word:
//
//	bits  0..26  owners (portMaxOwner), or the binding + 1 (portBound)
//	bit  27      portBound: the owner is the endpoint-independent
//	             binding named in bits 0..26, and it is the only one
//	bit  28      portHeld: in hold-down
//	bits 29..44  port (or ICMP identifier)
//	bits 45..46  protocol (Proto)
//	bits 47..63  registry index of the address (below maxAddrSlots = 2^17)
//
// The state (bits 0..28) is never 0 in a table. A port that a binding owns
// names it (portBound): the port table is the bindings' index by external
// endpoint, so a binding is found from outside (admitInbound) by a port
// lookup and one record read, and the bindings' own index holds only
// their inside keys (bindtable.go). That is 12.8 bytes per session slot
// less than a second key in the bindings' index (issue 14's 160-byte
// target). The name is a hint that the reader checks against the
// binding's record (bindingAt): it is set after the binding is published
// and cleared when the port is released.
//
// A slot holding 0 is empty. The key (bits 29..63) sits in the same word
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
// The index is a lineIndex (lineindex.go) whose slots hold the ports'
// words themselves, so a lookup reads one cache line and nothing else:
// 12.8 bytes per port of capacity, where the flowtable record and index it
// replaces cost 96. Lookups and state transitions are lock-free; inserts of
// a new port serialise on the lock of its home bucket, so two claims of one
// port cannot both insert it. The transition that frees a port (state to 0)
// clears its slot first and lowers the overflow counts after. Every
// goroutine may use a portTable.
type portTable struct {
	lineIndex
	capacity int64
	chunk    int64 // credits a worker takes at once (portCredits)
	pools    struct {
		sync.Mutex
		all []*portCredits // every worker's, for Len
	}
	_ [64]byte
	// reserved counts the ports reserved: those in the table, and the
	// credits the workers hold unused (portCredits). It never exceeds
	// capacity, so the table never holds more keys than its index can
	// place.
	reserved atomic.Int64
	_        [56]byte
}

// portCredits is a worker's pool of port-table credits: ports reserved in
// the table's count (portTable.reserved) and not yet used. The count was
// one locked add on a line every worker writes, in every insert and every
// free: about 2% of a new session's time at 1M sessions (perf). A worker
// takes credits a chunk at a time (portTable.chunk, one locked add), spends
// one per insert and gets one back per port it frees itself, with plain
// arithmetic; above two chunks it returns one. Frees by any other
// goroutine (the control plane: expiry, hold-down, configuration) go to
// the table's count directly. So ports in the table ≤ reserved ≤
// capacity, exactly (but for the instant a refused reservation's excess
// is given back, when no port is placed for it). That is one locked
// instruction a new session fewer, 24.18 to 23.19 (lockcount), for about
// 10 instructions more, 2,436 to 2,446 (bench-instr: the pool's test
// and decrement, its pointer passed down to insertAt).
//
// Credits a worker holds are out of everyone else's reach: at most two
// chunks a worker (portTable.strandable), which the hold-down's room
// leaves free (Engine.holdRoom), so a full session table's ports still
// fit. A worker gives its credits back when it stops or goes idle
// (Worker.Publish). A worker that the runner gives up on after repeated
// panics exits without Publish: its credits, at most two chunks, stay
// reserved, which the hold-down's room already leaves for; a panic
// between a credit spent and its port placed loses that one credit.
// Both err towards refusing a port, never towards overfilling the index.
//
// Owned by one goroutine (the worker's), but for pub.
type portCredits struct {
	n   int64        // credits held
	pub atomic.Int64 // n as of the worker's last publication, for Len
}

// creditChunk is the chunk of credits a worker takes for a table of
// capacity n: 1 (no pooling: every insert and free is one add to the
// table's count, as without credits) below 8192 ports, then a 4096th of
// the table, at most 64, so that the credits the workers can hold stay a
// small part of the table (about 0.1% at 16 workers and 1M sessions).
func creditChunk(n int64) int64 { return min(max(n/4096, 1), 64) }

const (
	portKeyShift   = 29
	portProtoShift = 45
	portAddrShift  = 47
)

// portPairBit is the low bit of a port in its key: hash leaves it out.
const portPairBit = 1 << portKeyShift

// hash is the index's hash of key with the port's low bit cleared, so
// that the two ports of a pair (2k and 2k+1) share a home bucket. When the
// new-session pipeline's random candidate was taken in the meantime
// (about one claim in fourteen at a million sessions, where every address
// has thousands of ports in use), its partner is tried in the line the
// failed claim has just read (portSet.claimBeside) instead of a random
// port elsewhere, whose line is a cache miss: that miss was 7% of a new
// session's time at 1M sessions (perf; docs/engineering.md, "Ports in
// pairs, and locked instructions"). Where ports are dense, pairs fill a
// bucket two keys at a time: with every port of its addresses taken and
// the table two thirds full, 10.0% of the buckets hold an overflow count,
// against 2.3% for single keys (34.9% against 19.0% when full). Spread
// ports fill buckets as single keys do.
func (t *portTable) hash(key uint64) uint64 { return t.lineIndex.hash(key &^ portPairBit) }

// portKey is the key part of the word of port p of protocol proto on the
// address in registry slot idx.
func portKey(idx uint32, proto Proto, p uint16) uint64 {
	return uint64(idx)<<portAddrShift | uint64(proto)<<portProtoShift | uint64(p)<<portKeyShift
}

// newPortTable sizes the port table from the limits. Each port in use has
// an owner: an endpoint-independent binding, or with address-and-port-
// dependent mapping at least one session; both are bounded by
// MaxSessions. Ports in hold-down come on top: steady churn holds about
// the hold-down time over a mapping's life of the ports in use, under half
// with the default timeouts; the table takes that half again
// (portsPerSessionSlot), and portsForRules for the port forwards' claims.
// Anything that holds more (a flush of a full table, short-lived ICMP
// identifiers) ends the oldest holds early rather than fill the table
// (holddown.go). At 12.8 bytes a port that is 19.2 bytes per session slot.
func newPortTable(l Limits) (*portTable, error) {
	return makePortTable(int64(float64(l.MaxSessions)*portsPerSessionSlot) + portsForRules), nil
}

// portsPerSessionSlot is the port table's size per session slot.
const portsPerSessionSlot = 1.5

// makePortTable returns a port table of n ports.
func makePortTable(n int64) *portTable {
	t := &portTable{capacity: n, chunk: creditChunk(n)}
	t.lineIndex = makeLineIndex(t, n)
	return t
}

// Len returns the number of ports in the table: those reserved, less the
// credits the workers hold as of their last publication (a Poll's end,
// Worker.Publish). Its readers are tests, which read it while the workers
// are between Polls or stopped, when it is exact; a count of its own
// would put back a locked add in every insert and free. Read during a
// worker's Poll it is off by what that worker's credits changed since
// (at most two chunks); above Cap only for the instant a refused
// reservation's excess is given back (reserveMore), as the count before
// credits was.
func (t *portTable) Len() int {
	n := t.reserved.Load()
	t.pools.Lock()
	for _, c := range t.pools.all {
		n -= c.pub.Load()
	}
	t.pools.Unlock()
	return int(n)
}

// strandable is the most credits n workers can hold unused: two chunks
// each, none without pooling (chunk 1).
func (t *portTable) strandable(n int) int {
	if t.chunk < 2 {
		return 0
	}
	return n * 2 * int(t.chunk)
}

// register makes c a credit pool of t, counted by Len.
func (t *portTable) register(c *portCredits) {
	t.pools.Lock()
	t.pools.all = append(t.pools.all, c)
	t.pools.Unlock()
}

// reserve takes a credit for one insert: one of cr's, or, when it has
// none or is nil (a goroutine without a worker), from the table's count
// (reserveMore). False when the table is full.
func (t *portTable) reserve(cr *portCredits) bool {
	if cr != nil && cr.n > 0 {
		cr.n--
		return true
	}
	return t.reserveMore(cr)
}

// reserveMore takes a chunk of credits into cr and spends one of them, or
// with cr nil or no pooling a single credit: one locked add. Short of a
// chunk, it keeps what is left below capacity. A concurrent reserver's
// excess, not given back yet, makes it keep less, never more: the count
// never stays above capacity.
func (t *portTable) reserveMore(cr *portCredits) bool {
	k := t.chunk
	if cr == nil {
		k = 1
	}
	over := t.reserved.Add(k) - t.capacity
	if over <= 0 {
		if cr != nil {
			cr.n += k - 1
		}
		return true
	}
	if over >= k {
		t.reserved.Add(-k)
		return false
	}
	t.reserved.Add(-over)
	cr.n += k - over - 1 // k > 1 here: cr is not nil
	return true
}

// unreserve gives back the credit of a port freed: to cr when it is a
// worker's (above two chunks, one goes back to the table's count), to the
// table's count when cr is nil or without pooling.
func (t *portTable) unreserve(cr *portCredits) {
	if cr == nil || t.chunk < 2 {
		t.reserved.Add(-1)
		return
	}
	if cr.n++; cr.n > 2*t.chunk {
		cr.n -= t.chunk
		t.reserved.Add(-t.chunk)
	}
}

// publish makes cr's count visible to Len. Once per Poll: a plain load,
// and a store only when the count changed.
func (cr *portCredits) publish() {
	if cr.pub.Load() != cr.n {
		cr.pub.Store(cr.n)
	}
}

// giveBack returns every credit cr holds to t's count, for a worker that
// stops or goes idle, and publishes.
func (t *portTable) giveBack(cr *portCredits) {
	if cr.n != 0 {
		t.reserved.Add(-cr.n)
		cr.n = 0
	}
	cr.publish()
}

// Cap returns the number of ports the table can hold.
func (t *portTable) Cap() int { return int(t.capacity) }

// BytesPerPort is the table's memory per port of capacity.
func (t *portTable) BytesPerPort() float64 { return float64(t.bytes()) / float64(t.capacity) }

// portRef is where a port's word was found: the slot, its key's home
// bucket and how many buckets beyond it the slot lies (for unwinding the
// overflow counts when the slot is freed).
type portRef struct {
	slot       *atomic.Uint64
	home, dist uint64
}

// find looks key up: the slot that holds it and the word it held.
func (t *portTable) find(key uint64, r *portRef) (v uint64, ok bool) {
	return t.findFrom(key, t.home(t.hash(key)), r)
}

// findFrom is find for a key whose home bucket b is known.
func (t *portTable) findFrom(key, b uint64, r *portRef) (v uint64, ok bool) {
	r.home = b
	for n := uint64(0); n < t.nb; n++ {
		bk := &t.buckets[b]
		for s := range bk.Slots {
			if v := bk.Slots[s].Load(); v != 0 && v&^portState == key {
				r.slot, r.dist = &bk.Slots[s], n
				return v, true
			}
		}
		if t.ended(b) {
			return 0, false
		}
		b = t.step(b)
	}
	return 0, false
}

// look reports whether key is in the table, if bucket b, key's home,
// shows it alone (sure): key is in one of its slots, or in none and no key
// was stored beyond b. Read under b's insert lock, absent is exact: only
// an insert of home b places key. Otherwise (sure false) only the walk
// (findFrom) can tell. It is findFrom's common case, a port found in its
// home bucket or absent from it (about 50 instructions fewer a claim than
// the walk, and about 20 fewer a look, bench-instr). Key 0 is never sure:
// an empty slot holds 0.
func (t *portTable) look(key, b uint64) (found, sure bool) { return portLook(&t.buckets[b], key) }

// portLook is look's test of the line bk, kept out of line for the reason
// flowtable.Bucket.Lacks gives: each slot's load then takes its offset in
// the instruction. One test a slot, as there.
//
//go:noinline
func portLook(bk *flowtable.Bucket, key uint64) (found, sure bool) {
	if key == 0 {
		return false, false
	}
	if bk.Slots[0].Load()&^portState == key {
		return true, true
	}
	if bk.Slots[1].Load()&^portState == key {
		return true, true
	}
	if bk.Slots[2].Load()&^portState == key {
		return true, true
	}
	if bk.Slots[3].Load()&^portState == key {
		return true, true
	}
	if bk.Slots[4].Load()&^portState == key {
		return true, true
	}
	if bk.Slots[5].Load()&^portState == key {
		return true, true
	}
	if bk.Slots[6].Load()&^portState == key {
		return true, true
	}
	return false, bk.Meta.Load() < lineOverflow
}

// insert adds key with state st (not 0), with a credit from cr (a
// worker's pool, nil for the table's count: portCredits). It fails if key
// is in the table already, or the table is full.
func (t *portTable) insert(key, st uint64, cr *portCredits) bool {
	var r portRef
	if _, ok := t.find(key, &r); ok {
		return false // taken: a look first costs no lock
	}
	return t.insertAt(key, st, r.home, cr) != nil
}

// insertAt is insert without the look first, for a key whose home bucket
// b is known and that was found free a moment ago (the new-session
// pipeline's plan): the look under the lock decides alone. It returns the
// slot the port's word went into, nil if it failed. The word stays in
// that slot for as long as the port has an owner or is held: a slot is
// cleared only by the transition that frees the port (update), and a
// freed port's word goes into whatever slot a later insert finds. The
// insert spends a credit of cr (reserve).
func (t *portTable) insertAt(key, st, b uint64, cr *portCredits) *atomic.Uint64 {
	// The bucket's address once, as in bindTable.InsertProbe.
	bk := &t.buckets[b]
	if !bk.TryLock() { // inlined: the call only to wait
		bk.Lock()
	}
	// Unlocked by hand, not deferred: see bindTable.InsertProbe.
	var slot *atomic.Uint64
	if found, sure := portLook(bk, key); sure && !found || !sure && !t.found(key, b) {
		if t.reserve(cr) {
			slot = t.PlaceIn(bk, b, key|st)
		}
	}
	bk.Unlock()
	return slot
}

// update applies f to the state of the port whose word was found at r,
// until the compare-and-swap succeeds or f refuses (ok false). It returns
// the old and new state. It fails (found false) if the slot no longer
// holds key. A new state of 0 frees the slot, and its credit goes to cr
// (unreserve).
func (t *portTable) update(key uint64, r *portRef, f func(st uint64) (nst uint64, ok bool), cr *portCredits) (st, nst uint64, found, ok bool) {
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
				t.unwind(r.home, r.dist)
				t.unreserve(cr)
			}
			return st, nst, true, true
		}
	}
}

// swap replaces the word old of a port with new (the same key, another
// state that frees nothing), if the port's word is still old: one compare-
// and-swap of its slot, found by the word itself, which no other slot can
// hold (a key is in the table once). It is update for a transition from
// one known state, without the function and the loop (portSet.bind: about
// 95 instructions fewer a new mapping than update, bench-instr).
func (t *portTable) swap(old, new uint64) bool {
	b := t.home(t.hash(old &^ portState))
	for n := uint64(0); n < t.nb; n++ {
		bk := &t.buckets[b]
		for s := range bk.Slots {
			if bk.Slots[s].Load() == old {
				return bk.Slots[s].CompareAndSwap(old, new)
			}
		}
		if t.ended(b) {
			return false
		}
		b = t.step(b)
	}
	return false
}

// portProbe is a port key prepared for lookup: hashed once, so that a
// burst's lookups can be split into a prefetch pass and a lookup pass, as
// with flowtable.Probe.
type portProbe struct {
	key, home uint64
}

// Prepare hashes key into p.
func (t *portTable) Prepare(key uint64, p *portProbe) {
	p.key, p.home = key, t.home(t.hash(key))
}

// Prefetch notes p's home bucket in l, to ask for at l's Flush: issued
// for a whole burst before its lookups, the misses overlap (a prefetch,
// not a load: flowtable's Table.PrefetchHome says why).
func (t *portTable) Prefetch(p *portProbe, l *flowtable.Lines) { l.AddBucket(&t.buckets[p.home]) }

// LookupProbe reports whether p's port is in the table (owned or held).
func (t *portTable) LookupProbe(p *portProbe) bool {
	// A port looked up here is as likely taken (port preservation's
	// check of the inside port) as free: look answers both.
	if found, sure := t.look(p.key, p.home); sure {
		return found
	}
	return t.found(p.key, p.home)
}

// found reports whether findFrom finds key from its home bucket b. The
// reference findFrom fills is its own: a caller's, declared at its top,
// was cleared on every call of insertAt, where found is rare (about 3
// instructions a new session, bench-instr).
func (t *portTable) found(key, b uint64) bool {
	var r portRef
	_, ok := t.findFrom(key, b, &r)
	return ok
}
