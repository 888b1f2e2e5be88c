package nat

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// MaxBurst is the largest burst a worker handles at once.
const MaxBurst = 64

// WorkerConfig configures one worker.
type WorkerConfig struct {
	// Ports are the worker's inside and outside queues.
	Ports [NumSides]port.Port
	// MACs are the appliance's own MAC addresses on each side.
	MACs [NumSides][6]byte
	// Neighbors resolves next hops.
	Neighbors Neighbors
	// Burst is the number of frames received per port per poll; default
	// and maximum MaxBurst.
	Burst int
	// PendingFrames bounds frames waiting for neighbour resolution;
	// default 256, about what the kernel itself queues per unresolved
	// neighbour (unres_qlen_bytes, 212992 bytes).
	PendingFrames int
}

// Worker translates the frames of one inside and one outside queue. It is
// owned by one goroutine: every method must be called from it, except
// Counters, which any goroutine may call.
type Worker struct {
	id    uint8
	eng   *Engine
	ports [NumSides]port.Port
	macs  [NumSides][6]byte
	l2    Neighbors
	burst int
	// shared: the two ports share one frame pool, so send passes frames
	// between them without a copy (zerocopy.go).
	shared bool

	// snap is loaded once per Poll; now and nowNano once per Poll that
	// receives frames or does its housekeeping (see Poll).
	snap     *Snapshot
	now      uint32 // tick (ms)
	nowNano  int64
	lastNano int64 // nowNano when last read
	lastBusy bool  // the Poll that last read the clock moved frames
	idle     uint32

	rng uint64

	rx    [MaxBurst]port.Buf
	pk    [MaxBurst]header.Parsed
	pr    [MaxBurst]drop.Reason
	probe [MaxBurst]flowtable.Probe
	sink  uint64 // keeps the prefetch loads alive
	tx    [NumSides]txQueue
	fq    [NumSides]freeQueue
	spare [NumSides]spareFrames

	pend     pending
	frag     fragState
	fragBufs [32]port.Buf
	tokens   int   // ICMP error tokens
	tokAt    int64 // nowNano when tokens were last added

	events *eventRing
	vis    visWorker // capture, trace, drop samples (vis_worker.go)
	c      Counters
	shadow Counters
	pub    *published
}

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

