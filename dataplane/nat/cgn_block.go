package nat

import (
	"sync/atomic"

	"github.com/xnat/xnat/flowtable"
)

// Port-block allocation (PBA, docs/cgn.md) and the packet-path side of
// deterministic allocation.
//
// A block is BlockSize consecutive ports of one external address, cut
// from the address's ports at or above 1024 (blockSpace): block b is
// ports lo + b*size .. lo + (b+1)*size - 1. The subscriber who holds a
// block owns those port numbers in every protocol; nobody else is given
// a port in it.
//
// Two records in the engine's blocks table describe a block, both keyed
// with protocol numbers no packet can produce:
//
//   - the address's claim, {Dst: address, DstPort: b, Proto: 253}: User[0]
//     is the subscriber's address (bits 0..31) and flags (blockHeld),
//     User[1] the allocation time (Unix ns). Inserting it is what gives a
//     block to one subscriber only; it is deleted when the block is freed,
//     after the hold-down. Lookups by outside address read it.
//   - the subscriber's slot, {Src: subscriber, SrcPort: slot, Proto: 254},
//     slot < max_blocks: User[0] is the address's registry index (bits
//     0..31) and b (bits 32..63), User[1] a reference count (acquireRef,
//     releaseRef): one per port allocation made in the block. The last
//     release deletes it, and its releaser frees the block.
//
// Workers find a subscriber's blocks by looking up its slots; the control
// plane (cleanup) releases ports and queues an emptied block for release
// after the port hold-down (RFC 6888 REQ-8), like a port.

const (
	protoBlockAddr = 253
	protoBlockSub  = 254
	blockHeld      = 1 << 33
	blockLive      = 1 << 32
	// heldBlock marks a hold-down FIFO entry that frees a block, not a
	// port (heldPort.proto).
	heldBlock Proto = 0xff
)

func blockAddrKey(ext [4]byte, b uint32) flowtable.Key {
	return flowtable.Key{Dst: ext, DstPort: uint16(b), Proto: protoBlockAddr}
}

func blockSubKey(sub [4]byte, slot int) flowtable.Key {
	return flowtable.Key{Src: sub, SrcPort: uint16(slot), Proto: protoBlockSub}
}

// cgnSnap is the compiled CGN part of a Snapshot.
type cgnSnap struct {
	mode      PortAllocation
	det       *DetMap
	blockLo   uint16
	blockSize uint32
	nBlocks   uint32
	maxBlocks int
	mute      uint32 // event types not logged (bit 1<<type)
}

func newCGNSnap(c *Config) cgnSnap {
	g := cgnSnap{mode: c.CGN.PortAllocation, maxBlocks: c.CGN.MaxBlocks, mute: mutedEvents(&c.CGN)}
	switch g.mode {
	case AllocDeterministic:
		g.det, _ = NewDetMap(c) // validated
	case AllocBlock:
		g.blockLo, g.blockSize = detFirstPort, uint32(c.CGN.BlockSize)
		g.nBlocks = DetPortsPerAddress / g.blockSize
	}
	return g
}

// blockRange returns the ports of block b.
func (g *cgnSnap) blockRange(b uint32) (lo, hi uint16) {
	lo = uint16(uint32(g.blockLo) + b*g.blockSize)
	return lo, uint16(uint32(lo) + g.blockSize - 1)
}

// muted reports whether events of type t are not logged in this mode.
func (s *Snapshot) muted(t EventType) bool { return s.cgn.mute&(1<<t) != 0 }

// cgnState is the engine's CGN state.
type cgnState struct {
	blocks *flowtable.Table // nil unless block mode
	// slots is the most block slots any configuration allowed: a
	// subscriber's blocks are looked for up to it.
	slots atomic.Int32
	// Counters for the metrics.
	blocksLive, blockAllocs, blockReleases, blockMisses atomic.Uint64
}

// initCGN sizes the blocks table for block mode. Every slot record holds
// at least one port allocation, so there are at most MaxSessions of them
// (and MaxBlockSlots per subscriber); address claims outlive them by the
// hold-down at most, so the table takes twice that.
func (e *Engine) initCGN(cfg *Config) error {
	if cfg.CGN.PortAllocation != AllocBlock {
		return nil
	}
	n := min(cfg.Limits.MaxSessions, cfg.Limits.MaxSubscribers*MaxBlockSlots)
	n = min(2*n+1024, flowtable.MaxCapacity)
	t, err := flowtable.New(n)
	if err != nil {
		return err
	}
	e.cgn.blocks = t
	return nil
}

