package header

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/drop"
)

// L4Kind says which transport header Parse found and validated.
type L4Kind uint8

const (
	// L4None: no transport header was validated (a non-first fragment, or
	// Parse stopped earlier).
	L4None L4Kind = iota
	// L4TCP: SrcPort, DstPort and TCPFlags are valid.
	L4TCP
	// L4UDP: SrcPort and DstPort are valid.
	L4UDP
	// L4ICMPQuery: an Echo or Timestamp message (or reply); SrcPort and
	// DstPort both hold its identifier, the "port" a NAT maps for ICMP
	// queries (RFC 5508 section 3.1).
	L4ICMPQuery
	// L4ICMPError: a Destination Unreachable, Time Exceeded or Parameter
	// Problem message whose embedded packet was validated; the Inner fields
	// are valid.
	L4ICMPError
)

// Parsed is what Parse learned about a frame: where each header is, and
// copies of the fields the NAT looks up and rewrites. Offsets are from the
// start of the frame.
//
// A Parsed is caller-owned scratch, typically one element of a per-worker
// array sized to a burst; it holds no pointers, so such arrays cost the GC
// nothing. Parse overwrites all of it. It is used by the worker goroutine
// that owns the frame.
//
// Which fields are valid depends on Parse's result:
//   - L2 fields (EtherType, HasVLAN, VLANTCI) and L3Off: whenever Parse got
//     past the Ethernet header (every result but Truncated on a frame
//     shorter than its link header).
//   - L3 fields (L4Off through Dst): whenever End is nonzero, that is for
//     None, NonFirstFragment, UnsupportedProtocol and the transport-level
//     reasons (BadL4Header, BadICMPChecksum, BadEmbeddedPacket,
//     UnsupportedICMP).
//   - ICMPType and ICMPCode: for every ICMP message that had its 8-byte
//     header.
//   - the rest: when L4 says so, which happens only with drop.None.
type Parsed struct {
	// Link layer.

	// EtherType is the EtherType of the payload: after the VLAN tag, if any.
	EtherType uint16
	// VLANTCI is the tag control information of the VLAN tag; valid when
	// HasVLAN. VLANID extracts the VLAN identifier.
	VLANTCI uint16
	HasVLAN bool

	// Network layer.

	// TTL is the time-to-live as received. Parse does not judge it; see
	// DecTTL.
	TTL   uint8
	Proto uint8
	// MF and DF are the More Fragments and Don't Fragment flags.
	MF, DF bool
	// FragOff is the fragment offset in bytes.
	FragOff uint16
	IPID    uint16
	// TotalLen is the IPv4 total length field.
	TotalLen uint16
	Src, Dst [4]byte

	// L3Off is the offset of the IPv4 header: 14, or 18 after a VLAN tag.
	L3Off int
	// L4Off is the offset of the transport header: L3Off + IHL*4.
	L4Off int
	// End is L3Off + TotalLen, the end of the IPv4 packet. Bytes from End on
	// are link-layer padding: Parse never reads them and the views never
	// include them.
	End int

	// Transport layer.

	L4 L4Kind
	// SrcPort and DstPort are the TCP or UDP ports; for ICMP queries both
	// hold the identifier.
	SrcPort, DstPort uint16
	TCPFlags         uint8
	ICMPType         uint8
	ICMPCode         uint8

	// Embedded packet of an ICMP error (L4ICMPError), as it was sent by the
	// host the error is about: its source is that host, its destination
	// the peer that could not be reached.

	InnerProto uint8
	// InnerSrcPort and InnerDstPort are the embedded TCP or UDP ports, or
	// for an embedded ICMP query both hold its identifier.
	InnerSrcPort, InnerDstPort uint16
	InnerSrc, InnerDst         [4]byte
	// InnerL3Off is the offset of the embedded IPv4 header (L4Off + 8) and
	// InnerL4Off that of the embedded transport header, of which at least
	// 8 bytes precede End.
	InnerL3Off, InnerL4Off int
}

// VLANID returns the 12-bit VLAN identifier; valid when HasVLAN.
func (p *Parsed) VLANID() uint16 { return p.VLANTCI & 0x0FFF }

