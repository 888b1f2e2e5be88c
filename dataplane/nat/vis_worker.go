package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// visWorker is a worker's capture, trace and drop-sample state. Only the
// worker's goroutine touches it, except drops[*].slots, which the
// management plane reads (DropSamples).
type visWorker struct {
	packet   uint64      // packets seen while a capture or trace runs
	lastDrop drop.Reason // the reason of the last drop counted
	rxLen    int
	rxOrig   int
	rx       [CaptureSnap]byte // the frame as it arrived, before process rewrites it
	rec      TraceRecord
	drops    [drop.NumReasons]dropSamples
}

// processVis is Poll's loop over a burst while a capture or trace runs:
// each frame goes through process as usual, and is copied or traced
// around it.
func (w *Worker) processVis(vc *visConfig, side Side, n int) {
	for i := 0; i < n; i++ {
		w.visPacket(vc, side, &w.rx[i], &w.pk[i], w.pr[i], &w.probe[i])
	}
}

func (w *Worker) visPacket(vc *visConfig, side Side, b *port.Buf, p *header.Parsed, r drop.Reason, probe *flowtable.Probe) {
	v := &w.vis
	v.packet++
	arrived := frameTuple(b.Data)
	c, tr := vc.cap, vc.trace
	tracing := tr != nil && tr.left.Load() > 0 && tr.filter.mayMatch(side, &arrived)
	if c != nil {
		v.rxOrig = len(b.Data)
		v.rxLen = copy(v.rx[:], b.Data)
	}
	var want verdict
	if tracing {
		rec := &v.rec
		rec.Trail.N = 0
		rec.UnixNano, rec.Packet, rec.Worker, rec.Side = w.nowNano, v.packet, w.id, side
		if r == drop.None || r == drop.NonFirstFragment {
			rec.Trail.add(Step{Code: CodeParsed, Proto: p.Proto, A: p.Src, PA: p.SrcPort, B: p.Dst, PB: p.DstPort, X: uint32(p.TCPFlags), Y: uint32(len(b.Data))})
		} else {
			rec.Trail.add(Step{Code: CodeParseFailed, Reason: r, Y: uint32(len(b.Data))})
		}
		switch r {
		case drop.None:
			want = w.eng.decide(w.snap, side, p, &rec.Trail)
		case drop.NonFirstFragment:
			rec.Trail.add(Step{Code: CodeLaterFrag, X: uint32(p.IPID)})
		}
	}
	var start [NumSides]int
	for s := range start {
		start[s] = w.tx[s].n
	}
	pend, frag, icmp := w.pend.n, w.frag.n, w.c[ICMPErrorsSent]
	v.lastDrop = drop.None

	w.process(side, b, p, r, probe)

	for s := range start {
		if w.tx[s].n < start[s] {
			start[s] = 0 // the queue was flushed meanwhile: what is left is ours
		}
	}
	if c != nil {
		m := c.filter.start()
		c.filter.add(&m, side, &arrived)
		w.matchLeft(&c.filter, &m, &start)
		held := w.pend.n > pend
		if held {
			// Held for the neighbour: the frame is captured when it
			// leaves (captureHeld), under this packet's number.
			e := &w.pend.q[w.pend.n-1]
			t := frameTuple(e.buf.Data)
			c.filter.add(&m, e.egress, &t)
		}
		if m.all() {
			w.captureFrames(c.rings[w.id], side, &start)
			if held {
				w.pend.q[w.pend.n-1].vis = v.packet
			}
		}
	}
	if tracing {
		m := tr.filter.start()
		tr.filter.add(&m, side, &arrived)
		w.matchLeft(&tr.filter, &m, &start)
		if m.all() && tr.left.Add(-1) >= 0 {
			w.finishTrace(tr.rings[w.id], &arrived, &start, want, pend, frag, icmp)
		}
	}
}

// matchLeft adds the frames process queued to m.
func (w *Worker) matchLeft(f *visFilter, m *matchState, start *[NumSides]int) {
	for s := Inside; s < NumSides; s++ {
		q := &w.tx[s]
		for j := start[s]; j < q.n; j++ {
			t := frameTuple(q.bufs[j].Data)
			f.add(m, s, &t)
		}
	}
}

