package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// Stage in2out: packets from the inside, translated outbound (source
// address and port replaced by the session's external endpoint). The fast
// path (fastpath.go) finishes established sessions' ordinary packets;
// everything else from the inside comes here.

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

// outbound translates a TCP, UDP or ICMP query packet from the inside.
func (w *Worker) outbound(b *port.Buf, p *header.Parsed, probe *flowtable.Probe) {
	var e flowtable.Entry
	if !w.eng.sessions.LookupProbe(probe, &e) || e.Dir != 0 {
		w.outboundNew(b, p)
		return
	}
	w.translateOut(b, p, &e)
}

// outboundNew creates the session of an outbound packet that has none
// (newsession.go) and translates the packet, or refuses it: for a packet
// that did not come through newSessions, whose pass 4 writes these steps
// out with the translation of the fast path's packets (a change here is a
// change there).
func (w *Worker) outboundNew(b *port.Buf, p *header.Parsed) {
	if icmpQuery(p) && !icmpRequest(p.ICMPType) {
		w.dropFrame(Inside, b, drop.NoSession)
		return
	}
	// newSession's outbound half, called directly: one call level less
	// on every new session. Its key's fields, not a Key: the keys are
	// inserted prepared (newOutbound).
	_, _, sport, dport := sessionTuple(Inside, p)
	var e flowtable.Entry
	if r := w.newOutbound(p, sport, dport, nil, &e); r != drop.None {
		w.refuse(b, p, r)
		return
	}
	w.translateOut(b, p, &e)
}

// translateOut translates an outbound packet of session e: the general
// case of the fast path's rewrite, for hairpinned sessions, TCP segments
// that may change the session's state, packets that need fragmenting or an
// ICMP error, and new sessions.
func (w *Worker) translateOut(b *port.Buf, p *header.Parsed, e *flowtable.Entry) {
	egress := Outside
	if e.State&stHairpin != 0 {
		egress = Inside
	}
	if w.tooBigDF(Inside, egress, b, p) {
		return
	}
	w.tcpSegment(e, b, p, Inside)
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
