package header

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
)

// IPv4 header layout (RFC 791 section 3.1).
const (
	ipv4VersIHL   = 0
	ipv4TOS       = 1
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Protocol  = 9
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16

	// IPv4MinHeaderLen is the header length without options (IHL 5).
	IPv4MinHeaderLen = 20
	// IPv4MaxHeaderLen is the header length with the most options (IHL 15).
	IPv4MaxHeaderLen = 60

	ipv4FlagDF      = 0x4000
	ipv4FlagMF      = 0x2000
	ipv4FragOffMask = 0x1FFF
)

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
const (
	ProtocolICMP = 1
	ProtocolTCP  = 6
	ProtocolUDP  = 17
)

// IPv4 is a view of an IPv4 packet: the header (options included) followed
// by the payload. Views handed out by Parsed.IPv4 end at the header's total
// length, so Payload never includes link-layer padding; Parsed.InnerIPv4
// returns a header-only view of an embedded packet, on which only header
// accessors may be used.
type IPv4 []byte

// Version returns the IP version field (4 for a packet Parse accepted).
func (b IPv4) Version() uint8 { return b[ipv4VersIHL] >> 4 }

// HeaderLen returns the header length in bytes (IHL * 4).
func (b IPv4) HeaderLen() int { return int(b[ipv4VersIHL]&0x0F) * 4 }

// TOS returns the type-of-service (DSCP and ECN) byte.
func (b IPv4) TOS() uint8 { return b[ipv4TOS] }

// TotalLen returns the total length field: header plus payload in bytes.
func (b IPv4) TotalLen() uint16 { return binary.BigEndian.Uint16(b[ipv4TotalLen:]) }

// ID returns the identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// DF reports whether the Don't Fragment flag is set.
func (b IPv4) DF() bool { return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4FlagDF != 0 }

// MF reports whether the More Fragments flag is set.
func (b IPv4) MF() bool { return binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4FlagMF != 0 }

// FragmentOffset returns the fragment offset in bytes (the field counts
// 8-byte units).
func (b IPv4) FragmentOffset() int {
	return int(binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&ipv4FragOffMask) * 8
}

// TTL returns the time-to-live field.
func (b IPv4) TTL() uint8 { return b[ipv4TTL] }

// Protocol returns the protocol field.
func (b IPv4) Protocol() uint8 { return b[ipv4Protocol] }

// Checksum returns the header checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// Src returns the source address.
func (b IPv4) Src() [4]byte { return [4]byte(b[ipv4Src : ipv4Src+4]) }

// Dst returns the destination address.
func (b IPv4) Dst() [4]byte { return [4]byte(b[ipv4Dst : ipv4Dst+4]) }

// Options returns the options area (possibly empty), between the fixed
// header and the payload.
func (b IPv4) Options() []byte { return b[IPv4MinHeaderLen:b.HeaderLen()] }

// Payload returns the bytes after the header up to the total length.
func (b IPv4) Payload() []byte { return b[b.HeaderLen():b.TotalLen()] }

// SetTOS sets the type-of-service byte without fixing the checksum.
func (b IPv4) SetTOS(v uint8) { b[ipv4TOS] = v }

// SetTotalLen sets the total length without fixing the checksum.
func (b IPv4) SetTotalLen(v uint16) { binary.BigEndian.PutUint16(b[ipv4TotalLen:], v) }

// SetID sets the identification field without fixing the checksum.
func (b IPv4) SetID(v uint16) { binary.BigEndian.PutUint16(b[ipv4ID:], v) }

// SetFlagsFragment sets the DF and MF flags and the fragment offset (in
// bytes, a multiple of 8) without fixing the checksum.
func (b IPv4) SetFlagsFragment(df, mf bool, offset int) {
	v := uint16(offset/8) & ipv4FragOffMask
	if df {
		v |= ipv4FlagDF
	}
	if mf {
		v |= ipv4FlagMF
	}
	binary.BigEndian.PutUint16(b[ipv4FlagsFrag:], v)
}

// SetTTL sets the TTL without fixing the checksum.
func (b IPv4) SetTTL(v uint8) { b[ipv4TTL] = v }

// SetProtocol sets the protocol without fixing the checksum.
func (b IPv4) SetProtocol(v uint8) { b[ipv4Protocol] = v }