// Parse validates frame, an Ethernet frame, and fills p. It returns
// drop.None for an IPv4 packet carrying TCP, UDP or a translatable ICMP
// message whose headers are all consistent, and otherwise the reason the
// NAT cannot translate it, in the order the checks run:
//
//   - Truncated: shorter than the Ethernet header, the VLAN tag, or a
//     minimal IPv4 header.
//   - NotIPv4: any other EtherType, including ARP and IPv6 and a second
//     stacked VLAN tag. Not an error in itself: the XDP program passes such
//     frames to the kernel, and the EtherType is filled in for the caller.
//   - BadVersion, BadIHL, BadTotalLength, BadHeaderChecksum: the IPv4
//     header is malformed, or claims more bytes than the frame holds.
//   - UnsupportedProtocol: not TCP, UDP or ICMP (L3 fields filled).
//   - NonFirstFragment: fragment offset > 0. The L3 fields are filled so the
//     caller can look up its fragment cache; there is no transport header.
//   - BadL4Header: the transport header is truncated or its lengths lie
//     (TCP data offset < 5 or beyond the packet, UDP length < 8 or beyond
//     the packet, ICMP shorter than its fixed part).
//   - BadICMPChecksum: the ICMP checksum does not verify. It is checked for
//     every unfragmented ICMP message (cheap, and RFC 5508 REQ-3 requires it
//     for errors). A first fragment of an ICMP query cannot be verified and
//     is accepted unverified; a fragmented ICMP error is UnsupportedICMP.
//   - UnsupportedICMP: an ICMP type that is neither a query nor an error
//     the NAT translates (see ICMPv4IsQuery, ICMPv4IsError), a fragmented
//     error, or an error about a non-first fragment (it quotes no ports).
//   - BadEmbeddedPacket: an ICMP error whose embedded IPv4 header is
//     malformed, fails its checksum (RFC 5508 REQ-3a), or is followed by
//     fewer than the 8 transport bytes RFC 792 requires; or that quotes an
//     ICMP error (RFC 1122 3.2.2: no error is sent about an error).
//     An embedded protocol other than TCP, UDP and ICMP is
//     UnsupportedProtocol.
//
// The frame may be longer than the IPv4 total length (Ethernet pads short
// frames to 60 bytes): the total length is trusted and nothing past it is
// read. TCP and UDP checksums are not verified (see the package
// documentation), and the TTL is not judged: a packet the NAT forwards may
// need an ICMP Time Exceeded answer rather than a silent drop, and a packet
// addressed to the appliance itself is not forwarded at all, so the caller
// decides, with DecTTL, once it knows.
//
// Parse allocates nothing, whatever the input.
//
// Nearly all traffic is an untagged IPv4 frame with a 20-byte header, not
// a fragment (MF clear, offset zero), carrying TCP or UDP. Parse takes such
// a frame in a straight line: one length check up front, fixed offsets
// after it, the checks of parseFrame specialised to IHL 5 and to a first
// and only fragment. Any other frame, and any such frame that fails one of
// those checks, goes to parseFrame, which checks everything in the order
// above and so names the reason. Both give the same result for every frame
// (TestParseMatchesParseFrame, FuzzParseMatchesParseFrame).
func Parse(frame []byte, p *Parsed) drop.Reason {
	if len(frame) < parseCommonMin {
		return parseFrame(frame, p)
	}
	h := frame[:parseCommonMin]
	ip := h[EthernetHeaderLen:]
	// EtherType 0x0800, then version 4 and IHL 5 (0x45): one compare.
	if binary.BigEndian.Uint32(h[ethType:])>>8 != EtherTypeIPv4<<8|0x45 {
		return parseFrame(frame, p)
	}
	tl := int(binary.BigEndian.Uint16(ip[ipv4TotalLen:]))
	ff := binary.BigEndian.Uint16(ip[ipv4FlagsFrag:])
	if ff&(ipv4FlagMF|ipv4FragOffMask) != 0 || tl > len(frame)-EthernetHeaderLen || !ipv4HeaderSumOK(ip) {
		return parseFrame(frame, p)
	}
	// The transport header, as parseTCP and parseUDP check it in an
	// unfragmented packet of tl bytes with a 20-byte IP header. The total
	// length is at least 20 + 8 once the UDP length passes, and 20 + 20
	// once the TCP data offset does.
	l4 := ip[IPv4MinHeaderLen:]
	var kind L4Kind
	var flags uint8
	switch ip[ipv4Protocol] {
	case ProtocolUDP:
		if n := int(binary.BigEndian.Uint16(l4[udpLength:])); n < UDPHeaderLen || n > tl-IPv4MinHeaderLen {
			return parseFrame(frame, p)
		}
		kind = L4UDP
	case ProtocolTCP:
		if tl < IPv4MinHeaderLen+TCPMinHeaderLen {
			return parseFrame(frame, p)
		}
		// tl fits in the frame, so the TCP header does too.
		t := frame[parseCommonMin-UDPHeaderLen : parseCommonMin-UDPHeaderLen+TCPMinHeaderLen]
		if off := int(t[tcpDataOff]>>4) * 4; off < TCPMinHeaderLen || off > tl-IPv4MinHeaderLen {
			return parseFrame(frame, p)
		}
		kind, flags = L4TCP, t[tcpFlags]
	default:
		return parseFrame(frame, p)
	}
	// Field by field into a cleared p, rather than a composite literal,
	// which the compiler builds on the stack and then copies.
	*p = Parsed{}
	p.EtherType = EtherTypeIPv4
	p.TTL = ip[ipv4TTL]
	p.Proto = ip[ipv4Protocol]
	p.DF = ff&ipv4FlagDF != 0
	p.IPID = binary.BigEndian.Uint16(ip[ipv4ID:])
	p.TotalLen = uint16(tl)
	p.Src = [4]byte(ip[ipv4Src : ipv4Src+4])
	p.Dst = [4]byte(ip[ipv4Dst : ipv4Dst+4])
	p.L3Off = EthernetHeaderLen
	p.L4Off = EthernetHeaderLen + IPv4MinHeaderLen
	p.End = EthernetHeaderLen + tl
	p.L4 = kind
	p.SrcPort = binary.BigEndian.Uint16(l4[tcpSrcPort:])
	p.DstPort = binary.BigEndian.Uint16(l4[tcpDstPort:])
	p.TCPFlags = flags
	return drop.None
}

