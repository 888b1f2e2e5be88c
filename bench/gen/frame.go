package gen

import (
	"encoding/binary"
	"fmt"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/header"
)

// Offsets of an untagged Ethernet/IPv4 frame without IP options, the only
// kind the generator builds.
const (
	ethLen  = header.EthernetHeaderLen
	ipOff   = ethLen
	l4Off   = ethLen + header.IPv4MinHeaderLen
	udpMark = l4Off + header.UDPHeaderLen
	tcpMark = l4Off + header.TCPMinHeaderLen
)

// MinFrameLen returns the smallest frame (with FCS) that carries a Mark for
// proto: 64 for UDP; 76 for TCP, whose 20-byte header leaves only 6 payload
// bytes in a 64-byte frame. TCP frames asked for smaller are built at this
// size (Builder.FrameLen reports it).
func MinFrameLen(proto uint8) int {
	if proto == header.ProtocolTCP {
		return tcpMark + MarkLen + fcsLen
	}
	return MinFrame
}

// TCP sequence numbers, computed per flow so the generator and the
// reflector keep a consistent, handshake-shaped conversation without
// per-flow state:
//
//   - round 0 is a SYN with seq ClientISN(flow), carrying the Mark as data
//     (RFC 9293 allows data on a SYN; TCP Fast Open sends it);
//   - the reflector answers SYN-ACK with seq ServerISN(that seq) and ack
//     seq + 1 + data length (it acknowledges the SYN and its data);
//   - round r > 0 is ACK|PSH with seq ClientISN + 1 + (bytes sent in rounds
//     0..r-1) and ack ServerISN + 1: it completes the handshake and then
//     carries data (in Bidir mode a TX worker starts round 1 only once its
//     flows' SYN-ACKs are back, as a client would; one-way, a stateful DUT
//     sees half-open flows carrying data, which it may well refuse to
//     translate); the reflector echoes each data segment with seq = our
//     ack (always ServerISN+1: to a NAT's window tracking the echoes look
//     like retransmissions, always inside the window we advertise) and
//     ack = seq + data length.
const serverISNKey = 0x6A09E667

// ClientISN is the generator's initial sequence number for flow: a fixed
// integer hash (the murmur3 finalizer), so flows start spread over the
// sequence space like real stacks' ISNs.
func ClientISN(flow uint32) uint32 {
	x := flow*0x9E3779B1 + 0x7F4A7C15
	x ^= x >> 16
	x *= 0x85EBCA6B
	x ^= x >> 13
	x *= 0xC2B2AE35
	x ^= x >> 16
	return x
}

// ServerISN is the reflector's initial sequence number for a SYN whose
// sequence number is clientISN.
func ServerISN(clientISN uint32) uint32 { return clientISN ^ serverISNKey }

// FrameConfig describes the frames a Builder makes.
type FrameConfig struct {
	SrcMAC, DstMAC [6]byte
	// Proto is header.ProtocolUDP or header.ProtocolTCP.
	Proto uint8
	// TTL of the generated packets (0 means 64).
	TTL   uint8
	Sizes Sizes
}

// template is one frame size's prebuilt frame and the partial checksums
// of its constant parts.
type template struct {
	data   []byte
	ipSum  uint64 // sum of the IPv4 header with src, dst, ID and checksum zero
	l4Sum  uint64 // pseudo-header (protocol, length) + L4 header and payload with variable fields zero
	payLen uint32 // L4 payload bytes (Mark included)
}

// Builder writes generator frames into caller-provided buffers. It is
// immutable after NewBuilder and safe for concurrent use; each TX worker
// normally has its own anyway.
type Builder struct {
	proto   uint8
	markOff int
	sizes   Sizes
	tmpl    []template
	slotT   []uint8 // schedule slot -> template index
	// TCP: payload bytes per schedule slot, prefix sums over two cycles,
	// and the payload bytes of one cycle.
	slotPay []uint32
	pre     []uint32
	cyc     uint32
}

