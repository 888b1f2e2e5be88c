package nat

import (
	"fmt"
	"hash/maphash"
	"net/netip"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/flowtable"
)

// Decisions shared by the packet path and explain. The functions here only
// read: the packet path calls them and then takes its references and
// inserts its records (mapping.go); explain and trace call them alone and
// report what they found. So explain cannot disagree with the packet path
// about which rule or RFC behaviour applies; it can only be overtaken by
// another packet changing the tables between the two.

// outboundRule returns the rule that gives an outbound packet from
// src:sport its external endpoint: a port forward (symmetric static NAPT),
// a static 1:1 mapping (port kept), or none (state 0): a dynamic mapping.
func (s *Snapshot) outboundRule(src [4]byte, sport uint16, proto Proto) (state uint32, ext [4]byte, extPort uint16) {
	if !s.rulesOut {
		return 0, ext, 0 // no rules: spare every new session two map lookups
	}
	if r, ok := s.fwdIn[fwdKey{addr: src, port: sport, proto: uint8(proto)}]; ok && proto != ICMP {
		return stKindForward, r.outAddr, r.outPort
	}
	if out, ok := s.staticIn[src]; ok {
		return stKindStatic, out, sport
	}
	return 0, ext, 0
}

// admission is what admitInbound found: the rule or mapping that admits an
// inbound packet without a session, and why.
type admission struct {
	state   uint32 // stKindForward, stKindStatic, or 0: the mapping in binding
	in      [4]byte
	inPort  uint16
	binding flowtable.Entry
	why     Code
}

// admitInbound decides whether an inbound packet with key 1 k and no
// session may open one, and through what: a port forward, a static
// mapping, or an endpoint-independent mapping that the filtering behaviour
// lets it reach (RFC 4787 REQ-8, RFC 5382 REQ-3). It only reads.
func (e *Engine) admitInbound(s *Snapshot, p *header.Parsed, k *flowtable.Key, a *admission) drop.Reason {
	proto, _ := ProtoOfNumber(p.Proto)
	// Only a SYN opens a TCP connection from outside (docs/nat.md),
	// whatever admits it: a connection starts with a SYN (RFC 793), and
	// RFC 5382 speaks of inbound state only for unsolicited SYNs. A bare
	// ACK, RST or FIN that matched no session is a stray or a probe, and
	// a session for it would let anyone fill the table; SYN with FIN is
	// no opening either.
	synOnly := proto != TCP || p.TCPFlags&(tcpSYN|tcpACK|tcpRST|tcpFIN) == tcpSYN
	if r, ok := s.fwdOut[fwdKey{addr: p.Dst, port: k.DstPort, proto: uint8(proto)}]; ok && proto != ICMP {
		a.why, a.in, a.inPort, a.state = CodeForwardRule, r.inAddr, r.inPort, stKindForward
		return a.synGate(synOnly)
	}
	if in, ok := s.staticOut[p.Dst]; ok {
		a.why, a.in, a.inPort, a.state = CodeStaticRule, in, k.DstPort, stKindStatic
		if proto == ICMP && !icmpRequest(p.ICMPType) {
			a.why = CodeReplyOnly
			return drop.NoSession
		}
		return a.synGate(synOnly)
	}
	a.why = CodeNoMapping
	if proto == ICMP {
		// Inbound ICMP queries to a dynamic address have no mapping
		// to follow; replies to ours matched their session already.
		a.why = CodeNoInboundICMP
		return drop.NoSession
	}
	if s.Config.Mapping != EndpointIndependent {
		return drop.NoSession
	}
	if !e.bindingAt(s, p.Dst, k.DstPort, proto, &a.binding) {
		return drop.NoSession
	}
	a.in, a.inPort = a.binding.Keys[0].Src, a.binding.Keys[0].SrcPort
	switch s.Config.Filtering[proto] {
	case FilterEndpointIndependent:
		a.why = CodeFilterEIF
	case FilterAddressDependent:
		pk := permKey(p.Proto, p.Src, p.Dst, k.DstPort)
		var x flowtable.Entry
		if !s.perms.Lookup(&pk, &x) {
			a.why = CodeFilterADFDeny
			return drop.Filtered
		}
		a.why = CodeFilterADFOK
	default:
		a.why = CodeFilterAPDF
		return drop.Filtered
	}
	return a.synGate(synOnly)
}

