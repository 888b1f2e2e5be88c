package nat

import (
	"encoding/binary"
	"math/bits"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/header"
)

// Stage rewrite: the fast path's translation of a packet in place.
//
// The rewrite is header.Parsed's DecTTL followed by SetSrc (the source,
// for a packet from the inside) or SetDst (the destination, from the
// outside), in one pass over the headers. The IPv4 checksum takes both
// changes in one incremental update (RFC 1624 Eqn. 3, HC' = ~(~HC + ~m +
// m'), over the three changed 16-bit words: TTL/protocol, whose TTL byte
// drops by one, a constant term, and the address's two halves), instead
// of one update each; the TTL must be at least 1 before (the fast path's
// is above 1). The transport checksum covers the address through the
// pseudo-header (RFC 768, RFC 793) and the port. An ICMP query's
// identifier plays the port; its checksum has no pseudo-header (RFC 792).
// TestRewriteMatchesSetters holds it to the setters.
//
// The checksum arithmetic runs on the words as they lie in the frame,
// loaded little-endian (binary.LittleEndian), not in the network's order:
// the one's-complement sum of byte-swapped words is the byte-swapped sum
// (RFC 1071 section 2(B)), so the updated field, stored back in the same
// order, is the same bytes, and neither the addresses, nor the checksum
// fields, nor the old port are swapped on the way. The session's
// addresses come in that order from the flow table (flowtable.View's
// OtherSrcWire and OtherDstWire). The steps are small functions that
// inline, so that the fast path (fastpath.go) runs them without a call:
// rewriteL3, then rewriteUDP, rewriteTCP or rewriteICMP. Their argument
// end is 0 for the source and 1 for the destination: the address lies at
// 12 + 4*end in the IPv4 header, the port at 2*end in the TCP or UDP
// header (RFC 791 section 3.1, RFC 9293 section 3.1, RFC 768).

// rewrite rewrites the source (src, a packet from the inside) or the
// destination of the packet in frame, parsed into p, to the address na (a
// big-endian integer: 10.0.0.1 is 0x0a000001) and port, decrementing its
// TTL, and updates p to match: the general stages' rewrite, which the fast
// path spells out in forwardBurst.
func rewrite(frame []byte, p *header.Parsed, src bool, na uint32, port uint16) {
	end := 0
	if !src {
		end = 1
	}
	rewriteAt(frame, p, end, bits.ReverseBytes32(na), port)
}

// rewriteAt is rewrite of end (0: source, 1: destination) to the address
// wire, in wire order (see above). The fast path runs the same steps,
// spelt out in its loop (forwardBurst), where they inline.
func rewriteAt(frame []byte, p *header.Parsed, end int, wire uint32, port uint16) {
	ip := (*[header.IPv4MinHeaderLen]byte)(frame[p.L3Off:])
	c := swapAddr(ip, end, wire)
	decTTL(ip, c)
	if p.L4 == header.L4ICMPQuery {
		rewriteICMP((*[header.ICMPv4HeaderLen]byte)(frame[p.L4Off:]), port)
		p.SrcPort, p.DstPort = port, port
	} else {
		old, sw := swapPort((*[header.UDPHeaderLen]byte)(frame[p.L4Off:]), end, port)
		if p.L4 == header.L4UDP {
			fixUDP((*[header.UDPHeaderLen]byte)(frame[p.L4Off:]), c, old, sw)
		} else {
			fixTCP((*[header.TCPMinHeaderLen]byte)(frame[p.L4Off:]), c, old, sw)
		}
	}
	setParsed(p, end, wire, port)
}

