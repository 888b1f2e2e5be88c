package header

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
)

// UDP header layout (RFC 768).
const (
	udpSrcPort  = 0
	udpDstPort  = 2
	udpLength   = 4
	udpChecksum = 6

	// UDPHeaderLen is the length of the UDP header.
	UDPHeaderLen = 8
)

// UDP is a view of a UDP datagram. Views from Parsed.UDP span the IP
// payload up to the IPv4 total length; Length (the UDP length field) may be
// shorter, and Parse has checked it is not longer unless the packet is a
// first fragment.
//
// Every rewrite that fixes a UDP checksum (Parsed.SetSrc, SetDst,
// SetInnerSrc, SetInnerDst) obeys RFC 768: a checksum field of zero means the
// sender computed none, and it stays zero; a computed zero is stored as
// 0xFFFF.
type UDP []byte

// SrcPort returns the source port.
func (b UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[udpSrcPort:]) }

// DstPort returns the destination port.
func (b UDP) DstPort() uint16 { return binary.BigEndian.Uint16(b[udpDstPort:]) }

// Length returns the length field: header plus data in bytes.
func (b UDP) Length() uint16 { return binary.BigEndian.Uint16(b[udpLength:]) }

// Checksum returns the checksum field.
func (b UDP) Checksum() uint16 { return binary.BigEndian.Uint16(b[udpChecksum:]) }

// HasChecksum reports whether the sender computed a checksum (RFC 768: "An
// all zero transmitted checksum value means that the transmitter generated
// no checksum").
func (b UDP) HasChecksum() bool { return b.Checksum() != 0 }

// Payload returns the datagram data, up to the length field.
func (b UDP) Payload() []byte { return b[UDPHeaderLen:b.Length()] }

// SetSrcPort sets the source port without fixing the checksum.
func (b UDP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(b[udpSrcPort:], p) }

// SetDstPort sets the destination port without fixing the checksum.
func (b UDP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(b[udpDstPort:], p) }

// SetLength sets the length field without fixing the checksum.
func (b UDP) SetLength(v uint16) { binary.BigEndian.PutUint16(b[udpLength:], v) }

// SetChecksum sets the checksum field. Store only values from
// CalculateChecksum (or 0 for "no checksum").
func (b UDP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[udpChecksum:], v) }

// CalculateChecksum returns the checksum field value computed from scratch
// over the pseudo-header (src, dst, protocol 17, Length) and b[:Length()]
// with the checksum field taken as zero, in its transmitted form (never 0,
// RFC 768). The datagram must be complete (not a first fragment).
func (b UDP) CalculateChecksum(src, dst [4]byte) uint16 {
	n := b.Length()
	s := checksum.PseudoHeaderSum(src, dst, ProtocolUDP, n)
	return checksum.FinishUDP(sumAround(b[:n], udpChecksum, s))
}

// IsChecksumValid reports whether the checksum of the complete datagram
// verifies with the given addresses. A datagram without a checksum has
// nothing to verify and reports true; use HasChecksum to tell the cases
// apart.
func (b UDP) IsChecksumValid(src, dst [4]byte) bool {
	if !b.HasChecksum() {
		return true
	}
	n := b.Length()
	s := checksum.PseudoHeaderSum(src, dst, ProtocolUDP, n)
	return checksum.Checksum(b[:n], s) == 0xFFFF
}
