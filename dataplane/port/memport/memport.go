// Package memport is an in-memory implementation of port.Port, the analogue
// of DPDK's ring PMD: NAT engine tests and benchmarks run the real pipeline
// on it instead of on an AF_XDP socket.
//
// A Port takes its frames from a pool of equal-sized frames carved out of one
// preallocated byte slice: its own, or one it shares with the other ports of
// its worker (NewShared), the way a worker's AF_XDP sockets share a UMEM. A
// frame's Handle is its index, tagged with the pool's identity. A test goroutine injects frames, which are copied into pool
// frames and queued on an RX ring for the worker's RxBurst; frames the
// worker transmits (TxBurst, then Flush) are queued on a TX ring, from which
// the test goroutine collects them. Pair connects two ports back to back
// instead, so that one port's transmissions arrive at the other's RX ring.
//
// # Goroutines
//
//   - The worker goroutine, one at a time, calls the port.Port methods
//     (RxBurst, TxBurst, Flush, Alloc, Free); none of them allocates.
//   - The test goroutine, one at a time, calls Inject, InjectBurst,
//     Collect, Drain and SetLinkUp. It may be the worker goroutine itself.
//   - Any goroutine may call Stats, InUse, Frames and FrameSize.
//
// The rings are the synchronisation between the two sides: frame contents
// written before a descriptor is enqueued are visible to whoever dequeues
// it. The RX and TX rings are ring.SPSC (one producer, one consumer each);
// the frame pool is a ring.MPMC because both sides allocate from it and free
// to it.
//
// # Ownership checks
//
// memport panics on the ownership bugs port.Port forbids, so that a NAT
// engine test finds them where they happen: freeing or transmitting a frame
// twice, freeing or transmitting a frame the worker does not hold (one still
// on the RX ring, one already freed), a frame of another port, a forged
// Handle, or a Buf whose Data does not lie in the frame its Handle names.
// The worker keeps a per-frame "held" byte that only it reads and writes, so
// the checks cost one load and one store per frame and need no atomics.
// InUse reports frames outside the pool, so a test can assert that a
// workload leaked none.
package memport

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"syscall"

	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/ring"
)

// Defaults for zero Config fields.
const (
	DefaultFrames    = 4096
	DefaultFrameSize = 2048
)

// Limits on Config fields.
const (
	MinFrameSize = 64      // a minimum Ethernet frame without FCS fits
	MaxFrameSize = 1 << 16 // lengths and offsets are carried as uint32; 64 KiB covers jumbo frames
	MaxFrames    = 1 << 20 // 1 Mi frames; with MaxPoolBytes, bounds the preallocation
	MaxPoolBytes = 1 << 30 // Frames * FrameSize
)

// chunk is how many descriptors the worker moves per ring operation; longer
// bursts are split. It sizes the worker's and the test side's scratch arrays.
const chunk = 64

// ErrConfig is returned (wrapped) by New for an invalid Config.
var ErrConfig = errors.New("memport: invalid config")

// ErrLinkDown is returned by Flush while the link is down (SetLinkUp). It
// wraps syscall.ENETDOWN, the errno an AF_XDP port reports in that state, so
// pipeline code can recognise either with errors.Is.
var ErrLinkDown = fmt.Errorf("memport: link down: %w", syscall.ENETDOWN)

// ErrPaired is returned (wrapped) by Pair for a port that is already paired
// or for pairing a port with itself.
var ErrPaired = errors.New("memport: port already paired")

// Config sizes a Port. Zero fields take their defaults.
type Config struct {
	// Frames is the number of frames in the pool (default DefaultFrames).
	Frames int
	// FrameSize is the capacity of every frame in bytes (default
	// DefaultFrameSize), between MinFrameSize and MaxFrameSize.
	FrameSize int
	// RxRing and TxRing are the capacities of the RX and TX descriptor
	// rings, powers of two (default: the smallest power of two >= Frames,
	// so the rings are never the bottleneck). A smaller TX ring makes
	// TxBurst refuse frames when the test side does not collect, which
	// tests use to exercise TxFull handling.
	RxRing, TxRing int
}