// NewBuilder prepares the templates of every size in cfg.Sizes.
func NewBuilder(cfg FrameConfig) (*Builder, error) {
	if cfg.Proto != header.ProtocolUDP && cfg.Proto != header.ProtocolTCP {
		return nil, fmt.Errorf("gen: protocol %d: want UDP (17) or TCP (6)", cfg.Proto)
	}
	if len(cfg.Sizes.slots) == 0 {
		return nil, fmt.Errorf("gen: no frame size")
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = 64
	}
	b := &Builder{proto: cfg.Proto, sizes: cfg.Sizes, markOff: udpMark}
	if cfg.Proto == header.ProtocolTCP {
		b.markOff = tcpMark
	}
	byLen := map[int]uint8{}
	for _, size := range cfg.Sizes.slots {
		if size < MinFrame || size > MaxFrame {
			return nil, fmt.Errorf("gen: frame size %d not in [%d, %d]", size, MinFrame, MaxFrame)
		}
		n := max(size, MinFrameLen(cfg.Proto)) - fcsLen
		ti, ok := byLen[n]
		if !ok {
			ti = uint8(len(b.tmpl))
			byLen[n] = ti
			b.tmpl = append(b.tmpl, b.newTemplate(n, ttl, cfg.SrcMAC, cfg.DstMAC))
		}
		b.slotT = append(b.slotT, ti)
		b.slotPay = append(b.slotPay, b.tmpl[ti].payLen)
	}
	k := len(b.slotPay)
	b.pre = make([]uint32, 2*k+1)
	for i := range 2 * k {
		b.pre[i+1] = b.pre[i] + b.slotPay[i%k]
	}
	b.cyc = b.pre[k]
	return b, nil
}

// newTemplate builds the n-byte frame (without FCS) with every
// per-frame field zero, and sums its constant parts.
func (b *Builder) newTemplate(n int, ttl uint8, src, dst [6]byte) template {
	f := make([]byte, n)
	eth := header.Ethernet(f)
	eth.SetDst(dst)
	eth.SetSrc(src)
	eth.SetType(header.EtherTypeIPv4)
	ip := header.IPv4(f[ipOff:])
	// Src, Dst and ID zero here; DF set: the generator never wants its
	// frames fragmented, and RFC 6864 lets an atomic datagram carry any ID.
	ip.Encode(&header.IPv4Fields{TotalLen: uint16(n - ethLen), DF: true, TTL: ttl, Protocol: b.proto})
	ip.SetChecksum(0)
	l4len := n - l4Off
	if b.proto == header.ProtocolUDP {
		header.UDP(f[l4Off:]).SetLength(uint16(l4len))
	} else {
		t := f[l4Off:]
		t[12] = header.TCPMinHeaderLen / 4 << 4   // data offset 5, no options
		binary.BigEndian.PutUint16(t[14:], 65535) // window
	}
	// Filler after the Mark: a byte counter, so a frame is not all zeros
	// and a truncated or shifted payload shows in the checksum.
	for i := b.markOff + MarkLen; i < n; i++ {
		f[i] = byte(i - b.markOff)
	}
	ipSum := checksum.Checksum(f[ipOff:l4Off], 0)
	l4Sum := checksum.Checksum(f[l4Off:], checksum.PseudoHeaderSum([4]byte{}, [4]byte{}, b.proto, uint16(l4len)))
	return template{data: f, ipSum: uint64(ipSum), l4Sum: uint64(l4Sum), payLen: uint32(n - b.markOff)}
}

// MarkOffset is where the Mark starts in every frame of this builder.
func (b *Builder) MarkOffset() int { return b.markOff }

// FrameLen returns the length (without FCS) of the frame of schedule slot s.
func (b *Builder) FrameLen(s int) int { return len(b.tmpl[b.slotT[s]].data) }

// MaxFrameLen is the longest frame (without FCS) the builder makes.
func (b *Builder) MaxFrameLen() int {
	m := 0
	for i := range b.tmpl {
		m = max(m, len(b.tmpl[i].data))
	}
	return m
}

// Sizes is the builder's size schedule.
func (b *Builder) Sizes() Sizes { return b.sizes }

// bytesBefore is the TCP payload a flow has sent in rounds 0..r-1: whole
// cycles of the schedule plus a partial one starting at the flow's slot.
func (b *Builder) bytesBefore(flow, r uint32) uint32 {
	k := uint32(len(b.slotPay))
	if k == 1 {
		return r * b.cyc
	}
	f := flow % k
	return (r/k)*b.cyc + b.pre[f+r%k] - b.pre[f]
}

