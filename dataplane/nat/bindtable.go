package nat

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/xnat/xnat/flowtable"
)

// bindTable holds the endpoint-independent mappings (bindings). A binding
// has two keys, each an endpoint and a protocol: the inside endpoint
// (bindingKeys' first key: Src, SrcPort, Proto) and the external endpoint
// (its second: Dst, DstPort, Proto). A binding's record is three words,
// 24 bytes (bindRec): the inside key; the subscriber, the external
// address's registry index and the external port (bindRecUser), which
// with the inside key's protocol and the registry's address are the
// external key; and a count word (generation and reference count, as in
// the count table, counttable.go).
//
// Only the inside key is in the table's index (lineindex.go, 12.8 bytes a
// binding): the external endpoint's index is the port table, whose word of
// a binding's port names the binding (portSet.bind, Engine.bindingAt). A
// binding therefore costs 36.8 bytes; with a record of both key words and
// the user word (32 bytes), 44.8; with its external key in this index too,
// 57.6; as a flowtable entry, 96. A binding's external
// endpoint is unique because its port is: the port is claimed by an insert
// before the binding is made and released only after it is deleted.
//
// It offers the flowtable.Table methods the engine calls on bindings, with
// the same meaning, for the inside key: lookups (Entry.Dir is always 0),
// the prepared, prefetched lookups of the new-session pipeline, and the
// reference-count methods of refTable. An Entry read from it has both keys
// and both user words, and zero for Seen and State, which bindings do not
// use. User[0] is fixed at Insert.
//
// Concurrency as in the count table: lock-free readers check the count
// word's generation around their copy; a compare-and-swap of the count
// names the generation; inserts serialise on their inside key's home
// bucket. Every goroutine may use a bindTable.
type bindTable struct {
	lineIndex
	recs []bindRec
	// reg is the engine's address registry (Engine.slots), which gives
	// the external address of a binding's registry index: a binding's
	// address keeps its slot while the binding lives (registry.go).
	reg  []atomic.Pointer[addrState]
	free freeList // free records link through u0
	_    [56]byte
}

// bindRec is one binding: k0 its inside key (bindKeyWord), u0 the rest of
// its external key and its User[0] (bindRecUser), cw its count word
// (countRec's layout). k0 and u0 are written only while the record is
// free. 24 bytes: a record straddles two cache lines one time in four, as
// the count table's do; the two halves' loads are independent, so their
// misses overlap.
type bindRec struct {
	k0 atomic.Uint64
	u0 atomic.Uint64
	cw atomic.Uint64
}

// bindRecUser is a binding record's u0:
//
//	bits  0..25  subscriber record (below limits.max_subscribers <= 2^26)
//	bits 26..42  registry index of the external address (below maxAddrSlots = 2^17)
//	bits 43..58  external port
//
// The Entry's User[0] is bindingWords' form (subscriber, address index).
func bindRecUser(user0 uint64, extPort uint16) uint64 {
	b := bindingWord(user0)
	return uint64(b.subscriber()) | uint64(b.addr())<<26 | uint64(extPort)<<43
}

// bindRecFields unpacks a record's u0: User[0], the address index and the
// external port.
func bindRecFields(u uint64) (user0 uint64, idx uint32, port uint16) {
	idx = uint32(u>>26) & (1<<17 - 1)
	return u&(1<<26-1) | uint64(idx)<<32, idx, uint16(u >> 43)
}

// bindKeyWord packs a binding key of direction dir: the endpoint's address
// (bits 0..31), port (32..47), protocol (48..55) and dir (bit 56), so that
// the inside and the external key of one endpoint never collide. ok is
// false for a key that no binding can have: an inside key has no
// destination, an external key no source.
func bindKeyWord(k *flowtable.Key) (w uint64, dir uint8, ok bool) {
	switch {
	case k.Dst == [4]byte{} && k.DstPort == 0:
		return uint64(binary.LittleEndian.Uint32(k.Src[:])) | uint64(k.SrcPort)<<32 | uint64(k.Proto)<<48, 0, true
	case k.Src == [4]byte{} && k.SrcPort == 0:
		return uint64(binary.LittleEndian.Uint32(k.Dst[:])) | uint64(k.DstPort)<<32 | uint64(k.Proto)<<48 | 1<<56, 1, true
	}
	return 0, 0, false
}

