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
	// credits is the worker's pool of port-table credits (portCredits):
	// its inserts and frees of ports take and give them without a
	// locked instruction.
	credits portCredits

	rx    [MaxBurst]port.Buf
	pk    [MaxBurst]header.Parsed
	pr    [MaxBurst]drop.Reason
	probe [MaxBurst]flowtable.Probe
	view  [MaxBurst]flowtable.View // the burst's sessions (fastpath.go)
	tx    [NumSides]txQueue
	fq    [NumSides]freeQueue
	spare [NumSides]spareFrames

	nb       newBurst // the burst's new sessions (newsession.go)
	hint     newHint
	cl       claim // newOutbound's (mapping.go)
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
	e.portTab.register(&w.credits)
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
		w.receive(side, n)
		if vc != nil {
			w.processVis(vc, side, n)
			continue
		}
		w.forwardBurst(side, n)
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
	w.credits.publish()
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
// ports' Wait. It gives the worker's port-table credits back too
// (portCredits): a worker that stops (poller.Runner.Stop ends with
// Publish) or sleeps holds none out of the other workers' reach.
func (w *Worker) Publish() {
	w.releaseSpares()
	w.pub.publish(&w.c, &w.shadow)
	w.eng.portTab.giveBack(&w.credits)
}
