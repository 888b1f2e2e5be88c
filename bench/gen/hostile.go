package gen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/afxdp"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/internal/nsenter"
)

// Hostile traffic: frames an attacker on the outside sends to a NAT, built
// once (with gopacket, off the send path) and replayed round-robin at line
// rate by SendFrames. The adversarial end-to-end suite (cmd/natd) uses it
// to prove that natd bounds what outsiders can make it hold, counts every
// frame it drops by reason, and keeps serving legitimate flows meanwhile.
//
// A Hostile and the frame sets it returns are used by one goroutine.

// Hostile builds attack frames from spoofed sources towards a NAT's public
// side.
type Hostile struct {
	// SrcMAC is the sending interface's address, DstMAC the NAT's.
	SrcMAC, DstMAC net.HardwareAddr
	// Sources are the spoofed source addresses (each frame draws one).
	Sources netip.Prefix
	// Ports is the inclusive range Port draws from (default 1024-65535);
	// a test sets it outside the NAT's mapping ranges to reach ports no
	// mapping holds.
	Ports [2]uint16
	rng   *rand.Rand
}

// NewHostile returns a builder whose random choices follow seed, so a
// failing run can be replayed.
func NewHostile(src, dst net.HardwareAddr, sources netip.Prefix, seed uint64) (*Hostile, error) {
	if len(src) != 6 || len(dst) != 6 {
		return nil, errors.New("gen: hostile frames need 6-byte MAC addresses")
	}
	if !sources.Addr().Is4() || sources.Bits() > 30 {
		return nil, fmt.Errorf("gen: spoofed sources %v: want an IPv4 prefix of at least 4 addresses", sources)
	}
	return &Hostile{SrcMAC: src, DstMAC: dst, Sources: sources.Masked(), Ports: [2]uint16{1024, 65535},
		rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))}, nil
}

// Source draws a spoofed source address (never the prefix's first or last).
func (h *Hostile) Source() netip.Addr {
	n := uint32(1)<<(32-h.Sources.Bits()) - 2
	b := h.Sources.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += 1 + h.rng.Uint32N(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Port draws a port (or ICMP identifier) in Ports.
func (h *Hostile) Port() uint16 {
	lo, hi := int(h.Ports[0]), int(h.Ports[1])
	return uint16(lo + h.rng.IntN(hi-lo+1))
}

func (h *Hostile) eth() *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: h.SrcMAC, DstMAC: h.DstMAC, EthernetType: layers.EthernetTypeIPv4}
}

func ip4(src, dst netip.Addr, proto layers.IPProtocol, ttl uint8, id uint16) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: id, Protocol: proto,
		SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
}

// serialize lays the layers out with lengths and every checksum computed
// (RFC 791 header checksum; RFC 768/9293 L4 sums over the pseudo-header;
// ICMP's over the message).
func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(fmt.Sprintf("gen: serialize hostile frame: %v", err)) // only our own layer values can fail here
	}
	return append([]byte(nil), buf.Bytes()...)
}

// TCP flag sets of the floods.
const (
	FlagACK    = "ack"
	FlagRST    = "rst"
	FlagFIN    = "fin"
	FlagSYN    = "syn"
	FlagRSTACK = "rst-ack"
)

// TCPSegment builds one TCP segment with the named flags from src to dst
// (no options, 8 payload bytes on everything but a SYN).
func (h *Hostile) TCPSegment(src, dst netip.AddrPort, flags string, ttl uint8) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: h.rng.Uint32(), Window: 65535}
	switch flags {
	case FlagACK:
		t.ACK, t.Ack = true, h.rng.Uint32()
	case FlagRST:
		t.RST = true
	case FlagRSTACK:
		t.RST, t.ACK, t.Ack = true, true, h.rng.Uint32()
	case FlagFIN:
		t.FIN, t.ACK, t.Ack = true, true, h.rng.Uint32()
	case FlagSYN:
		t.SYN = true
	default:
		panic("gen: unknown TCP flags " + flags)
	}
	ip := ip4(src.Addr(), dst.Addr(), layers.IPProtocolTCP, ttl, uint16(h.rng.Uint32()))
	t.SetNetworkLayerForChecksum(ip)
	if flags == FlagSYN {
		return serialize(h.eth(), ip, t)
	}
	return serialize(h.eth(), ip, t, gopacket.Payload("hostile!"))
}

