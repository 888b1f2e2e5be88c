package nat

import (
	"sync/atomic"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/flowtable"
)

// Creating mappings: the slow path of a packet whose flow has no session.
// Everything here runs on a worker goroutine, without locks: tables are
// flowtables, ports are claimed with compare-and-swap, and reference counts
// live in table user words (see acquireRef). When any step fails, the steps
// before it are undone in reverse order.

// subscriberKey is the key of a subscriber record: protocol 255 keeps it
// apart from anything a packet could produce.
func subscriberKey(a [4]byte) flowtable.Key { return flowtable.Key{Src: a, Proto: 255} }

// bindingKeys are the keys of an endpoint-independent mapping: the inside
// endpoint and the external endpoint.
func bindingKeys(proto uint8, in [4]byte, inPort uint16, ext [4]byte, extPort uint16) (flowtable.Key, flowtable.Key) {
	return flowtable.Key{Src: in, SrcPort: inPort, Proto: proto},
		flowtable.Key{Dst: ext, DstPort: extPort, Proto: proto}
}

// permKey is the key of an address-dependent filtering permission: remote
// address -> external endpoint.
func permKey(proto uint8, remote, ext [4]byte, extPort uint16) flowtable.Key {
	return flowtable.Key{Src: remote, Dst: ext, DstPort: extPort, Proto: proto}
}

// claim is what a new session has taken so far, for undo. The records
// (sub, binding, perm) are each read only after this creation wrote them:
// a lookup or insert fills one before its has bit is set, and every read
// is of a record the creation has looked up, inserted or copied (undo and
// sessionWords by the has bits). So a claim may keep stale records from
// an earlier creation: newOutbound's, the worker's own (Worker.cl), is
// not cleared but begun (begin), which clears every other field. Its
// three records, about 270 bytes, cost about 30 instructions a new
// session to clear on the stack (bench-instr). Owned by the worker's
// goroutine; one creation at a time.
type claim struct {
	// sub is the subscriber: from the plan (newHint.subscriber) only its
	// number, generation, user words and address (Keys[0].Src), which is
	// all that is read of it.
	sub, binding, perm flowtable.Entry
	hasSub, hasBinding bool
	hasPerm            bool
	newPort            bool // the binding was created here
	hasOwn             bool
	ownProto           Proto
	ownPort            uint16
	ownAddr            uint32
	subDelta           uint64
	// rule is the reference a static-mapping or port-forward session
	// holds on its rule's address (holdRuleAddr).
	rule *addrState
	// portSlot is the port table's slot of the port allocPort claimed
	// from the new-session pipeline's plan (claimFreshFree), nil for a
	// port claimed otherwise: a new mapping names itself there
	// (portSet.bindAt).
	portSlot *atomic.Uint64
}

// begin makes c an empty claim for a new creation: every field but the
// three records zero (TestClaimBegin). A field written here one by one,
// not as a struct of its own: a nested struct put sessionWords over Go's
// inlining budget.
func (c *claim) begin() {
	c.hasSub, c.hasBinding, c.hasPerm, c.newPort, c.hasOwn = false, false, false, false, false
	c.ownProto, c.ownPort, c.ownAddr, c.subDelta = 0, 0, 0, 0
	c.rule, c.portSlot = nil, nil
}

// undo releases a failed creation's claims. Ports claimed here were never
// used on the wire, so they return to the pool without hold-down.
func (w *Worker) undo(c *claim) {
	e := w.eng
	if c.hasPerm {
		releaseRef(w.snap.countTableOf(&c.perm), c.perm.ID, 1)
	}
	if c.hasBinding {
		if b, last := releaseRef(e.bindings, c.binding.ID, 1); last {
			proto, _ := ProtoOfNumber(b.Keys[1].Proto)
			st := e.addr(bindingOf(&b).addr())
			st.ports[proto].release(b.Keys[1].DstPort, false, &w.credits)
			w.workerPortFreed(b.Keys[0].Src, st, b.Keys[1].DstPort)
			if !c.newPort {
				// A mapping that existed before us lost its last session
				// to the expirer meanwhile: its port was counted on its
				// subscriber when it was made, not in our claim.
				w.releaseSub(bindingOf(&b).subscriber(), subRefs(0, 1))
			}
		} else if c.newPort {
			// Our new mapping outlives us: another worker's session
			// took it meanwhile. Its port, counted in our claim, is
			// now the mapping's, released when its last session ends.
			c.subDelta -= subRefs(0, 1)
		}
	}
	if c.hasOwn {
		e.addr(c.ownAddr).ports[c.ownProto].release(c.ownPort, false, &w.credits)
		if c.rule == nil { // a forward's port is the rule's, not a block's
			w.workerPortFreed(c.sub.Keys[0].Src, e.addr(c.ownAddr), c.ownPort)
		}
	}
	if c.rule != nil {
		c.rule.rules.Add(-1)
		c.rule.release(1)
		c.rule = nil
	}
	if c.hasSub {
		w.releaseSub(c.sub.ID, c.subDelta)
	}
}