// synGate is the check every way in ends with: whatever admits the packet,
// only a lone SYN opens a TCP connection (synOnly, see admitInbound).
func (a *admission) synGate(synOnly bool) drop.Reason {
	if !synOnly {
		a.why = CodeFilterNotSYN
		return drop.Filtered
	}
	return drop.None
}

// subQuota says whether a subscriber whose record counts v (sessions in the
// low 32 bits, ports in the high 32) may take one more session and
// newPorts more ports (RFC 6888 REQ-4, REQ-5).
func subQuota(l *Limits, v, newPorts uint64) drop.Reason {
	if l.SessionsPerSubscriber != 0 && subCount(v).sessions() >= uint64(l.SessionsPerSubscriber) {
		return drop.SubscriberSessions
	}
	if newPorts != 0 && l.PortsPerSubscriber != 0 && subCount(v).ports()+newPorts > uint64(l.PortsPerSubscriber) {
		return drop.SubscriberPorts
	}
	return drop.None
}

// pickAddress returns the address a new subscriber a is paired with: the
// pool address a hashes to, or the next one with a free port of this
// protocol that take accepts. Hashing keeps a returning subscriber on the
// same address in the common case and spreads subscribers evenly. The
// packet path's take acquires references; explain's only looks.
func (s *Snapshot) pickAddress(seed maphash.Seed, a [4]byte, proto Proto, take func(*addrState) bool) *addrState {
	pool := s.pool
	if len(pool) == 0 {
		return nil
	}
	if st := s.cgn.detAddress(pool, a); st != nil || s.cgn.det != nil {
		if st != nil && take(st) {
			return st // RFC 7422: the function decides (cgn_block.go)
		}
		return nil
	}
	start := int(maphash.Comparable(seed, a) % uint64(len(pool)))
	// With address-and-port-dependent mapping ports overlap across
	// destinations: an address whose ports are all in use still has room.
	full := s.Config.Mapping != AddressAndPortDependent
	size := int32(s.ports[proto].Size())
	for i := range pool {
		st := pool[(start+i)%len(pool)]
		if full && st.ports[proto].inUse.Load() >= size {
			continue
		}
		if take(st) {
			return st
		}
	}
	return nil
}

// poolOf returns 1 + the index in Config.Pools of the pool that lists a,
// or 0: the trail names the pool (Step.TextPools).
func (s *Snapshot) poolOf(a [4]byte) uint32 {
	addr := netip.AddrFrom4(a)
	for i := range s.Config.Pools {
		for _, p := range s.Config.Pools[i].Addresses {
			if p.Contains(addr) {
				return uint32(i + 1)
			}
		}
	}
	return 0
}

// inPool reports whether st would give a reference for a new mapping
// (addrState.acquire with addrInPool), without taking one.
func inPool(st *addrState) bool {
	v := st.refs.Load()
	return v&addrInPool != 0 && v&addrRetired == 0
}

// verdict is what decide concluded.
type verdict struct {
	r       drop.Reason
	egress  Side
	rewrite Step // CodeRewriteSrc, CodeRewriteDst, or CodeNone
}

