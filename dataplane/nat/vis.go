package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync/atomic"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/ring"
)

// Operator visibility (issue 17): packet capture, packet trace and drop
// samples. The dataplane side is here and in vis_worker.go; explain and
// the decision functions it shares with the packet path are in decide.go.
//
// Cost when off: a worker loads Engine.vis once per Poll and, when it is
// nil, runs the plain loop; nothing else on the packet path looks at
// capture or trace. Drop samples cost one clock comparison per dropped
// frame. When on, matching frames are copied into bounded per-worker rings
// that the management plane drains; a full ring counts the frame lost and
// the worker goes on (it never waits for a reader).

// visConfig is what the workers see of the running capture and trace. It
// is immutable once published; starting or stopping a session publishes a
// new one.
type visConfig struct {
	cap   *Capture
	trace *Trace
}

// Stage says where in the pipeline a captured frame was taken.
type Stage uint8

const (
	// StageRx: the frame as it arrived, before the NAT touched it.
	StageRx Stage = iota
	// StageTx: the frame as the NAT queued it for transmission
	// (translated, with its next hop's Ethernet addresses).
	StageTx
)

// VisFilter selects the packets a capture or trace takes. A zero field
// matches everything. A packet matches when the frames it arrived and left
// as, together, satisfy every field set:
//   - Inside: a frame on the inside (arriving or leaving) has it as source
//     or destination (the subscriber's address);
//   - Outside: a frame on the outside has it as source or destination (a
//     remote host, or an external address);
//   - Port: a frame has it as source or destination port (ICMP queries:
//     the identifier);
//   - Proto: the IP protocol number.
type VisFilter struct {
	Inside, Outside netip.Addr
	Port            uint16
	Proto           Proto
	AnyProto        bool // Proto is not set
}

// visFilter is VisFilter compiled for the workers.
type visFilter struct {
	in, out       [4]byte
	hasIn, hasOut bool
	port          uint16
	hasPort       bool
	proto         uint8
}

func compileFilter(f VisFilter) (visFilter, error) {
	var c visFilter
	if f.Inside.IsValid() {
		if !f.Inside.Is4() {
			return c, errors.New("inside address must be IPv4")
		}
		c.in, c.hasIn = f.Inside.As4(), true
	}
	if f.Outside.IsValid() {
		if !f.Outside.Is4() {
			return c, errors.New("outside address must be IPv4")
		}
		c.out, c.hasOut = f.Outside.As4(), true
	}
	if f.Port != 0 {
		c.port, c.hasPort = f.Port, true
	}
	if !f.AnyProto {
		if f.Proto >= NumProtos {
			return c, fmt.Errorf("protocol %d unknown", f.Proto)
		}
		c.proto = f.Proto.Number()
	}
	return c, nil
}

// tuple is the addresses and ports of a frame, read without validation:
// enough to match a filter or record a drop sample, whatever the frame.
type tuple struct {
	src, dst     [4]byte
	sport, dport uint16
	proto        uint8
	ip           bool // an IPv4 header was found
}

// frameTuple reads the tuple of an Ethernet frame. It never fails: what
// the frame lacks stays zero.
func frameTuple(d []byte) (t tuple) {
	off := 14
	if len(d) < off {
		return t
	}
	et := binary.BigEndian.Uint16(d[12:])
	if et == 0x8100 && len(d) >= 18 {
		et, off = binary.BigEndian.Uint16(d[16:]), 18
	}
	if et != 0x0800 || len(d) < off+20 || d[off]>>4 != 4 {
		return t
	}
	ip := d[off:]
	t.ip = true
	t.proto = ip[9]
	copy(t.src[:], ip[12:16])
	copy(t.dst[:], ip[16:20])
	ihl := int(ip[0]&0xf) * 4
	if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 || ihl < 20 || len(ip) < ihl+8 {
		return t // a later fragment carries no ports
	}
	l4 := ip[ihl:]
	switch t.proto {
	case ipProtoTCP, ipProtoUDP:
		t.sport, t.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	case ipProtoICMP:
		if l4[0] == 0 || l4[0] == 8 || l4[0] == 13 || l4[0] == 14 { // echo and timestamp
			id := binary.BigEndian.Uint16(l4[4:])
			t.sport, t.dport = id, id
		}
	}
	return t
}

