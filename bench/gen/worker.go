package gen

import (
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
)

// live is a worker's running totals, published once per batch for the
// progress line. Each worker has its own, padded to two cache lines so
// workers never share one.
type live struct {
	txPkts, txBytes atomic.Uint64
	rxPkts, rxBytes atomic.Uint64
	_               [96]byte
}

// handshakeWait bounds how long a Bidir TCP worker waits for its flows'
// SYN-ACKs before sending data anyway (the timeouts are reported).
const handshakeWait = 200 * int64(time.Millisecond)

// idleSpins is how many empty bursts a receiver spins through before it
// sleeps in poll(2) (unless BusyPoll): about 10-50 µs of spinning, enough
// to ride out gaps inside a stream without a wakeup on every frame.
const idleSpins = 256

// sleep idles a receiver: in poll(2) on its socket for up to 5 ms, so the
// first frame wakes it, or (a port that cannot wait) for 50 µs.
func sleep(w port.Waiter) {
	if w != nil {
		_ = w.Wait(5)
		return
	}
	time.Sleep(50 * time.Microsecond)
}

// poller drives one port for a worker's goroutine, which owns it: it pins
// the goroutine, flushes after each burst and idles after empty ones.
type poller struct {
	cpu, rtPrio int
	busy        bool
	port        port.Port
	wait        port.Waiter // port's poll(2), if it has one
	empty       int         // bursts in a row that moved nothing
	flushErrs   uint64
	err         error // the last failure, reported as a warning
}

// start pins the calling goroutine; on failure it runs unpinned and the
// error is reported.
func (p *poller) start() {
	if err := pin(p.cpu, p.rtPrio); err != nil {
		p.err = err
	}
}

// flush hands the port what the last burst queued.
func (p *poller) flush() {
	if err := p.port.Flush(); err != nil {
		p.flushErrs++
		p.err = err
	}
}

// rest follows a receive-only burst that got frames: after idleSpins empty
// bursts in a row it sleeps on the port, unless busy-polling.
func (p *poller) rest(got int) {
	if got > 0 {
		p.empty = 0
		return
	}
	p.empty++
	if !p.busy && p.empty > idleSpins {
		sleep(p.wait)
	}
}

// sendBack transmits frames turned around in place (replies built in
// received frames), frees those the ring refused, and counts both.
func (p *poller) sendBack(txq []port.Buf, sent, refused *uint64) {
	if len(txq) == 0 {
		return
	}
	s := p.port.TxBurst(txq)
	*sent += uint64(s)
	if s < len(txq) {
		*refused += uint64(len(txq) - s)
		p.port.Free(txq[s:])
	}
}

// txWorker sends one queue's share of the flows and, in reflecting modes,
// receives the replies on the same socket. Everything in it is owned by
// its goroutine; the engine reads the plain fields only after the worker
// has stopped.
type txWorker struct {
	poller
	id    int
	mode  Mode
	tcp   bool
	b     *Builder
	spec  *FlowSpec
	cur   *Cursor
	pacer *Pacer
	batch int
	live  *live

	// Streams: flow f is in stream f mod nstreams; this worker's flows
	// are w, w+W, ..., so its stream steps by W too.
	nstreams, step uint32
	stream         uint32
	seqs           []uint64 // per stream: frames built (sent, after finish)

	bufs  []port.Buf
	held  []port.Buf // built, not yet accepted by the TX ring
	nheld int
	rxb   []port.Buf
	txq   []port.Buf
	freeq []port.Buf
	p     header.Parsed
	ret   *Recorder // replies (reflecting modes)

	txPkts, txBytes uint64
	firstNs, lastNs int64
	exhausted       bool // NewFlows: every flow of this worker was sent

	// Bidir over TCP: after the SYNs of round 0, data waits until every
	// flow of this worker has had its SYN-ACK (or handshakeWait passed),
	// as a real client waits for the handshake: a stateful NAT treats
	// data before the SYN-ACK as invalid and passes it untranslated.
	ownFlows     uint64
	synAcksIn    uint64
	gated        bool
	gateUntil    int64
	gateTimeouts uint64
	allocShort   uint64
	unsent       uint64
	established  uint64
	hsAcks       uint64
	hsAckDrops   uint64
	mismatched   uint64
	foreign      uint64
}

