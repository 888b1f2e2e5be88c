package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// Stage ICMP errors: translating ICMP errors that hosts send about packets
// the NAT forwarded (RFC 5508). The errors the NAT itself originates are
// built in icmpgen.go.

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
