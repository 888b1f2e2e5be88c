package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
)

// Stage transmit: frames queued per egress port, copied across ports when
// the two interfaces do not share a UMEM, sent a burst at a time, and
// frames returned to their ports.

// txQueue holds frames of one side's port to transmit on it.
type txQueue struct {
	n    int
	bufs [4 * MaxBurst]port.Buf
}

// spareFrames are empty frames of one side's port, taken from it a burst
// at a time, into which frames from the other port are copied as they are
// forwarded when the two ports do not share a frame pool (zerocopy.go).
type spareFrames struct {
	n    int
	bufs [MaxBurst]port.Buf
}

type freeQueue struct {
	n    int
	bufs [4 * MaxBurst]port.Buf
}

// push queues frame b if the queue has room, and reports whether it did:
// the fast path's transmit, for a frame that needs no copy (its egress
// port shares its frame pool). The fast path falls back to send.
func (q *txQueue) push(b *port.Buf) bool {
	if q.n == len(q.bufs) {
		return false
	}
	q.bufs[q.n] = *b
	q.n++
	return true
}

// send queues frame b (owned by owner's port) for transmission on egress,
// with its Ethernet addresses already set. A frame of the other port is
// copied into a frame of egress's port and returned to its own, unless the
// two ports share a frame pool (zerocopy.go).
func (w *Worker) send(owner, egress Side, b *port.Buf) {
	q := &w.tx[egress]
	if q.n == len(q.bufs) {
		w.flushSide(egress)
	}
	if owner == egress || w.shared {
		q.bufs[q.n] = *b
		q.n++
		return
	}
	sp := &w.spare[egress]
	if sp.n == 0 {
		sp.n = w.ports[egress].Alloc(sp.bufs[:])
		if sp.n == 0 {
			w.dropFrame(owner, b, drop.NoFrame)
			return
		}
	}
	sp.n--
	nb := &q.bufs[q.n]
	*nb = sp.bufs[sp.n]
	nb.Data = nb.Data[:len(b.Data)]
	copy(nb.Data, b.Data)
	q.n++
	w.free(owner, b)
}

// reply queues a frame the NAT built in place (an ICMP error) back out of
// the port it came from, to the neighbour that sent it.
func (w *Worker) reply(side Side, b *port.Buf) {
	eth := header.Ethernet(b.Data)
	eth.SetDst(eth.Src())
	eth.SetSrc(w.macs[side])
	w.c[ICMPErrorsSent]++
	w.send(side, side, b)
}

// free queues frame b, owned by side's port, to be returned to it.
func (w *Worker) free(side Side, b *port.Buf) {
	q := &w.fq[side]
	if q.n == len(q.bufs) {
		w.ports[side].Free(q.bufs[:q.n])
		q.n = 0
	}
	q.bufs[q.n] = *b
	q.n++
}

// dropFrame counts a drop and frees the frame.
func (w *Worker) dropFrame(side Side, b *port.Buf, r drop.Reason) {
	w.drop(r)
	w.sampleDrop(side, b, r)
	w.free(side, b)
}

// releaseSpares returns the worker's unused copy targets to their ports.
func (w *Worker) releaseSpares() {
	for s := range w.spare {
		if sp := &w.spare[s]; sp.n > 0 {
			w.ports[s].Free(sp.bufs[:sp.n])
			sp.n = 0
		}
	}
}

// flush transmits everything queued and returns freed frames to their
// ports.
func (w *Worker) flush() {
	for side := Inside; side < NumSides; side++ {
		w.flushSide(side)
	}
	for side := Inside; side < NumSides; side++ {
		if q := &w.fq[side]; q.n > 0 {
			w.ports[side].Free(q.bufs[:q.n])
			q.n = 0
		}
		if err := w.ports[side].Flush(); err != nil {
			w.c[LinkErrors]++
		}
	}
}

// flushSide transmits the queue of egress and frees what the port
// refused.
func (w *Worker) flushSide(egress Side) {
	q := &w.tx[egress]
	if q.n == 0 {
		return
	}
	sent := w.ports[egress].TxBurst(q.bufs[:q.n])
	var bytes uint64
	for i := 0; i < sent; i++ {
		bytes += uint64(len(q.bufs[i].Data))
	}
	w.c[TxBytes+Counter(egress)] += bytes
	w.c[TxPackets+Counter(egress)] += uint64(sent)
	if sent < q.n {
		r := drop.TxFull
		if d, ok := w.ports[egress].(port.LinkDowner); ok && d.LinkDown() {
			r = drop.LinkDown
		}
		w.c[dropBase+Counter(r)] += uint64(q.n - sent)
		w.ports[egress].Free(q.bufs[sent:q.n])
	}
	q.n = 0
}