// desc describes a frame on the RX or TX ring: the frame index, the offset
// of the data within the frame and its length. It is pointer-free, so the
// rings' slot arrays are invisible to the garbage collector.
type desc struct {
	idx, off, n uint32
}

// nextID numbers ports from 1, so the zero Handle never names a frame.
var nextID atomic.Uint32

type pad [128]byte

// frames is a pool of frames: the memory, the free ring and the worker's
// view of which frames it holds. A Port has its own, or shares one with
// other ports of the same worker (NewShared), as AF_XDP sockets share a
// UMEM.
type frames struct {
	// Read-only after New.
	id   uint32 // tags Handles: a frame of the pool is good on every port sharing it
	fs   int
	n    int
	mem  []byte
	pool *ring.MPMC[uint32]

	// Worker-owned.
	held []bool // held[i]: the worker holds frame i (received or allocated, not yet transmitted or freed)

	heldCount atomic.Int64 // published by the worker, read by Stats
}

// Port is an in-memory port.Port. See the package documentation for which
// goroutine may call which method.
type Port struct {
	// Read-only after New (and Pair).
	*frames
	rx   *ring.SPSC[desc]
	tx   *ring.SPSC[desc]
	peer *Port

	_ pad

	// Worker-owned.
	stage  []desc // frames accepted by TxBurst, published by Flush
	nstage int
	widx   [chunk]uint32
	pidx   [chunk]uint32 // peer frames, in deliver
	wdesc  [chunk]desc

	// Published by the worker once per call, read by Stats.
	rxPackets   atomic.Uint64
	txPackets   atomic.Uint64
	txDropped   atomic.Uint64
	allocFailed atomic.Uint64

	_ pad

	// Written by the RX producer: the test goroutine (Inject) or, for a
	// paired port, the peer's worker (its Flush).
	injected  atomic.Uint64
	rxDropped atomic.Uint64

	// Test-side.
	collected atomic.Uint64
	linkDown  atomic.Bool
	tidx      [chunk]uint32
	tdesc     [chunk]desc

	_ pad
}

var _ port.Port = (*Port)(nil)

// New returns a Port with a full pool and empty rings.
func New(cfg Config) (*Port, error) {
	if cfg.Frames == 0 {
		cfg.Frames = DefaultFrames
	}
	if cfg.FrameSize == 0 {
		cfg.FrameSize = DefaultFrameSize
	}
	if cfg.Frames < 1 || cfg.Frames > MaxFrames {
		return nil, fmt.Errorf("%w: Frames %d not in [1, %d]", ErrConfig, cfg.Frames, MaxFrames)
	}
	if cfg.FrameSize < MinFrameSize || cfg.FrameSize > MaxFrameSize {
		return nil, fmt.Errorf("%w: FrameSize %d not in [%d, %d]", ErrConfig, cfg.FrameSize, MinFrameSize, MaxFrameSize)
	}
	if cfg.Frames*cfg.FrameSize > MaxPoolBytes {
		return nil, fmt.Errorf("%w: %d frames of %d bytes exceed %d bytes", ErrConfig, cfg.Frames, cfg.FrameSize, MaxPoolBytes)
	}
	f := &frames{
		id:   nextID.Add(1),
		fs:   cfg.FrameSize,
		n:    cfg.Frames,
		mem:  make([]byte, cfg.Frames*cfg.FrameSize),
		held: make([]bool, cfg.Frames),
	}
	var err error
	if f.pool, err = ring.NewMPMC[uint32](1 << bits.Len(uint(cfg.Frames-1))); err != nil {
		return nil, fmt.Errorf("%w: pool: %w", ErrConfig, err)
	}
	for i := range uint32(cfg.Frames) {
		f.pool.Enqueue(i)
	}
	return newPortOn(f, cfg)
}