func bindKeyOf(w uint64) flowtable.Key {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], uint32(w))
	if w>>56 == 0 {
		return flowtable.Key{Src: a, SrcPort: uint16(w >> 32), Proto: uint8(w >> 48)}
	}
	return flowtable.Key{Dst: a, DstPort: uint16(w >> 32), Proto: uint8(w >> 48)}
}

// newBindTable returns a table of capacity bindings (at most maxBindings:
// a port names its binding in 27 bits) on the address registry reg.
func newBindTable(capacity int, reg []atomic.Pointer[addrState]) *bindTable {
	capacity = min(capacity, maxBindings)
	t := &bindTable{reg: reg}
	t.lineIndex = makeLineIndex(t, int64(capacity))
	t.recs = flowtable.AllocArray[bindRec](t, capacity)
	t.free.init(capacity, t.setNext) // faults the records in
	return t
}

// setNext links free record id to next, through u0 (pop).
func (t *bindTable) setNext(id uint32, next uint64) { t.recs[id].u0.Store(next) }

// pop is countTable.pop for the bind table's records, linked through u0.
func (t *bindTable) pop(user uint64) (id, next uint32, gen, c uint64, ok bool) {
	for {
		h, top, ok := t.free.top()
		if !ok {
			return 0, 0, 0, 0, false
		}
		r := &t.recs[top]
		if nx := r.u0.Load(); t.free.take(h, nx) {
			gen, c = nextCount(&r.cw, user)
			return top, uint32(nx), gen, c, true
		}
	}
}

// Len returns the number of bindings.
func (t *bindTable) Len() int { return t.free.inUse(len(t.recs)) }

// Cap returns the capacity in bindings.
func (t *bindTable) Cap() int { return len(t.recs) }

// BytesPerEntry is the table's memory per binding of capacity.
func (t *bindTable) BytesPerEntry() float64 {
	return float64(t.bytes()+int64(len(t.recs))*bindRecSize) / float64(len(t.recs))
}

// bindRecSize is a bindRec's size (asserted by a test).
const bindRecSize = 24

// keyHash hashes a key word; the high half is the slot fingerprint,
// forced non-zero.
func (t *bindTable) keyHash(w uint64) (h uint64, fp uint32) {
	h = t.hash(w)
	return h, uint32(h>>32) | 1
}

// bindSlot is the index word of key dir of record id.
func bindSlot(fp uint32, id uint32, dir uint8) uint64 {
	return uint64(fp)<<32 | uint64(id<<1|uint32(dir)+1)
}

// read copies live record id into e if its inside key is w (dir 0), or
// its external key is the port port on the address of registry index idx
// (dir 1), or anyhow when match is false. The external key's protocol is
// the inside key's.
func (t *bindTable) read(id uint32, dir uint8, w uint64, idx uint32, port uint16, match bool, e *flowtable.Entry) bool {
	r := &t.recs[id]
	c := r.cw.Load()
	if uint32(c) == 0 {
		return false
	}
	a0, u := r.k0.Load(), r.u0.Load()
	c2 := r.cw.Load()
	if c2>>32 != c>>32 || uint32(c2) == 0 {
		return false
	}
	u0, ridx, rport := bindRecFields(u)
	if match && (dir == 0 && a0 != w || dir != 0 && (ridx != idx || rport != port || uint8(a0>>48) != uint8(w))) {
		return false
	}
	st := t.reg[ridx].Load()
	if st == nil {
		return false // retired since: the binding has gone
	}
	k0 := bindKeyOf(a0)
	*e = flowtable.Entry{ID: id, Dir: dir, Gen: c2 >> 32, Keys: [2]flowtable.Key{k0, {Dst: st.addr, DstPort: rport, Proto: k0.Proto}}}
	e.User = [2]uint64{u0, countUser(c2)}
	return true
}

