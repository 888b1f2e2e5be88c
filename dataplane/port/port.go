// Package port defines the poll-mode driver interface between the NAT
// pipeline and the devices that carry its frames.
//
// It plays the role of DPDK's ethdev API: a worker goroutine receives a burst
// of frames from a port, the pipeline rewrites them in place, and the worker
// transmits a burst to the same or another port. Frames are owned by the pool
// of the port they came from; a frame moves to a port of another pool only
// by being copied into a frame allocated from that port. Ports that share
// a pool (Pooler: an AF_XDP worker's sockets on one UMEM) take each other's
// frames as they are.
//
// Implementations in this repository:
//   - dataplane/port/memport: an in-memory port (the analogue of DPDK's ring
//     PMD) used by tests and benchmarks;
//   - dataplane/afxdp: an AF_XDP socket bound to one NIC queue.
//
// A Port is used by exactly one goroutine, the worker that owns it. Nothing in
// this interface is safe for concurrent use, and nothing on the per-burst path
// may allocate.
package port

// Buf is one frame. Bufs live in caller-owned, preallocated arrays that are
// reused burst after burst.
type Buf struct {
	// Data holds the frame, starting at the Ethernet header; len(Data) is the
	// frame length. cap(Data) is the room the frame may grow to in place.
	Data []byte
	// Handle identifies the frame to its owning port (a UMEM address for
	// AF_XDP, a slot number for memport). Callers treat it as opaque.
	Handle uint64
}

// Port is a single queue of a network device, seen as a poll-mode driver.
//
// Ownership rules (the same as DPDK mbufs):
//   - RxBurst hands frames to the caller; the caller must eventually pass each
//     of them to TxBurst or Free on the same port, or on a port of the same
//     pool (SamePool).
//   - Alloc hands out empty frames of the port's pool, with len(Data) == 0 and
//     cap(Data) == the frame size; the same rule applies to them.
//   - TxBurst takes ownership of bufs[:n] and returns n; bufs[n:] still belong
//     to the caller, who typically frees them and counts a drop.
type Port interface {
	// RxBurst fills bufs with up to len(bufs) received frames and returns how
	// many it filled. It never blocks.
	RxBurst(bufs []Buf) int
	// TxBurst queues bufs for transmission and returns how many it accepted.
	// Frames may sit in a queue until Flush.
	TxBurst(bufs []Buf) int
	// Flush pushes queued transmissions to the device (for AF_XDP, the
	// sendto kick) and reclaims completed frames. Workers call it once per
	// burst. It returns a non-nil error only for a device-level failure,
	// such as the link being down.
	Flush() error
	// Alloc fills bufs with empty frames and returns how many it filled.
	Alloc(bufs []Buf) int
	// Free returns frames to the port's pool.
	Free(bufs []Buf)
	// FrameSize is the capacity of every frame of this port.
	FrameSize() int
}

// LinkDowner is implemented by ports that know when their link is down
// (AF_XDP: ENETDOWN, ENXIO; memport: SetLinkUp). A worker counts the frames
// such a port refuses as drop.LinkDown rather than drop.TxFull, and its
// adaptive sleep drives the port's recovery. Worker goroutine.
type LinkDowner interface {
	LinkDown() bool
}

// Waiter is implemented by ports that can sleep until traffic arrives, for
// the adaptive poll mode. Wait returns when a frame may be ready to receive,
// when timeoutMillis has elapsed, or on error.
type Waiter interface {
	Wait(timeoutMillis int) error
}

// Pooler is implemented by ports that can say which frame pool their frames
// belong to. Ports reporting the same non-zero Pool share it: a frame
// received on or allocated from one may be passed to TxBurst or Free of
// another, and the pool accounts for it exactly once wherever it is. Every
// port sharing a pool is used by the same goroutine.
type Pooler interface {
	Pool() uint64
}

// SamePool reports whether a and b share a frame pool, so that a frame of
// one can leave through the other without a copy.
func SamePool(a, b Port) bool {
	pa, ok := a.(Pooler)
	if !ok {
		return false
	}
	pb, ok := b.(Pooler)
	return ok && pa.Pool() != 0 && pa.Pool() == pb.Pool()
}