// NewShared returns a port whose frames come from p's pool, with its own RX
// and TX rings (cfg's Frames and FrameSize must be zero or p's): a frame
// received on or allocated from either may be transmitted or freed on
// either, as between AF_XDP sockets sharing a UMEM. Both ports, and any
// other sharing the pool, must be used by the same worker goroutine; Stats'
// Held and FreeFrames, and InUse, count the whole pool.
func NewShared(p *Port, cfg Config) (*Port, error) {
	if (cfg.Frames != 0 && cfg.Frames != p.n) || (cfg.FrameSize != 0 && cfg.FrameSize != p.fs) {
		return nil, fmt.Errorf("%w: a port sharing a pool of %d frames of %d bytes cannot have %d of %d",
			ErrConfig, p.n, p.fs, cfg.Frames, cfg.FrameSize)
	}
	return newPortOn(p.frames, cfg)
}

// newPortOn makes a port with its own rings on pool f.
func newPortOn(f *frames, cfg Config) (*Port, error) {
	pow2 := 1 << bits.Len(uint(f.n-1))
	if cfg.RxRing == 0 {
		cfg.RxRing = pow2
	}
	if cfg.TxRing == 0 {
		cfg.TxRing = pow2
	}
	p := &Port{frames: f, stage: make([]desc, cfg.TxRing)}
	var err error
	if p.rx, err = ring.NewSPSC[desc](cfg.RxRing); err != nil {
		return nil, fmt.Errorf("%w: RxRing: %w", ErrConfig, err)
	}
	if p.tx, err = ring.NewSPSC[desc](cfg.TxRing); err != nil {
		return nil, fmt.Errorf("%w: TxRing: %w", ErrConfig, err)
	}
	return p, nil
}

// Pool implements port.Pooler: ports made by NewShared from one another
// report the same pool.
func (p *Port) Pool() uint64 { return uint64(p.id) }

var _ port.Pooler = (*Port)(nil)

// Pair connects a and b back to back: frames a's worker transmits arrive on
// b's RX ring and vice versa, each copied into a frame of the receiving
// port's pool when the sender flushes. A frame that finds no free frame or
// a full RX ring at the receiver is dropped and counted in the receiver's
// RxDropped, like a NIC missing a frame.
//
// Call Pair before either port is used. The peer's worker becomes the
// producer of each port's RX ring, so Inject and InjectBurst panic on a
// paired port; Collect and Drain find nothing.
func Pair(a, b *Port) error {
	if a == b {
		return fmt.Errorf("%w: cannot pair a port with itself", ErrPaired)
	}
	if a.peer != nil || b.peer != nil {
		return fmt.Errorf("%w: ports %d and %d", ErrPaired, a.id, b.id)
	}
	a.peer, b.peer = b, a
	return nil
}

// FrameSize implements port.Port. Any goroutine.
func (p *Port) FrameSize() int { return p.fs }

// Frames returns the number of frames in the port's pool. Any goroutine.
func (p *Port) Frames() int { return p.n }

// handle tags a frame index with the port's identity.
func (p *Port) handle(idx uint32) uint64 { return uint64(p.id)<<32 | uint64(idx) }

// frame returns frame idx as an empty slice with the frame's capacity.
func (p *Port) frame(idx uint32) []byte {
	base := int(idx) * p.fs
	return p.mem[base : base : base+p.fs]
}

// take and give are the one home of the worker's frame ownership
// (frames.held): take when a frame reaches the worker from a ring (RxBurst,
// Alloc), give when the worker hands one back (TxBurst, Free). Each panics,
// naming op, on a frame that breaks ownership; why says how it could have
// happened.

// take records that the worker holds frame idx, which came to it from a
// ring. A frame the worker already holds means a ring carried it twice.
// It inlines, so a received frame costs no call.
func (p *Port) take(idx uint32, op, why string) {
	if p.held[idx] {
		badOwner(op, idx, why, "while the worker holds it")
	}
	p.held[idx] = true
}