// applyCGN is apply's CGN part (ctl held): it refuses what a reload
// cannot change and compiles the snapshot's part.
func (e *Engine) applyCGN(s *Snapshot, old *Snapshot) error {
	if old != nil {
		if err := checkCGNReload(&old.Config, &s.Config); err != nil {
			return err
		}
	}
	s.cgn = newCGNSnap(&s.Config)
	if n := int32(s.cgn.maxBlocks); n > e.cgn.slots.Load() {
		e.cgn.slots.Store(n)
	}
	return nil
}

// cgnPort claims the port of a new mapping in block or deterministic
// mode, on address st, for subscriber c.sub. Block mode first tries the
// subscriber's blocks on st, then gives it a new block. Worker only.
func (w *Worker) cgnPort(c *claim, st *addrState, proto Proto, overlap bool) (uint16, bool) {
	g := &w.snap.cgn
	sub := c.sub.Keys[0].Src
	ps := &st.ports[proto]
	if g.mode == AllocDeterministic {
		j, lo, hi, ok := g.det.forward(sub)
		if !ok || g.det.addrs[j] != st.addr {
			return 0, false
		}
		return claimInRange(ps, lo, hi, overlap, w.rand(), &w.credits)
	}
	t := w.eng.cgn.blocks
	slots := int(w.eng.cgn.slots.Load())
	// The protocol's range narrows every block; well-known source ports
	// map into blocks too (blocks start at 1024).
	plo, phi := w.snap.portRange(proto, 1024)
	for try := 0; try < 8; try++ {
		free := -1
		var x flowtable.Entry
		for slot := 0; slot < slots; slot++ {
			k := blockSubKey(sub, slot)
			if !t.Lookup(&k, &x) {
				if free < 0 && slot < g.maxBlocks {
					free = slot
				}
				continue
			}
			if blockSlotOf(&x).addr() != st.idx {
				continue // a block on an address the subscriber left
			}
			if ok, _ := acquireRef(t, &x, 1, nil); !ok {
				continue
			}
			lo, hi := g.blockRange(blockSlotOf(&x).block())
			if p, ok := claimInRange(ps, max(lo, plo), min(hi, phi), overlap, w.rand(), &w.credits); ok {
				return p, true
			}
			w.releaseBlockRef(x.ID, st)
		}
		if free < 0 {
			return 0, false // max_blocks blocks, all full
		}
		switch w.newBlock(st, sub, free, plo, phi) {
		case blockNone:
			return 0, false
		case blockRetry:
			continue
		}
		// The new block is ours with one reference; the next round finds
		// it and takes a port. Drop the creation's reference after that.
		var nb flowtable.Entry
		k := blockSubKey(sub, free)
		if !t.Lookup(&k, &nb) {
			continue
		}
		lo, hi := g.blockRange(blockSlotOf(&nb).block())
		if p, ok := claimInRange(ps, max(lo, plo), min(hi, phi), overlap, w.rand(), &w.credits); ok {
			return p, true
		}
		w.releaseBlockRef(nb.ID, st)
	}
	return 0, false
}

type newBlockResult uint8

const (
	blockNone newBlockResult = iota
	blockMade
	blockRetry
)

// newBlock gives subscriber sub a free block of address st in its slot
// slot, with one reference (for the port about to be claimed): the first
// free one, from a random point, that meets the protocol's range
// [plo, phi].
func (w *Worker) newBlock(st *addrState, sub [4]byte, slot int, plo, phi uint16) newBlockResult {
	g := &w.snap.cgn
	t := w.eng.cgn.blocks
	if g.nBlocks == 0 || phi < g.blockLo || plo > phi {
		return blockNone
	}
	first := (uint32(max(plo, g.blockLo)) - uint32(g.blockLo)) / g.blockSize
	last := min((uint32(phi)-uint32(g.blockLo))/g.blockSize, g.nBlocks-1)
	if first > last {
		return blockNone
	}
	n := last - first + 1
	start := uint32(w.rand() % uint64(n))
	var a flowtable.Entry
	for i := uint32(0); i < n; i++ {
		b := first + (start+i)%n
		k := blockAddrKey(st.addr, b)
		if t.Lookup(&k, &a) {
			continue
		}
		switch t.Insert(&k, &flowtable.NoKey, 0, blockClaimWords(sub, w.nowNano), w.now, &a) {
		case flowtable.Full:
			return blockNone
		case flowtable.Exists:
			continue
		}
		sk := blockSubKey(sub, slot)
		var x flowtable.Entry
		switch t.Insert(&sk, &flowtable.NoKey, 0, blockSlotWords(st.idx, b), w.now, &x) {
		case flowtable.Inserted:
			w.eng.cgn.blocksLive.Add(1)
			w.eng.cgn.blockAllocs.Add(1)
			lo, hi := g.blockRange(b)
			w.event(Event{Type: BlockAllocated, InsideAddr: sub, OutsideAddr: st.addr, OutsidePort: lo, PortEnd: hi})
			return blockMade
		case flowtable.Exists:
			// Another worker filled the slot meanwhile: give the block
			// back and look again.
			t.Delete(a.ID, a.Gen)
			return blockRetry
		default:
			t.Delete(a.ID, a.Gen)
			return blockNone
		}
	}
	return blockNone
}

