package nat

import (
	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/header"
)

// Stage rewrite: the fast path's translation of a packet in place.

// rewrite is step 3 of the fast path: header.Parsed's DecTTL followed by
// SetSrc (src, for a packet from the inside) or SetDst (from the outside),
// in one pass over the headers. The IPv4 checksum takes both changes in
// one incremental update (RFC 1624 Eqn. 3, HC' = ~(~HC + ~m + m'), over
// the three changed 16-bit words: TTL/protocol, whose TTL byte drops by
// one, and the address's two halves), instead of one update each; the
// transport checksum covers the address through the pseudo-header (RFC
// 768, RFC 793) and the port. An ICMP query's identifier plays the port;
// its checksum has no pseudo-header (RFC 792). TestRewriteMatchesSetters
// holds it to the setters.
func rewrite(frame []byte, p *header.Parsed, src bool, addr [4]byte, port uint16) {
	// Parse has checked that the headers are there: a fixed-length
	// view lets the compiler drop the accessors' bounds checks.
	ip := header.IPv4(frame[p.L3Off : p.L3Off+header.IPv4MinHeaderLen])
	old, oldPort := p.Dst, p.DstPort
	if src {
		old, oldPort = p.Src, p.SrcPort
	}
	ttl := uint16(p.TTL)<<8 | uint16(p.Proto)
	ip.SetTTL(p.TTL - 1)
	ip.SetChecksum(checksum.UpdateAddrPort(ip.Checksum(), old, addr, ttl, ttl-0x0100))
	if src {
		ip.SetSrc(addr)
		p.Src = addr
	} else {
		ip.SetDst(addr)
		p.Dst = addr
	}
	rewriteL4(frame, p, old, addr, oldPort, port, src)
	p.TTL--
}

// rewriteL4 replaces the transport's source (src) or destination port
// oldPort with port, and fixes its checksum for that and the address
// change oldA -> newA.
func rewriteL4(frame []byte, p *header.Parsed, oldA, newA [4]byte, oldPort, port uint16, src bool) {
	switch p.L4 {
	case header.L4UDP:
		u := header.UDP(frame[p.L4Off : p.L4Off+header.UDPHeaderLen])
		u.SetChecksum(checksum.UpdateUDPAddrPort(u.Checksum(), oldA, newA, oldPort, port))
		if src {
			u.SetSrcPort(port)
		} else {
			u.SetDstPort(port)
		}
	case header.L4TCP:
		t := header.TCP(frame[p.L4Off : p.L4Off+header.TCPMinHeaderLen])
		t.SetChecksum(checksum.UpdateAddrPort(t.Checksum(), oldA, newA, oldPort, port))
		if src {
			t.SetSrcPort(port)
		} else {
			t.SetDstPort(port)
		}
	default: // L4ICMPQuery: the fast path takes nothing else
		header.ICMPv4(frame[p.L4Off : p.L4Off+header.ICMPv4HeaderLen]).SetIdentFix(port)
		p.DstPort = port
		p.SrcPort = port
		return
	}
	if src {
		p.SrcPort = port
	} else {
		p.DstPort = port
	}
}