// give validates a Handle the worker hands back, records that the worker
// no longer holds its frame and returns the frame's index. It panics if
// the Handle is not one of this port's frames, or the worker does not hold
// it.
func (p *Port) give(h uint64, op, why string) uint32 {
	id, idx := uint32(h>>32), uint32(h)
	if id != p.id {
		badFrame("%s: handle %#x belongs to pool %d, not pool %d", op, h, id, p.id)
	}
	if int(idx) >= p.n {
		badFrame("%s: handle %#x: frame %d out of range [0, %d)", op, h, idx, p.n)
	}
	if !p.held[idx] {
		badOwner(op, idx, "is not held by the worker", "("+why+", or never received)")
	}
	p.held[idx] = false
	return idx
}

// badOwner is badFrame with the few arguments take needs to stay within
// the inlining budget.
//
//go:noinline
func badOwner(op string, idx uint32, what, why string) {
	badFrame("%s: frame %d %s %s", op, idx, what, why)
}

// badFrame reports an ownership bug. It is kept out of line so the
// formatting (which allocates) stays off the per-frame path.
//
//go:noinline
func badFrame(format string, args ...any) {
	panic("memport: " + fmt.Sprintf(format, args...))
}

// RxBurst implements port.Port. Worker goroutine.
func (p *Port) RxBurst(bufs []port.Buf) int {
	total := 0
	for total < len(bufs) {
		want := min(len(bufs)-total, chunk)
		n := p.rx.DequeueBurst(p.wdesc[:want])
		for i, d := range p.wdesc[:n] {
			// The RX ring only carries frames taken from the pool.
			p.take(d.idx, "RxBurst", "received")
			f := p.frame(d.idx)
			bufs[total+i] = port.Buf{Data: f[:d.n], Handle: p.handle(d.idx)}
		}
		total += n
		if n < want {
			break
		}
	}
	if total > 0 {
		p.rxPackets.Add(uint64(total))
		p.heldCount.Add(int64(total))
	}
	return total
}

// Alloc implements port.Port: it fills bufs with empty frames from the pool
// (len 0, cap FrameSize) and returns how many it filled. Worker goroutine.
func (p *Port) Alloc(bufs []port.Buf) int {
	total := 0
	for total < len(bufs) {
		want := min(len(bufs)-total, chunk)
		n := p.pool.DequeueBurst(p.widx[:want])
		for i, idx := range p.widx[:n] {
			p.take(idx, "Alloc", "in the pool")
			bufs[total+i] = port.Buf{Data: p.frame(idx), Handle: p.handle(idx)}
		}
		total += n
		if n < want {
			break
		}
	}
	if total > 0 {
		p.heldCount.Add(int64(total))
	}
	if total < len(bufs) {
		p.allocFailed.Add(uint64(len(bufs) - total))
	}
	return total
}

// Free implements port.Port: it returns frames the worker holds to the pool.
// It panics on a frame the worker does not hold. Worker goroutine.
func (p *Port) Free(bufs []port.Buf) {
	for len(bufs) > 0 {
		k := min(len(bufs), chunk)
		for i := range bufs[:k] {
			p.widx[i] = p.give(bufs[i].Handle, "Free", "double free")
		}
		p.release(p.widx[:k])
		p.heldCount.Add(-int64(k))
		bufs = bufs[k:]
	}
}

// release returns frames to the pool. The pool has room for every frame, so
// a failure means a frame was returned twice and is a bug in memport.
func (p *Port) release(idx []uint32) {
	if !p.pool.EnqueueBulk(idx) {
		badFrame("pool overflow returning %d frames: a frame was returned twice", len(idx))
	}
}

