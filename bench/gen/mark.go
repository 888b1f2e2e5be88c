package gen

import "encoding/binary"

// Mark is the measurement header at the start of every generated frame's
// L4 payload:
//
//	offset  size  field
//	0       2     stream id
//	2       4     sequence number within the stream (wraps; the receiver
//	              extends it to 64 bits)
//	6       8     TX timestamp, CLOCK_MONOTONIC ns (one reading per batch)
//	14      4     flow index
//
// 18 bytes is exactly the UDP payload of a 64-byte frame (60 bytes before
// the FCS: 14 Ethernet + 20 IPv4 + 8 UDP + 18), which is why there is no
// magic number: the receiver recognises generator frames by their
// transport and the stream and flow fields being in range. Every field
// sits at an even offset from the L4 header (8 for UDP, 20 for TCP), so
// the checksum code adds them as aligned 16-bit words.
type Mark struct {
	Stream uint16
	Seq    uint32
	TxNs   uint64
	Flow   uint32
}

// MarkLen is the encoded size of a Mark.
const MarkLen = 18

const (
	markStream = 0
	markSeq    = 2
	markTs     = 6
	markFlow   = 14
)

// Put writes m into b[:MarkLen].
func (m *Mark) Put(b []byte) {
	_ = b[MarkLen-1]
	binary.BigEndian.PutUint16(b[markStream:], m.Stream)
	binary.BigEndian.PutUint32(b[markSeq:], m.Seq)
	binary.BigEndian.PutUint64(b[markTs:], m.TxNs)
	binary.BigEndian.PutUint32(b[markFlow:], m.Flow)
}

// ReadMark decodes b[:MarkLen]; b must be at least MarkLen long.
func ReadMark(b []byte) Mark {
	_ = b[MarkLen-1]
	return Mark{
		Stream: binary.BigEndian.Uint16(b[markStream:]),
		Seq:    binary.BigEndian.Uint32(b[markSeq:]),
		TxNs:   binary.BigEndian.Uint64(b[markTs:]),
		Flow:   binary.BigEndian.Uint32(b[markFlow:]),
	}
}
