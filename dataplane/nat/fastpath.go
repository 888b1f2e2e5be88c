package nat

import (
	"encoding/binary"

	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/flowtable"
)

// The fast path: what happens to a packet of an established session, from
// the end of the receive pass (receive.go: parsed, keyed, its session
// prefetched) to its transmit queue, read top to bottom in forwardBurst.
//
//  1. Classify: a packet leaves the fast path, for process (receive.go)
//     and the stages behind it, unless it parsed cleanly, has its headers
//     where nearly every frame has them (no VLAN tag, no IP options:
//     fastL4Off), is not a fragment, is TCP, UDP or an ICMP query, has
//     TTL to spare, fits the egress MTU, and its addresses are ones the
//     NAT translates between (inside host to remote from the inside,
//     anyone to a public address from the outside; the destination's
//     verdict is remembered for the burst, burstCache).
//  2. Session: the prepared keys of the whole burst are looked up at once
//     before the loop (flowtable.ViewBurst), reading of each session only
//     what a rewrite needs (flowtable.View); a key the burst's read did
//     not find, and every key after a packet that left the fast path, is
//     looked up on its own (ViewProbe). A miss, or a hit on the other
//     direction's key, goes to the slow path (newsession.go); a hit that
//     needs more than a rewrite (a hairpinned session, a TCP segment that
//     may change the session's state) goes to the general rewrite of its
//     direction (translateOut in in2out.go, translateIn in out2in.go).
//  3. Next hop: the Ethernet destination of the address the packet leaves
//     with is resolved, once per burst and destination (a burst of a busy
//     link goes mostly to one gateway).
//  4. Rewrite: the session is touched (one store per tick, not per
//     packet), the TTL decremented and the address and port replaced, in
//     one pass with one incremental update per checksum (rewrite.go;
//     RFC 1624).
//  5. Transmit: both Ethernet addresses are written in one go and the
//     frame is queued on its egress port as it is (txQueue.push), or
//     copied into a frame of that port if the two do not share their
//     frames (send, transmit.go); Poll sends the queues once per burst.
//
// Everything per burst (the snapshot, the clock, the egress MTU and MAC)
// is read once in Poll or at the top of forwardBurst.

// fastL4Off is where the fast path's packets have their transport header:
// after an untagged Ethernet header and an IPv4 header without options,
// as nearly every frame does. With the offsets constant, the rewrite
// needs no bounds check but one; a VLAN-tagged frame or a packet with
// options, rare, takes the general path of its direction, which rewrites
// it the same way (rewrite).
const fastL4Off = header.EthernetHeaderLen + header.IPv4MinHeaderLen

// fastFrameMin is the length a fast-path frame has at least: its headers
// up to a UDP header or an ICMP query's fixed part, both 8 bytes (a TCP
// header is 20).
const fastFrameMin = fastL4Off + header.UDPHeaderLen