// parseCommonMin is the shortest frame Parse's straight line takes:
// Ethernet, a 20-byte IPv4 header and a UDP header.
const parseCommonMin = EthernetHeaderLen + IPv4MinHeaderLen + UDPHeaderLen

// ipv4HeaderSumOK reports whether a 20-byte IPv4 header (no options)
// verifies: the one's-complement sum of its ten 16-bit words, checksum
// field included, is 0xFFFF (RFC 1071 section 1, step 3; RFC 791 section
// 3.1). It is checksum.Checksum(h, 0) == 0xFFFF without the calls and the
// length switch (TestIPv4HeaderSumOK).
//
// One's-complement addition is addition modulo 0xFFFF (2^16 = 1 mod
// 0xFFFF: the end-around carry), and a fold of a non-zero sum never gives
// 0, so the folded sum is 0xFFFF exactly when the plain sum is a non-zero
// multiple of 0xFFFF. The words are added as five 32-bit words, two 16-bit
// lanes side by side (RFC 1071 section 2(C), parallel summation), loaded
// in the machine's byte order rather than the network's (section 2(B):
// byte-swapping every word multiplies the sum by 256 modulo 0xFFFF, which
// leaves a multiple of 0xFFFF one). The sum stays below 2^35, and the
// compiler turns the remainder by a constant into a multiplication.
func ipv4HeaderSumOK(h []byte) bool {
	h = h[:IPv4MinHeaderLen]
	s := uint64(binary.LittleEndian.Uint32(h[0:])) + uint64(binary.LittleEndian.Uint32(h[4:])) +
		uint64(binary.LittleEndian.Uint32(h[8:])) + uint64(binary.LittleEndian.Uint32(h[12:])) +
		uint64(binary.LittleEndian.Uint32(h[16:]))
	return s != 0 && s%0xFFFF == 0
}

// parseFrame is Parse for any frame: every check, in the documented order.
func parseFrame(frame []byte, p *Parsed) drop.Reason {
	*p = Parsed{}
	if len(frame) < EthernetHeaderLen {
		return drop.Truncated
	}
	et := binary.BigEndian.Uint16(frame[ethType:])
	l3 := EthernetHeaderLen
	if et == EtherTypeVLAN || et == EtherTypeQinQ {
		if len(frame) < EthernetHeaderLen+VLANTagLen {
			return drop.Truncated
		}
		tag := VLAN(frame[EthernetHeaderLen:])
		p.HasVLAN = true
		p.VLANTCI = tag.TCI()
		et = tag.EtherType()
		l3 += VLANTagLen
	}
	p.EtherType = et
	p.L3Off = l3
	if et != EtherTypeIPv4 {
		return drop.NotIPv4
	}
	return parseIPv4(frame, p)
}