// UDPDatagram builds one UDP datagram with an 8-byte payload.
func (h *Hostile) UDPDatagram(src, dst netip.AddrPort, ttl uint8) []byte {
	ip := ip4(src.Addr(), dst.Addr(), layers.IPProtocolUDP, ttl, uint16(h.rng.Uint32()))
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(h.eth(), ip, u, gopacket.Payload("hostile!"))
}

// EchoRequest builds an ICMP echo request.
func (h *Hostile) EchoRequest(src, dst netip.Addr, ttl uint8) []byte {
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0),
		Id: h.Port(), Seq: 1}
	return serialize(h.eth(), ip4(src, dst, layers.IPProtocolICMPv4, ttl, uint16(h.rng.Uint32())), ic, gopacket.Payload("hostile!"))
}

// Quoted is the packet an ICMP error quotes: as the NAT sent it out, from
// its public endpoint Outside to Remote.
type Quoted struct {
	Proto   layers.IPProtocol // TCP or UDP
	Outside netip.AddrPort
	Remote  netip.AddrPort
}

// ICMPError builds an ICMP error (type/code) from src to the quoted
// packet's public address, quoting its IPv4 header and first 8 L4 bytes
// (RFC 792; RFC 5508 REQ-3 says the NAT translates the quoted packet).
func (h *Hostile) ICMPError(src netip.Addr, q Quoted, typ, code uint8, ttl uint8) []byte {
	inIP := ip4(q.Outside.Addr(), q.Remote.Addr(), q.Proto, 63, uint16(h.rng.Uint32()))
	var inner []byte
	switch q.Proto {
	case layers.IPProtocolTCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(q.Outside.Port()), DstPort: layers.TCPPort(q.Remote.Port()),
			Seq: h.rng.Uint32(), ACK: true, Ack: h.rng.Uint32(), Window: 65535}
		t.SetNetworkLayerForChecksum(inIP)
		inner = serialize(inIP, t)
	default:
		u := &layers.UDP{SrcPort: layers.UDPPort(q.Outside.Port()), DstPort: layers.UDPPort(q.Remote.Port())}
		u.SetNetworkLayerForChecksum(inIP)
		inner = serialize(inIP, u, gopacket.Payload("hostile!"))
	}
	inner = inner[:min(len(inner), 20+8)]
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return serialize(h.eth(), ip4(src, q.Outside.Addr(), layers.IPProtocolICMPv4, ttl, uint16(h.rng.Uint32())), ic, gopacket.Payload(inner))
}

// Fragment builds one IPv4 fragment of a UDP datagram from src to dst:
// offset in 8-byte units (RFC 791), more-fragments flag, payload bytes. An
// offset-0 fragment starts with the UDP header.
func (h *Hostile) Fragment(src, dst netip.AddrPort, id uint16, offset uint16, more bool, payload int, ttl uint8) []byte {
	ip := ip4(src.Addr(), dst.Addr(), layers.IPProtocolUDP, ttl, id)
	ip.FragOffset = offset
	if more {
		ip.Flags = layers.IPv4MoreFragments
	}
	body := make([]byte, payload)
	for i := range body {
		body[i] = byte(i)
	}
	if offset == 0 && payload >= 8 {
		// The UDP header of a datagram longer than this fragment; its
		// checksum is left zero (RFC 768: no checksum), since the
		// datagram is never whole.
		body[0], body[1] = byte(src.Port()>>8), byte(src.Port())
		body[2], body[3] = byte(dst.Port()>>8), byte(dst.Port())
		body[4], body[5] = 0x05, 0xdc // claims 1500 bytes
		body[6], body[7] = 0, 0
	}
	return serialize(h.eth(), ip, gopacket.Payload(body))
}

// TinyTCPFragment builds the first fragment of a TCP segment carrying only
// 8 bytes of its header (ports and sequence number, no flags): the "tiny
// fragment" attack of RFC 1858 section 3.1.
func (h *Hostile) TinyTCPFragment(src, dst netip.AddrPort, id uint16, ttl uint8) []byte {
	ip := ip4(src.Addr(), dst.Addr(), layers.IPProtocolTCP, ttl, id)
	ip.Flags = layers.IPv4MoreFragments
	body := []byte{byte(src.Port() >> 8), byte(src.Port()), byte(dst.Port() >> 8), byte(dst.Port()), 1, 2, 3, 4}
	return serialize(h.eth(), ip, gopacket.Payload(body))
}

