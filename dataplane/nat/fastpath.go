package nat

import (
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// The fast path: what happens to a packet of an established session, from
// the end of the receive pass (receive.go: parsed, keyed, its session
// prefetched) to its transmit queue, read top to bottom in forwardBurst.
//
//  1. Classify: a packet leaves the fast path, for process (receive.go)
//     and the stages behind it, unless it parsed cleanly, is not a
//     fragment, is TCP, UDP or an ICMP query, has TTL to spare, fits the
//     egress MTU, and its addresses are ones the NAT translates between
//     (inside host to remote from the inside, anyone to a public address
//     from the outside).
//  2. Session: the prepared key is looked up, reading of the session only
//     what a rewrite needs (flowtable.View). A miss, or a hit on the
//     other direction's key, goes to the slow path (newsession.go); a hit
//     that needs more than a rewrite (a hairpinned session, a TCP segment
//     that may change the session's state) goes to the general rewrite of
//     its direction (translateOut in in2out.go, translateIn in out2in.go).
//  3. Rewrite: the session is touched (one store per tick, not per
//     packet), the TTL decremented and the address and port replaced, in
//     one pass with one incremental update per checksum (rewrite.go;
//     RFC 1624).
//  4. Next hop: the Ethernet destination is resolved, once per burst and
//     destination (a burst of a busy link goes mostly to one gateway).
//  5. Transmit: both Ethernet addresses are written in one go and the
//     frame is queued on its egress port as it is (txQueue.push), or
//     copied into a frame of that port if the two do not share their
//     frames (send, transmit.go); Poll sends the queues once per burst.
//
// Everything per burst (the snapshot, the clock, the egress MTU and MAC)
// is read once in Poll or at the top of forwardBurst.

// forwardBurst runs the n frames of a burst received from side through
// the NAT. Every frame ends queued for transmission, held, or freed with a
// counted drop reason.
func (w *Worker) forwardBurst(side Side, n int) {
	s := w.snap
	sessions := w.eng.sessions
	egress := Outside
	if side == Outside {
		egress = Inside
	}
	mtu := s.mtu[egress]
	// The burst's next-hop cache: the last destination resolved, and the
	// Ethernet addresses of a frame to it.
	var nhDst [4]byte
	var nhAddrs header.EthernetAddrs
	nhOK := false
	// The egress queue, which a frame joins as it is when the two ports
	// share their frames (zerocopy.go).
	txq, direct := &w.tx[egress], w.shared
	// The last destination found public (from the outside).
	var pubDst [4]byte
	pubOK := false
	var v flowtable.View
	// The inside prefixes, loaded once (Snapshot.isInside).
	inside := s.inside
	// Slices of the burst's length, so that indexing needs no bounds
	// checks.
	rx, pk, pr, probe := w.rx[:n], w.pk[:n], w.pr[:n], w.probe[:n]
	for i := range rx {
		b, p := &rx[i], &pk[i]

		// 1. Classify. Parse names a transport in p.L4 only when it
		// returned drop.None (header.Parsed; FuzzParse checks it), so
		// the L4 test stands for pr[i] == drop.None too.
		if p.MF || p.TTL <= 1 || int(p.TotalLen) > mtu ||
			!(p.L4 == header.L4UDP || p.L4 == header.L4TCP || p.L4 == header.L4ICMPQuery) ||
			martianOctet(p.Src[0]) || martianOctet(p.Dst[0]) {
			w.process(side, b, p, pr[i], &probe[i])
			continue
		}
		if side == Inside {
			if !inPrefixes(inside, be32(p.Src)) || p.Dst == s.linkAddr[Inside] || p.Dst == s.linkAddr[Outside] || inPrefixes(inside, be32(p.Dst)) {
				w.process(side, b, p, pr[i], &probe[i])
				continue
			}
		} else if !pubOK || p.Dst != pubDst {
			if !s.isPublic(p.Dst) {
				w.process(side, b, p, pr[i], &probe[i])
				continue
			}
			pubDst, pubOK = p.Dst, true
		}

		// 2. Session: of the record, only what a rewrite needs (a
		// View: the state and the key translated to).
		if !sessions.ViewProbe(&probe[i], &v) || v.Dir != uint8(side) {
			w.noSession(side, i, b, p)
			continue
		}

		// 3. Rewrite.
		if side == Inside {
			if v.State&stHairpin != 0 || (p.L4 == header.L4TCP && p.TCPFlags&(tcpSYN|tcpFIN|tcpRST) != 0) {
				w.general(side, i, b, p, &v)
				continue
			}
			sessions.Touch(v.ID, w.now)
			// Key 1's destination: the external address and port.
			rewriteSrc(b.Data, p, v.OtherDst(), v.OtherDstPort())
		} else {
			if p.L4 == header.L4TCP && (p.TCPFlags&(tcpSYN|tcpFIN|tcpRST) != 0 || v.State&(stSynIn|stAckOut) == stSynIn) {
				w.general(side, i, b, p, &v)
				continue
			}
			// RFC 4787 REQ-6: inbound packets refresh a UDP mapping only
			// if configured.
			if p.L4 != header.L4UDP || s.Config.UDPInboundRefresh {
				sessions.Touch(v.ID, w.now)
			}
			// Key 0's source: the inside host's address and port.
			rewriteDst(b.Data, p, v.OtherSrc(), v.OtherSrcPort())
		}

		// 4. Next hop.
		if !nhOK || p.Dst != nhDst {
			mac, r := w.l2.Resolve(egress, p.Dst)
			if r != Resolved {
				w.unresolved(side, egress, b, p.Dst, r)
				continue
			}
			nhDst, nhAddrs, nhOK = p.Dst, header.MakeEthernetAddrs(mac, w.macs[egress]), true
		}

		// 5. Transmit.
		header.Ethernet(b.Data).SetAddrs(&nhAddrs)
		if !direct || !txq.push(b) {
			w.send(side, egress, b)
		}
	}
	// The packets without a session, in a pipeline of their own.
	w.newSessions()
}

// noSession sends packet i of the burst, from side, whose key no session
// holds (or holds as the other direction's key), to the slow path: from
// the inside to the burst's new-session pipeline, from the outside to the
// inbound checks (out2in.go).
func (w *Worker) noSession(side Side, i int, b *port.Buf, p *header.Parsed) {
	if side == Inside {
		w.deferNew(i)
		return
	}
	p.DecTTL(b.Data)
	w.inboundNew(Outside, b, p)
}

// general sends packet i of the burst, from side, whose session v needs
// more than a rewrite, to its direction's general translation, with the
// whole session read (GetAt). A session deleted since the view was taken
// is a miss, as if the packet had come after the delete.
func (w *Worker) general(side Side, i int, b *port.Buf, p *header.Parsed, v *flowtable.View) {
	var e flowtable.Entry
	if !w.eng.sessions.GetAt(v.ID, v.Gen, v.Dir, &e) {
		w.noSession(side, i, b, p)
		return
	}
	if side == Inside {
		w.translateOut(b, p, &e)
		return
	}
	p.DecTTL(b.Data)
	w.translateIn(Outside, b, p, &e)
}