func parseIPv4(frame []byte, p *Parsed) drop.Reason {
	b := frame[p.L3Off:]
	if len(b) < IPv4MinHeaderLen {
		return drop.Truncated
	}
	if b[ipv4VersIHL]>>4 != 4 {
		return drop.BadVersion
	}
	hl := int(b[ipv4VersIHL]&0x0F) * 4
	if hl < IPv4MinHeaderLen || hl > len(b) {
		return drop.BadIHL
	}
	tl := int(binary.BigEndian.Uint16(b[ipv4TotalLen:]))
	if tl < hl || tl > len(b) {
		return drop.BadTotalLength
	}
	// From here on nothing past the total length exists.
	ip := IPv4(b[:tl:tl])
	if checksum.Checksum(ip[:hl], 0) != 0xFFFF {
		return drop.BadHeaderChecksum
	}
	ff := binary.BigEndian.Uint16(ip[ipv4FlagsFrag:])
	p.TTL = ip.TTL()
	p.Proto = ip.Protocol()
	p.MF = ff&ipv4FlagMF != 0
	p.DF = ff&ipv4FlagDF != 0
	p.FragOff = (ff & ipv4FragOffMask) * 8
	p.IPID = ip.ID()
	p.TotalLen = uint16(tl)
	p.Src = ip.Src()
	p.Dst = ip.Dst()
	p.L4Off = p.L3Off + hl
	p.End = p.L3Off + tl

	switch p.Proto {
	case ProtocolTCP, ProtocolUDP, ProtocolICMP:
	default:
		return drop.UnsupportedProtocol
	}
	if p.FragOff != 0 {
		return drop.NonFirstFragment
	}
	l4 := ip[hl:]
	switch p.Proto {
	case ProtocolTCP:
		return parseTCP(TCP(l4), p)
	case ProtocolUDP:
		return parseUDP(UDP(l4), p)
	default:
		return parseICMP(ICMPv4(l4), p)
	}
}

func parseTCP(t TCP, p *Parsed) drop.Reason {
	// A first fragment must hold the whole TCP header too: RFC 1858
	// (tiny fragments) and RFC 3128 recommend dropping those that do not.
	if len(t) < TCPMinHeaderLen {
		return drop.BadL4Header
	}
	if off := t.DataOffset(); off < TCPMinHeaderLen || off > len(t) {
		return drop.BadL4Header
	}
	p.TCPFlags = t.Flags()
	return p.takePorts(t, L4TCP)
}

func parseUDP(u UDP, p *Parsed) drop.Reason {
	if len(u) < UDPHeaderLen {
		return drop.BadL4Header
	}
	n := int(u.Length())
	if n < UDPHeaderLen {
		return drop.BadL4Header
	}
	// The length may be shorter than the IP payload (the rest is ignored,
	// as hosts do), never longer. In a first fragment it is the length of
	// the whole datagram, which only reassembly could check.
	if !p.MF && n > len(u) {
		return drop.BadL4Header
	}
	return p.takePorts(u, L4UDP)
}

func parseICMP(m ICMPv4, p *Parsed) drop.Reason {
	if len(m) < ICMPv4HeaderLen {
		return drop.BadL4Header
	}
	p.ICMPType = m.Type()
	p.ICMPCode = m.Code()
	// The checksum covers the whole message, which a first fragment does
	// not hold.
	if !p.MF && !m.IsChecksumValid() {
		return drop.BadICMPChecksum
	}
	switch t := m.Type(); {
	case ICMPv4IsQuery(t):
		if (t == ICMPv4Timestamp || t == ICMPv4TimestampReply) && len(m) < ICMPv4TimestampLen {
			return drop.BadL4Header
		}
		id := m.Ident()
		p.SrcPort = id
		p.DstPort = id
		p.L4 = L4ICMPQuery
		return drop.None
	case ICMPv4IsError(t):
		if p.MF {
			// Errors are at most 576 bytes (RFC 1812 4.3.2.3) and never
			// need fragmenting; one that is cannot have its checksum
			// verified, which RFC 5508 REQ-3 asks for.
			return drop.UnsupportedICMP
		}
		return parseEmbedded(m, p)
	default:
		return drop.UnsupportedICMP
	}
}

