package nat

import (
	"encoding/binary"
	"time"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
)

// ICMP errors the NAT originates as a router: Time Exceeded (TTL), Fragmentation
// Needed (DF and too big, RFC 4787 REQ-13) and Destination Unreachable for
// resource exhaustion (RFC 6888 REQ-11, RFC 5508 REQ-8). Each is built in
// place in the offending frame and sent back out of the port it came from,
// rate-limited per worker.

// maxICMPErrorLen is the largest error we build: RFC 1812 section 4.3.2.3
// asks for as much of the original as fits in 576 bytes.
const maxICMPErrorLen = 576

// icmpAllowed takes a token from the worker's ICMP error bucket.
func (w *Worker) icmpAllowed() bool {
	rate := w.snap.Config.Limits.ICMPErrorsPerSecond
	if rate <= 0 {
		return false
	}
	// The bucket is timed in nanoseconds of the batch clock, not in
	// ticks: after a quiet spell of 49.7 days the 32-bit tick would show
	// no time elapsed and leave an empty bucket empty.
	switch elapsed := w.nowNano - w.tokAt; {
	case elapsed < 0:
		w.tokAt = w.nowNano // the wall clock was stepped back
	case elapsed >= int64(time.Second):
		w.tokens, w.tokAt = rate, w.nowNano
	default:
		if add := int(uint64(elapsed) * uint64(rate) / uint64(time.Second)); add > 0 {
			w.tokens = min(w.tokens+add, rate)
			w.tokAt = w.nowNano
		}
	}
	if w.tokens <= 0 {
		w.c[ICMPErrorsSuppressed]++
		return false
	}
	w.tokens--
	return true
}

// errorForbidden reports whether packet p, in frame b, is one that must
// never be answered with an ICMP error. RFC 1122 section 3.2.2: "An ICMP
// error message MUST NOT be sent as the result of receiving: an ICMP error
// message, or a datagram destined to an IP broadcast or IP multicast
// address, or a datagram sent as a link-layer broadcast, or a non-initial
// fragment, or a datagram whose source address does not define a single
// host"; RFC 1812 section 4.3.2.7 repeats the list for routers. Without
// this rule two NATs (or a NAT and a forged packet) answer each other's
// errors, and one frame sent to a broadcast draws an error from everyone.
func errorForbidden(b *port.Buf, p *header.Parsed) bool {
	switch {
	case p.L4 == header.L4ICMPError:
	case p.FragOff != 0:
	case b.Data[0]&1 != 0: // the group bit of the Ethernet destination: broadcast or multicast
	case martian(p.Src) || martian(p.Dst): // zero, loopback, multicast, class E, limited broadcast
	default:
		return false
	}
	return true
}

// timeExceeded answers a packet whose TTL would reach zero (RFC 1812,
// RFC 5508 REQ-10) and drops it; one that must not be answered is
// dropped as drop.ErrorForbidden instead.
func (w *Worker) timeExceeded(side Side, b *port.Buf, p *header.Parsed) {
	if errorForbidden(b, p) {
		w.dropFrame(side, b, drop.ErrorForbidden)
		return
	}
	w.drop(drop.TTLExpired)
	w.sampleDrop(side, b, drop.TTLExpired)
	if !w.icmpAllowed() || !w.buildICMPError(side, b, p, header.ICMPv4TimeExceeded, header.ICMPv4TTLExceeded, 0) {
		w.free(side, b)
		return
	}
	w.reply(side, b)
}

// fragNeeded answers a DF packet larger than the egress MTU with the MTU
// it must fit (RFC 1191, RFC 4787 REQ-13) and drops it.
func (w *Worker) fragNeeded(side Side, b *port.Buf, p *header.Parsed, mtu int) {
	if errorForbidden(b, p) {
		w.dropFrame(side, b, drop.ErrorForbidden)
		return
	}
	w.drop(drop.FragNeeded)
	w.sampleDrop(side, b, drop.FragNeeded)
	if !w.icmpAllowed() || !w.buildICMPError(side, b, p, header.ICMPv4DstUnreachable, header.ICMPv4FragNeeded, uint16(mtu)) {
		w.free(side, b)
		return
	}
	w.reply(side, b)
}

// buildICMPError turns frame b, whose IPv4 packet p describes, into an ICMP
// error of the given type and code addressed to the packet's source, from
// the appliance's address on side. It quotes the original IPv4 packet as it
// arrived, up to 576 bytes in all. It returns false if the appliance has no
// address on side or the frame is too small to hold the error.
func (w *Worker) buildICMPError(side Side, b *port.Buf, p *header.Parsed, typ, code uint8, mtu uint16) bool {
	src := w.snap.linkAddr[side]
	if src == ([4]byte{}) {
		return false
	}
	f := b.Data
	l3 := p.L3Off
	const hdr = header.IPv4MinHeaderLen + header.ICMPv4HeaderLen
	quote := min(p.End-l3, maxICMPErrorLen-hdr)
	need := l3 + hdr + quote
	if need > cap(f) {
		return false
	}
	f = f[:need]
	dst := p.Src
	copy(f[l3+hdr:], f[l3:l3+quote]) // overlapping: copy moves like memmove
	ip := header.IPv4(f[l3 : l3+header.IPv4MinHeaderLen])
	ip.Encode(&header.IPv4Fields{
		TotalLen: uint16(hdr + quote),
		TTL:      64,
		Protocol: ipProtoICMP,
		Src:      src,
		Dst:      dst,
	})
	m := header.ICMPv4(f[l3+header.IPv4MinHeaderLen:])
	m.SetType(typ)
	m.SetCode(code)
	m.SetChecksum(0)
	m.SetRest(uint32(mtu)) // unused word, or next-hop MTU in its low half
	binary.BigEndian.PutUint16(m[2:], ^checksum.Checksum(m, 0))
	b.Data = f
	return true
}

// refuse drops an outbound packet that could not get a mapping and, if
// configured, answers with an ICMP Destination Unreachable (RFC 6888
// section 3 / RFC 5508 section 3.4).
func (w *Worker) refuse(b *port.Buf, p *header.Parsed, r drop.Reason) {
	w.drop(r)
	w.sampleDrop(Inside, b, r)
	code := uint8(0)
	switch w.snap.Config.OnExhaustion {
	case ReplyHostUnreachable:
		code = header.ICMPv4HostUnreachable
	case ReplyAdminProhibited:
		code = header.ICMPv4AdminProhibited
	}
	switch r {
	case drop.PortExhausted, drop.AddressExhausted, drop.SubscriberSessions, drop.SubscriberPorts, drop.TableFull:
	default:
		code = 0
	}
	// The drop is counted as r either way; a packet that must not be
	// answered (sent to a link-layer broadcast, say) only gets no error.
	if w.snap.Config.OnExhaustion == ReplyNone || code == 0 || errorForbidden(b, p) || !w.icmpAllowed() {
		w.free(Inside, b)
		return
	}
	w.buildICMPError(Inside, b, p, header.ICMPv4DstUnreachable, code, 0)
	w.reply(Inside, b)
}