// matchState accumulates, over the frames of one packet, which of the
// filter's conditions some frame met.
type matchState struct{ in, out, port, proto bool }

func (f *visFilter) start() matchState {
	return matchState{in: !f.hasIn, out: !f.hasOut, port: !f.hasPort, proto: f.proto == 0}
}

func (f *visFilter) add(m *matchState, side Side, t *tuple) {
	if !t.ip {
		return
	}
	if f.hasIn && side == Inside && (t.src == f.in || t.dst == f.in) {
		m.in = true
	}
	if f.hasOut && side == Outside && (t.src == f.out || t.dst == f.out) {
		m.out = true
	}
	if f.hasPort && (t.sport == f.port || t.dport == f.port) {
		m.port = true
	}
	if t.proto == f.proto {
		m.proto = true
	}
}

func (m matchState) all() bool { return m.in && m.out && m.port && m.proto }

// mayMatch reports whether a packet that arrived on side as t could match
// once its leaving frames are known: conditions on the other side, and
// ports (translation changes them), are left open.
func (f *visFilter) mayMatch(side Side, t *tuple) bool {
	m := f.start()
	f.add(&m, side, t)
	if side == Inside {
		m.out = true
	} else {
		m.in = true
	}
	m.port = true
	return m.all()
}

// ---- capture ----

// CaptureSnap is the most bytes of a frame a capture keeps; longer frames
// (jumbo MTUs) are truncated, with their length recorded.
const CaptureSnap = 2048

// CaptureFrame is one captured frame. It holds no pointers, so a ring of
// them costs the GC nothing.
type CaptureFrame struct {
	UnixNano int64
	// Packet numbers the packets of a worker while a capture or trace
	// runs: a packet's arriving and leaving frames share it.
	Packet  uint64
	Worker  uint8
	Side    Side  // the interface: arrival side for StageRx, egress for StageTx
	Stage   Stage // StageRx or StageTx
	OrigLen uint16
	CapLen  uint16
	Data    [CaptureSnap]byte
}

// Bytes returns the captured bytes.
func (f *CaptureFrame) Bytes() []byte { return f.Data[:f.CapLen] }

// visRing is one worker's capture or trace ring: a ring.SPSC that the
// worker fills in place (Reserve, Commit: a 2 KiB frame is copied once,
// straight into its slot) and the management goroutine drains, with the
// count of what a full ring lost. The worker never waits. One worker
// goroutine produces; one management goroutine consumes.
type visRing[T any] struct {
	*ring.SPSC[T]
	overflow atomic.Uint64 // written by the worker
}

// reserve returns the slot to fill, or nil (counted) when the ring is
// full. Producer only; Commit makes the slot visible.
func (r *visRing[T]) reserve() *T {
	s := r.Reserve()
	if s == nil {
		r.overflow.Add(1)
	}
	return s
}

// Capture is a running capture. Its methods are for one management
// goroutine; the workers fill its rings.
type Capture struct {
	eng    *Engine
	filter visFilter
	workerRings[CaptureFrame]
}

// DefaultCaptureRing is the frames each worker's capture ring holds
// (2 KiB each).
const DefaultCaptureRing = 1024