// run is the worker's goroutine: a send phase until the engine says stop
// (or, for NewFlows, until its flows run out), then in reflecting modes a
// receive-only drain phase.
func (w *txWorker) run(e *engine) {
	defer e.workers.Done()
	w.start()
	first := true
	for !e.stopTx.Load() && !(w.exhausted && w.nheld == 0) {
		now := nanotime()
		sent := w.send(now)
		w.flush()
		if first {
			first = false
			e.txSent()
		}
		got := 0
		if w.mode.Reflects() {
			got = w.receive()
		}
		w.publish()
		if sent == 0 && got == 0 {
			w.empty++
			w.idle(now, w.empty)
		} else {
			w.empty = 0
		}
	}
	if first {
		e.txSent() // stopped, or had nothing to send, before its first burst
	}
	w.finishTx()
	w.publish()
	e.txFinished()
	if !w.mode.Reflects() {
		return
	}
	w.empty = 0
	for !e.stopRx.Load() {
		got := w.receive()
		w.flush()
		w.publish()
		w.rest(got)
	}
}

// idle is called after an iteration that neither sent nor received.
func (w *txWorker) idle(now int64, empty int) {
	if w.pacer == nil || w.nheld > 0 || w.exhausted {
		return // the ring or the completion queue is the limit: keep kicking
	}
	wait := w.pacer.Wait(now)
	switch {
	case wait <= 0:
	case w.mode.Reflects():
		// Sleep in poll(2) so a reply wakes us at once (its RTT stamp
		// is taken on wakeup); poll's timeout is in whole milliseconds.
		if ms := wait / 1e6; ms >= 1 && !w.busy && empty > idleSpins && w.wait != nil {
			_ = w.wait.Wait(int(ms))
		}
	case wait >= 100_000 && !w.busy:
		time.Sleep(time.Duration(wait - 50_000))
	}
}

// send transmits frames that waited for the ring, then builds and sends
// one new burst (as many as the pacer allows). It returns the frames the
// ring accepted.
func (w *txWorker) send(now int64) int {
	sent := 0
	if w.nheld > 0 {
		// Frames wait here while the ring is full; restamp them so
		// their latency starts when they can really leave.
		for i := range w.held[:w.nheld] {
			w.b.Restamp(w.held[i].Data, uint64(now))
		}
		k := w.port.TxBurst(w.held[:w.nheld])
		w.account(w.held[:k], now)
		sent += k
		copy(w.held, w.held[k:w.nheld])
		w.nheld -= k
		if w.nheld > 0 {
			return sent
		}
	}
	if w.exhausted {
		return sent
	}
	if w.gated {
		if w.synAcksIn < w.ownFlows && now < w.gateUntil {
			return sent
		}
		if w.synAcksIn < w.ownFlows {
			w.gateTimeouts++
		}
		w.gated = false
	}
	n := w.batch
	if w.pacer != nil {
		if n = w.pacer.Take(now, n); n == 0 {
			return sent
		}
	}
	k := w.port.Alloc(w.bufs[:n])
	if k < n {
		w.allocShort++
		if w.pacer != nil {
			w.pacer.Refund(n - k)
		}
	}
	built := 0
	for built < k {
		st := w.stream
		m := Mark{Stream: uint16(st), Seq: uint32(w.seqs[st]), TxNs: uint64(now), Flow: w.cur.Index}
		w.seqs[st]++
		d := w.bufs[built].Data
		w.bufs[built].Data = d[:w.b.Build(d[:0:cap(d)], w.cur.Tuple(), w.cur.Round, &m)]
		built++
		if w.cur.Next() {
			w.stream = w.cur.Index % w.nstreams
			if w.mode.NewFlows() {
				w.exhausted = true
				break
			}
			if w.tcp && w.mode == Bidir && w.cur.Round == 1 {
				w.gated, w.gateUntil = true, now+handshakeWait
				break
			}
		} else if w.stream += w.step; w.stream >= w.nstreams {
			w.stream -= w.nstreams
		}
	}
	if built < k {
		w.port.Free(w.bufs[built:k])
		if w.pacer != nil {
			w.pacer.Refund(k - built)
		}
	}
	s := w.port.TxBurst(w.bufs[:built])
	w.account(w.bufs[:s], now)
	sent += s
	if s < built {
		w.nheld = copy(w.held, w.bufs[s:built])
	}
	return sent
}

func (w *txWorker) account(bufs []port.Buf, now int64) {
	if len(bufs) == 0 {
		return
	}
	var bytes uint64
	for i := range bufs {
		bytes += uint64(len(bufs[i].Data))
	}
	w.txPkts += uint64(len(bufs))
	w.txBytes += bytes
	if w.firstNs == 0 {
		w.firstNs = now
	}
	w.lastNs = now
}

