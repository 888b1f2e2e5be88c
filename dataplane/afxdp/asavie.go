package afxdp

import (
	"fmt"

	"github.com/asavie/xdp"
	"golang.org/x/sys/unix"
)

// asavieRings adapts github.com/asavie/xdp v0.3.3 to the ring interface. It
// is kept as the reference backend the issue asked for and for the
// benchmark comparison in bench/afxdp; the native backend is the default.
//
// Verified defects of v0.3.3 (xdp.go) and how this adapter copes:
//   - ring indexes are plain loads/stores (the fences are commented out):
//     nothing to do from outside; correct on amd64 only because the
//     compiler happens not to reorder them;
//   - GetDescs scans every frame, and Receive marks a frame free while the
//     caller still holds it: we never call GetDescs; our own free stack
//     tracks frames;
//   - Complete(n) consumes completions without returning their addresses:
//     we keep a FIFO of transmitted addresses and pop n of them, relying on
//     the kernel completing valid TX descriptors in ring order (it writes
//     completion addresses in TX order, in copy and zero-copy mode);
//   - Transmit always calls sendto (no need_wakeup) and panics on any errno
//     other than EINTR/EAGAIN/EBUSY: we queue and kick through
//     Transmit, recover the panic and turn it into an error plus a counter;
//   - Close never munmaps the four ring mappings, which also keeps the
//     socket file alive, so a closed socket stays in the XSKMAP and keeps
//     swallowing frames until the process exits;
//   - no shared UMEM, no headroom, the UMEM is owned by the library: a
//     socket cannot be re-created under frames the caller still holds, so
//     link recovery after an interface is deleted is native-only.
//
// It keeps the Port's statistics that only it can know (the kicks its
// Transmit makes by itself, the panics it recovers) up to date through st.
//
// Used by the Port's owning goroutine only.
type asavieRings struct {
	st *Stats
	s  *xdp.Socket
	// inflight is the FIFO of addresses on the TX ring or in flight, in
	// submission order; head/tail are free-running indexes.
	inflight   []uint64
	head, tail uint32
	fillBuf    []xdp.Desc
	txBuf      []xdp.Desc
	umemSize   int
}

func newAsavieRings(ifindex, queue int, o *Options, st *Stats) (*asavieRings, error) {
	if o.Headroom != 0 {
		return nil, fmt.Errorf("afxdp: the asavie backend does not support headroom")
	}
	if o.mode == modeZeroCopy {
		return nil, fmt.Errorf("afxdp: the asavie backend cannot request zero-copy")
	}
	s, err := xdp.NewSocket(ifindex, queue, &xdp.SocketOptions{
		NumFrames:              o.NumFrames,
		FrameSize:              o.FrameSize,
		FillRingNumDescs:       o.FillRingSize,
		CompletionRingNumDescs: o.CompletionRingSize,
		RxRingNumDescs:         o.RxRingSize,
		TxRingNumDescs:         o.TxRingSize,
	})
	if err != nil {
		return nil, fmt.Errorf("afxdp: asavie NewSocket: %w", err)
	}
	return &asavieRings{
		st:       st,
		s:        s,
		inflight: make([]uint64, pow2ceil(o.TxRingSize+o.CompletionRingSize)),
		fillBuf:  make([]xdp.Desc, o.FillRingSize),
		txBuf:    make([]xdp.Desc, o.TxRingSize),
		umemSize: o.NumFrames * o.FrameSize,
	}, nil
}

func pow2ceil(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func (r *asavieRings) fd() int { return r.s.FD() }

// umem returns the library's UMEM. GetFrame is the only accessor; a
// descriptor spanning the whole area gives us the full slice.
func (r *asavieRings) umem() []byte {
	return r.s.GetFrame(xdp.Desc{Addr: 0, Len: uint32(r.umemSize)})
}

func (r *asavieRings) fillFree() uint32 { return uint32(r.s.NumFreeFillSlots()) }

func (r *asavieRings) fillQueued() uint32 {
	// The library does not expose the fill consumer; NumFilled counts
	// frames given to the fill ring and not yet received, an upper bound.
	return uint32(r.s.NumFilled())
}

func (r *asavieRings) fill(addrs []uint64) int {
	n := min(len(addrs), len(r.fillBuf))
	for i := range n {
		r.fillBuf[i] = xdp.Desc{Addr: addrs[i]}
	}
	return r.s.Fill(r.fillBuf[:n])
}

func (r *asavieRings) receive(d []unix.XDPDesc) int {
	got := r.s.Receive(len(d))
	for i := range got {
		d[i] = unix.XDPDesc(got[i])
	}
	return len(got)
}

func (r *asavieRings) txFree() uint32 { return uint32(r.s.NumFreeTxSlots()) }

// transmit queues descriptors. Transmit kicks too; any panic is recovered
// and the descriptors it had already queued are accounted for.
func (r *asavieRings) transmit(d []unix.XDPDesc) (n int) {
	n = min(len(d), len(r.txBuf), r.s.NumFreeTxSlots())
	for i := range n {
		r.txBuf[i] = xdp.Desc(d[i])
		r.inflight[r.tail&uint32(len(r.inflight)-1)] = d[i].Addr
		r.tail++
	}
	// Transmit puts all n on the ring before it calls sendto, so even if
	// sendto panics the n descriptors are queued. It kicks by itself.
	_ = r.safeTransmit(r.txBuf[:n])
	if n > 0 {
		r.st.TxKicks++
	}
	return n
}

// safeTransmit calls Transmit and converts its panic into an error.
func (r *asavieRings) safeTransmit(d []xdp.Desc) (err error) {
	defer func() {
		if v := recover(); v != nil {
			r.st.RecoveredPanics++
			// The library panics with "sendto failed with rc=%d and
			// errno=%d"; recover the errno so link errors classify.
			var rc, errno int
			if e, ok := v.(error); ok {
				if _, serr := fmt.Sscanf(e.Error(), "sendto failed with rc=%d and errno=%d", &rc, &errno); serr == nil && errno != 0 {
					err = fmt.Errorf("afxdp: asavie Transmit panicked: %w", unix.Errno(errno))
					return
				}
			}
			err = fmt.Errorf("afxdp: asavie Transmit panicked: %v", v)
		}
	}()
	r.s.Transmit(d)
	return nil
}

func (r *asavieRings) txPending() uint32 {
	return uint32(len(r.txBuf) - r.s.NumFreeTxSlots())
}

// txNeedsKick is always true: the library binds without need_wakeup.
func (r *asavieRings) txNeedsKick() bool { return true }

// kick is Transmit of nothing, which is a bare sendto loop.
func (r *asavieRings) kick() error {
	return r.safeTransmit(nil)
}

// wakeRx is never needed: the library binds without need_wakeup.
func (r *asavieRings) wakeRx() (bool, error) { return false, nil }

func (r *asavieRings) complete(addrs []uint64) int {
	n := min(len(addrs), r.s.NumCompleted())
	if n == 0 {
		return 0
	}
	r.s.Complete(n)
	for i := range n {
		addrs[i] = r.inflight[r.head&uint32(len(r.inflight)-1)]
		r.head++
	}
	return n
}

func (r *asavieRings) stats() (unix.XDPStatistics, error) {
	s, err := r.s.Stats()
	return s.KernelStats, err
}

// close calls the library's Close, which leaks the ring mappings (see the
// type comment).
func (r *asavieRings) close() error { return r.s.Close() }