// releaseSub is the worker-side release of subscriber counts.
func (w *Worker) releaseSub(id uint32, delta uint64) {
	if x, last := releaseRef(w.eng.subs, id, delta); last {
		st := w.eng.addr(subAddr(x.User[0]))
		st.subs.Add(-1)
		st.release(1) // the pairing's reference
		w.event(Event{Type: AddressReleased, InsideAddr: x.Keys[0].Src, OutsideAddr: st.addr})
	}
}

// acquireSub takes a reference on the subscriber (inside address) a for
// one more session and newPorts more ports, creating it and pairing it with
// an external address if it is new (RFC 4787 REQ-2, RFC 6888 REQ-2: while
// a subscriber holds any mapping it keeps the same external address). With
// newPorts > 0 it also returns the subscriber's address, st, with a
// reference on it for the new mapping, which the caller gives back once
// it has claimed the mapping's port (allocPort): a port is claimed only
// under a reference, so the address cannot retire meanwhile
// (registry.go). The address is returned, not left in the claim: the
// pointer's stores into the claim and out of it, each with its write
// barrier's test, cost about 4 instructions a new session (2,672 to
// 2,668, bench-instr).
func (w *Worker) acquireSub(a [4]byte, proto Proto, newPorts uint64, c *claim) (st *addrState, r drop.Reason) {
	// A new session's common case, straight: the plan's subscriber
	// (newHint.subscriber), no quota, the reference taken at the first
	// compare-and-swap from the count the plan read, and the paired
	// address's first try. Anything else, and a failed swap (the hint
	// used, the loop looks the subscriber up again), goes to the loop.
	// Without the loop, the quota's closure and the spills around them,
	// about 20 instructions a new session fewer (2,692 to 2,672,
	// bench-instr).
	if l := &w.snap.Config.Limits; l.SessionsPerSubscriber == 0 && (newPorts == 0 || l.PortsPerSubscriber == 0) && w.hint.subscriber(a, &c.sub) {
		delta := subRefs(1, newPorts)
		if v := c.sub.User[1]; v&refDead == 0 {
			if ok, _ := w.eng.subs.CompareAndSwapUser(c.sub.ID, c.sub.Gen, 1, v, v+delta); ok {
				c.hasSub, c.subDelta = true, delta
				if newPorts == 0 {
					return nil, drop.None
				}
				return w.subAddress(a, proto, delta, c)
			}
		}
	}
	return w.acquireSubLoop(a, proto, newPorts, c)
}