// fold reduces a 64-bit accumulation of 32- and 16-bit big-endian words to
// a 16-bit one's-complement sum. Adding a 32-bit word counts its two
// 16-bit halves, because 2^16 is congruent to 1 modulo 2^16-1 (RFC 1071
// section 2(C), "parallel summation"); the end-around carries are the
// folds.
func fold(s uint64) uint16 {
	s = s>>32 + s&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

// Build writes the frame of flow m.Flow, round round, with tuple t and
// Mark m into dst (whose capacity must hold MaxFrameLen bytes) and returns
// its length. It copies the size's template, writes the variable fields
// and completes both checksums from the template's partial sums: a copy
// and a dozen adds, no allocation.
func (b *Builder) Build(dst []byte, t *Tuple, round uint32, m *Mark) int {
	tp := &b.tmpl[b.slotT[b.sizes.Slot(m.Flow, round)]]
	n := len(tp.data)
	f := dst[:n]
	copy(f, tp.data)

	src, dstA := be32(t.Src), be32(t.Dst)
	id := uint16(m.Seq)
	binary.BigEndian.PutUint16(f[ipOff+4:], id)
	binary.BigEndian.PutUint32(f[ipOff+12:], src)
	binary.BigEndian.PutUint32(f[ipOff+16:], dstA)
	// RFC 791: the header checksum is the complement of the one's
	// complement sum of the header's 16-bit words.
	ipSum := tp.ipSum + uint64(src) + uint64(dstA) + uint64(id)
	binary.BigEndian.PutUint16(f[ipOff+10:], checksum.Finish(fold(ipSum)))

	ports := uint32(t.SrcPort)<<16 | uint32(t.DstPort)
	binary.BigEndian.PutUint32(f[l4Off:], ports)
	// RFC 768 / RFC 9293 3.1: the L4 checksum covers the pseudo-header
	// (both addresses), the header and the payload.
	l4 := tp.l4Sum + uint64(src) + uint64(dstA) + uint64(ports)
	mo := b.markOff
	m.Put(f[mo:])
	l4 += uint64(m.Stream) + uint64(m.Seq) + m.TxNs>>32 + m.TxNs&0xffffffff + uint64(m.Flow)
	if b.proto == header.ProtocolUDP {
		binary.BigEndian.PutUint16(f[l4Off+6:], checksum.FinishUDP(fold(l4)))
		return n
	}
	isn := ClientISN(m.Flow)
	var seq, ack uint32
	var flags uint8
	if round == 0 {
		seq, flags = isn, header.TCPFlagSYN
	} else {
		seq = isn + 1 + b.bytesBefore(m.Flow, round)
		ack = ServerISN(isn) + 1
		flags = header.TCPFlagACK | header.TCPFlagPSH
	}
	binary.BigEndian.PutUint32(f[l4Off+4:], seq)
	binary.BigEndian.PutUint32(f[l4Off+8:], ack)
	f[l4Off+13] = flags
	l4 += uint64(seq) + uint64(ack) + uint64(flags)
	binary.BigEndian.PutUint16(f[l4Off+16:], checksum.Finish(fold(l4)))
	return n
}

// Restamp replaces the TX timestamp of a frame Build made (one that waited
// for room in the TX ring) and fixes its L4 checksum incrementally (RFC
// 1624 eqn. 3, two 32-bit halves).
func (b *Builder) Restamp(f []byte, ts uint64) {
	at := b.markOff + markTs
	old := binary.BigEndian.Uint64(f[at:])
	binary.BigEndian.PutUint64(f[at:], ts)
	var o, n [8]byte
	binary.BigEndian.PutUint64(o[:], old)
	binary.BigEndian.PutUint64(n[:], ts)
	if b.proto == header.ProtocolUDP {
		u := header.UDP(f[l4Off:])
		c := checksum.UpdateUDP32(u.Checksum(), [4]byte(o[:4]), [4]byte(n[:4]))
		u.SetChecksum(checksum.UpdateUDP32(c, [4]byte(o[4:]), [4]byte(n[4:])))
		return
	}
	t := header.TCP(f[l4Off:])
	c := checksum.Update32(t.Checksum(), [4]byte(o[:4]), [4]byte(n[:4]))
	t.SetChecksum(checksum.Update32(c, [4]byte(o[4:]), [4]byte(n[4:])))
}