// NewWorker creates worker number id (0 ≤ id < Options.Workers). It must be
// called before packets flow; workers live as long as the engine.
func (e *Engine) NewWorker(id int, cfg WorkerConfig) (*Worker, error) {
	if id < 0 || id >= e.nworkers {
		return nil, fmt.Errorf("nat: worker %d out of range 0..%d", id, e.nworkers-1)
	}
	if cfg.Ports[Inside] == nil || cfg.Ports[Outside] == nil || cfg.Neighbors == nil {
		return nil, fmt.Errorf("nat: worker %d needs two ports and a neighbour resolver", id)
	}
	if cfg.Burst == 0 || cfg.Burst > MaxBurst {
		cfg.Burst = MaxBurst
	}
	if cfg.PendingFrames == 0 {
		cfg.PendingFrames = 256
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	w := &Worker{
		id:     uint8(id),
		eng:    e,
		ports:  cfg.Ports,
		macs:   cfg.MACs,
		l2:     cfg.Neighbors,
		burst:  cfg.Burst,
		shared: sharesFrames(cfg.Ports),
		rng:    binary.LittleEndian.Uint64(seed[:]) | 1,
		events: newEventRing(e.evCap),
		pub:    &published{},
	}
	w.pend.init(cfg.PendingFrames)
	s := e.snap.Load()
	w.tokens, w.tokAt = s.Config.Limits.ICMPErrorsPerSecond, e.clock.Now().UnixNano()
	// Held fragments occupy frames of the port they came from: at most a
	// quarter of the smaller port's, so that a fragment flood cannot take
	// the frames the port needs to receive (see frag.go).
	fcap := MaxHeldFragmentsFor(portFrames(cfg.Ports))
	if h := s.Config.Limits.HeldFragments; h > fcap {
		return nil, fmt.Errorf("nat: worker %d: limits.held_fragments %d is more than a quarter of its ports' %d frames (at most %d)",
			id, h, portFrames(cfg.Ports), fcap)
	}
	w.frag.init(fcap, uint32(w.rand()))
	e.ctl.Lock()
	for len(e.workers) <= id {
		e.workers = append(e.workers, nil)
	}
	if e.workers[id] != nil {
		e.ctl.Unlock()
		return nil, fmt.Errorf("nat: worker %d already exists", id)
	}
	e.workers[id] = w
	e.ctl.Unlock()
	return w, nil
}

// FrameCounter is implemented by ports that know how many frames their
// pool has (memport, AF_XDP); the worker sizes what it may hold by it.
type FrameCounter interface{ Frames() int }

// portFrames returns the frames of the smaller of ports, or 0 if a port
// does not say.
func portFrames(ports [NumSides]port.Port) int {
	n := 0
	for _, p := range ports {
		fc, ok := p.(FrameCounter)
		if !ok {
			return 0
		}
		if f := fc.Frames(); n == 0 || f < n {
			n = f
		}
	}
	return n
}

// ID returns the worker number.
func (w *Worker) ID() int { return int(w.id) }

// Counters copies the worker's published counters. Any goroutine may call
// it; the values are at most one burst old.
func (w *Worker) Counters(out *Counters) { w.pub.load(out) }

func (w *Worker) rand() uint64 {
	x := w.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	w.rng = x
	return x
}

func (w *Worker) drop(r drop.Reason) {
	w.c[dropBase+Counter(r)]++
	w.vis.lastDrop = r
}

// idleHousekeeping is how often an empty Poll does the full round (see
// Poll); a power of two.
const idleHousekeeping = 64

// Poll runs one iteration of the worker: a burst from each port through the
// NAT, then transmission. It returns the number of frames received. It
// never blocks and never allocates.
//
// A busy-polling worker calls Poll millions of times a second, and most
// calls find nothing. Reading the clock costs tens of nanoseconds on a
// virtual machine's kvm-clock (profiles of natd under load showed time.Now
// taking 12% of the worker's CPU when every Poll read it), so an empty
// Poll does nothing but look at the RX rings, unless it follows a Poll
// that moved frames, frames wait for a neighbour or a fragment, or it is
// the idleHousekeeping-th in a row. Those, and every Poll that receives,
// read the clock once, run the timers, flush the TX queues and publish the
// counters. Busy time stays exact: the interval between two clock reads
// is busy if the first read was by a Poll that moved frames, and the first
// empty Poll after a busy one always reads the clock.
func (w *Worker) Poll() int {
	w.snap = w.eng.snap.Load()
	vc := w.eng.vis.Load() // capture and trace: nil unless an operator runs one
	w.c[Polls]++
	total := 0
	clocked := false
	for side := Inside; side < NumSides; side++ {
		n := w.ports[side].RxBurst(w.rx[:w.burst])
		if n == 0 {
			continue
		}
		if !clocked {
			w.readClock()
			clocked = true
		}
		total += n
		w.c[RxPackets+Counter(side)] += uint64(n)
		// Pass 1 parses the burst and touches each packet's session
		// bucket and record; pass 2 translates. With the loads of pass
		// 1 independent of each other, a burst's cache misses overlap
		// instead of costing one memory latency each, one after another.
		sink := uint64(0)
		for i := 0; i < n; i++ {
			b := &w.rx[i]
			w.c[RxBytes+Counter(side)] += uint64(len(b.Data))
			p := &w.pk[i]
			w.pr[i] = header.Parse(b.Data, p)
			if w.pr[i] == drop.None && p.L4 != header.L4ICMPError {
				sport, dport := keyPorts(side, p.L4 == header.L4ICMPQuery, p.SrcPort, p.DstPort)
				w.eng.sessions.PrepareTuple(p.Src, p.Dst, sport, dport, p.Proto, &w.probe[i])
				sink += w.eng.sessions.Prefetch(&w.probe[i])
			}
		}
		w.sink += sink
		if vc != nil {
			w.processVis(vc, side, n)
			continue
		}
		for i := 0; i < n; i++ {
			w.process(side, &w.rx[i], &w.pk[i], w.pr[i], &w.probe[i])
		}
	}
	if total == 0 {
		w.idle++
		if !w.lastBusy && w.pend.n == 0 && w.frag.n == 0 && w.idle&(idleHousekeeping-1) != 0 {
			return 0
		}
	} else {
		w.idle = 0
		w.c[BusyPolls]++
	}
	if !clocked {
		w.readClock()
	}
	w.pend.retry(w)
	w.frag.expire(w)
	w.flush()
	w.lastBusy = total > 0
	w.pub.publish(&w.c, &w.shadow)
	return total
}

// readClock reads the clock for this Poll and accounts the interval since
// the previous read as busy or idle.
func (w *Worker) readClock() {
	t := w.eng.clock.Now()
	w.now = w.eng.Tick(t)
	w.nowNano = t.UnixNano()
	if w.lastNano != 0 {
		d := uint64(w.nowNano - w.lastNano)
		w.c[PollNanos] += d
		if w.lastBusy {
			w.c[BusyNanos] += d
		}
	}
	w.lastNano = w.nowNano
}

// Tick is the worker's clock (ms since the engine's epoch) as of its last
// reading, which is at most idleHousekeeping empty Polls old. It costs no
// clock read; the poll loop uses it to pace its own periodic work.
func (w *Worker) Tick() uint32 { return w.now }

// Publish makes the counters visible without a poll, and gives the spare
// frames back to their ports, for an idle worker about to sleep in its
// ports' Wait.
func (w *Worker) Publish() {
	w.releaseSpares()
	w.pub.publish(&w.c, &w.shadow)
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

func (w *Worker) l2send(owner, egress Side, b *port.Buf, dst [4]byte) {
	mac, r := w.l2.Resolve(egress, dst)
	switch r {
	case Resolved:
		eth := header.Ethernet(b.Data)
		eth.SetDst(mac)
		eth.SetSrc(w.macs[egress])
		w.send(owner, egress, b)
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

// reply queues a frame the NAT built in place (an ICMP error) back out of
// the port it came from, to the neighbour that sent it.
func (w *Worker) reply(side Side, b *port.Buf) {
	eth := header.Ethernet(b.Data)
	eth.SetDst(eth.Src())
	eth.SetSrc(w.macs[side])
	w.c[ICMPErrorsSent]++
	w.send(side, side, b)
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

// event queues an event on the worker's ring; a full ring counts it lost.
func (w *Worker) event(ev Event) {
	if w.snap.muted(ev.Type) {
		return
	}
	ev.UnixNano = w.nowNano
	ev.Worker = w.id
	if !w.events.q.Enqueue(ev) {
		w.c[EventsDropped]++
	}
}

// sessionEvent queues an event about session x.
func (w *Worker) sessionEvent(t EventType, x *flowtable.Entry) {
	ev := Event{Type: t}
	ev.Proto, _ = protoIndex(x.Keys[0].Proto)
	fillEndpoints(&ev, x, w.snap.Config.LogDestinations)
	w.event(ev)
}