// decide runs the packet path's decisions for a parsed packet arriving on
// side, read-only, and writes them to t. It covers the route, the session
// lookup and, for a packet without a session, the mapping, filtering and
// quota decisions; transmission is the packet path's (trace observes it).
func (e *Engine) decide(s *Snapshot, side Side, p *header.Parsed, t *Trail) (v verdict) {
	v.egress = side
	if martian(p.Src) || martian(p.Dst) {
		t.add(Step{Code: CodeMartian, A: p.Src, B: p.Dst})
		v.r = drop.BadAddress
		return v
	}
	if side == Inside {
		switch {
		case !s.isInside(p.Src):
			t.add(Step{Code: CodeNotInside, A: p.Src})
			v.r = drop.NotInside
		case p.Dst == s.linkAddr[Inside] || p.Dst == s.linkAddr[Outside]:
			t.add(Step{Code: CodeForUs, A: p.Dst})
			v.r = drop.NotForwarded
		case p.TTL <= 1:
			t.add(Step{Code: CodeTTLExpired, X: uint32(p.TTL)})
			v.r = drop.TTLExpired
		case s.isInside(p.Dst):
			t.add(Step{Code: CodeInsideRoute, A: p.Dst})
		case p.L4 == header.L4ICMPError:
			t.add(Step{Code: CodeICMPError, A: p.InnerSrc, B: p.InnerDst, PA: p.InnerSrcPort, PB: p.InnerDstPort, Proto: p.InnerProto})
			v.egress = Outside
		default:
			t.add(Step{Code: CodeOutbound, A: p.Src, B: p.Dst})
			e.decideOutbound(s, p, t, &v)
		}
		return v
	}
	switch {
	case !s.isPublic(p.Dst):
		t.add(Step{Code: CodeNotPublic, A: p.Dst})
		v.r = drop.NotForwarded
	case p.TTL <= 1:
		t.add(Step{Code: CodeTTLExpired, X: uint32(p.TTL)})
		v.r = drop.TTLExpired
	case p.L4 == header.L4ICMPError:
		t.add(Step{Code: CodeICMPError, A: p.InnerSrc, B: p.InnerDst, PA: p.InnerSrcPort, PB: p.InnerDstPort, Proto: p.InnerProto})
		v.egress = Inside
	default:
		t.add(Step{Code: CodeInbound, A: p.Dst})
		e.decideInbound(s, p, t, &v)
	}
	return v
}

// explainSession builds into k the session key of p, a packet from side
// from, as the packet path does (packetKey: a packet from the inside
// matches a session's key 0, one from the outside its key 1), looks the
// session up into x, adds the hit or miss to t, and on a hit returns the
// endpoint the session translates the packet to: the external source of an
// outbound packet, the inside destination of an inbound one.
func (e *Engine) explainSession(p *header.Parsed, from Side, t *Trail, k *flowtable.Key, x *flowtable.Entry) (addr [4]byte, port uint16, hit bool) {
	packetKey(from, p, k)
	if !e.sessions.Lookup(k, x) || x.Dir != uint8(from) {
		t.add(Step{Code: CodeSessionMiss})
		return addr, 0, false
	}
	if from == Inside {
		addr, port = x.Keys[1].Dst, x.Keys[1].DstPort
	} else {
		addr, port = x.Keys[0].Src, x.Keys[0].SrcPort
	}
	t.add(Step{Code: CodeSessionHit, X: x.ID, Y: uint32(x.Gen), A: addr, PA: port})
	return addr, port, true
}

func (e *Engine) decideOutbound(s *Snapshot, p *header.Parsed, t *Trail, v *verdict) {
	v.egress = Outside
	var k flowtable.Key
	var x flowtable.Entry
	if ext, extPort, hit := e.explainSession(p, Inside, t, &k, &x); hit {
		if x.State&stHairpin != 0 {
			t.add(Step{Code: CodeHairpin, A: p.Dst})
			v.egress = Inside
		}
		v.rewrite = Step{Code: CodeRewriteSrc, A: p.Src, PA: p.SrcPort, B: ext, PB: extPort}
		return
	}
	if icmpQuery(p) && !icmpRequest(p.ICMPType) {
		t.add(Step{Code: CodeReplyOnly})
		v.r = drop.NoSession
		return
	}
	proto, _ := ProtoOfNumber(p.Proto)
	l := &s.Config.Limits
	state, ext, extPort := s.outboundRule(p.Src, k.SrcPort, proto)
	switch {
	case state == stKindForward:
		t.add(Step{Code: CodeForwardRule, A: ext, PA: extPort, B: p.Src, PB: k.SrcPort})
	case state == stKindStatic:
		t.add(Step{Code: CodeStaticRule, A: ext, B: p.Src})
	case s.Config.Mapping == EndpointIndependent:
		bk, _ := bindingKeys(p.Proto, p.Src, k.SrcPort, [4]byte{}, 0)
		var b flowtable.Entry
		if e.bindings.Lookup(&bk, &b) {
			ext, extPort = b.Keys[1].Dst, b.Keys[1].DstPort
			t.add(Step{Code: CodeEIMExisting, A: ext, PA: extPort})
			if v.r = e.decideQuota(l, p.Src, 0, t); v.r != drop.None {
				return
			}
		} else {
			t.add(Step{Code: CodeEIMNew})
			if v.r, ext, extPort = e.decideNewMapping(s, p.Src, k.SrcPort, proto, false, t); v.r != drop.None {
				return
			}
		}
		if s.Config.Filtering[proto] == FilterAddressDependent {
			t.add(Step{Code: CodePermNew, A: p.Dst, B: ext, PB: extPort})
		}
	default:
		t.add(Step{Code: CodeAPDMNew})
		if v.r, ext, extPort = e.decideNewMapping(s, p.Src, k.SrcPort, proto, true, t); v.r != drop.None {
			return
		}
	}
	if s.isPublic(p.Dst) {
		t.add(Step{Code: CodeHairpin, A: p.Dst})
		v.egress = Inside
	}
	t.add(Step{Code: CodeCreate})
	v.rewrite = Step{Code: CodeRewriteSrc, A: p.Src, PA: p.SrcPort, B: ext, PB: extPort}
}