// acquireSubLoop is acquireSub but for its common case.
func (w *Worker) acquireSubLoop(a [4]byte, proto Proto, newPorts uint64, c *claim) (*addrState, drop.Reason) {
	s := w.snap
	l := &s.Config.Limits
	delta := subRefs(1, newPorts)
	var check func(uint64) bool // nil: no limit applies (subQuota)
	if l.SessionsPerSubscriber != 0 || (newPorts != 0 && l.PortsPerSubscriber != 0) {
		check = func(v uint64) bool { return subQuota(l, v, newPorts) == drop.None }
	}
	for try := 0; try < 64; try++ {
		if w.hint.subscriber(a, &c.sub) || w.lookupSub(a, &c.sub) {
			// acquireRef's first try, from the count the lookup read,
			// called on the table itself, not through refTable, where no
			// quota applies (about 25 instructions a new session fewer,
			// bench-instr); acquireRef tries again if it fails.
			ok, dying := false, false
			if v := c.sub.User[1]; check == nil && v&refDead == 0 {
				ok, _ = w.eng.subs.CompareAndSwapUser(c.sub.ID, c.sub.Gen, 1, v, v+delta)
			}
			if !ok {
				ok, dying = acquireRef(w.eng.subs, &c.sub, delta, check)
			}
			if ok {
				c.hasSub, c.subDelta = true, delta
				if newPorts == 0 {
					return nil, drop.None
				}
				return w.subAddress(a, proto, delta, c)
			}
			if !dying {
				v := subCount(w.eng.subs.LoadUser(c.sub.ID, 1))
				if l.SessionsPerSubscriber != 0 && v.sessions() >= uint64(l.SessionsPerSubscriber) {
					return nil, drop.SubscriberSessions
				}
				return nil, drop.SubscriberPorts
			}
			continue // dying: its owner is deleting it; look again
		}
		if newPorts > 0 && l.PortsPerSubscriber != 0 && newPorts > uint64(l.PortsPerSubscriber) {
			return nil, drop.SubscriberPorts
		}
		// One reference for the pairing, one for the new mapping's port.
		n := uint64(1)
		if newPorts > 0 {
			n = 2
		}
		st, ok := w.pickAddress(a, proto, n)
		if !ok {
			return nil, drop.AddressExhausted
		}
		k := subscriberKey(a)
		switch w.eng.subs.Insert(&k, &flowtable.NoKey, 0, [2]uint64{uint64(st.idx), delta}, w.now, &c.sub) {
		case flowtable.Inserted:
			st.subs.Add(1)
			c.hasSub, c.subDelta = true, delta
			w.event(Event{Type: AddressBound, InsideAddr: a, OutsideAddr: st.addr})
			if newPorts == 0 {
				return nil, drop.None
			}
			return st, drop.None
		case flowtable.Full:
			st.release(n)
			return nil, drop.TableFull
		}
		// Exists: another worker paired it just now; take a reference.
		st.release(n)
	}
	return nil, drop.Contention
}

// subAddress returns, with a reference for a new mapping, the address
// subscriber a (c.sub, just referenced by delta) is paired with. Its first
// try, for the common case (no deterministic mapping), is pairedAddress's
// written out: the paired address, in the pools, and still paired once
// referenced; the call cost about 35 instructions a new mapping
// (bench-instr). Otherwise pairSub tries it all, and pairs anew if need
// be.
func (w *Worker) subAddress(a [4]byte, proto Proto, delta uint64, c *claim) (*addrState, drop.Reason) {
	idx := subAddr(c.sub.User[0])
	if st := w.eng.addr(idx); st != nil && w.snap.cgn.det == nil && st.acquire(addrInPool, 1) {
		if subAddr(w.eng.subs.LoadUser(c.sub.ID, 0)) == idx {
			return st, drop.None
		}
		st.release(1)
	}
	return w.pairSub(a, proto, delta, c)
}

// pairSub is acquireSub's pairedAddress for subscriber a, referenced by
// delta in c: on failure the reference is given back.
func (w *Worker) pairSub(a [4]byte, proto Proto, delta uint64, c *claim) (*addrState, drop.Reason) {
	st, r := w.pairedAddress(a, proto, c)
	if r != drop.None {
		c.hasSub = false
		w.releaseSub(c.sub.ID, delta)
	}
	return st, r
}

// lookupSub looks up the subscriber of address a into x: acquireSub's
// lookup when the plan has not got it (newHint.subscriber), out of line so
// that the key is built only here.
func (w *Worker) lookupSub(a [4]byte, x *flowtable.Entry) bool {
	k := subscriberKey(a)
	return w.eng.subs.Lookup(&k, x)
}

