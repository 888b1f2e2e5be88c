package nat

import (
	"hash/maphash"

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

// claim is what a new session has taken so far, for undo.
type claim struct {
	sub, binding, perm flowtable.Entry
	hasSub, hasBinding bool
	hasPerm            bool
	subDelta           uint64
	newPort            bool // the binding was created here
	ownAddr            uint32
	ownPort            uint16
	ownProto           Proto
	hasOwn             bool
}

// undo releases a failed creation's claims. Ports claimed here were never
// used on the wire, so they return to the pool without hold-down.
func (w *Worker) undo(c *claim) {
	e := w.eng
	if c.hasPerm {
		releaseRef(e.perms, c.perm.ID, 1)
	}
	if c.hasBinding {
		if b, last := releaseRef(e.bindings, c.binding.ID, 1); last {
			proto, _ := protoIndex(b.Keys[1].Proto)
			w.snap.addrs[uint32(b.User[0]>>32)].ports[proto].release(b.Keys[1].DstPort, false)
			if !c.newPort {
				// A mapping that existed before us lost its last session
				// to the expirer meanwhile: its port was counted on its
				// subscriber when it was made, not in our claim.
				w.releaseSub(uint32(b.User[0]), subRefs(0, 1))
			}
		} else if c.newPort {
			// Our new mapping outlives us: another worker's session
			// took it meanwhile. Its port, counted in our claim, is
			// now the mapping's, released when its last session ends.
			c.subDelta -= subRefs(0, 1)
		}
	}
	if c.hasOwn {
		w.snap.addrs[c.ownAddr].ports[c.ownProto].release(c.ownPort, false)
	}
	if c.hasSub {
		w.releaseSub(c.sub.ID, c.subDelta)
	}
}

// releaseSub is the worker-side release of subscriber counts.
func (w *Worker) releaseSub(id uint32, delta uint64) {
	if x, last := releaseRef(w.eng.subs, id, delta); last {
		idx := uint32(x.User[0])
		w.snap.addrs[idx].subs.Add(-1)
		w.event(Event{Type: AddressReleased, InsideAddr: x.Keys[0].Src, OutsideAddr: w.snap.addrs[idx].addr})
	}
}

// acquireSub takes a reference on the subscriber (inside address) a for
// one more session and newPorts more ports, creating it and pairing it with
// an external address if it is new (RFC 4787 REQ-2, RFC 6888 REQ-2: while
// a subscriber holds any mapping it keeps the same external address).
func (w *Worker) acquireSub(a [4]byte, proto Proto, newPorts uint64, c *claim) drop.Reason {
	s := w.snap
	l := &s.Config.Limits
	k := subscriberKey(a)
	delta := subRefs(1, newPorts)
	check := func(v uint64) bool {
		return (l.SessionsPerSubscriber == 0 || v&0xffffffff < uint64(l.SessionsPerSubscriber)) &&
			(newPorts == 0 || l.PortsPerSubscriber == 0 || v>>32+newPorts <= uint64(l.PortsPerSubscriber))
	}
	for try := 0; try < 64; try++ {
		if w.eng.subs.Lookup(&k, &c.sub) {
			ok, dying := acquireRef(w.eng.subs, &c.sub, delta, check)
			if ok {
				c.hasSub, c.subDelta = true, delta
				return drop.None
			}
			if !dying {
				v := w.eng.subs.LoadUser(c.sub.ID, 1)
				if l.SessionsPerSubscriber != 0 && v&0xffffffff >= uint64(l.SessionsPerSubscriber) {
					return drop.SubscriberSessions
				}
				return drop.SubscriberPorts
			}
			continue // dying: its owner is deleting it; look again
		}
		if newPorts > 0 && l.PortsPerSubscriber != 0 && newPorts > uint64(l.PortsPerSubscriber) {
			return drop.SubscriberPorts
		}
		idx, ok := w.pickAddress(a, proto)
		if !ok {
			return drop.AddressExhausted
		}
		switch w.eng.subs.Insert(&k, &flowtable.NoKey, 0, [2]uint64{uint64(idx), delta}, w.now, &c.sub) {
		case flowtable.Inserted:
			s.addrs[idx].subs.Add(1)
			c.hasSub, c.subDelta = true, delta
			w.event(Event{Type: AddressBound, InsideAddr: a, OutsideAddr: s.addrs[idx].addr})
			return drop.None
		case flowtable.Full:
			return drop.TableFull
		}
		// Exists: another worker paired it just now; take a reference.
	}
	return drop.Contention
}

// pickAddress pairs a new subscriber with an external address: the pool
// address its inside address hashes to, or the next one with a free port of
// this protocol. Hashing keeps a returning subscriber on the same address
// in the common case and spreads subscribers evenly.
func (w *Worker) pickAddress(a [4]byte, proto Proto) (uint32, bool) {
	pool := w.snap.pool
	if len(pool) == 0 {
		return 0, false
	}
	start := int(maphash.Comparable(w.eng.seed, a) % uint64(len(pool)))
	if w.snap.Config.Mapping == AddressAndPortDependent {
		// Ports overlap across destinations: an address whose ports are
		// all in use still has room.
		return pool[start], true
	}
	size := int32(w.snap.ports[proto].Size())
	for i := range pool {
		idx := pool[(start+i)%len(pool)]
		if w.snap.addrs[idx].ports[proto].inUse.Load() < size {
			return idx, true
		}
	}
	return 0, false
}

// allocPort claims an external port on address idx for inside source port
// sport: the same port if it is free (port preservation), otherwise a
// random free one from this worker's share of the range (RFC 6056, RFC
// 6888: hard to predict). With overlap allowed (address-and-port-dependent
// mapping) it falls back to sharing a port already in use.
func (w *Worker) allocPort(idx uint32, proto Proto, sport uint16, overlap bool) (uint16, bool) {
	ps := &w.snap.addrs[idx].ports[proto]
	lo, hi := w.snap.portRange(proto, sport)
	if sport >= lo && sport <= hi && ps.claimFree(sport) {
		return sport, true
	}
	if p, ok := ps.claimRandom(lo, hi, int(w.id), w.eng.nworkers, w.rand()); ok {
		return p, true
	}
	if overlap {
		return ps.shareRandom(lo, hi, w.rand(), 64)
	}
	return 0, false
}

// newOutbound creates the session for an outbound packet whose key 0 is k,
// filling e. It returns drop.None or the reason the packet must be dropped.
func (w *Worker) newOutbound(p *header.Parsed, k *flowtable.Key, e *flowtable.Entry) drop.Reason {
	s := w.snap
	proto, _ := protoIndex(p.Proto)
	var ext [4]byte
	var extPort uint16
	var c claim
	state := uint32(0)
	ownAddr := uint32(0)

	if r, ok := s.fwdIn[fwdKey{addr: p.Src, port: k.SrcPort, proto: uint8(proto)}]; ok && proto != ICMP {
		// A port-forwarded server opening a flow: symmetric static NAPT.
		ext, extPort, state = r.outAddr, r.outPort, stKindForward
	} else if out, ok := s.staticIn[p.Src]; ok {
		ext, extPort, state = out, k.SrcPort, stKindStatic
	} else if s.Config.Mapping == EndpointIndependent {
		if r := w.eimMapping(p, k, proto, &c, &ext, &extPort); r != drop.None {
			return r
		}
	} else {
		// Address-and-port-dependent mapping: the session owns its port.
		if r := w.acquireSub(p.Src, proto, 1, &c); r != drop.None {
			w.eventQuota(r, proto, p)
			return r
		}
		idx := uint32(c.sub.User[0])
		port, ok := w.allocPort(idx, proto, k.SrcPort, true)
		if !ok {
			w.undo(&c)
			w.c[PortAllocFailures]++
			w.event(Event{Type: PortsExhausted, Proto: proto, InsideAddr: p.Src, InsidePort: k.SrcPort, OutsideAddr: s.addrs[idx].addr})
			return drop.PortExhausted
		}
		c.hasOwn, c.ownAddr, c.ownPort, c.ownProto = true, idx, port, proto
		ext, extPort, ownAddr = s.addrs[idx].addr, port, idx+1
	}

	if s.isPublic(p.Dst) {
		state |= stHairpin
	}
	if proto == TCP {
		state = tcpNext(state, p.TCPFlags, Inside)
	}
	if c.hasBinding && s.Config.Filtering[proto] == FilterAddressDependent {
		pk := permKey(p.Proto, p.Dst, ext, extPort)
		if r := w.acquirePerm(&pk, &c); r != drop.None {
			w.undo(&c)
			return r
		}
	}
	k1 := flowtable.Key{Src: p.Dst, Dst: ext, SrcPort: k.DstPort, DstPort: extPort, Proto: p.Proto}
	user := sessUser(idPlus1(c.hasBinding, c.binding.ID), idPlus1(c.hasSub, c.sub.ID), idPlus1(c.hasPerm, c.perm.ID), ownAddr, w.id)
	switch w.eng.sessions.Insert(k, &k1, state, user, w.now, e) {
	case flowtable.Inserted:
		w.c[SessionsCreated+Counter(proto)]++
		w.sessionEvent(SessionCreated, e)
		return drop.None
	case flowtable.Exists:
		w.undo(&c)
		if e.Dir == 0 && e.Keys[0] == *k {
			// Another worker created this very session a moment ago.
			return drop.None
		}
		// The external 5-tuple is taken (possible only with port overlap).
		return drop.PortExhausted
	default:
		w.undo(&c)
		w.event(Event{Type: TableFull, Proto: proto, InsideAddr: p.Src, InsidePort: k.SrcPort})
		return drop.TableFull
	}
}

func idPlus1(ok bool, id uint32) uint32 {
	if !ok {
		return 0
	}
	return id + 1
}

// eimMapping finds or creates the endpoint-independent mapping of the
// packet's inside endpoint (RFC 4787 REQ-1, RFC 5382 REQ-1) and takes a
// reference on it and on its subscriber.
func (w *Worker) eimMapping(p *header.Parsed, k *flowtable.Key, proto Proto, c *claim, ext *[4]byte, extPort *uint16) drop.Reason {
	s := w.snap
	bk, _ := bindingKeys(p.Proto, p.Src, k.SrcPort, [4]byte{}, 0)
	for try := 0; try < 64; try++ {
		if w.eng.bindings.Lookup(&bk, &c.binding) {
			ok, dying := acquireRef(w.eng.bindings, &c.binding, 1, nil)
			if dying {
				continue
			}
			if ok {
				c.hasBinding = true
				if r := w.acquireSub(p.Src, proto, 0, c); r != drop.None {
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
		if r := w.acquireSub(p.Src, proto, 1, c); r != drop.None {
			w.eventQuota(r, proto, p)
			return r
		}
		idx := uint32(c.sub.User[0])
		port, ok := w.allocPort(idx, proto, k.SrcPort, false)
		if !ok {
			w.undo(c)
			w.c[PortAllocFailures]++
			w.event(Event{Type: PortsExhausted, Proto: proto, InsideAddr: p.Src, InsidePort: k.SrcPort, OutsideAddr: s.addrs[idx].addr})
			return drop.PortExhausted
		}
		a := s.addrs[idx].addr
		b0, b1 := bindingKeys(p.Proto, p.Src, k.SrcPort, a, port)
		user := [2]uint64{uint64(c.sub.ID) | uint64(idx)<<32, 1}
		switch w.eng.bindings.Insert(&b0, &b1, 0, user, w.now, &c.binding) {
		case flowtable.Inserted:
			c.hasBinding, c.newPort = true, true
			*ext, *extPort = a, port
			return drop.None
		case flowtable.Full:
			s.addrs[idx].ports[proto].release(port, false)
			w.undo(c)
			return drop.TableFull
		}
		// Exists: another worker mapped this endpoint concurrently. Give
		// back our port and the port count, and use theirs.
		s.addrs[idx].ports[proto].release(port, false)
		w.undo(c)
		*c = claim{}
	}
	return drop.Contention
}

// acquirePerm records that the mapping's inside endpoint has sent to the
// remote address, for address-dependent filtering.
func (w *Worker) acquirePerm(pk *flowtable.Key, c *claim) drop.Reason {
	for try := 0; try < 64; try++ {
		if w.eng.perms.Lookup(pk, &c.perm) {
			ok, dying := acquireRef(w.eng.perms, &c.perm, 1, nil)
			if ok {
				c.hasPerm = true
				return drop.None
			}
			if dying {
				continue
			}
		}
		switch w.eng.perms.Insert(pk, &flowtable.NoKey, 0, [2]uint64{0, 1}, w.now, &c.perm) {
		case flowtable.Inserted:
			c.hasPerm = true
			return drop.None
		case flowtable.Full:
			return drop.TableFull
		}
	}
	return drop.Contention
}

func (w *Worker) eventQuota(r drop.Reason, proto Proto, p *header.Parsed) {
	t := QuotaExceeded
	switch r {
	case drop.AddressExhausted:
		t = AddressesExhausted
	case drop.TableFull:
		t = TableFull
	case drop.SubscriberSessions, drop.SubscriberPorts:
	default:
		return
	}
	w.event(Event{Type: t, Proto: proto, Reason: uint8(r), InsideAddr: p.Src, InsidePort: p.SrcPort})
}

// newInbound creates a session for an inbound packet with key 1 k, when a
// port forward, a static mapping or an endpoint-independent mapping admits
// it (filtering, RFC 4787 REQ-8, RFC 5382 REQ-3, RFC 6888 REQ-7).
func (w *Worker) newInbound(p *header.Parsed, k *flowtable.Key, e *flowtable.Entry) drop.Reason {
	s := w.snap
	proto, _ := protoIndex(p.Proto)
	var in [4]byte
	var inPort uint16
	var c claim
	state := uint32(stInbound)

	// Only a SYN opens a TCP connection from outside (docs/nat.md),
	// whatever admits it: a connection starts with a SYN (RFC 793), and
	// RFC 5382 speaks of inbound state only for unsolicited SYNs. A bare
	// ACK, RST or FIN that matched no session is a stray or a probe, and
	// a session for it would let anyone fill the table; SYN with FIN is
	// no opening either.
	synOnly := proto != TCP || p.TCPFlags&(tcpSYN|tcpACK|tcpRST|tcpFIN) == tcpSYN
	perRule := s.Config.Limits.InboundSessionsPerRule != 0
	if r, ok := s.fwdOut[fwdKey{addr: p.Dst, port: k.DstPort, proto: uint8(proto)}]; ok && proto != ICMP {
		if !synOnly {
			return drop.Filtered
		}
		in, inPort, state = r.inAddr, r.inPort, state|stKindForward
		if perRule {
			rk := ruleKey(false, p.Proto, p.Dst, k.DstPort)
			if r := w.acquireRule(&rk, &c); r != drop.None {
				return r
			}
		}
	} else if a, ok := s.staticOut[p.Dst]; ok {
		if proto == ICMP && !icmpRequest(p.ICMPType) {
			return drop.NoSession
		}
		if !synOnly {
			return drop.Filtered
		}
		in, inPort, state = a, k.DstPort, state|stKindStatic
		if perRule {
			rk := ruleKey(true, 0, p.Dst, 0)
			if r := w.acquireRule(&rk, &c); r != drop.None {
				return r
			}
		}
	} else {
		if proto == ICMP {
			// Inbound ICMP queries to a dynamic address have no mapping
			// to follow; replies to ours matched their session already.
			return drop.NoSession
		}
		if s.Config.Mapping != EndpointIndependent {
			return drop.NoSession
		}
		_, bk := bindingKeys(p.Proto, [4]byte{}, 0, p.Dst, k.DstPort)
		if !w.eng.bindings.Lookup(&bk, &c.binding) {
			return drop.NoSession
		}
		switch s.Config.Filtering[proto] {
		case FilterEndpointIndependent:
		case FilterAddressDependent:
			pk := permKey(p.Proto, p.Src, p.Dst, k.DstPort)
			var x flowtable.Entry
			if !w.eng.perms.Lookup(&pk, &x) {
				return drop.Filtered
			}
		default:
			return drop.Filtered
		}
		if !synOnly {
			return drop.Filtered
		}
		ok, _ := acquireRef(w.eng.bindings, &c.binding, 1, nil)
		if !ok {
			return drop.NoSession
		}
		c.hasBinding = true
		if r := w.acquireSub(c.binding.Keys[0].Src, proto, 0, &c); r != drop.None {
			w.undo(&c)
			return r
		}
		if s.Config.Filtering[proto] == FilterAddressDependent {
			pk := permKey(p.Proto, p.Src, p.Dst, k.DstPort)
			if r := w.acquirePerm(&pk, &c); r != drop.None {
				w.undo(&c)
				return r
			}
		}
		in, inPort = c.binding.Keys[0].Src, c.binding.Keys[0].SrcPort
	}
	if s.isPublic(p.Src) {
		// A hairpinned flow: the inside host's replies go to another of
		// our public addresses and must come back inside.
		state |= stHairpin
	}
	if proto == TCP {
		state = tcpNext(state, p.TCPFlags, Outside)
	}
	// Counted last, after everything else that may refuse: cleanup
	// gives the count back when the session ends (see inbound.go).
	if r := w.acquireInbound(); r != drop.None {
		w.undo(&c)
		return r
	}
	k0 := flowtable.Key{Src: in, Dst: p.Src, SrcPort: inPort, DstPort: k.SrcPort, Proto: p.Proto}
	if proto == ICMP {
		k0.DstPort = 0
	}
	user := sessUser(idPlus1(c.hasBinding, c.binding.ID), idPlus1(c.hasSub, c.sub.ID), idPlus1(c.hasPerm, c.perm.ID), 0, w.id)
	switch w.eng.sessions.Insert(&k0, k, state, user, w.now, e) {
	case flowtable.Inserted:
		w.c[SessionsCreated+Counter(proto)]++
		w.sessionEvent(SessionCreated, e)
		return drop.None
	case flowtable.Exists:
		w.eng.inbound.Add(-1)
		w.undo(&c)
		if e.Dir == 1 && e.Keys[1] == *k {
			return drop.None
		}
		return drop.NoSession
	default:
		w.eng.inbound.Add(-1)
		w.undo(&c)
		w.event(Event{Type: TableFull, Proto: proto})
		return drop.TableFull
	}
}