// decideQuota checks subscriber a's limits for one more session and
// newPorts more ports, as acquireSub will.
func (e *Engine) decideQuota(l *Limits, a [4]byte, newPorts uint64, t *Trail) drop.Reason {
	sk := subscriberKey(a)
	var sub flowtable.Entry
	used := uint64(0)
	if e.subs.Lookup(&sk, &sub) {
		used = e.subs.LoadUser(sub.ID, 1)
	}
	switch r := subQuota(l, used, newPorts); r {
	case drop.SubscriberSessions:
		t.add(Step{Code: CodeQuotaSessions, Reason: r, A: a, X: uint32(subCount(used).sessions()), Y: uint32(l.SessionsPerSubscriber)})
		return r
	case drop.SubscriberPorts:
		t.add(Step{Code: CodeQuotaPorts, Reason: r, A: a, X: uint32(subCount(used).ports()), Y: uint32(l.PortsPerSubscriber)})
		return r
	}
	t.add(Step{Code: CodeQuotaOK, A: a, X: uint32(subCount(used).sessions()), Y: uint32(l.SessionsPerSubscriber)})
	return drop.None
}

// decideNewMapping reports the external address and port a new mapping of
// inside endpoint src:sport would get: the subscriber's quota, its paired
// address (or a new pairing) and port preservation. The port is 0 when a
// random one would be drawn.
func (e *Engine) decideNewMapping(s *Snapshot, src [4]byte, sport uint16, proto Proto, overlap bool, t *Trail) (drop.Reason, [4]byte, uint16) {
	var none [4]byte
	if r := e.decideQuota(&s.Config.Limits, src, 1, t); r != drop.None {
		return r, none, 0
	}
	sk := subscriberKey(src)
	var sub flowtable.Entry
	var st *addrState
	if e.subs.Lookup(&sk, &sub) {
		if cur := e.addr(subAddr(e.subs.LoadUser(sub.ID, 0))); cur != nil && inPool(cur) && s.cgn.pairs(src, cur) {
			st = cur
			t.add(Step{Code: CodeAddrPaired, A: st.addr, X: s.poolOf(st.addr)})
		} else if st = s.pickAddress(e.seed, src, proto, inPool); st != nil {
			t.add(Step{Code: CodeAddrRepair, A: st.addr, X: s.poolOf(st.addr)})
		}
	} else if st = s.pickAddress(e.seed, src, proto, inPool); st != nil {
		t.add(Step{Code: CodeAddrNew, A: st.addr, X: s.poolOf(st.addr)})
	}
	if st == nil {
		t.add(Step{Code: CodeNoAddress, Reason: drop.AddressExhausted})
		return drop.AddressExhausted, none, 0
	}
	if lo, hi, ok := s.cgn.explainRange(s, src, proto); ok {
		// Block and deterministic modes: random, no preservation.
		t.add(Step{Code: CodePortRandom, PA: sport, X: uint32(lo), Y: uint32(hi)})
		return drop.None, st.addr, 0
	}
	lo, hi := s.portRange(proto, sport)
	if sport >= lo && sport <= hi {
		if owners, held := st.ports[proto].state(sport); owners == 0 && !held {
			t.add(Step{Code: CodePortKept, PA: sport})
			return drop.None, st.addr, sport
		}
	}
	if overlap && st.ports[proto].inUse.Load() >= int32(int(hi)-int(lo)+1) {
		t.add(Step{Code: CodePortOverlap, X: uint32(lo), Y: uint32(hi)})
		return drop.None, st.addr, 0
	}
	t.add(Step{Code: CodePortRandom, PA: sport, X: uint32(lo), Y: uint32(hi)})
	return drop.None, st.addr, 0
}