// pairedAddress takes a reference on the address subscriber a is paired
// with (c.sub, referenced by the caller), for a new mapping, and returns
// it. If
// that address has left the pools, the subscriber is paired again with a
// live one: every new mapping goes to an address the configuration lists,
// so that a removed address drains (issue 11). The price is RFC 4787 REQ-2
// ("paired" pooling) for the time of the drain: the subscriber's older
// mappings keep the old address while its new ones get the new address.
// Keeping the pairing instead would keep the removed address in use for
// as long as the subscriber is active, which can be forever.
func (w *Worker) pairedAddress(a [4]byte, proto Proto, c *claim) (*addrState, drop.Reason) {
	// The first try takes the pairing the subscriber's lookup read (c.sub,
	// a moment ago); a stale one fails the check after the reference, or
	// the compare-and-swap of a re-pairing, and the next try loads it.
	// (acquireSub makes this first try itself when it can, and calls here
	// when it fails.)
	idx := subAddr(c.sub.User[0])
	for try := 0; try < 64; try++ {
		if try > 0 {
			idx = subAddr(w.eng.subs.LoadUser(c.sub.ID, 0))
		}
		// The pairing holds a reference on slot idx while the subscriber
		// names it; a re-pairing by another worker may release it at any
		// time, so the reference is taken first and the pairing checked
		// after.
		// Without deterministic mode every address pairs (cgnSnap.pairs,
		// whose test is written out here: the call cost about 10
		// instructions a new mapping, bench-instr).
		if st := w.eng.addr(idx); st != nil && (w.snap.cgn.det == nil || w.snap.cgn.pairs(a, st)) && st.acquire(addrInPool, 1) {
			if subAddr(w.eng.subs.LoadUser(c.sub.ID, 0)) == idx {
				c.sub.User[0] = uint64(idx)
				return st, drop.None
			}
			st.release(1)
			continue
		}
		// The paired address left the pools: pair again, with one
		// reference for the pairing and one for the mapping.
		nst, ok := w.pickAddress(a, proto, 2)
		if !ok {
			return nil, drop.AddressExhausted
		}
		// We hold a reference on the subscriber, so its record is live at
		// the generation we looked up.
		if swapped, _ := w.eng.subs.CompareAndSwapUser(c.sub.ID, c.sub.Gen, 0, uint64(idx), uint64(nst.idx)); !swapped {
			nst.release(2)
			continue
		}
		// The pairing's reference on slot idx is ours to drop now; it
		// kept the slot from being recycled until here.
		old := w.eng.addr(idx)
		nst.subs.Add(1)
		old.subs.Add(-1)
		old.release(1)
		c.sub.User[0] = uint64(nst.idx)
		w.event(Event{Type: AddressReleased, InsideAddr: a, OutsideAddr: old.addr})
		w.event(Event{Type: AddressBound, InsideAddr: a, OutsideAddr: nst.addr})
		return nst, drop.None
	}
	return nil, drop.Contention
}

// pickAddress pairs a new subscriber with an external address, taking n
// references on it: the pool address its inside address hashes to, or the
// next one with a free port of this protocol. Hashing keeps a returning
// subscriber on the same address in the common case and spreads
// subscribers evenly. An address removed since this worker's snapshot was
// published refuses the reference and is skipped.
func (w *Worker) pickAddress(a [4]byte, proto Proto, n uint64) (*addrState, bool) {
	st := w.snap.pickAddress(w.eng.seed, a, proto, func(st *addrState) bool { return st.acquire(addrInPool, n) })
	return st, st != nil
}

// allocPort claims an external port on address st for inside source
// port sport: the same port if it is free (port preservation), otherwise a
// random free one from this worker's share of the range (RFC 6056, RFC
// 6888: hard to predict). With overlap allowed (address-and-port-dependent
// mapping) it falls back to sharing a port already in use. It gives back
// st's reference, acquireSub's: from here a claimed port keeps the
// address in use.
//
// eimMapping writes it out: a change here is a change there.
func (w *Worker) allocPort(c *claim, st *addrState, proto Proto, sport uint16, overlap bool) (port uint16, ok bool) {
	// The new-session pipeline's plan (newsession.go), claimed here
	// rather than in claimPort (a call less, about 20 instructions a new
	// mapping, bench-instr): the preserved port, found free a moment ago,
	// or the random candidate it drew once that was taken, from the same
	// share and random stream claimRandom draws from. The claim skips the
	// look before the lock (claimFreshFree): the port is most likely
	// free. One that was taken meanwhile is not tried again. Plans are
	// made in dynamic mode only (newSessions' pass 2), in this poll's
	// snapshot.
	pl := w.hint.port(st)
	var slot *atomic.Uint64
	if pl != nil && pl.has&planNone == 0 {
		slot = st.ports[proto].claimFreshFree(pl.port, &pl.pp, &w.credits)
		// A random candidate taken meanwhile: its pair's other port,
		// in the line just read (portTable.hash says why).
		if slot == nil && pl.has&planTaken != 0 {
			pl.port, slot = st.ports[proto].claimBeside(pl.port, pl.lo, pl.hi, &pl.pp, &w.credits)
		}
	}
	if c.portSlot = slot; slot != nil {
		port, ok = pl.port, true
	} else {
		port, ok = w.claimPort(c, st, proto, sport, overlap, pl != nil)
	}
	// Released by hand rather than deferred (about twenty instructions
	// a new mapping, bench-instr): claimPort cannot panic but on a
	// broken invariant, which ends the process anyway.
	st.release(1)
	return port, ok
}