// forwardBurst runs the n frames of a burst received from side through
// the NAT. Every frame ends queued for transmission, held, or freed with a
// counted drop reason.
//
// The loop makes no call on the way of a packet the fast path finishes:
// the sessions are read for the whole burst before it (ViewBurst) and the
// rewrite's steps inline. A call in the loop costs more than itself: Go's
// calls keep no register, so every value the loop needs after one is
// saved before it and loaded again after it. Each call the loop does make
// therefore ends the packet's turn: it either finishes the packet
// (continue) or, when the call only filled in something the fast path
// needs (a session read on its own, a public address, a next hop), starts
// the packet's turn again from the top (goto again), so that no value of
// the turn lives across it.
func (w *Worker) forwardBurst(side Side, n int) {
	s := w.snap
	sessions := w.eng.sessions
	egress, end := Outside, 0
	if side == Outside {
		egress, end = Inside, 1
	}
	mtu := s.mtu[egress]
	// The burst's next hop and public address (burstCache).
	var bc burstCache
	// The egress queue, which a frame joins as it is when the two ports
	// share their frames (zerocopy.go).
	txq, direct := &w.tx[egress], w.shared
	// The inside prefixes, loaded once (Snapshot.isInside).
	inside := s.inside
	// Slices of the burst's length, so that indexing needs no bounds
	// checks.
	rx, pk, probe, views := w.rx[:n], w.pk[:n], w.probe[:n], w.view[:n]
	// The burst's sessions, read in one call where the prefetch found
	// them (flowtable.ViewBurst): bit i of hits says views[i] is packet
	// i's, by the key of its direction (key 0 from the inside, key 1
	// from the outside). A packet that leaves the fast path may change the table (a TCP
	// segment's state, a session created or deleted), so after one the
	// views read up front are dropped (hits = 0) and each later packet's
	// session is read as it comes (ViewProbe): every packet sees the
	// table as the packets before it left it.
	hits := sessions.ViewBurst(probe, views, uint8(side))
	for i := range rx {
	again:
		b, p, v := &rx[i], &pk[i], &views[i]

		// 1. Classify. Parse names a transport in p.L4 only when it
		// returned drop.None (header.Parsed; FuzzParse checks it), so
		// the L4 test stands for pr[i] == drop.None too. The headers
		// must lie where they do in nearly every frame (fastL4Off).
		if p.L4Off != fastL4Off || p.MF || p.TTL <= 1 || int(p.TotalLen) > mtu ||
			!(p.L4 == header.L4UDP || p.L4 == header.L4TCP || p.L4 == header.L4ICMPQuery) ||
			martianOctet(p.Src[0]) || martianOctet(p.Dst[0]) {
			w.classifyOut(side, i)
			hits = 0
			continue
		}
		if side == Inside {
			if !inPrefixes(inside, be32(p.Src)) {
				w.classifyOut(side, i)
				hits = 0
				continue
			}
			if dst := le32(&p.Dst); !bc.remoteOK || dst != bc.remoteDst {
				if !bc.remote(s, dst) {
					w.classifyOut(side, i)
					hits = 0
					continue
				}
				goto again
			}
		} else if dst := le32(&p.Dst); !bc.pubOK || dst != bc.pubDst {
			if !bc.public(s, dst) {
				w.classifyOut(side, i)
				hits = 0
				continue
			}
			goto again
		}

		// 2. Session: of the record, only what a rewrite needs (a
		// View: the state and the key translated to).
		if hits>>uint(i)&1 == 0 {
			// Missing first: a new flow's first packet is answered
			// by its home bucket there, where ViewProbe called
			// viewRef and then viewSlow for it (about 18
			// instructions a new session, 2,822 to 2,804,
			// bench-instr; the established cases do not get here).
			if sessions.Missing(&probe[i]) || !sessions.ViewProbe(&probe[i], v) || v.Dir != uint8(side) {
				// noSession, its inside part (deferNew, three
				// stores) inline: the call cost about 12
				// instructions a new session (bench-instr).
				if side == Inside {
					w.deferNew(i)
				} else {
					w.noSession(side, i)
					hits = 0 // inboundNew may create a session
				}
				continue
			}
			hits |= 1 << uint(i)
			goto again
		}
		// The end rewritten (end: the source from the inside, the
		// destination from the outside) goes to the other key's far
		// end: key 1's destination, the external address and port;
		// key 0's source, the inside host's. Addresses in wire order
		// (rewrite.go).
		var wire, dst uint32
		var port uint16
		if side == Inside {
			if v.State&stHairpin != 0 || (p.L4 == header.L4TCP && p.TCPFlags&(tcpSYN|tcpFIN|tcpRST) != 0) {
				w.general(side, i)
				hits = 0
				continue
			}
			wire, port, dst = v.OtherDstWire(), v.OtherDstPort(), le32(&p.Dst)
		} else {
			if p.L4 == header.L4TCP && (p.TCPFlags&(tcpSYN|tcpFIN|tcpRST) != 0 || v.State&(stSynIn|stAckOut) == stSynIn) {
				w.general(side, i)
				hits = 0
				continue
			}
			wire, port = v.OtherSrcWire(), v.OtherSrcPort()
			dst = wire
		}

		// 3. Next hop, by the destination the packet leaves with.
		if !bc.hopOK || dst != bc.hopDst {
			if r := bc.resolve(w, egress, dst); r != Resolved {
				w.unresolvedHop(side, i, dst, r)
				continue
			}
			goto again
		}

		// 4. Rewrite: the session touched (one store per tick, not per
		// packet), then rewriteAt, spelt out, its steps inlined.
		if side == Inside || p.L4 != header.L4UDP || s.Config.UDPInboundRefresh {
			sessions.Touch(v.ID, w.now)
		}
		f := (*[fastFrameMin]byte)(b.Data)
		ip := (*[header.IPv4MinHeaderLen]byte)(f[header.EthernetHeaderLen:])
		c := swapAddr(ip, end, wire)
		decTTL(ip, c)
		l4 := (*[header.UDPHeaderLen]byte)(f[fastL4Off:])
		if p.L4 == header.L4ICMPQuery {
			rewriteICMP(l4, port)
			p.SrcPort, p.DstPort = port, port
		} else {
			old, sw := swapPort(l4, end, port)
			if p.L4 == header.L4UDP {
				fixUDP(l4, c, old, sw)
			} else {
				fixTCP((*[header.TCPMinHeaderLen]byte)(b.Data[fastL4Off:]), c, old, sw)
			}
		}
		setParsed(p, end, wire, port)

		// 5. Transmit.
		header.Ethernet(f[:]).SetAddrs(&bc.hopAddrs)
		if !direct || !txq.push(b) {
			w.send(side, egress, b)
		}
	}
	// The packets without a session, in a pipeline of their own.
	w.newSessions()
}