// Lookup finds the binding with inside key k. External keys are not in
// this index (Engine.bindingAt finds those).
func (t *bindTable) Lookup(k *flowtable.Key, e *flowtable.Entry) bool {
	var p bindProbe
	t.Prepare(k, &p)
	return t.LookupProbe(&p, e)
}

// bindProbe is a key prepared for lookup, as flowtable.Probe: packed and
// hashed once, with the slot reference a prefetch found.
type bindProbe struct {
	w, h uint64
	fp   uint32
	ok   bool   // the key is a binding's inside key
	ref  uint32 // slot reference found by Scan, 0 if none
	// absent is set by Scan when the key's home bucket had no slot
	// of its fingerprint and nothing stored beyond it: the key was in no
	// binding when the bucket was read.
	absent bool
}

// Prepare packs and hashes k.
func (t *bindTable) Prepare(k *flowtable.Key, p *bindProbe) {
	var dir uint8
	p.w, dir, p.ok = bindKeyWord(k)
	p.ok = p.ok && dir == 0
	p.h, p.fp = t.keyHash(p.w)
	p.ref, p.absent = 0, false
}

// PrefetchHome notes p's home bucket in l, to ask for at l's Flush: the
// new-session pipeline's first pass, whose next pass scans it (Scan). A
// prefetch, not a load, so that the pass waits for none of its misses
// (flowtable's Table.PrefetchHome says why). p is as Prepare or
// prepareWord left it, its reference and absent cleared: not cleared
// again here (about 2 instructions a new session, bench-instr).
func (t *bindTable) PrefetchHome(p *bindProbe, l *flowtable.Lines) {
	l.AddBucket(&t.buckets[t.home(p.h)])
}

// Scan reads p's home bucket, asked for by PrefetchHome a pass before,
// and notes in l the record of the first slot whose fingerprint matches,
// remembering the slot (see flowtable.Table.Prefetch). When no slot
// matches and no key was stored beyond the bucket, it notes the key
// absent (bindProbe.absent): the scan has already answered the lookup,
// and the new-session pipeline need not walk it again (its plan is a
// hint: a mapping created after the scan makes the insert of another
// fail).
//
// The new-session pipeline writes out its first step, for a probe it
// prepared (ok), and calls scanSlots for the rest.
func (t *bindTable) Scan(p *bindProbe, l *flowtable.Lines) {
	// Absent is the common case for a new session: one written-out scan
	// answers it (noFingerprint); the loop finds the slot otherwise.
	if p.absent = p.ok && t.noFingerprint(t.home(p.h), p.fp); !p.absent {
		t.scanSlots(p, l)
	}
}

// scanSlots is the rest of Scan, for a key that its home bucket does not
// show absent: the first slot of p's fingerprint there, whose record it
// notes in l.
func (t *bindTable) scanSlots(p *bindProbe, l *flowtable.Lines) {
	bk := &t.buckets[t.home(p.h)]
	for s := range bk.Slots {
		if v := bk.Slots[s].Load(); uint32(v>>32) == p.fp {
			p.ref = uint32(v)
			if id := (p.ref - 1) >> 1; int(id) < len(t.recs) {
				flowtable.LinesAdd(l, &t.recs[id])
			}
			return
		}
	}
}

// bindWord is bindKeyWord of the key of endpoint a:port of protocol
// proto, in direction dir (0: inside, 1: external), from the fields.
func bindWord(a [4]byte, port uint16, proto uint8, dir uint8) uint64 {
	return uint64(binary.LittleEndian.Uint32(a[:])) | uint64(port)<<32 | uint64(proto)<<48 | uint64(dir)<<56
}

// prepareWord prepares the probe of the binding key whose word is w.
func (t *bindTable) prepareWord(w uint64, p *bindProbe) {
	p.w, p.ok = w, true
	p.h, p.fp = t.keyHash(w)
	p.ref, p.absent = 0, false
}

