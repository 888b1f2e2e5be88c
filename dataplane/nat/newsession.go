package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/flowtable"
)

// Stage slow path: creating the session of a packet whose flow has none.
// The mapping machinery it draws on (subscribers, bindings, ports,
// permissions, undo) is in mapping.go.

// New sessions in a pipeline. Creating a session touches, beside the
// buckets of its keys, records that are rarely in cache at a million
// sessions: the subscriber, the mapping (its bucket, to find none), the
// port's record, and the buckets the session's outside key and the
// mapping's external key go into (the session's inside key was prefetched
// by receive). Looked up one packet after another they
// cost a memory latency each, in series. The fast path therefore leaves
// the outbound packets that found no session to newSessions, which runs
// over all of them three times: prefetch the subscriber and the mapping's
// bucket; with the subscriber's paired address in cache, prefetch the
// record of the port that port preservation would give; then create the
// sessions in arrival order.
// What the first two passes looked up is handed to the third (newHint),
// so that no key is hashed twice.

// newBurst lists the outbound packets of a burst that found no session.
type newBurst struct {
	n    int
	idx  [MaxBurst]uint8
	dup  [MaxBurst]bool            // an earlier packet of the list has the same key
	seen [128]uint8                // open addressing by flowMix: list index + 1
	sub  [MaxBurst]flowtable.Entry // the subscriber, when hasSub
	has  [MaxBurst]bool
	bind [MaxBurst]bindProbe // the mapping's inside key
}

// newHint is what newSessions found out about the packet it is creating a
// session for; acquireSub and eimMapping take it in place of their first
// lookup. Each part is used once.
type newHint struct {
	sub     *flowtable.Entry
	bind    *bindProbe
	bindKey flowtable.Key
}

// subscriber copies the hinted subscriber into x if it has key k.
func (h *newHint) subscriber(k *flowtable.Key, x *flowtable.Entry) bool {
	s := h.sub
	h.sub = nil
	if s == nil || s.Keys[0] != *k {
		return false
	}
	*x = *s
	return true
}

// mapping looks the mapping with inside key bk up in t, with the hinted
// probe when it was prepared for bk.
func (h *newHint) mapping(t *bindTable, bk *flowtable.Key, x *flowtable.Entry) bool {
	p := h.bind
	h.bind = nil
	if p != nil && h.bindKey == *bk {
		return t.LookupProbe(p, x)
	}
	return t.Lookup(bk, x)
}

// deferNew leaves packet i, from the inside and without a session, to
// newSessions. It notes whether an earlier packet of the list has the same
// session key: that one creates the session, and this one must look it up
// again; the others need not.
func (w *Worker) deferNew(i int) {
	nb := &w.nb
	if nb.n == 0 {
		nb.seen = [128]uint8{}
	}
	p := &w.pk[i]
	nb.idx[nb.n], nb.dup[nb.n] = uint8(i), false
	for h := flowMix(p); ; h = (h + 1) % uint32(len(nb.seen)) {
		j := nb.seen[h]
		if j == 0 {
			nb.seen[h] = uint8(nb.n + 1)
			break
		}
		if sameSession(Inside, p, &w.pk[nb.idx[j-1]]) {
			nb.dup[nb.n] = true
			break
		}
	}
	nb.n++
}

// flowMix spreads a packet's addresses and ports over newBurst.seen; any
// mixing will do, since sameSession decides.
func flowMix(p *header.Parsed) uint32 {
	x := be32(p.Src)*0x9E3779B1 ^ be32(p.Dst)*0x85EBCA77 ^ (uint32(p.SrcPort)<<16|uint32(p.DstPort))*0xC2B2AE3D ^ uint32(p.Proto)
	return x >> 25
}

// sameSession reports whether packets a and b from side have the same
// session key.
func sameSession(side Side, a, b *header.Parsed) bool {
	as, ad, asp, adp := sessionTuple(side, a)
	bs, bd, bsp, bdp := sessionTuple(side, b)
	return as == bs && ad == bd && asp == bsp && adp == bdp && a.Proto == b.Proto
}

