package nat

import "github.com/xnat/xnat/dataplane/port"

// Frames between interfaces without a copy.
//
// A translated frame usually leaves through the other interface than the
// one it came in on. When the worker's two ports have separate frame pools
// (two AF_XDP sockets with their own UMEMs, two plain memports), send
// copies it into a spare frame of the egress port and returns the original
// to its own: one memcpy of the whole frame per forwarded packet, and a
// second frame's cache lines touched.
//
// When the two ports share one pool (port.SamePool: afxdp sockets bound to
// one UMEM with XDP_SHARED_UMEM, memport.NewShared), the frame the inside
// port received is already a frame the outside port can transmit. send then
// queues it on the egress port as it is, exactly as it does a frame that
// leaves through the port it came from; the egress port's completion ring
// gives it back to the pool, and the pool refills whichever port's fill
// ring needs it. Nothing else changes: a frame dropped, held for a
// neighbour or held as a fragment is freed to the port that owns it, which
// with one pool is the same pool either way, so every frame is still in
// exactly one place (TestSharedPoolAccounting).

// sharesFrames reports whether a worker's two ports share one frame pool,
// so that send passes frames between them without copying.
func sharesFrames(ports [NumSides]port.Port) bool {
	return port.SamePool(ports[Inside], ports[Outside])
}

// SharesFrames reports whether the worker forwards frames between its two
// ports without copying them (its ports share a frame pool). Any
// goroutine: it never changes after NewWorker.
func (w *Worker) SharesFrames() bool { return w.shared }