// LookupProbe is Lookup for a prepared key: first the record a prefetch
// found, then the walk.
func (t *bindTable) LookupProbe(p *bindProbe, e *flowtable.Entry) bool {
	if !p.ok {
		return false
	}
	if p.ref != 0 && t.read((p.ref-1)>>1, 0, p.w, 0, 0, true, e) {
		return true
	}
	return t.lookupHashed(p.w, p.h, p.fp, e)
}

func (t *bindTable) lookupHashed(w, h uint64, fp uint32, e *flowtable.Entry) bool {
	return t.lookup(h, fp, func(ref uint32) bool { return t.read(ref>>1, 0, w, 0, 0, true, e) })
}

// Insert adds a binding of inside key k0 and external key k1, with user
// words user (User[1] is its count). state must be 0; now is not kept.
// If either key belongs to a live binding it returns Exists and that
// binding in e; if the table is full, Full.
func (t *bindTable) Insert(k0, k1 *flowtable.Key, state uint32, user [2]uint64, now uint32, e *flowtable.Entry) flowtable.InsertResult {
	var p0 bindProbe
	t.Prepare(k0, &p0)
	w1, dir, ok := bindKeyWord(k1)
	if !p0.ok || !ok || dir != 1 || state != 0 {
		panic("nat: a binding has an inside and an external endpoint key")
	}
	res := t.InsertProbe(&p0, uint16(w1>>32), user, e)
	if res == flowtable.Inserted {
		e.Dir, e.Seen, e.State = 0, 0, 0
		e.Keys[0], e.Keys[1] = *k0, *k1
	}
	return res
}

// InsertProbe is Insert for an inside key already prepared (p0: Prepare,
// prepareWord) and the external port extPort on the address that user[0]
// names (bindingWords: the external key, with the inside key's
// protocol). The
// new-session pipeline hashed the inside key before, to prefetch its
// bucket. The probe is only read. On Inserted, e holds the new binding's
// number, generation and user words, and nothing else: not its keys, which
// the caller has (Insert fills them in), and the new-session path, which
// made them, never reads back (unpacking both cost about 35 instructions
// a new mapping, bench-instr); nor its Dir, Seen and State, all 0 for a
// binding, which Insert fills in too (about 2 instructions a new session,
// 2,587 to 2,584, bench-instr).
//
// The external key is not checked: it is unique because its port is. The
// caller has just claimed that port in the port table by an insert
// (portSet.claimFree and the claims built on it; not a share), every
// binding's port is claimed that way before its insert and released only
// after its delete (undo, cleanup), and an address keeps one registry
// slot while any of its ports is in use (registry.go). The inside key is
// checked as always: another worker may map the same endpoint.
func (t *bindTable) InsertProbe(p0 *bindProbe, extPort uint16, user [2]uint64, e *flowtable.Entry) flowtable.InsertResult {
	// The inside key's home bucket is locked, and released by hand on
	// every path, as the flowtable's insert does: a deferred unlock cost
	// about thirty instructions (callgrind). Its address is taken once,
	// for its lock, its check and its unlock (flowtable.Bucket.TryLock;
	// with portTable.insertAt's the same way, about 27 instructions a
	// new session, bench-instr).
	h0 := t.home(p0.h)
	bk := &t.buckets[h0]
	if !bk.TryLock() { // inlined: the call only to wait
		bk.Lock()
	}
	res := flowtable.Inserted
	next := uint32(0) // pop's, for the prefetch after the unlock
	// Its one line answers for a key that is not there, the common case
	// (noFingerprint's test); exact under the lock.
	held := !bk.Lacks(p0.fp) && t.lookupHashed(p0.w, p0.h, p0.fp, e)
	// A free record: pop's first try written out, pop called only when
	// the list is empty or another pop took its top meanwhile (the call
	// with its frame cost about 8 instructions a new mapping, 2,744 to
	// 2,736, bench-instr).
	var id, nx uint32
	var gen, c uint64
	ok := false
	if !held {
		if h, top, any := t.free.top(); any {
			r := &t.recs[top]
			if n := r.u0.Load(); t.free.take(h, n) {
				id, nx, ok = top, uint32(n), true
				// A new mapping counts its creator's session
				// (bindingWords): countWord's word for a count of 1,
				// without its checks (about 7 instructions a new
				// session, 2,629 to 2,623, bench-instr).
				if user[1] == 1 {
					gen = r.cw.Load()>>32 + 1
					c = gen<<32 | 1
				} else {
					gen, c = nextCount(&r.cw, user[1])
				}
			}
		}
		if !ok {
			id, nx, gen, c, ok = t.pop(user[1])
		}
	}
	if held {
		res = flowtable.Exists
	} else if !ok {
		res = flowtable.Full
	} else {
		next = nx
		r := &t.recs[id]
		// Plain stores: the record is free until its count word's
		// store below (flowtable.StoreUnpublished).
		flowtable.StoreUnpublished(&r.k0, p0.w)
		flowtable.StoreUnpublished(&r.u0, bindRecUser(user[0], extPort))
		// Index first, publish after: a reader that finds the slot
		// early sees a free record and skips it.
		t.PlaceIn(bk, h0, bindSlot(p0.fp, id, 0))
		r.cw.Store(c)
		// Field by field: a composite literal clears the whole Entry
		// first. The rest is the caller's (InsertProbe).
		e.ID, e.Gen, e.User = id, gen, user
	}
	bk.Unlock()
	// The record of the free list's new top, number next-1 (pop), if
	// there is one (flowtable's Table.prefetchNext says why). Written
	// out: a method for it was just over Go's inlining budget, and its
	// call cost about 11 instructions a new session (bench-instr). One
	// compare tests both ends: next 0 wraps to the largest number.
	if i := next - 1; int(i) < len(t.recs) {
		flowtable.PrefetchLine(&t.recs[i])
	}
	return res
}