// newSessions creates the sessions of the packets deferNew left, and
// translates them (see above).
func (w *Worker) newSessions() {
	nb := &w.nb
	n := nb.n
	if n == 0 {
		return
	}
	nb.n = 0
	e := w.eng
	s := w.snap
	eim := s.Config.Mapping == EndpointIndependent
	sink := uint64(0)
	// 1. The subscriber's record and the mapping's bucket.
	var sp [MaxBurst]flowtable.Probe
	for j := 0; j < n; j++ {
		p := &w.pk[nb.idx[j]]
		k := subscriberKey(p.Src)
		e.subs.Prepare(&k, &sp[j])
		sink += e.subs.Prefetch(&sp[j])
		if eim {
			bk, _ := bindingKeys(p.Proto, p.Src, p.SrcPort, [4]byte{}, 0)
			e.bindings.Prepare(&bk, &nb.bind[j])
			sink += e.bindings.Prefetch(&nb.bind[j])
		}
	}
	// 2. The subscriber (in cache now), and the record of the port
	// that port preservation would give on its paired address. The
	// buckets of the session's outside key and of the mapping's external
	// key are not prefetched: their port is known only once claimed, and
	// a guess (the preserved port) cost about 200 instructions a session
	// for nothing in BenchmarkNewSession, where 94% of the flows get a
	// random port.
	for j := 0; j < n; j++ {
		p := &w.pk[nb.idx[j]]
		nb.has[j] = e.subs.LookupProbe(&sp[j], &nb.sub[j])
		if !nb.has[j] {
			continue
		}
		st := e.addr(subAddr(nb.sub[j].User[0]))
		proto, _ := protoIndex(p.Proto)
		if st == nil {
			continue
		}
		sink += st.ports[proto].prefetch(p.SrcPort)
	}
	w.sink += sink
	// 3. Create, in arrival order. A packet may belong to a flow that
	// an earlier packet of this burst has just given a session.
	var x flowtable.Entry
	for j := 0; j < n; j++ {
		i := nb.idx[j]
		b, p := &w.rx[i], &w.pk[i]
		if nb.dup[j] && e.sessions.LookupProbe(&w.probe[i], &x) && x.Dir == 0 {
			w.translateOut(b, p, &x)
			continue
		}
		if nb.has[j] {
			w.hint.sub = &nb.sub[j]
		}
		if eim {
			w.hint.bind = &nb.bind[j]
			w.hint.bindKey, _ = bindingKeys(p.Proto, p.Src, p.SrcPort, [4]byte{}, 0)
		}
		w.outboundNew(b, p)
		w.hint = newHint{}
	}
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

	// A port-forwarded server opening a flow (symmetric static NAPT), or
	// a static mapping's host (decide.go).
	if state, ext, extPort = s.outboundRule(p.Src, k.SrcPort, proto); state != 0 {
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
		st, port, ok := w.allocPort(&c, proto, k.SrcPort, true)
		if !ok {
			return w.portsExhausted(&c, proto, p.Src, k.SrcPort, st)
		}
		c.hasOwn, c.ownAddr, c.ownPort, c.ownProto = true, st.idx, port, proto
		ext, extPort = st.addr, port
	}
	state, r := w.sessionState(state, ext, extPort, proto, &c, p.Dst, p.TCPFlags, Inside)
	if r != drop.None {
		return r
	}
	if c.hasBinding && s.Config.Filtering[proto] == FilterAddressDependent {
		pk := permKey(p.Proto, p.Dst, ext, extPort)
		if r := w.acquirePerm(&pk, &c, 0); r != drop.None {
			w.undo(&c)
			return r
		}
	}
	k1 := outsideKey(k, ext, extPort)
	// An existing session on the external 5-tuple that is not this one
	// means the tuple is taken (possible only with port overlap).
	r, _ = w.insertSession(k, &k1, 0, state, proto, &c, e, drop.PortExhausted, p.Src, k.SrcPort)
	return r
}

