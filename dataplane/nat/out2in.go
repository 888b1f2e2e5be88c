package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// Stage out2in: packets from the outside (and hairpinned packets),
// translated inbound (destination replaced by the session's inside
// endpoint). The fast path (fastpath.go) finishes established sessions'
// ordinary packets; everything else from the outside comes here.

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

// inbound translates a TCP, UDP or ICMP query packet addressed to a public
// address. owner is the side whose port holds the frame: Outside, or Inside
// for a hairpinned packet. probe is the packet's prepared key, nil for a
// hairpinned packet: its key exists only now, after the outbound
// translation.
func (w *Worker) inbound(owner Side, b *port.Buf, p *header.Parsed, probe *flowtable.Probe) {
	var e flowtable.Entry
	var hit bool
	if probe == nil {
		var k flowtable.Key
		packetKey(Outside, p, &k)
		hit = w.eng.sessions.Lookup(&k, &e)
	} else {
		hit = w.eng.sessions.LookupProbe(probe, &e)
	}
	if !hit || e.Dir != 1 {
		w.inboundNew(owner, b, p)
		return
	}
	w.translateIn(owner, b, p, &e)
}

// inboundNew creates the session of an inbound packet that has none, if a
// rule or mapping admits it (newsession.go), and translates the packet, or
// drops it.
func (w *Worker) inboundNew(owner Side, b *port.Buf, p *header.Parsed) {
	var e flowtable.Entry
	if r := w.newSession(Outside, p, &e); r != drop.None {
		w.dropFrame(owner, b, r)
		return
	}
	w.translateIn(owner, b, p, &e)
}

// translateIn translates an inbound packet of session e, whose TTL the
// caller has decremented: the general case of the fast path's rewrite.
func (w *Worker) translateIn(owner Side, b *port.Buf, p *header.Parsed, e *flowtable.Entry) {
	if owner == Outside && w.tooBigDF(Outside, Inside, b, p) {
		return
	}
	w.tcpSegment(e, b, p, Outside)
	// RFC 4787 REQ-6: outbound packets always refresh a UDP mapping;
	// inbound ones only if configured.
	if p.L4 != header.L4UDP || w.snap.Config.UDPInboundRefresh {
		w.eng.sessions.Touch(e.ID, w.now)
	}
	in := &e.Keys[0]
	p.SetDst(b.Data, in.Src, in.SrcPort)
	w.forward(owner, Inside, b, p)
}