// Get copies live binding id into e.
func (t *bindTable) Get(id uint32, e *flowtable.Entry) bool {
	return int(id) < len(t.recs) && t.read(id, 0, 0, 0, 0, false, e)
}

// External returns in e binding id if it is live and its external key is
// port port of protocol proto on the address of registry index idx: the
// check of a port's hint (portSet.boundTo).
func (t *bindTable) External(id, idx uint32, port uint16, proto uint8, e *flowtable.Entry) bool {
	return int(id) < len(t.recs) && t.read(id, 1, uint64(proto), idx, port, true, e)
}

// Alive reports whether binding id is still live at generation gen.
func (t *bindTable) Alive(id uint32, gen uint64) bool {
	return int(id) < len(t.recs) && countAlive(&t.recs[id].cw, gen)
}

// LoadUser loads user word i of record id, whatever binding holds it now
// (see flowtable.Table.LoadUser).
func (t *bindTable) LoadUser(id uint32, i int) uint64 {
	if i == 0 {
		u0, _, _ := bindRecFields(t.recs[id].u0.Load())
		return u0
	}
	return countUser(t.recs[id].cw.Load())
}

// CompareAndSwapUser replaces the count (i must be 1: User[0] is fixed)
// of binding id with new if it is still at generation gen and counts old.
func (t *bindTable) CompareAndSwapUser(id uint32, gen uint64, i int, old, new uint64) (swapped, live bool) {
	if i != 1 {
		panic("nat: a binding's first user word is fixed")
	}
	return swapCount(&t.recs[id].cw, gen, old, new)
}

// Delete removes binding id if it is still at generation gen.
func (t *bindTable) Delete(id uint32, gen uint64) bool {
	if int(id) >= len(t.recs) || !freeCount(&t.recs[id].cw, gen) {
		return false
	}
	h, fp := t.keyHash(t.recs[id].k0.Load())
	t.remove(t.home(h), bindSlot(fp, id, 0))
	t.free.push(id, t.setNext)
	return true
}