// sessionState completes the state word of a new session: a session that
// a rule admits (state's kind) takes its reference on the rule's address
// ext:extPort (holdRuleAddr); a session whose remote end, peer, is one of
// our public addresses is hairpinned (its packets from the inside must
// come back inside); a TCP session starts in the state the packet's flags,
// from side from, lead to. On failure c is given back.
func (w *Worker) sessionState(state uint32, ext [4]byte, extPort uint16, proto Proto, c *claim, peer [4]byte, flags uint8, from Side) (uint32, drop.Reason) {
	if state&stKindMask != 0 {
		if r := w.holdRuleAddr(state, ext, extPort, proto, c); r != drop.None {
			w.undo(c)
			return 0, r
		}
	}
	if w.snap.isPublic(peer) {
		state |= stHairpin
	}
	if proto == TCP {
		state = tcpNext(state, flags, from)
	}
	return state, drop.None
}

// portsExhausted gives back c after address st had no port for inside
// endpoint in:inPort, and counts and announces it.
func (w *Worker) portsExhausted(c *claim, proto Proto, in [4]byte, inPort uint16, st *addrState) drop.Reason {
	w.undo(c)
	w.c[PortAllocFailures]++
	w.event(Event{Type: PortsExhausted, Proto: proto, InsideAddr: in, InsidePort: inPort, OutsideAddr: st.addr})
	return drop.PortExhausted
}

// insertSession inserts the session with keys k0 (inside) and k1 (outside),
// created by a packet of side dir (0: inside, its key k0; 1: outside, k1),
// holding the claims in c, and settles the outcome: counted and announced
// when inserted; c given back otherwise. Exists is a success when another
// worker created this very session a moment ago, and taken otherwise; a
// full table is announced with the inside endpoint (zero when the creator
// does not know it).
func (w *Worker) insertSession(k0, k1 *flowtable.Key, dir uint8, state uint32, proto Proto, c *claim, e *flowtable.Entry,
	taken drop.Reason, inAddr [4]byte, inPort uint16) (r drop.Reason, inserted bool) {
	user := sessionWords(c, w.id)
	switch w.eng.sessions.Insert(k0, k1, state, user, w.now, e) {
	case flowtable.Inserted:
		w.c[SessionsCreated+Counter(proto)]++
		w.sessionEvent(SessionCreated, e)
		return drop.None, true
	case flowtable.Exists:
		w.undo(c)
		if own := [2]*flowtable.Key{k0, k1}[dir]; e.Dir == dir && e.Keys[dir] == *own {
			return drop.None, false
		}
		return taken, false
	default:
		w.undo(c)
		w.event(Event{Type: TableFull, Proto: proto, InsideAddr: inAddr, InsidePort: inPort})
		return drop.TableFull, false
	}
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

	// Which rule or mapping admits the packet, and whether filtering lets
	// it through, is decided read-only (decide.go, shared with explain);
	// here the references are taken.
	var a admission
	if r := w.eng.admitInbound(s, p, k, &a); r != drop.None {
		return r
	}
	perRule := s.Config.Limits.InboundSessionsPerRule != 0
	in, inPort, state = a.in, a.inPort, state|a.state
	switch a.state {
	case stKindForward:
		if perRule {
			rk := ruleKey(false, p.Proto, p.Dst, k.DstPort)
			if r := w.acquireRule(&rk, &c); r != drop.None {
				return r
			}
		}
	case stKindStatic:
		if perRule {
			rk := ruleKey(true, 0, p.Dst, 0)
			if r := w.acquireRule(&rk, &c); r != drop.None {
				return r
			}
		}
	default:
		c.binding = a.binding
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
			if r := w.acquirePerm(&pk, &c, 0); r != drop.None {
				w.undo(&c)
				return r
			}
		}
	}
	state, r := w.sessionState(state, p.Dst, k.DstPort, proto, &c, p.Src, p.TCPFlags, Outside)
	if r != drop.None {
		return r
	}
	// Counted last, after everything else that may refuse: cleanup
	// gives the count back when the session ends (see inbound.go).
	if r := w.acquireInbound(); r != drop.None {
		w.undo(&c)
		return r
	}
	k0 := insideKey(k, in, inPort)
	r, inserted := w.insertSession(&k0, k, 1, state, proto, &c, e, drop.NoSession, [4]byte{}, 0)
	if !inserted {
		w.eng.inbound.Add(-1)
	}
	return r
}