func (e *Engine) decideInbound(s *Snapshot, p *header.Parsed, t *Trail, v *verdict) {
	v.egress = Inside
	var k flowtable.Key
	var x flowtable.Entry
	if in, inPort, hit := e.explainSession(p, Outside, t, &k, &x); hit {
		v.rewrite = Step{Code: CodeRewriteDst, A: p.Dst, PA: p.DstPort, B: in, PB: inPort}
		return
	}
	var a admission
	r := e.admitInbound(s, p, &k, &a)
	st := Step{Code: a.why, Reason: r, A: p.Src, PA: k.SrcPort, B: p.Dst, PB: k.DstPort}
	switch a.why {
	case CodeForwardRule:
		st.A, st.PA, st.B, st.PB = p.Dst, k.DstPort, a.in, a.inPort
	case CodeStaticRule:
		st.A, st.B = p.Dst, a.in
	}
	t.add(st)
	if v.r = r; r != drop.None {
		return
	}
	l := &s.Config.Limits
	if n := e.inbound.Load(); l.InboundSessions != 0 && n >= int64(l.InboundSessions) {
		t.add(Step{Code: CodeInboundLimit, Reason: drop.InboundSessions, X: uint32(n), Y: uint32(l.InboundSessions)})
		v.r = drop.InboundSessions
		return
	}
	if a.state == 0 {
		if v.r = e.decideQuota(l, a.in, 0, t); v.r != drop.None {
			return
		}
	}
	t.add(Step{Code: CodeCreate})
	v.rewrite = Step{Code: CodeRewriteDst, A: p.Dst, PA: p.DstPort, B: a.in, PB: a.inPort}
}

// Explain tells what the NAT would do now with a packet of proto from src
// to dst arriving on side, and why, without any packet: it runs the packet
// path's decision functions read-only. A TCP packet is taken to be a lone
// SYN (opening a connection), an ICMP one an echo request whose identifier
// is src's port. Any goroutine may call it.
func (e *Engine) Explain(side Side, proto Proto, src, dst netip.AddrPort) (Trail, error) {
	var t Trail
	if side >= NumSides {
		return t, fmt.Errorf("side %d unknown", side)
	}
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return t, fmt.Errorf("explain: addresses must be IPv4")
	}
	p := header.Parsed{TTL: 64, Proto: proto.Number(), Src: src.Addr().As4(), Dst: dst.Addr().As4(),
		SrcPort: src.Port(), DstPort: dst.Port()}
	switch proto {
	case TCP:
		p.L4, p.TCPFlags = header.L4TCP, tcpSYN
	case UDP:
		p.L4 = header.L4UDP
	case ICMP:
		// Both "ports" hold the identifier: the inside host's on the
		// inside, the external one on the outside.
		id := src.Port()
		if side == Outside {
			id = dst.Port()
		}
		p.L4, p.ICMPType, p.SrcPort, p.DstPort = header.L4ICMPQuery, header.ICMPv4Echo, id, id
	default:
		return t, fmt.Errorf("protocol %d unknown", proto)
	}
	v := e.decide(e.snap.Load(), side, &p, &t)
	if v.r != drop.None {
		t.add(Step{Code: CodeWouldDrop, Reason: v.r})
		return t, nil
	}
	if v.rewrite.Code != CodeNone {
		t.add(v.rewrite)
	}
	t.add(Step{Code: CodeWouldPass, Side: v.egress})
	return t, nil
}
