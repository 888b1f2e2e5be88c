package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// Session keys. A session has two keys, each the 5-tuple of a packet as it
// arrives at the NAT:
//
//	key 0 (inside):  Src=inside host  Dst=remote  SrcPort=inside port  DstPort=remote port
//	key 1 (outside): Src=remote  Dst=external address  SrcPort=remote port  DstPort=external port
//
// so an outbound packet is translated by replacing its source with key 1's
// destination, and an inbound one by replacing its destination with key 0's
// source. For ICMP queries the identifier plays the inside or external port
// and the remote "port" is zero, which makes the mapping independent of the
// remote host's reply identifier handling (RFC 5508 REQ-1).

func icmpQuery(p *header.Parsed) bool { return p.L4 == header.L4ICMPQuery }

// icmpRequest reports whether an ICMP query may create a session: only
// requests do; replies only match (RFC 5508 section 3.1).
func icmpRequest(t uint8) bool {
	return t == header.ICMPv4Echo || t == header.ICMPv4Timestamp
}

// keyPorts returns the ports of the session key of a packet from side
// (key 0 from the inside, key 1 from the outside) with ports sport and
// dport. For an ICMP query (query), the identifier stays on the inside
// host's or the external side and the remote's "port" is zero. Every
// session key is built with it: outKey, inKey, the ICMP errors' keys and
// the prefetching pass of Worker.Poll.
func keyPorts(side Side, query bool, sport, dport uint16) (uint16, uint16) {
	if query {
		if side == Inside {
			dport = 0
		} else {
			sport = 0
		}
	}
	return sport, dport
}

// outKey builds key 0 from an outbound packet.
func outKey(p *header.Parsed, k *flowtable.Key) {
	sport, dport := keyPorts(Inside, icmpQuery(p), p.SrcPort, p.DstPort)
	*k = flowtable.Key{Src: p.Src, Dst: p.Dst, SrcPort: sport, DstPort: dport, Proto: p.Proto}
}

// inKey builds key 1 from an inbound packet.
func inKey(p *header.Parsed, k *flowtable.Key) {
	sport, dport := keyPorts(Outside, icmpQuery(p), p.SrcPort, p.DstPort)
	*k = flowtable.Key{Src: p.Src, Dst: p.Dst, SrcPort: sport, DstPort: dport, Proto: p.Proto}
}

// errorKey builds the key, from side (Inside: key 0, Outside: key 1), of
// the session an ICMP error's embedded packet belongs to: the embedded
// packet travelled the other way, so its tuple is reversed.
func errorKey(side Side, p *header.Parsed) flowtable.Key {
	sport, dport := keyPorts(side, p.InnerProto == ipProtoICMP, p.InnerDstPort, p.InnerSrcPort)
	return flowtable.Key{Src: p.InnerDst, Dst: p.InnerSrc, SrcPort: sport, DstPort: dport, Proto: p.InnerProto}
}

// martian reports addresses no NAT forwards to or from: 0/8, 127/8,
// multicast, class E and limited broadcast.
func martian(a [4]byte) bool {
	return a[0] == 0 || a[0] == 127 || a[0] >= 224
}

// process handles one received frame. Every path ends in exactly one of:
// queued for transmission, held (neighbour or fragment), or freed with a
// counted drop reason.
//
// p and r are the frame's parse result; probe is its session key, prepared
// in the burst's first pass (valid when r is drop.None and the packet is
// not an ICMP error).
func (w *Worker) process(side Side, b *port.Buf, p *header.Parsed, r drop.Reason, probe *flowtable.Probe) {
	switch r {
	case drop.None:
	case drop.NonFirstFragment:
		if martian(p.Src) || martian(p.Dst) {
			w.dropFrame(side, b, drop.BadAddress)
			return
		}
		w.laterFragment(side, b, p)
		return
	default:
		w.dropFrame(side, b, r)
		return
	}
	if martian(p.Src) || martian(p.Dst) {
		w.dropFrame(side, b, drop.BadAddress)
		return
	}
	if p.MF {
		w.noteOrigin(side, p)
	}
	if side == Inside {
		w.fromInside(b, p, probe)
	} else {
		w.fromOutside(b, p, probe)
	}
}