// StartCapture starts capturing frames matching f into rings of ringFrames
// frames per worker (0: DefaultCaptureRing). One capture runs at a time.
func (e *Engine) StartCapture(f VisFilter, ringFrames int) (*Capture, error) {
	cf, err := compileFilter(f)
	if err != nil {
		return nil, err
	}
	if ringFrames <= 0 {
		ringFrames = DefaultCaptureRing
	}
	if ringFrames > 1<<16 {
		return nil, fmt.Errorf("capture ring of %d frames: at most 65536", ringFrames)
	}
	c := &Capture{eng: e, filter: cf, workerRings: newWorkerRings[CaptureFrame](e.nworkers, ringFrames)}
	if !swapVis(e, captureSlot, nil, c) {
		return nil, ErrVisBusy
	}
	return c, nil
}

// ErrVisBusy: a capture (or trace) is already running.
var ErrVisBusy = errors.New("one is already running")

// Read copies captured frames into dst, taking from the workers in turn,
// and returns how many.
func (c *Capture) Read(dst []CaptureFrame) int { return c.drain(dst) }

// Overflow returns the frames lost to full rings so far.
func (c *Capture) Overflow() uint64 {
	var n uint64
	for _, r := range c.rings {
		n += r.overflow.Load()
	}
	return n
}

// Stop ends the capture. Frames still in the rings can be Read after.
func (c *Capture) Stop() { swapVis(c.eng, captureSlot, c, nil) }

// ---- trace ----

// Trace is a running trace of the next N matching packets. Its methods are
// for one management goroutine.
type Trace struct {
	eng    *Engine
	filter visFilter
	left   atomic.Int64 // packets still to trace; workers take them
	want   int64
	workerRings[TraceRecord]
	read int64
}

// MaxTrace is the most packets one trace may ask for.
const MaxTrace = 1000

// StartTrace traces the next n packets matching f.
func (e *Engine) StartTrace(f VisFilter, n int) (*Trace, error) {
	cf, err := compileFilter(f)
	if err != nil {
		return nil, err
	}
	if n < 1 || n > MaxTrace {
		return nil, fmt.Errorf("trace of %d packets: want 1..%d", n, MaxTrace)
	}
	t := &Trace{eng: e, filter: cf, want: int64(n), workerRings: newWorkerRings[TraceRecord](e.nworkers, n)}
	t.left.Store(int64(n))
	if !swapVis(e, traceSlot, nil, t) {
		return nil, ErrVisBusy
	}
	return t, nil
}

// Read copies finished trace records into dst and returns how many.
func (t *Trace) Read(dst []TraceRecord) int {
	n := t.drain(dst)
	t.read += int64(n)
	return n
}

// Done reports whether every packet asked for has been traced and read.
func (t *Trace) Done() bool { return t.read >= t.want }

// Stop ends the trace.
func (t *Trace) Stop() { swapVis(t.eng, traceSlot, t, nil) }

// ---- what captures and traces share ----

// swapVis replaces, under e.ctl, the capture or the trace (the one slot
// selects) of the published visConfig with to, if it is from, and keeps the
// other: a start passes from nil and finds the slot taken by a running one
// (false), a stop passes itself and finds it already stopped. A visConfig
// is immutable once published, so this publishes a new one, or nil when
// neither runs: the workers' one check for "visibility off".
func swapVis[T any](e *Engine, slot func(*visConfig) **T, from, to *T) bool {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	var nv visConfig
	if old := e.vis.Load(); old != nil {
		nv = *old
	}
	s := slot(&nv)
	if *s != from {
		return false
	}
	*s = to
	if nv == (visConfig{}) {
		e.vis.Store(nil)
	} else {
		e.vis.Store(&nv)
	}
	return true
}

func captureSlot(v *visConfig) **Capture { return &v.cap }
func traceSlot(v *visConfig) **Trace     { return &v.trace }

// workerRings are the rings of a capture or trace, one per worker (indexed
// by worker id), that the management goroutine drains in turn.
type workerRings[T any] struct {
	rings []*visRing[T]
	next  int // the ring the next drain starts with
}

