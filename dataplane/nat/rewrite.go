package nat

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/header"
)

// Stage rewrite: the fast path's translation of a packet in place.

// rewrite is step 3 of the fast path: header.Parsed's DecTTL followed by
// SetSrc (src, for a packet from the inside) or SetDst (from the outside),
// to address na (a big-endian integer) and port, in one pass over the
// headers. The IPv4 checksum takes both changes in
// one incremental update (RFC 1624 Eqn. 3, HC' = ~(~HC + ~m + m'), over
// the three changed 16-bit words: TTL/protocol, whose TTL byte drops by
// one, a constant term, and the address's two halves), instead of one
// update each; p.TTL must be at least 1 (the fast path's is above 1);
// the transport checksum covers the address through the pseudo-header (RFC
// 768, RFC 793) and the port. An ICMP query's identifier plays the port;
// its checksum has no pseudo-header (RFC 792). TestRewriteMatchesSetters
// holds it to the setters.
//
// rewrite itself only picks rewriteSrc or rewriteDst, and inlines: each
// of the two has its offsets as constants and no branch on the direction,
// which kept the general body's values on the stack.
func rewrite(frame []byte, p *header.Parsed, src bool, na uint32, port uint16) {
	if src {
		rewriteSrc(frame, p, na, port)
	} else {
		rewriteDst(frame, p, na, port)
	}
}

// rewriteSrc is rewrite of the source: a packet from the inside.
func rewriteSrc(frame []byte, p *header.Parsed, na uint32, port uint16) {
	// Parse has checked that the headers are there: fixed-length views
	// let the compiler drop the accessors' bounds checks. (UDP's and an
	// ICMP query's headers are 8 bytes; a TCP header is sliced apart,
	// since a frame's capacity may end after 8.)
	ip := header.IPv4(frame[p.L3Off : p.L3Off+header.IPv4MinHeaderLen])
	l4 := frame[p.L4Off : p.L4Off+header.UDPHeaderLen]
	// The address's terms of Eqn. 3, once for both checksums. Addresses
	// as integers: Go keeps a [4]byte in memory, an integer in a
	// register.
	change := checksum.AddrChange32(be32(p.Src), na)
	ip.SetTTL(p.TTL - 1)
	ip.SetChecksum(checksum.UpdateDecTTL(ip.Checksum(), change))
	binary.BigEndian.PutUint32(ip[12:], na)
	old := p.SrcPort
	binary.BigEndian.PutUint32(p.Src[:], na)
	p.SrcPort = port
	p.TTL--
	// TCP and UDP both begin with the source and destination ports (RFC
	// 9293 section 3.1, RFC 768); their checksums lie at 16 and 6. The
	// switch is written out in rewriteSrc and rewriteDst: as a function
	// of its own it does not inline, and its call cost more than its
	// ten lines.
	switch p.L4 {
	case header.L4UDP:
		u := header.UDP(l4)
		u.SetChecksum(checksum.UpdateUDPWith(u.Checksum(), change, old, port))
	case header.L4TCP:
		t := header.TCP(frame[p.L4Off : p.L4Off+header.TCPMinHeaderLen])
		t.SetChecksum(checksum.UpdateWith(t.Checksum(), change, old, port))
	default: // L4ICMPQuery: the fast path takes nothing else
		header.ICMPv4(l4).SetIdentFix(port)
		p.SrcPort, p.DstPort = port, port
		return
	}
	binary.BigEndian.PutUint16(l4[0:], port) // TCP's and UDP's source port
}

// rewriteDst is rewrite of the destination: a packet from the outside.
func rewriteDst(frame []byte, p *header.Parsed, na uint32, port uint16) {
	ip := header.IPv4(frame[p.L3Off : p.L3Off+header.IPv4MinHeaderLen])
	l4 := frame[p.L4Off : p.L4Off+header.UDPHeaderLen]
	change := checksum.AddrChange32(be32(p.Dst), na)
	ip.SetTTL(p.TTL - 1)
	ip.SetChecksum(checksum.UpdateDecTTL(ip.Checksum(), change))
	binary.BigEndian.PutUint32(ip[16:], na)
	old := p.DstPort
	binary.BigEndian.PutUint32(p.Dst[:], na)
	p.DstPort = port
	p.TTL--
	// As in rewriteSrc.
	switch p.L4 {
	case header.L4UDP:
		u := header.UDP(l4)
		u.SetChecksum(checksum.UpdateUDPWith(u.Checksum(), change, old, port))
	case header.L4TCP:
		t := header.TCP(frame[p.L4Off : p.L4Off+header.TCPMinHeaderLen])
		t.SetChecksum(checksum.UpdateWith(t.Checksum(), change, old, port))
	default: // L4ICMPQuery: the fast path takes nothing else
		header.ICMPv4(l4).SetIdentFix(port)
		p.SrcPort, p.DstPort = port, port
		return
	}
	binary.BigEndian.PutUint16(l4[2:], port) // TCP's and UDP's destination port
}