// releaseBlockRef drops a reference on block slot record id, taken by
// this worker; if it was the last, the block is freed at once: it gave
// no port (a claim that failed or was undone), and the ports its earlier
// sessions used are in their own hold-down.
func (w *Worker) releaseBlockRef(id uint32, st *addrState) {
	if x, last := releaseRef(w.eng.cgn.blocks, id, 1); last {
		ev := w.eng.freeBlock(x.Keys[0].Src, st.addr, blockSlotOf(&x).block(), w.snap)
		w.event(ev)
	}
}

// freeBlock deletes block b's address claim and returns its release
// event. Any goroutine; only the releaser of the slot's last reference,
// or the hold-down FIFO after it, calls it for a block.
func (e *Engine) freeBlock(sub, ext [4]byte, b uint32, s *Snapshot) Event {
	t := e.cgn.blocks
	k := blockAddrKey(ext, b)
	var a flowtable.Entry
	if t.Lookup(&k, &a) {
		t.Delete(a.ID, a.Gen)
	}
	e.cgn.blocksLive.Add(^uint64(0))
	e.cgn.blockReleases.Add(1)
	lo, hi := s.cgn.blockRange(b)
	return Event{Type: BlockReleased, InsideAddr: sub, OutsideAddr: ext, OutsidePort: lo, PortEnd: hi}
}

// blockOf finds subscriber sub's slot record for the block of st that
// holds port.
func (e *Engine) blockOf(sub [4]byte, st *addrState, port uint16, s *Snapshot, x *flowtable.Entry) bool {
	g := &s.cgn
	if port < g.blockLo || g.blockSize == 0 {
		return false
	}
	b := (uint32(port) - uint32(g.blockLo)) / g.blockSize
	want := blockSlot(st.idx, b)
	slots := int(e.cgn.slots.Load())
	for slot := 0; slot < slots; slot++ {
		k := blockSubKey(sub, slot)
		if e.cgn.blocks.Lookup(&k, x) && blockSlotOf(x) == want {
			return true
		}
	}
	return false
}

// workerPortFreed drops the block reference of a port allocation that a
// worker undoes (block mode; no-op otherwise).
func (w *Worker) workerPortFreed(sub [4]byte, st *addrState, port uint16) {
	if w.eng.cgn.blocks == nil {
		return
	}
	var x flowtable.Entry
	if !w.eng.blockOf(sub, st, port, w.snap, &x) {
		w.eng.cgn.blockMisses.Add(1)
		return
	}
	w.releaseBlockRef(x.ID, st)
}

// ctlPortFreed drops the block reference of a port allocation whose
// session or mapping ended (ctl held); an emptied block enters the
// hold-down FIFO and is freed after the port hold-down.
func (e *Engine) ctlPortFreed(sub [4]byte, st *addrState, port uint16, now uint32, s *Snapshot) {
	if e.cgn.blocks == nil {
		return
	}
	var x flowtable.Entry
	if !e.blockOf(sub, st, port, s, &x) {
		e.cgn.blockMisses.Add(1)
		return
	}
	y, last := releaseRef(e.cgn.blocks, x.ID, 1)
	if !last {
		return
	}
	b := blockSlotOf(&y).block()
	// Mark the claim held, for lookups, and queue its release.
	k := blockAddrKey(st.addr, b)
	var a flowtable.Entry
	if e.cgn.blocks.Lookup(&k, &a) {
		e.cgn.blocks.CompareAndSwapUser(a.ID, a.Gen, 0, a.User[0], uint64(blockClaimOf(&a).withHeld()))
	}
	if s.hold == 0 {
		e.pushCtl(e.stampEvent(e.freeBlock(sub, st.addr, b, s), now))
		return
	}
	e.held = append(e.held, heldPort{until: now + s.hold, addr: st, port: uint16(b), proto: heldBlock, sub: sub})
	e.shortenBlockHolds(now)
}