// newWorkerRings makes the rings of size values (rounded up to a power of
// two), which the callers bound far below ring.MaxCapacity.
func newWorkerRings[T any](workers, size int) workerRings[T] {
	w := workerRings[T]{rings: make([]*visRing[T], workers)}
	c := 1 << bits.Len(uint(size-1))
	for i := range w.rings {
		q, err := ring.NewSPSC[T](c)
		if err != nil {
			panic(err) // the callers' bounds make it impossible
		}
		w.rings[i] = &visRing[T]{SPSC: q}
	}
	return w
}

// drain copies values into dst from each worker's ring in turn and returns
// how many.
func (w *workerRings[T]) drain(dst []T) int {
	n := 0
	for range w.rings {
		n += w.rings[w.next].DequeueBurst(dst[n:])
		w.next = (w.next + 1) % len(w.rings)
	}
	return n
}

// ---- drop samples ----

// dropSampleSlots is how many samples each worker keeps per reason.
const dropSampleSlots = 4

// dropSlot is one drop sample, published under a sequence lock: the worker
// makes seq odd, writes, makes it even; a reader retries while seq is odd
// or changed under it.
type dropSlot struct {
	seq  atomic.Uint64
	nano atomic.Int64
	a, b atomic.Uint64 // the packed tuple (packSample)
}

// dropSamples are one worker's samples of one reason. last and next are the
// worker's own.
type dropSamples struct {
	last  int64
	next  uint32
	slots [dropSampleSlots]dropSlot
}

// DropSample is a dropped packet's 5-tuple, as the frame was when dropped.
type DropSample struct {
	UnixNano int64
	Worker   int
	Side     Side
	Proto    uint8
	Src, Dst netip.AddrPort
}

func packSample(side Side, t *tuple) (a, b uint64) {
	a = uint64(binary.BigEndian.Uint32(t.src[:]))<<32 | uint64(binary.BigEndian.Uint32(t.dst[:]))
	b = uint64(t.sport)<<48 | uint64(t.dport)<<32 | uint64(t.proto)<<8 | uint64(side)
	return a, b
}

func unpackSample(a, b uint64) (s DropSample) {
	var src, dst [4]byte
	binary.BigEndian.PutUint32(src[:], uint32(a>>32))
	binary.BigEndian.PutUint32(dst[:], uint32(a))
	s.Src = netip.AddrPortFrom(netip.AddrFrom4(src), uint16(b>>48))
	s.Dst = netip.AddrPortFrom(netip.AddrFrom4(dst), uint16(b>>32))
	s.Proto = uint8(b >> 8)
	s.Side = Side(b & 0xff)
	return s
}

// DropSamples returns, for each drop reason, the samples the workers hold,
// newest first. Any goroutine may call it.
func (e *Engine) DropSamples() [drop.NumReasons][]DropSample {
	var out [drop.NumReasons][]DropSample
	e.ctl.Lock()
	ws := append([]*Worker(nil), e.workers...)
	e.ctl.Unlock()
	for _, w := range ws {
		if w == nil {
			continue
		}
		for r := range w.vis.drops {
			for i := range w.vis.drops[r].slots {
				sl := &w.vis.drops[r].slots[i]
				for try := 0; try < 8; try++ {
					s1 := sl.seq.Load()
					if s1&1 != 0 {
						continue
					}
					n, a, b := sl.nano.Load(), sl.a.Load(), sl.b.Load()
					if sl.seq.Load() != s1 {
						continue
					}
					if n != 0 {
						s := unpackSample(a, b)
						s.UnixNano, s.Worker = n, w.ID()
						out[r] = append(out[r], s)
					}
					break
				}
			}
		}
	}
	for r := range out {
		ss := out[r]
		// Newest first; a handful of entries.
		for i := 1; i < len(ss); i++ {
			for j := i; j > 0 && ss[j].UnixNano > ss[j-1].UnixNano; j-- {
				ss[j], ss[j-1] = ss[j-1], ss[j]
			}
		}
	}
	return out
}