func (w *Worker) fromInside(b *port.Buf, p *header.Parsed, probe *flowtable.Probe) {
	s := w.snap
	if !s.isInside(p.Src) {
		w.dropFrame(Inside, b, drop.NotInside)
		return
	}
	if (p.Dst == s.linkAddr[Inside] || p.Dst == s.linkAddr[Outside]) && !s.isPublic(p.Dst) {
		// For the appliance itself: the XDP program passes these to the
		// kernel; one that reaches us anyway is not ours to forward. A
		// masquerade address is both: the XDP program sends only the
		// NAT's ports here, to hairpin.
		w.dropFrame(Inside, b, drop.NotForwarded)
		return
	}
	if p.TTL <= 1 {
		w.timeExceeded(Inside, b, p)
		return
	}
	if s.isInside(p.Dst) {
		// Between inside networks: route without translation.
		p.DecTTL(b.Data)
		w.forward(Inside, Inside, b, p)
		return
	}
	if p.L4 == header.L4ICMPError {
		w.outboundError(b, p)
		return
	}
	w.outbound(b, p, probe)
}

func (w *Worker) fromOutside(b *port.Buf, p *header.Parsed, probe *flowtable.Probe) {
	if !w.snap.isPublic(p.Dst) {
		w.dropFrame(Outside, b, drop.NotForwarded)
		return
	}
	if p.TTL <= 1 {
		w.timeExceeded(Outside, b, p)
		return
	}
	p.DecTTL(b.Data)
	if p.L4 == header.L4ICMPError {
		w.inboundError(Outside, b, p)
		return
	}
	w.inbound(Outside, b, p, probe)
}

// outbound translates a TCP, UDP or ICMP query packet from the inside.
func (w *Worker) outbound(b *port.Buf, p *header.Parsed, probe *flowtable.Probe) {
	var e flowtable.Entry
	if !w.eng.sessions.LookupProbe(probe, &e) || e.Dir != 0 {
		var k flowtable.Key
		outKey(p, &k)
		if icmpQuery(p) && !icmpRequest(p.ICMPType) {
			w.dropFrame(Inside, b, drop.NoSession)
			return
		}
		if r := w.newOutbound(p, &k, &e); r != drop.None {
			w.refuse(b, p, r)
			return
		}
	}
	egress := Outside
	if e.State&stHairpin != 0 {
		egress = Inside
	}
	if w.tooBigDF(Inside, egress, b, p) {
		return
	}
	if p.L4 == header.L4TCP {
		w.trackTCP(&e, p.TCPFlags, Inside)
		w.clampMSS(b, p)
	}
	w.eng.sessions.Touch(e.ID, w.now)
	p.DecTTL(b.Data)
	ext := &e.Keys[1]
	p.SetSrc(b.Data, ext.Dst, ext.DstPort)
	if egress == Inside {
		w.hairpin(b, p)
		return
	}
	w.forward(Inside, Outside, b, p)
}

// hairpin sends an outbound-translated packet whose destination is one of
// our own public addresses back inside, translated again as if it had
// arrived from outside: the receiver sees the sender's external address
// and port (RFC 4787 REQ-9/9a, RFC 5382 REQ-8, RFC 5508 REQ-7).
func (w *Worker) hairpin(b *port.Buf, p *header.Parsed) {
	w.c[Hairpinned]++
	if p.L4 == header.L4ICMPError {
		w.inboundError(Inside, b, p)
		return
	}
	w.inbound(Inside, b, p, nil)
}

// inbound translates a TCP, UDP or ICMP query packet addressed to a public
// address. owner is the side whose port holds the frame: Outside, or Inside
// for a hairpinned packet.
func (w *Worker) inbound(owner Side, b *port.Buf, p *header.Parsed, probe *flowtable.Probe) {
	var e flowtable.Entry
	if probe == nil {
		// A hairpinned packet: its key exists only now, after the
		// outbound translation.
		var pr flowtable.Probe
		var k flowtable.Key
		inKey(p, &k)
		w.eng.sessions.Prepare(&k, &pr)
		probe = &pr
	}
	if !w.eng.sessions.LookupProbe(probe, &e) || e.Dir != 1 {
		var k flowtable.Key
		inKey(p, &k)
		if r := w.newInbound(p, &k, &e); r != drop.None {
			w.dropFrame(owner, b, r)
			return
		}
	}
	if owner == Outside && w.tooBigDF(Outside, Inside, b, p) {
		return
	}
	if p.L4 == header.L4TCP {
		w.trackTCP(&e, p.TCPFlags, Outside)
		w.clampMSS(b, p)
	}
	// RFC 4787 REQ-6: outbound packets always refresh a UDP mapping;
	// inbound ones only if configured.
	if p.L4 != header.L4UDP || w.snap.Config.UDPInboundRefresh {
		w.eng.sessions.Touch(e.ID, w.now)
	}
	in := &e.Keys[0]
	p.SetDst(b.Data, in.Src, in.SrcPort)
	w.forward(owner, Inside, b, p)
}

