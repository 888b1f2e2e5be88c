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
// update each; p.TTL must be at least 1 (the fast path's is above 1); the
// transport checksum covers the address through the pseudo-header (RFC
// 768, RFC 793) and the port. An ICMP query's identifier plays the port;
// its checksum has no pseudo-header (RFC 792). TestRewriteMatchesSetters
// holds it to the setters.
func rewrite(frame []byte, p *header.Parsed, src bool, na uint32, port uint16) {
	// Parse has checked that the headers are there: fixed-length views
	// let the compiler drop the accessors' bounds checks.
	ip := header.IPv4(frame[p.L3Off : p.L3Off+header.IPv4MinHeaderLen])
	l4 := frame[p.L4Off : p.L4Off+header.ICMPv4HeaderLen]
	// The addresses as integers (na is one, big-endian): Go keeps a
	// [4]byte in memory, an integer in a register.
	old, oldPort := binary.BigEndian.Uint32(p.Dst[:]), p.DstPort
	addrOff, portOff := 16, 2 // the IPv4 destination, TCP's and UDP's destination port
	if src {
		old, oldPort = binary.BigEndian.Uint32(p.Src[:]), p.SrcPort
		addrOff, portOff = 12, 0
	}
	// The address's terms of Eqn. 3, once for both checksums.
	change := checksum.AddrChange32(old, na)
	// The TTL's terms are a constant (checksum.UpdateDecTTL): the
	// callers pass a packet whose TTL is above 1.
	ip.SetTTL(p.TTL - 1)
	ip.SetChecksum(checksum.UpdateDecTTL(ip.Checksum(), change))
	binary.BigEndian.PutUint32(ip[addrOff:], na)
	if src {
		binary.BigEndian.PutUint32(p.Src[:], na)
		p.SrcPort = port
	} else {
		binary.BigEndian.PutUint32(p.Dst[:], na)
		p.DstPort = port
	}
	p.TTL--
	// TCP and UDP both begin with the source and destination ports (RFC
	// 9293 section 3.1, RFC 768); their checksums lie at 16 and 6.
	switch p.L4 {
	case header.L4UDP:
		u := header.UDP(l4)
		u.SetChecksum(checksum.UpdateUDPWith(u.Checksum(), change, oldPort, port))
	case header.L4TCP:
		t := header.TCP(frame[p.L4Off : p.L4Off+header.TCPMinHeaderLen])
		t.SetChecksum(checksum.UpdateWith(t.Checksum(), change, oldPort, port))
	default: // L4ICMPQuery: the fast path takes nothing else
		header.ICMPv4(l4).SetIdentFix(port)
		p.SrcPort, p.DstPort = port, port
		return
	}
	binary.BigEndian.PutUint16(l4[portOff:], port)
}