// claimPort is allocPort's claim of a port on st (and eimMapping's, which
// writes allocPort out), under the caller's
// reference on st, when no plan's port was claimed; planned says that a
// plan was tried (or had no port), so that port preservation, which the
// plan covered, is not tried again.
func (w *Worker) claimPort(c *claim, st *addrState, proto Proto, sport uint16, overlap, planned bool) (uint16, bool) {
	if w.snap.cgn.mode != AllocDynamic {
		return w.cgnPort(c, st, proto, overlap)
	}
	ps := &st.ports[proto]
	lo, hi := w.snap.portRange(proto, sport)
	if !planned && sport >= lo && sport <= hi && ps.claimFree(sport, &w.credits) {
		return sport, true // port preservation
	}
	if p, ok := ps.claimRandom(lo, hi, int(w.id), w.eng.nworkers, w.rand(), &w.credits); ok {
		return p, true
	}
	if overlap {
		return ps.shareRandom(lo, hi, w.rand(), 64)
	}
	return 0, false
}

// holdRuleAddr takes a reference, for one more session, on ext, the outside
// address of the static mapping or port forward that admits it. It fails
// when the rule has been removed since this worker's snapshot: removed
// rules open no sessions. The reference keeps the address answered for
// until the session ends (cleanup gives it back), however the
// configuration changes meanwhile (issue 11).
//
// A port-forward session also owns its external port, like a session of
// address-and-port-dependent mapping: the rule's own claim on the port
// goes with the rule, and the port must not return to dynamic allocation
// (on a pool address) while sessions of a removed rule still use it.
func (w *Worker) holdRuleAddr(state uint32, ext [4]byte, port uint16, proto Proto, c *claim) drop.Reason {
	st := w.snap.ruleAddr[ext]
	if st == nil || !st.acquire(addrInRules, 1) {
		return drop.NotForwarded
	}
	st.rules.Add(1)
	c.rule = st
	if state&stKindMask == stKindForward {
		ps := &st.ports[proto]
		if !ps.share(port) && !ps.claimFree(port, &w.credits) && !ps.share(port) {
			// Held down, or the port table is full.
			return drop.PortExhausted
		}
		c.hasOwn, c.ownAddr, c.ownPort, c.ownProto = true, st.idx, port, proto
	}
	return drop.None
}