// rewriteNew is rewriteAt of the source for a frame laid out as the fast
// path's are (fastL4Off: no VLAN tag, no IP options), as forwardBurst
// spells it out: the offsets constant, one bounds check (a frame of the
// fast path is at least fastFrameMin long, and a TCP one at least a TCP
// header longer). It rewrites a new session's first packet, which passed
// the fast path's classification (newSessions): through rewriteAt, with
// the offsets from the parse and their bounds checks, and the end a
// variable, it cost about 37 instructions more a new session (2,798 to
// 2,761, bench-instr). forwardBurst keeps its own copy of these steps
// rather than calling this: it does not inline (cost 463 against Go's
// budget of 80), and the established path would pay the call.
func rewriteNew(data []byte, p *header.Parsed, wire uint32, port uint16) {
	f := (*[fastFrameMin]byte)(data)
	ip := (*[header.IPv4MinHeaderLen]byte)(f[header.EthernetHeaderLen:])
	c := swapAddr(ip, 0, wire)
	decTTL(ip, c)
	l4 := (*[header.UDPHeaderLen]byte)(f[fastL4Off:])
	if p.L4 == header.L4ICMPQuery {
		rewriteICMP(l4, port)
		p.SrcPort, p.DstPort = port, port
	} else {
		old, sw := swapPort(l4, 0, port)
		if p.L4 == header.L4UDP {
			fixUDP(l4, c, old, sw)
		} else {
			fixTCP((*[header.TCPMinHeaderLen]byte)(data[fastL4Off:]), c, old, sw)
		}
	}
	setParsed(p, 0, wire, port)
}

// setParsed records a rewrite of end to address wire (wire order) and
// port in p, which then describes the rewritten frame as Parse would (but
// for an ICMP query's other port: its identifier plays both, which the
// caller sets).
func setParsed(p *header.Parsed, end int, wire uint32, port uint16) {
	if end == 0 {
		binary.LittleEndian.PutUint32(p.Src[:], wire)
		p.SrcPort = port
	} else {
		binary.LittleEndian.PutUint32(p.Dst[:], wire)
		p.DstPort = port
	}
	p.TTL--
}

// swapAddr replaces the address of end (0: source, 1: destination) in the
// fixed IPv4 header ip by wire, and returns the change's terms of Eqn. 3
// (checksum.AddrChange32), in wire order, for both checksums that cover
// the address.
func swapAddr(ip *[header.IPv4MinHeaderLen]byte, end int, wire uint32) uint32 {
	a := ip[12+4*(end&1):]
	old := binary.LittleEndian.Uint32(a)
	binary.LittleEndian.PutUint32(a, wire)
	return checksum.AddrChange32(old, wire)
}

// decTTL decrements the TTL of the fixed IPv4 header ip (RFC 791 section
// 3.1; at least 2 before) and updates its checksum for that and for the
// address change c (swapAddr), in one update.
func decTTL(ip *[header.IPv4MinHeaderLen]byte, c uint32) {
	ip[8]--
	binary.LittleEndian.PutUint16(ip[10:], checksum.UpdateDecTTLSwapped(binary.LittleEndian.Uint16(ip[10:]), c))
}

// swapPort replaces the port of end in the TCP or UDP header h (both have
// the source port at 0 and the destination port at 2) by port, and
// returns the old and new port in wire order, for the checksum update.
func swapPort(h *[header.UDPHeaderLen]byte, end int, port uint16) (old, sw uint16) {
	a := h[2*(end&1):]
	old, sw = binary.LittleEndian.Uint16(a), bits.ReverseBytes16(port)
	binary.LittleEndian.PutUint16(a, sw)
	return old, sw
}

// fixUDP updates the checksum of the UDP header u, if it has one (RFC
// 768), for the address change c and a port changed from old to sw.
func fixUDP(u *[header.UDPHeaderLen]byte, c uint32, old, sw uint16) {
	binary.LittleEndian.PutUint16(u[6:], checksum.UpdateUDPWith(binary.LittleEndian.Uint16(u[6:]), c, old, sw))
}

// fixTCP is fixUDP for the TCP header t, whose checksum is always there
// (RFC 9293 section 3.1).
func fixTCP(t *[header.TCPMinHeaderLen]byte, c uint32, old, sw uint16) {
	binary.LittleEndian.PutUint16(t[16:], checksum.UpdateWith(binary.LittleEndian.Uint16(t[16:]), c, old, sw))
}

// rewriteICMP replaces the identifier of the ICMP query m, which plays
// both ports, and updates its checksum (no pseudo-header: RFC 792).
func rewriteICMP(m *[header.ICMPv4HeaderLen]byte, port uint16) {
	header.ICMPv4(m[:]).SetIdentFix(port)
}

// le32 returns the four bytes of a loaded little-endian: an address in
// wire order (see above).
func le32(a *[4]byte) uint32 { return binary.LittleEndian.Uint32(a[:]) }
