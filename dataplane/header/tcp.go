package header

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
)

// TCP header layout (RFC 9293 section 3.1).
const (
	tcpSrcPort  = 0
	tcpDstPort  = 2
	tcpSeq      = 4
	tcpAck      = 8
	tcpDataOff  = 12
	tcpFlags    = 13
	tcpWindow   = 14
	tcpChecksum = 16
	tcpUrgent   = 18

	// TCPMinHeaderLen is the header length without options (data offset 5).
	TCPMinHeaderLen = 20
)

// TCP flag bits, as in the 13th byte of the header.
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

// TCP is a view of a TCP segment: header, options and data. Views from
// Parsed.TCP span the whole segment up to the IPv4 total length, which is
// what the checksum covers (for a first fragment, only the part present).
type TCP []byte

// SrcPort returns the source port.
func (b TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[tcpSrcPort:]) }

// DstPort returns the destination port.
func (b TCP) DstPort() uint16 { return binary.BigEndian.Uint16(b[tcpDstPort:]) }

// Seq returns the sequence number.
func (b TCP) Seq() uint32 { return binary.BigEndian.Uint32(b[tcpSeq:]) }

// Ack returns the acknowledgment number.
func (b TCP) Ack() uint32 { return binary.BigEndian.Uint32(b[tcpAck:]) }

// DataOffset returns the header length in bytes (data offset * 4).
func (b TCP) DataOffset() int { return int(b[tcpDataOff]>>4) * 4 }

// Flags returns the flag byte (TCPFlag* bits).
func (b TCP) Flags() uint8 { return b[tcpFlags] }

// Window returns the window field.
func (b TCP) Window() uint16 { return binary.BigEndian.Uint16(b[tcpWindow:]) }

// Checksum returns the checksum field.
func (b TCP) Checksum() uint16 { return binary.BigEndian.Uint16(b[tcpChecksum:]) }

// UrgentPointer returns the urgent pointer.
func (b TCP) UrgentPointer() uint16 { return binary.BigEndian.Uint16(b[tcpUrgent:]) }

// Options returns the options area (possibly empty).
func (b TCP) Options() []byte { return b[TCPMinHeaderLen:b.DataOffset()] }

// Payload returns the segment data.
func (b TCP) Payload() []byte { return b[b.DataOffset():] }

// SetSrcPort sets the source port without fixing the checksum.
func (b TCP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(b[tcpSrcPort:], p) }

// SetDstPort sets the destination port without fixing the checksum.
func (b TCP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(b[tcpDstPort:], p) }

// SetChecksum sets the checksum field.
func (b TCP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[tcpChecksum:], v) }

// CalculateChecksum returns the checksum field value computed from scratch
// over the pseudo-header (src, dst, protocol 6, len(b)) and the whole of b
// with the checksum field taken as zero. b must be the complete segment.
func (b TCP) CalculateChecksum(src, dst [4]byte) uint16 {
	s := checksum.PseudoHeaderSum(src, dst, ProtocolTCP, uint16(len(b)))
	return checksum.Finish(sumAround(b, tcpChecksum, s))
}

// IsChecksumValid reports whether the checksum of the complete segment b
// verifies with the given addresses.
func (b TCP) IsChecksumValid(src, dst [4]byte) bool {
	s := checksum.PseudoHeaderSum(src, dst, ProtocolTCP, uint16(len(b)))
	return checksum.Checksum(b, s) == 0xFFFF
}
