package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// Stage 1, receive and classify: a burst is received from one port, every
// frame parsed once (dataplane/header), its session key built and hashed,
// and its session bucket and record prefetched (receive). Then each frame
// that the fast path (fastpath.go) does not finish is classified by
// process: dropped, a later fragment (frag.go), or handed to the in2out
// (in2out.go) or out2in (out2in.go) stage.

// Session keys. A session has two keys, each the 5-tuple of a packet as it
// arrives at the NAT:
//
//	key 0 (inside):  Src=inside host  Dst=remote  SrcPort=inside port  DstPort=remote port
//	key 1 (outside): Src=remote  Dst=external address  SrcPort=remote port  DstPort=external port
//
// so an outbound packet is translated by replacing its source with key 1's
// destination, and an inbound one by replacing its destination with key 0's
// source. For ICMP queries the identifier plays the inside or external port
// and the remote "port" is zero, which makes the mapping independent of the
// remote host's reply identifier handling (RFC 5508 REQ-1).

func icmpQuery(p *header.Parsed) bool { return p.L4 == header.L4ICMPQuery }

// icmpRequest reports whether an ICMP query may create a session: only
// requests do; replies only match (RFC 5508 section 3.1).
func icmpRequest(t uint8) bool {
	return t == header.ICMPv4Echo || t == header.ICMPv4Timestamp
}

// keyPorts returns the ports of the session key of a packet from side
// (key 0 from the inside, key 1 from the outside) with ports sport and
// dport. For an ICMP query (query), the identifier stays on the inside
// host's or the external side and the remote's "port" is zero. Every
// session key is built with it: sessionTuple for packets, errorKey for the
// packets embedded in ICMP errors.
func keyPorts(side Side, query bool, sport, dport uint16) (uint16, uint16) {
	if query {
		if side == Inside {
			dport = 0
		} else {
			sport = 0
		}
	}
	return sport, dport
}

// sessionTuple returns, field by field, the key of the session of a packet
// from side: key 0 from the inside, key 1 from the outside. The receive
// pass hashes it without building a Key (flowtable.PrepareTuple); the
// stages that need a Key build it with packetKey.
func sessionTuple(side Side, p *header.Parsed) (src, dst [4]byte, sport, dport uint16) {
	sport, dport = keyPorts(side, icmpQuery(p), p.SrcPort, p.DstPort)
	return p.Src, p.Dst, sport, dport
}

// packetKey builds the session key of a packet from side (sessionTuple).
func packetKey(side Side, p *header.Parsed, k *flowtable.Key) {
	src, dst, sport, dport := sessionTuple(side, p)
	*k = flowtable.Key{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: p.Proto}
}

// insideKey returns key 0 of the session whose key 1 is k1, translated to
// the inside endpoint in:inPort.
func insideKey(k1 *flowtable.Key, in [4]byte, inPort uint16) flowtable.Key {
	return flowtable.Key{Src: in, Dst: k1.Src, SrcPort: inPort, DstPort: k1.SrcPort, Proto: k1.Proto}
}

// errorKey builds the key, from side (Inside: key 0, Outside: key 1), of
// the session an ICMP error's embedded packet belongs to: the embedded
// packet travelled the other way, so its tuple is reversed.
func errorKey(side Side, p *header.Parsed) flowtable.Key {
	sport, dport := keyPorts(side, p.InnerProto == ipProtoICMP, p.InnerDstPort, p.InnerSrcPort)
	return flowtable.Key{Src: p.InnerDst, Dst: p.InnerSrc, SrcPort: sport, DstPort: dport, Proto: p.InnerProto}
}

// martian reports addresses no NAT forwards to or from: 0/8, 127/8,
// multicast, class E and limited broadcast.
func martian(a [4]byte) bool { return martianOctet(a[0]) }

// martianOctet is martian by an address's first octet, all it looks at:
// the fast path passes a byte, which stays in a register, where a [4]byte
// would be copied through memory.
//
// 0/8, 224/3 and 255 are one unsigned comparison: o-1 wraps 0 to 255, so
// o-1 >= 223 holds exactly for 0 and 224..255 (TestMartianOctet).
func martianOctet(o byte) bool { return o-1 >= 223 || o == 127 }

// process handles one received frame. Every path ends in exactly one of:
// queued for transmission, held (neighbour or fragment), or freed with a
// counted drop reason.
//
// p and r are the frame's parse result; probe is its session key, prepared
// in the burst's first pass (valid when r is drop.None and the packet is
// not an ICMP error).
func (w *Worker) process(side Side, b *port.Buf, p *header.Parsed, r drop.Reason, probe *flowtable.Probe) {
	switch r {
	case drop.None:
	case drop.NonFirstFragment:
		if martian(p.Src) || martian(p.Dst) {
			w.dropFrame(side, b, drop.BadAddress)
			return
		}
		w.laterFragment(side, b, p)
		return
	default:
		w.dropFrame(side, b, r)
		return
	}
	if martian(p.Src) || martian(p.Dst) {
		w.dropFrame(side, b, drop.BadAddress)
		return
	}
	if p.MF {
		w.noteOrigin(side, p)
	}
	if side == Inside {
		w.fromInside(b, p, probe)
	} else {
		w.fromOutside(b, p, probe)
	}
}

// receive is the first pass over a burst of n frames from side, in w.rx:
// it parses every frame into w.pk (the verdict in w.pr), builds and hashes
// its session key into w.probe, and touches the key's bucket and record.
// With the loads of this pass independent of each other, a burst's cache
// misses overlap instead of costing one memory latency each, one after
// another; the fast path (fastpath.go) then finds them in cache.
func (w *Worker) receive(side Side, n int) {
	sessions := w.eng.sessions
	bytes := uint64(0)
	rx, pk, pr, probe := w.rx[:n], w.pk[:n], w.pr[:n], w.probe[:n]
	for i := range rx {
		b, p := &rx[i], &pk[i]
		bytes += uint64(len(b.Data))
		r := header.Parse(b.Data, p)
		pr[i] = r
		if r == drop.None && p.L4 != header.L4ICMPError {
			// sessionTuple's addresses are the packet's own, passed
			// as integers, which stay in registers ([4]byte values
			// live in memory).
			sport, dport := keyPorts(side, icmpQuery(p), p.SrcPort, p.DstPort)
			sessions.PrepareAddrs(be32(p.Src), be32(p.Dst), sport, dport, p.Proto, &probe[i])
		} else {
			// No lookup follows; the zero probe keeps the prefetch below
			// from chasing a stale hash of an earlier burst.
			probe[i] = flowtable.Probe{}
		}
	}
	// Every bucket of the burst first, then every record they lead to:
	// two memory latencies for the burst rather than two a packet. The
	// buckets' pass stays a tight loop of its own: touched in the loop
	// above, as each key is hashed, they cost eight instructions a packet
	// less but made the 1M-session benchmark 1.8 times slower, since a
	// packet's parse between two loads leaves the core room for one or
	// two misses in flight, not a burst's (docs/engineering.md).
	sessions.PrefetchBurst(probe)
	w.c[RxBytes+Counter(side)] += bytes
}