func (w *Worker) captureFrames(ring *visRing[CaptureFrame], side Side, start *[NumSides]int) {
	v := &w.vis
	if f := ring.reserve(); f != nil {
		f.UnixNano, f.Packet, f.Worker, f.Side, f.Stage = w.nowNano, v.packet, w.id, side, StageRx
		f.OrigLen, f.CapLen = uint16(v.rxOrig), uint16(copy(f.Data[:], v.rx[:v.rxLen]))
		ring.Commit()
	}
	for s := Inside; s < NumSides; s++ {
		q := &w.tx[s]
		for j := start[s]; j < q.n; j++ {
			f := ring.reserve()
			if f == nil {
				continue
			}
			d := q.bufs[j].Data
			f.UnixNano, f.Packet, f.Worker, f.Side, f.Stage = w.nowNano, v.packet, w.id, s, StageTx
			f.OrigLen, f.CapLen = uint16(len(d)), uint16(copy(f.Data[:], d))
			ring.Commit()
		}
	}
}

// finishTrace adds what became of the packet to its trail, as observed:
// the drop counted, the frames queued (rewrite, next hop, egress), or the
// frame held.
func (w *Worker) finishTrace(ring *visRing[TraceRecord], arrived *tuple, start *[NumSides]int, want verdict, pend, frag int, icmp uint64) {
	t := &w.vis.rec.Trail
	if w.c[ICMPErrorsSent] > icmp {
		t.add(Step{Code: CodeICMPSent, Side: w.vis.rec.Side})
	}
	if r := w.vis.lastDrop; r != drop.None {
		t.add(Step{Code: CodeDrop, Reason: r})
	} else if w.c[ICMPErrorsSent] == icmp {
		sent := false
		for s := Inside; s < NumSides; s++ {
			q := &w.tx[s]
			if start[s] >= q.n {
				continue
			}
			sent = true
			d := q.bufs[start[s]].Data
			out := frameTuple(d)
			if out.src != arrived.src || out.sport != arrived.sport {
				t.add(Step{Code: CodeRewriteSrc, A: arrived.src, PA: arrived.sport, B: out.src, PB: out.sport})
			}
			if out.dst != arrived.dst || out.dport != arrived.dport {
				t.add(Step{Code: CodeRewriteDst, A: arrived.dst, PA: arrived.dport, B: out.dst, PB: out.dport})
			}
			var nh Step
			nh.Code, nh.Side = CodeNextHop, s
			copy(nh.A[:], d[0:4])
			nh.PA = uint16(d[4])<<8 | uint16(d[5])
			t.add(nh)
			if n := q.n - start[s]; n > 1 {
				t.add(Step{Code: CodeFragmented, X: uint32(n)})
			}
			t.add(Step{Code: CodeTransmit, Side: s})
		}
		if !sent {
			if w.pend.n > pend || w.frag.n > frag {
				t.add(Step{Code: CodeHeld, X: uint32(w.pend.n - pend), Y: uint32(w.frag.n - frag)})
			} else if want.r != drop.None {
				t.add(Step{Code: CodeDrop, Reason: want.r})
			}
		}
	}
	if x := ring.reserve(); x != nil {
		*x = w.vis.rec
		ring.Commit()
	}
}

// sampleDrop records the 5-tuple of a frame dropped for r, at most once a
// second per reason: the per-drop cost is a comparison.
func (w *Worker) sampleDrop(side Side, b *port.Buf, r drop.Reason) {
	d := &w.vis.drops[r]
	if w.nowNano-d.last < 1e9 && d.last != 0 {
		return
	}
	d.last = w.nowNano
	t := frameTuple(b.Data)
	a, bb := packSample(side, &t)
	sl := &d.slots[d.next%dropSampleSlots]
	d.next++
	sl.seq.Add(1)
	sl.nano.Store(w.nowNano)
	sl.a.Store(a)
	sl.b.Store(bb)
	sl.seq.Add(1)
}

// captureHeld captures a frame that waited for its next hop, as it leaves:
// the last frame send queued on its egress.
func (w *Worker) captureHeld(e *pendEntry) {
	vc := w.eng.vis.Load()
	q := &w.tx[e.egress]
	if vc == nil || vc.cap == nil || q.n == 0 {
		return
	}
	d := q.bufs[q.n-1].Data
	if frameTuple(d) != frameTuple(e.buf.Data) {
		return // send dropped it (no frame to copy into)
	}
	ring := vc.cap.rings[w.id]
	if f := ring.reserve(); f != nil {
		f.UnixNano, f.Packet, f.Worker, f.Side, f.Stage = w.nowNano, e.vis, w.id, e.egress, StageTx
		f.OrigLen, f.CapLen = uint16(len(d)), uint16(copy(f.Data[:], d))
		ring.Commit()
	}
}