// eimMapping finds or creates the endpoint-independent mapping of the
// packet's inside endpoint (RFC 4787 REQ-1, RFC 5382 REQ-1) and takes a
// reference on it and on its subscriber.
//
// sport is the inside port of the packet's session key (for an ICMP query,
// its identifier).
func (w *Worker) eimMapping(p *header.Parsed, sport uint16, proto Proto, c *claim, ext *[4]byte, extPort *uint16) drop.Reason {
	for try := 0; try < 64; try++ {
		if !w.hint.noMapping() && w.lookupMapping(p, sport, c) {
			ok, dying := acquireRef(w.eng.bindings, &c.binding, 1, nil)
			if dying {
				continue
			}
			if ok {
				c.hasBinding = true
				if _, r := w.acquireSub(p.Src, proto, 0, c); r != drop.None {
					w.undo(c)
					w.eventQuota(r, proto, p)
					return r
				}
				*ext, *extPort = c.binding.Keys[1].Dst, c.binding.Keys[1].DstPort
				return drop.None
			}
		}
		// No mapping: a new one, with a new port (RFC 4787 REQ-3: no
		// port overloading across internal endpoints).
		st, r := w.acquireSub(p.Src, proto, 1, c)
		if r != drop.None {
			w.eventQuota(r, proto, p)
			return r
		}
		// allocPort, its claim of the plan's port written out (the call
		// with its spills cost about 30 instructions a new mapping, 2,903
		// to 2,872, bench-instr): the same steps, and claimPort for the
		// rest, told whether a plan was tried.
		port, ok := uint16(0), false
		pl := w.hint.port(st)
		if pl != nil && pl.has&planNone == 0 {
			ps := &st.ports[proto]
			slot := ps.claimFreshFree(pl.port, &pl.pp, &w.credits)
			// A random candidate taken meanwhile: its pair's other
			// port, in the line just read (portTable.hash says why).
			if slot == nil && pl.has&planTaken != 0 {
				pl.port, slot = ps.claimBeside(pl.port, pl.lo, pl.hi, &pl.pp, &w.credits)
			}
			if slot != nil {
				c.portSlot = slot
				st.release(1)
				port, ok = pl.port, true
			}
		}
		if !ok {
			port, ok = w.claimPort(c, st, proto, sport, false, pl != nil)
			st.release(1)
		}
		if !ok {
			return w.portsExhausted(c, proto, p.Src, sport, st)
		}
		a := st.addr
		// The inside key (bindingKeys), prepared.
		p0 := w.hint.bindProbe()
		if p0 == nil {
			p0 = new(bindProbe)
			w.eng.bindings.prepareWord(bindWord(p.Src, sport, p.Proto, 0), p0)
		}
		user := bindingWords(c.sub.ID, st.idx)
		// allocPort claimed the port by an insert (no overlap): no live
		// binding has its external key (InsertProbe).
		res := w.eng.bindings.InsertProbe(p0, port, user, &c.binding)
		if res == flowtable.Inserted {
			// The port names its binding: the bindings' index from
			// outside (bindingAt).
			// The claim's slot when it has one (bindAt).
			if ps := &st.ports[proto]; c.portSlot != nil {
				ps.bindAt(c.portSlot, port, c.binding.ID)
			} else {
				ps.bind(port, c.binding.ID)
			}
			c.hasBinding, c.newPort = true, true
			*ext, *extPort = a, port
			return drop.None
		}
		// Full, or Exists: another worker mapped this endpoint
		// concurrently. Give back our port and the port count, and use
		// theirs.
		st.ports[proto].release(port, false, &w.credits)
		w.workerPortFreed(p.Src, st, port)
		w.undo(c)
		if res == flowtable.Full {
			return drop.TableFull
		}
		*c = claim{}
	}
	return drop.Contention
}

// lookupMapping looks up the mapping of the packet's inside endpoint
// (bindingKeys) into c.binding, or takes the plan's answer (newHint). Out
// of eimMapping's loop: a new session's plan knows the mapping missing, and
// the key is then not built at all.
func (w *Worker) lookupMapping(p *header.Parsed, sport uint16, c *claim) bool {
	bk, _ := bindingKeys(p.Proto, p.Src, sport, [4]byte{}, 0)
	return w.hint.mapping(w.eng.bindings, &bk, &c.binding)
}

// bindingAt finds the endpoint-independent mapping whose external endpoint
// is ext:port of protocol proto. The bindings' index holds their inside
// keys only (bindtable.go): the port table is their index by external
// endpoint, the port's word naming its binding (portSet.bind), and the
// binding's record confirms the name. s is the caller's snapshot, whose
// public addresses are every registered one. Any goroutine may call it.
func (e *Engine) bindingAt(s *Snapshot, ext [4]byte, port uint16, proto Proto, b *flowtable.Entry) bool {
	st := s.public[ext]
	if st == nil {
		return false
	}
	id, ok := st.ports[proto].boundTo(port)
	return ok && e.bindings.External(id, st.idx, port, proto.Number(), b)
}

// acquirePerm takes a reference, in the claim's permission slot, on the
// filtering permission with key pk (address-dependent filtering),
// creating it (acquireCount).
func (w *Worker) acquirePerm(pk *flowtable.Key, c *claim) drop.Reason {
	return acquireCount(w.snap.perms, pk, c, 0, w.now)
}