// SetChecksum sets the header checksum field.
func (b IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[ipv4Checksum:], v) }

// SetSrc sets the source address without fixing any checksum.
func (b IPv4) SetSrc(a [4]byte) { copy(b[ipv4Src:ipv4Src+4], a[:]) }

// SetDst sets the destination address without fixing any checksum.
func (b IPv4) SetDst(a [4]byte) { copy(b[ipv4Dst:ipv4Dst+4], a[:]) }

// SetSrcFix sets the source address and fixes the header checksum. The
// transport checksum, which covers the address through the pseudo-header,
// is not touched: use Parsed.SetSrc for that.
func (b IPv4) SetSrcFix(a [4]byte) {
	b.SetChecksum(checksum.Update32(b.Checksum(), b.Src(), a))
	b.SetSrc(a)
}

// SetDstFix sets the destination address and fixes the header checksum. The
// transport checksum is not touched (see SetSrcFix).
func (b IPv4) SetDstFix(a [4]byte) {
	b.SetChecksum(checksum.Update32(b.Checksum(), b.Dst(), a))
	b.SetDst(a)
}

// SetIDFix sets the identification field and fixes the header checksum.
func (b IPv4) SetIDFix(v uint16) {
	b.SetChecksum(checksum.Update16(b.Checksum(), b.ID(), v))
	b.SetID(v)
}

// DecTTLFix decrements the TTL by one and fixes the header checksum. The
// caller must have checked that the TTL is above 1 (Parsed.DecTTL does).
func (b IPv4) DecTTLFix() {
	// TTL is the high byte of the 16-bit word it shares with the protocol
	// field, so the word drops by 0x0100. RFC 1141 computes this as "ADDING
	// 1 or 256 as appropriate to the checksum field"; we apply RFC 1624
	// Eqn. 3 to the whole word instead, which agrees with a recomputation
	// even when the result is 0x0000 (see package checksum).
	old := binary.BigEndian.Uint16(b[ipv4TTL:])
	b[ipv4TTL]--
	b.SetChecksum(checksum.Update16(b.Checksum(), old, old-0x0100))
}

// CalculateChecksum returns the header checksum field value computed from
// scratch over the header (options included), with the checksum field
// taken as zero (RFC 791 section 3.1).
func (b IPv4) CalculateChecksum() uint16 {
	return checksum.Finish(sumAround(b[:b.HeaderLen()], ipv4Checksum, 0))
}

// IsChecksumValid reports whether the header checksum verifies.
func (b IPv4) IsChecksumValid() bool {
	return checksum.Checksum(b[:b.HeaderLen()], 0) == 0xFFFF
}

// PseudoHeaderSum returns the sum of the TCP/UDP pseudo-header for this
// packet: addresses, protocol and the payload length (TotalLen minus the
// header length), as RFC 793 defines "TCP length". For UDP, RFC 768 uses the
// UDP length field instead; it differs only for a datagram shorter than its
// IP payload, which UDP.CalculateChecksum handles itself.
func (b IPv4) PseudoHeaderSum() uint16 {
	return checksum.PseudoHeaderSum(b.Src(), b.Dst(), b.Protocol(), b.TotalLen()-uint16(b.HeaderLen()))
}

// IPv4Fields describes an IPv4 header to Encode.
type IPv4Fields struct {
	TOS      uint8
	TotalLen uint16
	ID       uint16
	DF       bool
	TTL      uint8
	Protocol uint8
	Src, Dst [4]byte
}

// Encode writes a 20-byte IPv4 header without options from f into b and
// sets its checksum. It is for frames the appliance originates (ICMP
// errors), not for rewriting.
func (b IPv4) Encode(f *IPv4Fields) {
	b[ipv4VersIHL] = 4<<4 | IPv4MinHeaderLen/4
	b.SetTOS(f.TOS)
	b.SetTotalLen(f.TotalLen)
	b.SetID(f.ID)
	b.SetFlagsFragment(f.DF, false, 0)
	b.SetTTL(f.TTL)
	b.SetProtocol(f.Protocol)
	b.SetSrc(f.Src)
	b.SetDst(f.Dst)
	b.SetChecksum(0)
	b.SetChecksum(b.CalculateChecksum())
}