// SendConfig is one replay of prebuilt frames.
type SendConfig struct {
	// Netns and Dev name the sending interface ("" Netns: the caller's
	// namespace); Queue is its TX queue.
	Netns, Dev string
	Queue      int
	// Frames are sent round-robin, each at most MaxFrame-4 bytes.
	Frames [][]byte
	// Duration bounds the replay; Count, if non-zero, stops it earlier.
	Duration time.Duration
	Count    uint64
	// Rate in frames per second; 0 sends as fast as the ring takes them.
	Rate float64
}

// SendResult is what a replay sent.
type SendResult struct {
	Sent    uint64
	Seconds float64
	// Unsent frames were built but the ring never took them (freed at
	// the end): not sent, not counted in Sent.
	Unsent uint64
}

// SendFrames replays cfg.Frames from an AF_XDP socket bound to one queue
// of cfg.Dev, without an XDP program (nothing is received on it, so the
// kernel keeps the interface's own traffic), until Duration or Count or
// ctx ends it. It runs on the calling goroutine, locked to its thread.
func SendFrames(ctx context.Context, cfg SendConfig) (SendResult, error) {
	var res SendResult
	if len(cfg.Frames) == 0 || cfg.Duration <= 0 {
		return res, errors.New("gen: nothing to send (no frames or no duration)")
	}
	for i, f := range cfg.Frames {
		if len(f) < 14 || len(f) > MaxFrame-fcsLen {
			return res, fmt.Errorf("gen: frame %d is %d bytes", i, len(f))
		}
	}
	const batch = 64
	var p *afxdp.Port
	err := nsenter.RunNamed(cfg.Netns, func() error {
		l, err := lookupLink(cfg.Dev)
		if err != nil {
			return err
		}
		p, err = newPort(l.index, cfg.Queue, &afxdp.Options{BatchSize: batch})
		return err
	})
	if err != nil {
		return res, fmt.Errorf("gen: %s queue %d: %w", cfg.Dev, cfg.Queue, err)
	}
	defer p.Close()
	bufs := make([]port.Buf, batch)
	start := nanotime()
	end := start + cfg.Duration.Nanoseconds()
	var pacer *Pacer
	if cfg.Rate > 0 {
		pacer = NewPacer(cfg.Rate, batch, start)
	}
	next := 0
	var flushErr error
	for {
		now := nanotime()
		if now >= end || ctx.Err() != nil || (cfg.Count > 0 && res.Sent >= cfg.Count) {
			break
		}
		n := batch
		if cfg.Count > 0 {
			n = int(min(uint64(n), cfg.Count-res.Sent))
		}
		if pacer != nil {
			if n = pacer.Take(now, n); n == 0 {
				if w := pacer.Wait(now); w > 100_000 {
					time.Sleep(time.Duration(w - 50_000))
				}
				continue
			}
		}
		k := p.Alloc(bufs[:n])
		for i := range k {
			f := cfg.Frames[next]
			if next++; next == len(cfg.Frames) {
				next = 0
			}
			bufs[i].Data = append(bufs[i].Data[:0], f...)
		}
		s := p.TxBurst(bufs[:k])
		if s < k {
			// The ring is full: give the frames back and let the kernel
			// drain it; they are not counted.
			p.Free(bufs[s:k])
			if pacer != nil {
				pacer.Refund(k - s)
			}
		}
		if pacer != nil && k < n {
			pacer.Refund(n - k)
		}
		res.Sent += uint64(s)
		if err := p.Flush(); err != nil {
			flushErr = err
		}
	}
	// Let the kernel finish what the ring holds: copy mode sends at kick
	// time, so a few more flushes put the last descriptors on the wire.
	for i := 0; i < 100 && p.Stats.TxCompleted < p.Stats.TxPackets; i++ {
		if err := p.Flush(); err != nil {
			flushErr = err
			break
		}
		time.Sleep(time.Millisecond)
	}
	res.Unsent = p.Stats.TxPackets - p.Stats.TxCompleted
	res.Sent -= res.Unsent
	res.Seconds = float64(nanotime()-start) / 1e9
	return res, flushErr
}