// releaseHeldBlock frees a block whose hold-down has ended (ctl held).
func (e *Engine) releaseHeldBlock(h *heldPort, now uint32) {
	s := e.snap.Load()
	e.pushCtl(e.stampEvent(e.freeBlock(h.sub, h.addr.addr, uint32(h.port), s), now))
}

func (e *Engine) stampEvent(ev Event, now uint32) Event {
	ev.UnixNano = e.tickTime(now).UnixNano()
	return ev
}

// claimInRange claims a port in [lo, hi] for one subscriber's range
// (a block or a deterministic range) at random, without port
// preservation, so that ports stay hard to guess (RFC 6056): random
// probes, then a
// walk of the whole range, so that false means the range is full. With
// overlap allowed (address-and-port-dependent mapping) it then shares a
// port in use. The credits are cr's (claimFree).
func claimInRange(ps *portSet, lo, hi uint16, overlap bool, r uint64, cr *portCredits) (uint16, bool) {
	n := uint64(hi) - uint64(lo) + 1
	for i := 0; i < randomProbes; i++ {
		p := uint16(uint64(lo) + r%n)
		r = r*6364136223846793005 + 1442695040888963407
		if ps.claimFree(p, cr) {
			return p, true
		}
	}
	start := r % n
	for i := uint64(0); i < n; i++ {
		p := uint16(uint64(lo) + (start+i)%n)
		if ps.claimFree(p, cr) {
			return p, true
		}
	}
	if overlap {
		return ps.shareRandom(lo, hi, r, 64)
	}
	return 0, false
}

// CGNStats are the port-allocation counters, for the metrics.
type CGNStats struct {
	Mode                         PortAllocation
	BlocksInUse                  uint64
	BlocksAllocated, BlocksFreed uint64
	// BlockHoldsShortened counts the blocks freed before their hold-down
	// ended, the block table having no room for them (holddown.go); they
	// are counted in BlocksFreed too.
	BlockHoldsShortened uint64
}

// CGNStats returns the port-allocation counters.
func (e *Engine) CGNStats() CGNStats {
	return CGNStats{
		Mode:                e.snap.Load().cgn.mode,
		BlocksInUse:         e.cgn.blocksLive.Load(),
		BlocksAllocated:     e.cgn.blockAllocs.Load(),
		BlocksFreed:         e.cgn.blockReleases.Load(),
		BlockHoldsShortened: e.holds.blocksShortened.Load(),
	}
}

// detAddress returns subscriber a's deterministic address in pool (the
// snapshot's pool, in the function's order), or nil: in other modes, or
// for an address no inside prefix holds.
func (g *cgnSnap) detAddress(pool []*addrState, a [4]byte) *addrState {
	if g.det == nil {
		return nil
	}
	j, _, _, ok := g.det.forward(a)
	if !ok || j >= len(pool) || pool[j].addr != g.det.addrs[j] {
		return nil
	}
	return pool[j]
}

// explainRange is the range a new mapping's port is drawn from in block
// and deterministic modes, for explain: the subscriber's range, or the
// block space narrowed by the protocol's range (the block is not known
// until the packet comes). ok is false in dynamic mode.
func (g *cgnSnap) explainRange(s *Snapshot, a [4]byte, proto Proto) (lo, hi uint16, ok bool) {
	switch g.mode {
	case AllocDeterministic:
		_, lo, hi, ok = g.det.forward(a)
		return lo, hi, ok
	case AllocBlock:
		plo, phi := s.portRange(proto, 1024)
		return max(plo, g.blockLo), phi, true
	}
	return 0, 0, false
}

// pairs reports whether subscriber a may keep its pairing with st: in
// deterministic mode only with the address the function gives it (after
// a reload that moved it, its next mapping pairs it again).
func (g *cgnSnap) pairs(a [4]byte, st *addrState) bool {
	if g.det == nil {
		return true
	}
	j, _, _, ok := g.det.forward(a)
	return ok && g.det.addrs[j] == st.addr
}
