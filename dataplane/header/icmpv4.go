package header

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
)

// ICMPv4 message layout (RFC 792): type, code, checksum, then a 4-byte field
// whose meaning depends on the type (identifier and sequence number for
// queries; unused, pointer or next-hop MTU for errors), then the body.
const (
	icmpType     = 0
	icmpCode     = 1
	icmpChecksum = 2
	icmpIdent    = 4
	icmpSeq      = 6
	icmpPointer  = 4
	icmpMTU      = 6

	// ICMPv4HeaderLen is the length of the fixed part every ICMP message
	// has; an error's embedded packet starts right after it.
	ICMPv4HeaderLen = 8
	// ICMPv4TimestampLen is the length of a timestamp (reply) message:
	// header plus three 32-bit timestamps.
	ICMPv4TimestampLen = 20
)

// ICMPv4 types the NAT deals with.
const (
	ICMPv4EchoReply      = 0
	ICMPv4DstUnreachable = 3
	ICMPv4SourceQuench   = 4
	ICMPv4Redirect       = 5
	ICMPv4Echo           = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
	ICMPv4Timestamp      = 13
	ICMPv4TimestampReply = 14
)

// ICMPv4 codes.
const (
	// Destination Unreachable (type 3).
	ICMPv4NetUnreachable   = 0
	ICMPv4HostUnreachable  = 1
	ICMPv4ProtoUnreachable = 2
	ICMPv4PortUnreachable  = 3
	ICMPv4FragNeeded       = 4 // "fragmentation needed and DF set"; carries the next-hop MTU (RFC 1191)
	ICMPv4AdminProhibited  = 13

	// Time Exceeded (type 11).
	ICMPv4TTLExceeded        = 0
	ICMPv4ReassemblyExceeded = 1
)

// ICMPv4IsQuery reports whether an ICMP type is a query the NAT translates
// by its identifier (RFC 5508 section 3.1): Echo and Timestamp, and their
// replies. Information Request/Reply (RFC 6918: obsolete) and Address Mask
// (deprecated) are not included.
func ICMPv4IsQuery(t uint8) bool {
	switch t {
	case ICMPv4EchoReply, ICMPv4Echo, ICMPv4Timestamp, ICMPv4TimestampReply:
		return true
	}
	return false
}

// ICMPv4IsError reports whether an ICMP type is an error message the NAT
// translates by its embedded packet (RFC 5508 section 4): Destination
// Unreachable, Time Exceeded and Parameter Problem. Source Quench is
// deprecated (RFC 6633) and Redirect is never forwarded across a NAT.
func ICMPv4IsError(t uint8) bool {
	switch t {
	case ICMPv4DstUnreachable, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		return true
	}
	return false
}

// ICMPv4 is a view of an ICMPv4 message, from its type byte to the end of
// the IPv4 payload, which is what the checksum covers.
type ICMPv4 []byte

// Type returns the message type.
func (b ICMPv4) Type() uint8 { return b[icmpType] }

// Code returns the message code.
func (b ICMPv4) Code() uint8 { return b[icmpCode] }

// Checksum returns the checksum field.
func (b ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[icmpChecksum:]) }

// Ident returns the identifier of a query message.
func (b ICMPv4) Ident() uint16 { return binary.BigEndian.Uint16(b[icmpIdent:]) }

// Seq returns the sequence number of a query message.
func (b ICMPv4) Seq() uint16 { return binary.BigEndian.Uint16(b[icmpSeq:]) }

// MTU returns the next-hop MTU of a "fragmentation needed" message (RFC 1191
// section 4; zero from routers that predate it).
func (b ICMPv4) MTU() uint16 { return binary.BigEndian.Uint16(b[icmpMTU:]) }

// Pointer returns the octet pointer of a Parameter Problem message.
func (b ICMPv4) Pointer() uint8 { return b[icmpPointer] }

// Payload returns the message body after the 8-byte header: for an error,
// the embedded IPv4 header followed by (at least) the first 8 bytes of its
// transport header; for an echo, the echo data. Parsed.InnerL3Off and
// InnerL4Off locate the embedded headers within the frame.
func (b ICMPv4) Payload() []byte { return b[ICMPv4HeaderLen:] }

// SetType sets the type without fixing the checksum.
func (b ICMPv4) SetType(t uint8) { b[icmpType] = t }

// SetCode sets the code without fixing the checksum.
func (b ICMPv4) SetCode(c uint8) { b[icmpCode] = c }

// SetChecksum sets the checksum field.
func (b ICMPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[icmpChecksum:], v) }

// SetIdent sets the identifier without fixing the checksum.
func (b ICMPv4) SetIdent(v uint16) { binary.BigEndian.PutUint16(b[icmpIdent:], v) }

// SetSeq sets the sequence number without fixing the checksum.
func (b ICMPv4) SetSeq(v uint16) { binary.BigEndian.PutUint16(b[icmpSeq:], v) }

// SetMTU sets the next-hop MTU without fixing the checksum.
func (b ICMPv4) SetMTU(v uint16) { binary.BigEndian.PutUint16(b[icmpMTU:], v) }

// SetRest sets the 4 type-specific bytes after the checksum (identifier and
// sequence, pointer, MTU, or "unused", which must be zero) without fixing
// the checksum.
func (b ICMPv4) SetRest(v uint32) { binary.BigEndian.PutUint32(b[icmpIdent:], v) }

// SetIdentFix sets the identifier of a query and fixes the checksum. ICMP
// has no pseudo-header, so this is the only checksum change an ICMP query
// translation needs.
func (b ICMPv4) SetIdentFix(v uint16) {
	b.SetChecksum(checksum.Update16(b.Checksum(), b.Ident(), v))
	b.SetIdent(v)
}

// CalculateChecksum returns the checksum field value computed from scratch
// over the whole message with the checksum field taken as zero (RFC 792).
func (b ICMPv4) CalculateChecksum() uint16 {
	return checksum.Finish(sumAround(b, icmpChecksum, 0))
}

// IsChecksumValid reports whether the message checksum verifies.
func (b ICMPv4) IsChecksumValid() bool {
	return checksum.Checksum(b, 0) == 0xFFFF
}