// parseEmbedded validates the packet quoted by an ICMP error: an IPv4
// header, options included, and at least the first 8 bytes of its transport
// header (RFC 792: "Internet Header + 64 bits of Original Data Datagram").
func parseEmbedded(m ICMPv4, p *Parsed) drop.Reason {
	in := m.Payload()
	if len(in) < IPv4MinHeaderLen || in[ipv4VersIHL]>>4 != 4 {
		return drop.BadEmbeddedPacket
	}
	ip := IPv4(in)
	hl := ip.HeaderLen()
	// RFC 5508 REQ-3b: traverse past the embedded options.
	if hl < IPv4MinHeaderLen || hl+8 > len(in) {
		return drop.BadEmbeddedPacket
	}
	// The embedded packet is usually truncated, so its total length cannot
	// be checked against what follows; but the packet it describes carried
	// a header and at least 8 transport bytes.
	if int(ip.TotalLen()) < hl+8 {
		return drop.BadEmbeddedPacket
	}
	// RFC 5508 REQ-3a: "If the IP checksum of the embedded packet fails to
	// validate, the NAT SHOULD silently drop the Error packet".
	if !ip.IsChecksumValid() {
		return drop.BadEmbeddedPacket
	}
	if binary.BigEndian.Uint16(ip[ipv4FlagsFrag:])&ipv4FragOffMask != 0 {
		return drop.UnsupportedICMP
	}
	l4 := in[hl:]
	var sp, dp uint16
	switch proto := ip.Protocol(); proto {
	case ProtocolTCP, ProtocolUDP:
		// Both have the ports in their first 4 bytes.
		sp = binary.BigEndian.Uint16(l4[0:])
		dp = binary.BigEndian.Uint16(l4[2:])
	case ProtocolICMP:
		if !ICMPv4IsQuery(l4[icmpType]) {
			return drop.BadEmbeddedPacket
		}
		sp = ICMPv4(l4).Ident()
		dp = sp
	default:
		return drop.UnsupportedProtocol
	}
	p.InnerProto = ip.Protocol()
	p.InnerSrc = ip.Src()
	p.InnerDst = ip.Dst()
	p.InnerSrcPort = sp
	p.InnerDstPort = dp
	p.InnerL3Off = p.L4Off + ICMPv4HeaderLen
	p.InnerL4Off = p.InnerL3Off + hl
	p.L4 = L4ICMPError
	return drop.None
}

// DecTTL is the forwarding step Parse leaves to the caller: it returns
// drop.TTLExpired, leaving the frame untouched, when the TTL is 1 or 0
// (RFC 1812 section 5.3.1: a router must not forward a packet whose TTL
// would reach zero, and should answer with ICMP Time Exceeded, which the
// caller generates); otherwise it decrements the TTL, fixes the header
// checksum incrementally and returns drop.None.
//
// Call it only for packets that will be forwarded, and before creating any
// NAT state for them. Valid after Parse filled the L3 fields.
func (p *Parsed) DecTTL(frame []byte) drop.Reason {
	if p.TTL <= 1 {
		return drop.TTLExpired
	}
	p.IPv4(frame).DecTTLFix()
	p.TTL--
	return drop.None
}

// Ethernet returns the Ethernet header of frame.
func (p *Parsed) Ethernet(frame []byte) Ethernet {
	return Ethernet(frame[:EthernetHeaderLen:EthernetHeaderLen])
}

// VLAN returns the VLAN tag of frame; valid when HasVLAN.
func (p *Parsed) VLAN(frame []byte) VLAN {
	return VLAN(frame[EthernetHeaderLen : EthernetHeaderLen+VLANTagLen : EthernetHeaderLen+VLANTagLen])
}

// IPv4 returns the IPv4 packet of frame, header to total length; valid when
// the L3 fields are.
func (p *Parsed) IPv4(frame []byte) IPv4 { return IPv4(frame[p.L3Off:p.End:p.End]) }

// TCP returns the TCP segment of frame; valid when L4 is L4TCP.
func (p *Parsed) TCP(frame []byte) TCP { return TCP(frame[p.L4Off:p.End:p.End]) }

// UDP returns the UDP datagram of frame; valid when L4 is L4UDP.
func (p *Parsed) UDP(frame []byte) UDP { return UDP(frame[p.L4Off:p.End:p.End]) }

// ICMPv4 returns the ICMP message of frame; valid when L4 is L4ICMPQuery or
// L4ICMPError.
func (p *Parsed) ICMPv4(frame []byte) ICMPv4 { return ICMPv4(frame[p.L4Off:p.End:p.End]) }

// InnerIPv4 returns the embedded IPv4 header of an ICMP error, options
// included and nothing after (its payload is truncated, so Payload must not
// be used on it); valid when L4 is L4ICMPError.
func (p *Parsed) InnerIPv4(frame []byte) IPv4 {
	return IPv4(frame[p.InnerL3Off:p.InnerL4Off:p.InnerL4Off])
}

// InnerL4 returns the embedded transport bytes of an ICMP error, at least
// 8; valid when L4 is L4ICMPError.
func (p *Parsed) InnerL4(frame []byte) []byte { return frame[p.InnerL4Off:p.End:p.End] }