// finishTx frees the frames still waiting for the ring. They are the
// newest of their streams, so taking them off the per-stream counts
// leaves exactly the frames sent, numbered 0..count-1.
func (w *txWorker) finishTx() {
	mo := w.b.MarkOffset()
	for i := range w.held[:w.nheld] {
		m := ReadMark(w.held[i].Data[mo:])
		w.seqs[m.Stream]--
	}
	w.unsent = uint64(w.nheld)
	w.port.Free(w.held[:w.nheld])
	w.nheld = 0
}

// receive handles one burst of replies: check each against its flow,
// record it, and in ConnRateBidir over TCP answer each SYN-ACK with the
// handshake's ACK (the received frame, rewritten in place).
func (w *txWorker) receive() int {
	n := w.port.RxBurst(w.rxb)
	if n == 0 {
		return 0
	}
	now := nanotime()
	q, fr := 0, 0
	for i := range n {
		f := w.rxb[i].Data
		m, ok := Classify(f, &w.p)
		if !ok {
			w.foreign++
			w.freeq[fr] = w.rxb[i]
			fr++
			continue
		}
		p := &w.p
		// The reply travels from the flow's destination back to its
		// source: reversed, its tuple must be the flow's own.
		if idx, ok := w.spec.Index(Tuple{Src: p.Dst, Dst: p.Src, SrcPort: p.DstPort, DstPort: p.SrcPort}); !ok || idx != m.Flow {
			w.mismatched++
		}
		w.ret.Observe(&m, len(f), now)
		if p.L4 == header.L4TCP && p.TCPFlags&(header.TCPFlagSYN|header.TCPFlagACK) == header.TCPFlagSYN|header.TCPFlagACK {
			w.synAcksIn++
		}
		if w.mode == ConnRateBidir {
			w.established++
			if w.tcp {
				if l := HandshakeAck(f, p); l > 0 {
					w.rxb[i].Data = f[:l]
					w.txq[q] = w.rxb[i]
					q++
					continue
				}
			}
		}
		w.freeq[fr] = w.rxb[i]
		fr++
	}
	w.sendBack(w.txq[:q], &w.hsAcks, &w.hsAckDrops)
	w.port.Free(w.freeq[:fr])
	return n
}

func (w *txWorker) publish() {
	w.live.txPkts.Store(w.txPkts)
	w.live.txBytes.Store(w.txBytes)
	if w.ret != nil {
		w.live.rxPkts.Store(w.ret.Packets)
		w.live.rxBytes.Store(w.ret.Bytes)
	}
}

// rxWorker is the far side: a counting sink, or the reflector. Owned by
// its goroutine like txWorker.
type rxWorker struct {
	poller
	id    int
	mode  Mode
	rec   *Recorder
	learn *MappingTable
	live  *live

	rxb   []port.Buf
	txq   []port.Buf
	freeq []port.Buf
	p     header.Parsed

	foreign, learned, changed uint64
	reflected, reflectDrops   uint64
	synAcks, handshakes       uint64
}

func (w *rxWorker) run(e *engine) {
	defer e.workers.Done()
	w.start()
	for !e.stopRx.Load() {
		got := w.burst()
		w.flush()
		w.live.rxPkts.Store(w.rec.Packets)
		w.live.rxBytes.Store(w.rec.Bytes)
		w.rest(got)
	}
}

// burst receives, records and (reflecting) turns around one burst.
func (w *rxWorker) burst() int {
	n := w.port.RxBurst(w.rxb)
	if n == 0 {
		return 0
	}
	now := nanotime()
	reflect := w.mode.Reflects()
	q, fr := 0, 0
	for i := range n {
		f := w.rxb[i].Data
		m, ok := Classify(f, &w.p)
		if !ok {
			// A pure ACK carries no Mark: the handshake's third packet.
			if reflect && w.p.L4 == header.L4TCP && Reflect(f, &w.p) == HandshakeDone {
				w.handshakes++
			} else {
				w.foreign++
			}
			w.freeq[fr] = w.rxb[i]
			fr++
			continue
		}
		if !w.rec.Observe(&m, len(f), now) || !reflect {
			w.freeq[fr] = w.rxb[i]
			fr++
			continue
		}
		if w.learn != nil {
			l, c := w.learn.Observe(m.Flow, w.p.Src, w.p.SrcPort)
			if l {
				w.learned++
			}
			if c {
				w.changed++
			}
		}
		switch Reflect(f, &w.p) {
		case SynAck:
			w.synAcks++
			fallthrough
		case Echo:
			w.txq[q] = w.rxb[i]
			q++
		default:
			w.freeq[fr] = w.rxb[i]
			fr++
		}
	}
	w.sendBack(w.txq[:q], &w.reflected, &w.reflectDrops)
	w.port.Free(w.freeq[:fr])
	return n
}
