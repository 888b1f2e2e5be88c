package afxdp

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// UMEM is the frame memory of one or more sockets, and the bookkeeping of
// every frame in it: the free stack and one ownership byte per frame.
//
// Every Port has one. A private UMEM is made by New for the port alone. A
// shared UMEM (NewUMEM, then Options.UMEM of each port) serves several
// sockets of one worker, typically its inside and outside queues: the
// first socket bound registers the memory with the kernel (XDP_UMEM_REG),
// the others bind with XDP_SHARED_UMEM naming its fd, each with its own
// fill and completion ring (Linux >= 5.10 for sockets on different devices
// or queues; Documentation/networking/af_xdp.rst, "XDP_SHARED_UMEM bind
// flag"). A frame received on one socket can then be put on another's TX
// ring as it is: nothing is copied in user space. On veth the kernel still
// copies into and out of the UMEM (copy mode); zero-copy is the driver's.
//
// Where a frame is, exactly one of (see census in the tests):
//   - on the free stack (frameFree);
//   - with the caller (frameUser): received, or allocated, and neither
//     transmitted nor freed;
//   - with member k's kernel rings (frameKernel+k): on its fill ring, RX
//     ring, TX ring or completion ring, or between two of them in the
//     kernel. A frame comes back only through the completion ring of the
//     socket that transmitted it, or the rings of a socket that is closed
//     or re-created.
//
// A UMEM and its member ports are used by one goroutine, the worker that
// owns them all; NewUMEM and Close are called before and after it runs.
type UMEM struct {
	id        uint64
	mem       []byte
	own       bool // mapped by NewUMEM/New (native): ours to munmap
	frameSize int
	headroom  int
	shift     uint // log2(frameSize)

	free  []uint64 // LIFO stack of frame base addresses; free[:nfree]
	nfree int
	state []uint8 // per frame: frameFree, frameUser or frameKernel+member

	// members[k] is the port whose rings own frames in state
	// frameKernel+k, nil once it is closed.
	members []*Port
	// needWake is the registrant's XDP_USE_NEED_WAKEUP: sockets that share
	// its UMEM inherit it (and its copy or zero-copy mode) from the kernel.
	needWake bool
	refs     int
}

// Frame ownership states, one byte per UMEM frame.
const (
	frameFree   uint8 = iota // on the free stack
	frameUser                // handed to the caller by RxBurst or Alloc
	frameKernel              // frameKernel+k: on member k's rings
)

// MaxUMEMSockets is how many sockets may share one UMEM.
const MaxUMEMSockets = 64

var umemIDs atomic.Uint64

// NewUMEM maps a UMEM to be shared by sockets ports (Options.UMEM), with
// o.NumFrames frames for each, so that every socket has the budget of a
// private UMEM. o's defaults apply; the ports' NumFrames, FrameSize and
// Headroom are the UMEM's. Only the native backend can share a UMEM
// (Backend.SharesUMEM). The caller's reference goes with Close; the memory
// is unmapped when the last port using it is closed too.
func NewUMEM(o *Options, sockets int) (*UMEM, error) {
	d := o.withDefaults()
	if err := d.validate(); err != nil {
		return nil, err
	}
	if !d.Backend.SharesUMEM() {
		return nil, fmt.Errorf("afxdp: the %v backend cannot share a UMEM", d.Backend)
	}
	if sockets < 1 || sockets > MaxUMEMSockets {
		return nil, fmt.Errorf("afxdp: a UMEM for %d sockets: must be 1 to %d", sockets, MaxUMEMSockets)
	}
	mem, err := mapUMEM(sockets * d.NumFrames * d.FrameSize)
	if err != nil {
		return nil, err
	}
	u := newUMEM(mem, true, &d)
	u.refs = 1
	return u, nil
}

// newUMEM puts every frame of mem on the free stack.
func newUMEM(mem []byte, own bool, o *Options) *UMEM {
	n := len(mem) / o.FrameSize
	u := &UMEM{
		id: umemIDs.Add(1), mem: mem, own: own,
		frameSize: o.FrameSize, headroom: o.Headroom,
		shift: uint(bits.TrailingZeros(uint(o.FrameSize))),
		free:  make([]uint64, n),
		state: make([]uint8, n),
	}
	for i := n - 1; i >= 0; i-- {
		u.free[u.nfree] = uint64(i) << u.shift
		u.nfree++
	}
	return u
}

// Frames is the number of frames in the UMEM.
func (u *UMEM) Frames() int { return len(u.state) }

// Close drops the reference NewUMEM gave its caller. Close of a nil UMEM
// does nothing, so a caller that shares only sometimes may always close.
func (u *UMEM) Close() error {
	if u == nil {
		return nil
	}
	return u.unref()
}

func (u *UMEM) unref() error {
	u.refs--
	if u.refs > 0 || u.mem == nil {
		return nil
	}
	var err error
	if u.own {
		if e := unix.Munmap(u.mem); e != nil {
			err = fmt.Errorf("afxdp: munmap UMEM: %w", e)
		}
	}
	u.mem = nil
	return err
}

// join makes p a member and returns its slot.
func (u *UMEM) join(p *Port) (uint8, error) {
	if u.mem == nil {
		return 0, errors.New("afxdp: UMEM already closed")
	}
	for k, m := range u.members {
		if m == nil {
			u.members[k] = p
			u.refs++
			return uint8(k), nil
		}
	}
	if len(u.members) == MaxUMEMSockets {
		return 0, fmt.Errorf("afxdp: more than %d sockets on one UMEM", MaxUMEMSockets)
	}
	u.members = append(u.members, p)
	u.refs++
	return uint8(len(u.members) - 1), nil
}

// leave ends p's membership: the frames its rings held go back to the free
// stack (the socket is closed, the kernel no longer uses them).
func (u *UMEM) leave(slot uint8) error {
	u.members[slot] = nil
	u.reset(slot)
	return u.unref()
}

// sharedFD returns the fd of a member other than slot whose native socket
// is bound and working, for XDP_SHARED_UMEM, or -1 when there is none and
// the UMEM must be registered anew.
func (u *UMEM) sharedFD(slot uint8) int {
	for k, m := range u.members {
		if k == int(slot) || m == nil || m.down {
			continue
		}
		if nr, ok := m.r.(*nativeRings); ok {
			return nr.sock
		}
	}
	return -1
}

// reset puts the frames member slot's rings held back on the free stack
// (its socket is being closed or re-created).
func (u *UMEM) reset(slot uint8) {
	ks := frameKernel + slot
	for i := len(u.state) - 1; i >= 0; i-- {
		if u.state[i] == ks {
			u.put(uint64(i))
		}
	}
}

// put pushes frame chunk on the free stack.
func (u *UMEM) put(chunk uint64) {
	u.state[chunk] = frameFree
	u.free[u.nfree] = chunk << u.shift
	u.nfree++
}

// release returns frame chunk to the free stack if it is in state want,
// and reports whether it was.
func (u *UMEM) release(chunk uint64, want uint8) bool {
	if chunk >= uint64(len(u.state)) || u.state[chunk] != want {
		return false
	}
	u.put(chunk)
	return true
}