// burstCache is what forwardBurst learns once per burst and destination:
// the last destination found public (from the outside), the last found
// remote (from the inside: neither an inside address nor the NAT's own)
// and the last next hop resolved, with the Ethernet addresses of a frame to it. Addresses
// in wire order (the four bytes loaded little-endian). It lives in memory
// (its methods take its address), where the loop reads it as it needs it;
// as the loop's own variables, which the compiler keeps in registers,
// it was saved and loaded again around the loop's every call, on every
// packet's way.
type burstCache struct {
	pubDst    uint32
	pubOK     bool
	remoteOK  bool
	remoteDst uint32
	hopOK     bool
	hopDst    uint32
	hopAddrs  header.EthernetAddrs
}

// public reports whether dst (wire order) is an address of s's that the
// NAT answers for on the outside, and remembers it if so.
//
//go:noinline
func (c *burstCache) public(s *Snapshot, dst uint32) bool {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], dst)
	if !s.isPublic(a) {
		return false
	}
	c.pubDst, c.pubOK = dst, true
	return true
}

// remote reports whether dst (wire order) is a remote address for a
// packet from the inside, one the NAT translates towards: neither in an
// inside prefix of s nor an address of the NAT's own links; and remembers
// it if so.
//
//go:noinline
func (c *burstCache) remote(s *Snapshot, dst uint32) bool {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], dst)
	if a == s.linkAddr[Inside] || a == s.linkAddr[Outside] || s.isInside(a) {
		return false
	}
	c.remoteDst, c.remoteOK = dst, true
	return true
}

// resolve resolves the next hop of destination dst (wire order) on
// egress and remembers it if it resolved; it returns the resolution.
//
//go:noinline
func (c *burstCache) resolve(w *Worker, egress Side, dst uint32) Resolution {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], dst)
	mac, r := w.l2.Resolve(egress, a)
	if r != Resolved {
		return r
	}
	c.hopDst, c.hopAddrs, c.hopOK = dst, header.MakeEthernetAddrs(mac, w.macs[egress]), true
	return r
}

// The fast path's ways out. Each takes the packet by its index in the
// burst, not by pointers to its frame and parse, and none inlines, so
// that no pointer of a packet's turn lives across the call (see
// forwardBurst): inlined, the compiler would share the pointers computed
// at the top of the turn, and save them on every packet's way.

// classifyOut hands packet i of the burst, from side, which the fast path
// does not take, to process, which classifies it.
//
//go:noinline
func (w *Worker) classifyOut(side Side, i int) {
	w.process(side, &w.rx[i], &w.pk[i], w.pr[i], &w.probe[i])
}

// noSession sends packet i of the burst, from side, whose key no session
// holds (or holds as the other direction's key), to the slow path: from
// the inside to the burst's new-session pipeline, from the outside to the
// inbound checks (out2in.go).
//
//go:noinline
func (w *Worker) noSession(side Side, i int) {
	if side == Inside {
		w.deferNew(i)
		return
	}
	b, p := &w.rx[i], &w.pk[i]
	p.DecTTL(b.Data)
	w.inboundNew(Outside, b, p)
}

// general sends packet i of the burst, from side, whose session (the
// burst's view i) needs more than a rewrite, to its direction's general
// translation, with the whole session read (GetAt). A session deleted
// since the view was taken is a miss, as if the packet had come after the
// delete.
//
//go:noinline
func (w *Worker) general(side Side, i int) {
	v := &w.view[i]
	var e flowtable.Entry
	if !w.eng.sessions.GetAt(v.ID, v.Gen, v.Dir, &e) {
		w.noSession(side, i)
		return
	}
	b, p := &w.rx[i], &w.pk[i]
	if side == Inside {
		w.translateOut(b, p, &e)
		return
	}
	p.DecTTL(b.Data)
	w.translateIn(Outside, b, p, &e)
}

// unresolvedHop holds or drops packet i of the burst, from side, whose
// next hop dst did not resolve (r): translated first, as the fast path
// would have sent it (nexthop.go).
//
//go:noinline
func (w *Worker) unresolvedHop(side Side, i int, dst uint32, r Resolution) {
	b, p, v := &w.rx[i], &w.pk[i], &w.view[i]
	if side == Inside || p.L4 != header.L4UDP || w.snap.Config.UDPInboundRefresh {
		w.eng.sessions.Touch(v.ID, w.now)
	}
	egress := Outside
	if side == Inside {
		rewriteAt(b.Data, p, 0, v.OtherDstWire(), v.OtherDstPort())
	} else {
		egress = Inside
		rewriteAt(b.Data, p, 1, v.OtherSrcWire(), v.OtherSrcPort())
	}
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], dst)
	w.unresolved(side, egress, b, a, r)
}