// TxBurst implements port.Port. It accepts as many frames as the TX ring
// will have room for when Flush publishes them, and none while the link is
// down; the caller keeps bufs[n:]. It panics on a frame the worker does not
// hold, on Data that does not lie at the end of the frame its Handle names
// (Data may start past the frame's start, after the pipeline stripped a
// header, but must keep the frame's capacity end), and on an empty frame.
// Worker goroutine.
func (p *Port) TxBurst(bufs []port.Buf) int {
	if p.linkDown.Load() {
		return 0
	}
	// Only this goroutine produces into p.tx, so its free space cannot
	// shrink before Flush: staging within it guarantees Flush's bulk
	// enqueue succeeds. A paired port stages up to the stage's size.
	room := len(p.stage) - p.nstage
	if p.peer == nil {
		room = p.tx.Free() - p.nstage
	}
	n := min(len(bufs), room)
	for i := range bufs[:n] {
		b := &bufs[i]
		idx := p.give(b.Handle, "TxBurst", "already transmitted or freed")
		c := cap(b.Data)
		end := (int(idx)+1)*p.fs - 1
		if c == 0 || c > p.fs || &b.Data[:c][c-1] != &p.mem[end] {
			badFrame("TxBurst: Data of frame %d (cap %d) does not end at the frame's end", idx, c)
		}
		if len(b.Data) == 0 {
			badFrame("TxBurst: frame %d is empty", idx)
		}
		p.stage[p.nstage] = desc{idx: idx, off: uint32(p.fs - c), n: uint32(len(b.Data))}
		p.nstage++
	}
	if n > 0 {
		p.heldCount.Add(-int64(n))
	}
	return n
}

// Flush implements port.Port: it publishes the frames accepted by TxBurst to
// the TX ring (or delivers them to the peer). While the link is down it
// drops them instead, counting them in TxDropped, and returns ErrLinkDown.
// Worker goroutine.
func (p *Port) Flush() error {
	if p.linkDown.Load() {
		if p.nstage > 0 {
			p.dropStaged()
		}
		return ErrLinkDown
	}
	if p.nstage == 0 {
		return nil
	}
	if p.peer != nil {
		p.deliver(p.stage[:p.nstage])
	} else if !p.tx.EnqueueBulk(p.stage[:p.nstage]) {
		badFrame("Flush: TX ring has less room than TxBurst reserved")
	}
	p.txPackets.Add(uint64(p.nstage))
	p.nstage = 0
	return nil
}

// dropStaged returns staged frames to the pool when the link is down.
func (p *Port) dropStaged() {
	for s := p.stage[:p.nstage]; len(s) > 0; {
		k := min(len(s), chunk)
		for i, d := range s[:k] {
			p.widx[i] = d.idx
		}
		p.release(p.widx[:k])
		s = s[k:]
	}
	p.txDropped.Add(uint64(p.nstage))
	p.nstage = 0
}

// deliver copies frames into the peer's frames, queues them on the peer's
// RX ring and returns ours to our pool. It runs on this port's worker,
// which is the peer RX ring's only producer; the peer's pool is an MPMC
// ring, so taking frames from it here is safe.
func (p *Port) deliver(s []desc) {
	q := p.peer
	var sentTotal, dropped uint64
	for len(s) > 0 {
		k := min(len(s), chunk)
		got := q.pool.DequeueBurst(p.pidx[:k])
		used, m := 0, 0
		for _, d := range s[:k] {
			if used == got || int(d.n) > q.fs {
				continue // no frame at the peer, or too long for its frames
			}
			copy(q.frame(p.pidx[used])[:d.n], p.frame(d.idx)[d.off:d.off+d.n])
			p.wdesc[m] = desc{idx: p.pidx[used], n: d.n}
			used++
			m++
		}
		sent := q.rx.EnqueueBurst(p.wdesc[:m])
		sentTotal += uint64(sent)
		dropped += uint64(k - sent)

		// Our frames go back to our pool.
		for i, d := range s[:k] {
			p.widx[i] = d.idx
		}
		p.release(p.widx[:k])
		// Peer frames that found no room on its RX ring, or were not
		// needed, go back to the peer's pool.
		r := 0
		for _, d := range p.wdesc[sent:m] {
			p.widx[r] = d.idx
			r++
		}
		r += copy(p.widx[r:], p.pidx[used:got])
		if r > 0 {
			q.release(p.widx[:r])
		}
		s = s[k:]
	}
	q.injected.Add(sentTotal)
	if dropped > 0 {
		q.rxDropped.Add(dropped)
	}
}