// trackTCP advances the session's TCP state on SYN, FIN and RST segments,
// and on the outside's first ACK after the inside's SYN (stAckOut).
func (w *Worker) trackTCP(e *flowtable.Entry, flags uint8, from Side) {
	if flags&(tcpSYN|tcpFIN|tcpRST) == 0 && (from == Inside || e.State&(stSynIn|stAckOut) != stSynIn) {
		return // a bare segment that changes nothing: the common case
	}
	for i := 0; i < 4; i++ {
		n := tcpNext(e.State, flags, from)
		if n == e.State || w.eng.sessions.CompareAndSwapState(e.ID, e.Gen, e.State, n) {
			e.State = n
			return
		}
		var cur flowtable.Entry
		if !w.eng.sessions.Get(e.ID, &cur) || cur.Gen != e.Gen {
			return
		}
		e.State = cur.State
	}
}

// outboundError translates an ICMP error sent by an inside host about a
// packet it received through the NAT. The embedded packet is that inbound
// packet after translation (remote -> inside host); the session is found by
// its reverse, key 0. Errors never create, refresh or delete sessions (RFC
// 4787 REQ-12, RFC 5382 REQ-9).
func (w *Worker) outboundError(b *port.Buf, p *header.Parsed) {
	k := errorKey(Inside, p)
	var e flowtable.Entry
	if !w.eng.sessions.Lookup(&k, &e) || e.Dir != 0 {
		w.dropFrame(Inside, b, drop.NoSession)
		return
	}
	if p.Src != e.Keys[0].Src {
		// The error leaves with the session's external address, so only
		// the session's own inside host may send it. RFC 5508 REQ-4 c)
		// translates an error's source with the public address of the
		// mapping of the host that sent it; a host that is not the
		// session's has no mapping in this session, and translating its
		// error with the session's address would let any subscriber
		// forge errors (port unreachable, fragmentation needed with a
		// tiny MTU) about another subscriber's connections, which the
		// remote end would take as coming from its peer. REQ-4 leaves
		// such choices to local policy; this is ours.
		w.dropFrame(Inside, b, drop.ErrorWrongSender)
		return
	}
	p.DecTTL(b.Data)
	ext := &e.Keys[1]
	p.SetSrc(b.Data, ext.Dst, 0)
	p.SetInnerDst(b.Data, ext.Dst, ext.DstPort)
	if e.State&stHairpin != 0 {
		w.hairpin(b, p)
		return
	}
	w.forward(Inside, Outside, b, p)
}

// inboundError translates an ICMP error about a packet the NAT sent out:
// the embedded packet is our translated outbound packet (external ->
// remote); the session is found by its reverse, key 1. The outer
// destination and the embedded source go back to the inside host, with the
// outer, ICMP, embedded IPv4 and embedded transport checksums fixed (RFC
// 5508 REQ-3, REQ-4).
func (w *Worker) inboundError(owner Side, b *port.Buf, p *header.Parsed) {
	k := errorKey(Outside, p)
	var e flowtable.Entry
	if !w.eng.sessions.Lookup(&k, &e) || e.Dir != 1 {
		w.dropFrame(owner, b, drop.NoSession)
		return
	}
	in := &e.Keys[0]
	p.SetDst(b.Data, in.Src, 0)
	p.SetInnerSrc(b.Data, in.Src, in.SrcPort)
	w.forward(owner, Inside, b, p)
}

// refuse drops an outbound packet that could not get a mapping and, if
// configured, answers with an ICMP Destination Unreachable (RFC 6888
// section 3 / RFC 5508 section 3.4).
func (w *Worker) refuse(b *port.Buf, p *header.Parsed, r drop.Reason) {
	w.drop(r)
	w.sampleDrop(Inside, b, r)
	code := uint8(0)
	switch w.snap.Config.OnExhaustion {
	case ReplyHostUnreachable:
		code = header.ICMPv4HostUnreachable
	case ReplyAdminProhibited:
		code = header.ICMPv4AdminProhibited
	}
	switch r {
	case drop.PortExhausted, drop.AddressExhausted, drop.SubscriberSessions, drop.SubscriberPorts, drop.TableFull:
	default:
		code = 0
	}
	// The drop is counted as r either way; a packet that must not be
	// answered (sent to a link-layer broadcast, say) only gets no error.
	if w.snap.Config.OnExhaustion == ReplyNone || code == 0 || errorForbidden(b, p) || !w.icmpAllowed() {
		w.free(Inside, b)
		return
	}
	w.buildICMPError(Inside, b, p, header.ICMPv4DstUnreachable, code, 0)
	w.reply(Inside, b)
}
