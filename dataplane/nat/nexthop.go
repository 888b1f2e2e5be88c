package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
)

// Stage next hop: MTU, fragmentation and the Ethernet next hop of a
// translated packet (held in pending.go while the neighbour resolves).

// forward resolves the next hop of a translated packet and queues it, or
// holds it while the neighbour is resolved. p describes the frame. Callers
// answer DF packets that will not fit the egress MTU before translating
// them (the error must quote the packet as its sender sent it); here a
// packet too big for the MTU is fragmented.
func (w *Worker) forward(owner, egress Side, b *port.Buf, p *header.Parsed) {
	if p.MF && p.FragOff == 0 {
		w.rememberFirstFragment(egress, p)
	}
	if int(p.TotalLen) > w.snap.mtu[egress] {
		if p.DF {
			w.dropFrame(owner, b, drop.FragNeeded)
			return
		}
		w.fragment(owner, egress, b, p)
		return
	}
	w.l2send(owner, egress, b, p.Dst)
}

// tooBigDF reports whether a DF packet cannot fit the egress MTU; if so it
// answers it with Fragmentation Needed and the caller stops.
func (w *Worker) tooBigDF(side, egress Side, b *port.Buf, p *header.Parsed) bool {
	mtu := w.snap.mtu[egress]
	if !p.DF || int(p.TotalLen) <= mtu {
		return false
	}
	w.fragNeeded(side, b, p, mtu)
	return true
}

// l2send resolves the Ethernet next hop of dst on egress and queues the
// frame to it, or holds or drops it (unresolved).
func (w *Worker) l2send(owner, egress Side, b *port.Buf, dst [4]byte) {
	mac, r := w.l2.Resolve(egress, dst)
	if r != Resolved {
		w.unresolved(owner, egress, b, dst, r)
		return
	}
	w.sendTo(owner, egress, b, mac)
}

// sendTo sets a frame's Ethernet addresses for next hop mac on egress and
// queues it there.
func (w *Worker) sendTo(owner, egress Side, b *port.Buf, mac [6]byte) {
	eth := header.Ethernet(b.Data)
	eth.SetDst(mac)
	eth.SetSrc(w.macs[egress])
	w.send(owner, egress, b)
}

// unresolved settles a frame whose next hop dst on egress did not resolve
// (r): held while the kernel resolves it, or dropped.
func (w *Worker) unresolved(owner, egress Side, b *port.Buf, dst [4]byte, r Resolution) {
	switch r {
	case Pending:
		if !w.pend.hold(b, owner, egress, dst, w.now) {
			w.dropFrame(owner, b, drop.NeighPending)
		}
	case Unreachable:
		w.dropFrame(owner, b, drop.NoRoute)
	default:
		w.dropFrame(owner, b, drop.NeighFailed)
	}
}

// burstHop is a burst's next-hop cache for the packets of one stage: the
// last destination resolved and the Ethernet addresses of a frame to it.
// A burst of a busy link goes mostly to one gateway, so the stage
// resolves once per burst and destination instead of once per packet, as
// the fast path does (forwardBurst keeps the same three in locals). It
// lives for one stage of one burst; it belongs to its worker's goroutine.
type burstHop struct {
	dst   [4]byte
	addrs header.EthernetAddrs
	ok    bool
}

// sendVia queues frame b, received on the inside, translated and fitting
// the outside MTU, to its next hop dst on the outside, resolved through
// the burst's cache h; or holds or drops it as l2send does. A frame whose
// egress port shares its pool joins the queue as it is (txQueue.push). Its
// one caller is newSessions' pass 4: with the sides constant, not arguments,
// the queue's address is a constant offset (about 12 instructions a new
// session, 2,761 to 2,749, bench-instr).
func (w *Worker) sendVia(h *burstHop, b *port.Buf, dst [4]byte) {
	const owner, egress = Inside, Outside
	if !h.ok || dst != h.dst {
		mac, r := w.l2.Resolve(egress, dst)
		if r != Resolved {
			w.unresolved(owner, egress, b, dst, r)
			return
		}
		h.dst, h.addrs, h.ok = dst, header.MakeEthernetAddrs(mac, w.macs[egress]), true
	}
	header.Ethernet(b.Data).SetAddrs(&h.addrs)
	if !w.shared || !w.tx[egress].push(b) {
		w.send(owner, egress, b)
	}
}
