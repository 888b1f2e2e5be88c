package header

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
)

// The NAT rewrites. Each changes one address and the matching port (or ICMP
// identifier) and fixes, incrementally, every checksum that covers them:
//
//   - the IPv4 header checksum, for the address;
//   - the TCP or UDP checksum, for the address (through the pseudo-header)
//     and the port together, with one fold (checksum.UpdateAddrPort), UDP's
//     zero-checksum rules included;
//   - the ICMP checksum, for an identifier (ICMP has no pseudo-header, so an
//     address change does not touch it);
//   - for the embedded packet of an ICMP error: its header checksum, its
//     transport checksum when the quoted bytes include it, and the outer
//     ICMP checksum, which covers every one of those bytes.
//
// They may be called only after Parse returned drop.None, or
// drop.NonFirstFragment (a non-first fragment has no transport header, so
// only the address and the IPv4 checksum change). They keep p in step with
// the frame.

// SetSrc sets the source address to addr and the source port (TCP, UDP) or
// identifier (ICMP query) to port. For an ICMP error and a non-first
// fragment, port is ignored.
func (p *Parsed) SetSrc(frame []byte, addr [4]byte, port uint16) {
	old := p.Src
	p.IPv4(frame).SetSrcFix(addr)
	p.Src = addr
	p.setL4(frame, old, addr, tcpSrcPort, port)
}

// SetDst sets the destination address to addr and the destination port
// (TCP, UDP) or identifier (ICMP query) to port. For an ICMP error and a
// non-first fragment, port is ignored.
func (p *Parsed) SetDst(frame []byte, addr [4]byte, port uint16) {
	old := p.Dst
	p.IPv4(frame).SetDstFix(addr)
	p.Dst = addr
	p.setL4(frame, old, addr, tcpDstPort, port)
}

// setL4 rewrites the port at portOff (0 or 2, the same in TCP and UDP) and
// fixes the transport checksum for it and for an address change oldA->newA.
func (p *Parsed) setL4(frame []byte, oldA, newA [4]byte, portOff int, port uint16) {
	// TCP and UDP apart, not through one helper: that would be beyond the
	// inlining budget, and the TCP update, inlined here, is every TCP
	// packet's.
	switch p.L4 {
	case L4TCP:
		t := p.TCP(frame)
		old := binary.BigEndian.Uint16(t[portOff:])
		t.SetChecksum(checksum.UpdateAddrPort(t.Checksum(), oldA, newA, old, port))
		binary.BigEndian.PutUint16(t[portOff:], port)
	case L4UDP:
		u := p.UDP(frame)
		old := binary.BigEndian.Uint16(u[portOff:])
		u.SetChecksum(checksum.UpdateUDPAddrPort(u.Checksum(), oldA, newA, old, port))
		binary.BigEndian.PutUint16(u[portOff:], port)
	case L4ICMPQuery:
		p.ICMPv4(frame).SetIdentFix(port)
		p.SrcPort = port
		p.DstPort = port
		return
	default:
		// L4ICMPError: no pseudo-header, no port. L4None: no transport
		// header in this fragment.
		return
	}
	if portOff == tcpSrcPort {
		p.SrcPort = port
	} else {
		p.DstPort = port
	}
}

// SetInnerSrc sets the source address and port (or identifier) of the
// packet embedded in an ICMP error. It does nothing unless L4 is
// L4ICMPError.
func (p *Parsed) SetInnerSrc(frame []byte, addr [4]byte, port uint16) {
	p.setInner(frame, ipv4Src, addr, tcpSrcPort, port)
}

// SetInnerDst sets the destination address and port (or identifier) of the
// packet embedded in an ICMP error. It does nothing unless L4 is
// L4ICMPError.
func (p *Parsed) SetInnerDst(frame []byte, addr [4]byte, port uint16) {
	p.setInner(frame, ipv4Dst, addr, tcpDstPort, port)
}

func (p *Parsed) setInner(frame []byte, addrOff int, addr [4]byte, portOff int, port uint16) {
	if p.L4 != L4ICMPError {
		return
	}
	m := p.ICMPv4(frame)
	ip := p.InnerIPv4(frame)
	l4 := p.InnerL4(frame)
	// Every word changed below lies inside the ICMP message at an even
	// offset from its start (the embedded header starts at 8, its transport
	// header at 8 + IHL*4), so each change is one more Eqn. 3 step on the
	// ICMP checksum.
	ck := m.Checksum()

	oldA := [4]byte(ip[addrOff : addrOff+4])
	oldIC := ip.Checksum()
	newIC := checksum.Update32(oldIC, oldA, addr)
	copy(ip[addrOff:addrOff+4], addr[:])
	ip.SetChecksum(newIC)
	ck = checksum.Update32(ck, oldA, addr)
	ck = checksum.Update16(ck, oldIC, newIC)

	switch p.InnerProto {
	case ProtocolTCP, ProtocolUDP:
		// Both begin with the ports (RFC 9293 section 3.1, RFC 768).
		old := binary.BigEndian.Uint16(l4[portOff:])
		binary.BigEndian.PutUint16(l4[portOff:], port)
		ck = checksum.Update16(ck, old, port)
		// The transport checksum covers the address through the
		// pseudo-header and the port. UDP's lies in the 8 bytes every
		// error quotes; TCP's at bytes 16-17, quoted only when the error
		// carries more than the minimum. Fixing it keeps a fully quoted
		// segment verifiable by the host that receives the error.
		off := tcpChecksum
		if p.InnerProto == ProtocolUDP {
			off = udpChecksum
		}
		if len(l4) >= off+2 {
			oc := binary.BigEndian.Uint16(l4[off:])
			change := checksum.AddrChange(oldA, addr)
			nc := checksum.UpdateWith(oc, change, old, port)
			if off == udpChecksum {
				nc = checksum.UpdateUDPWith(oc, change, old, port)
			}
			binary.BigEndian.PutUint16(l4[off:], nc)
			ck = checksum.Update16(ck, oc, nc)
		}
	case ProtocolICMP:
		// An embedded ICMP query: its identifier is both "ports", and its
		// own checksum has no pseudo-header.
		q := ICMPv4(l4)
		old := q.Ident()
		oc := q.Checksum()
		q.SetIdentFix(port)
		ck = checksum.Update16(ck, old, port)
		ck = checksum.Update16(ck, oc, q.Checksum())
	}
	m.SetChecksum(ck)

	if addrOff == ipv4Src {
		p.InnerSrc = addr
	} else {
		p.InnerDst = addr
	}
	switch {
	case p.InnerProto == ProtocolICMP:
		p.InnerSrcPort = port
		p.InnerDstPort = port
	case portOff == tcpSrcPort:
		p.InnerSrcPort = port
	default:
		p.InnerDstPort = port
	}
}
