package gen

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
)

// Classify parses a received frame and returns the Mark it carries. ok is
// false for anything that is not an untagged IPv4 UDP or TCP frame with at
// least a Mark of payload (ARP, ICMP, pure TCP ACKs, other traffic); p is
// filled either way as far as header.Parse got.
func Classify(f []byte, p *header.Parsed) (m Mark, ok bool) {
	if header.Parse(f, p) != drop.None || p.HasVLAN {
		return m, false
	}
	off := payloadOff(f, p)
	if off < 0 || p.End-off < MarkLen {
		return m, false
	}
	return ReadMark(f[off:]), true
}

// payloadOff is the offset of the L4 payload, or -1 if p is not UDP/TCP.
func payloadOff(f []byte, p *header.Parsed) int {
	switch p.L4 {
	case header.L4UDP:
		return p.L4Off + header.UDPHeaderLen
	case header.L4TCP:
		return p.L4Off + header.TCP(f[p.L4Off:p.End]).DataOffset()
	}
	return -1
}

// Reply says what Reflect did with a frame.
type Reply uint8

const (
	// NoReply: the frame gets no answer (the caller frees it).
	NoReply Reply = iota
	// Echo: a UDP datagram or TCP data segment turned around.
	Echo
	// SynAck: a SYN answered with SYN-ACK.
	SynAck
	// HandshakeDone: a pure ACK with no data, the third packet of a
	// handshake; no answer.
	HandshakeDone
)

// replyTTL is the TTL of reflected packets: a fresh packet's, as a host
// answering would send, whatever hops the request took.
const replyTTL = 64

// Reflect turns a received frame that Classify accepted (or a TCP frame
// with no payload) into the far end's answer, in place: MACs, addresses
// and ports swapped, TTL reset, and for TCP the flags and sequence numbers
// of the conversation described at ServerISN. Swapping the addresses or
// the ports leaves every checksum valid (the one's-complement sum is
// commutative and the pseudo-header holds both addresses); the TTL and the
// TCP fields are fixed incrementally (RFC 1624 eqn. 3). The frame keeps
// its length. It allocates nothing.
func Reflect(f []byte, p *header.Parsed) Reply {
	if p.L4 != header.L4UDP && p.L4 != header.L4TCP {
		return NoReply
	}
	var reply Reply = Echo
	if p.L4 == header.L4TCP {
		t := header.TCP(f[p.L4Off:p.End])
		data := uint32(len(t) - t.DataOffset())
		seq, ack := t.Seq(), t.Ack()
		var nseq, nack uint32
		var nflags uint8
		switch fl := t.Flags(); {
		case fl&(header.TCPFlagRST|header.TCPFlagFIN) != 0:
			return NoReply
		case fl&header.TCPFlagSYN != 0 && fl&header.TCPFlagACK == 0:
			// RFC 9293 3.5: the SYN and its data are acknowledged.
			nseq, nack, nflags = ServerISN(seq), seq+1+data, header.TCPFlagSYN|header.TCPFlagACK
			reply = SynAck
		case fl&header.TCPFlagSYN != 0:
			return NoReply // a SYN-ACK sent to the reflector: not ours
		case data == 0:
			if fl == header.TCPFlagACK {
				return HandshakeDone
			}
			return NoReply
		default:
			nseq, nack, nflags = ack, seq+data, header.TCPFlagACK|header.TCPFlagPSH
		}
		setTCP(t, nseq, nack, nflags)
	}
	swapFrame(f, p)
	return reply
}

// setTCP rewrites seq, ack and flags, fixing the checksum incrementally.
func setTCP(t header.TCP, seq, ack uint32, flags uint8) {
	c := t.Checksum()
	var o, n [4]byte
	binary.BigEndian.PutUint32(o[:], t.Seq())
	binary.BigEndian.PutUint32(n[:], seq)
	c = checksum.Update32(c, o, n)
	binary.BigEndian.PutUint32(o[:], t.Ack())
	binary.BigEndian.PutUint32(n[:], ack)
	c = checksum.Update32(c, o, n)
	oldW := binary.BigEndian.Uint16(t[12:])
	newW := oldW&0xff00 | uint16(flags)
	c = checksum.Update16(c, oldW, newW)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[13] = flags
	t.SetChecksum(c)
}

// swapFrame swaps MACs, IPv4 addresses and L4 ports and resets the TTL.
func swapFrame(f []byte, p *header.Parsed) {
	var mac [6]byte
	copy(mac[:], f[0:6])
	copy(f[0:6], f[6:12])
	copy(f[6:12], mac[:])
	ip := header.IPv4(f[p.L3Off:p.End])
	src, dst := ip.Src(), ip.Dst()
	ip.SetSrc(dst)
	ip.SetDst(src)
	old := binary.BigEndian.Uint16(ip[8:])
	nw := uint16(replyTTL)<<8 | old&0xff
	ip.SetChecksum(checksum.Update16(ip.Checksum(), old, nw))
	ip.SetTTL(replyTTL)
	l4 := f[p.L4Off:]
	sp, dp := binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	binary.BigEndian.PutUint16(l4[0:], dp)
	binary.BigEndian.PutUint16(l4[2:], sp)
}

// handshakeLen is the frame length of a pure ACK: 54 bytes of headers
// padded to Ethernet's 60-byte minimum.
const handshakeLen = 60

// HandshakeAck turns a received SYN-ACK (TCP, SYN and ACK set) into the
// third packet of the handshake, in place: swapped like Reflect, seq = the
// SYN-ACK's ack, ack = its seq + 1, flags ACK, no data. The frame is cut
// to 60 bytes (the IPv4 total length says 40; the rest is Ethernet
// padding) and both checksums are recomputed. It returns the new frame
// length, or 0 if the frame is not a SYN-ACK or too short.
func HandshakeAck(f []byte, p *header.Parsed) int {
	if p.L4 != header.L4TCP || p.L3Off != ethLen || p.L4Off != l4Off || len(f) < handshakeLen {
		return 0
	}
	t := header.TCP(f[p.L4Off:p.End])
	if t.Flags()&(header.TCPFlagSYN|header.TCPFlagACK) != header.TCPFlagSYN|header.TCPFlagACK {
		return 0
	}
	seq, ack := t.Ack(), t.Seq()+1
	swapFrame(f, p)
	ip := header.IPv4(f[ipOff:])
	ip.SetTotalLen(header.IPv4MinHeaderLen + header.TCPMinHeaderLen)
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())
	t = header.TCP(f[l4Off : l4Off+header.TCPMinHeaderLen])
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12] = header.TCPMinHeaderLen / 4 << 4
	t[13] = header.TCPFlagACK
	t.SetChecksum(0)
	t.SetChecksum(t.CalculateChecksum(ip.Src(), ip.Dst()))
	clear(f[tcpMark:handshakeLen])
	return handshakeLen
}
