package afxdp

// This file is the native ring layer: the only place in the package that
// uses unsafe pointers and raw syscalls. It follows the
// kernel's Documentation/networking/af_xdp.rst:
//
//   - UMEM: page-aligned anonymous memory registered with XDP_UMEM_REG;
//   - four rings mmap'd at the offsets XDP_MMAP_OFFSETS reports, each with a
//     producer index, a consumer index, a flags word and a descriptor array;
//   - single-producer/single-consumer protocol: each side loads the other
//     side's index with acquire semantics before touching descriptors, and
//     publishes its own index with release semantics after writing them.
//     Go's sync/atomic loads and stores are sequentially consistent, which
//     is at least that strong (on amd64 the load is a plain MOV and the
//     store an XCHG);
//   - XDP_USE_NEED_WAKEUP: we only sendto() when the kernel sets
//     XDP_RING_NEED_WAKEUP in the TX ring's flags (in copy mode it always
//     does), and only recvfrom() when it sets it in the fill ring's.

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ringHdr is the part of a mapped ring shared by all four kinds.
type ringHdr struct {
	mem   []byte // the whole mapping, for munmap
	prod  *atomic.Uint32
	cons  *atomic.Uint32
	flags *atomic.Uint32
	mask  uint32
	// cached is our copy of the other side's index: the producer caches
	// the consumer and vice versa, so the shared cache line is read only
	// when the cached view says the ring is full (or empty).
	cached uint32
	// local is our own index, published to the shared word in batches.
	local uint32
}

func (r *ringHdr) size() uint32 { return r.mask + 1 }

// addrRing is the fill or completion ring: descriptors are UMEM addresses.
type addrRing struct {
	ringHdr
	descs []uint64
}

// descRing is the RX or TX ring: descriptors are {addr, len, options}.
type descRing struct {
	ringHdr
	descs []unix.XDPDesc
}

// mapRing mmaps one ring of n entries of entrySize bytes at pgoff.
func mapRing(fd int, pgoff int64, off unix.XDPRingOffset, n uint32, entrySize uintptr) (ringHdr, unsafe.Pointer, error) {
	length := int(off.Desc) + int(n)*int(entrySize)
	mem, err := unix.Mmap(fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ringHdr{}, nil, err
	}
	h := ringHdr{
		mem:   mem,
		prod:  (*atomic.Uint32)(unsafe.Pointer(&mem[off.Producer])),
		cons:  (*atomic.Uint32)(unsafe.Pointer(&mem[off.Consumer])),
		flags: (*atomic.Uint32)(unsafe.Pointer(&mem[off.Flags])),
		mask:  n - 1,
	}
	return h, unsafe.Pointer(&mem[off.Desc]), nil
}

func (r *ringHdr) unmap() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	*r = ringHdr{}
	return err
}

// Producer side (fill, TX): we own prod, the kernel owns cons.

// free returns how many entries we may produce, re-reading the kernel's
// consumer index only when the cached view cannot satisfy want.
func (r *ringHdr) free(want uint32) uint32 {
	n := r.size() - (r.local - r.cached)
	if n >= want {
		return n
	}
	r.cached = r.cons.Load() // acquire: kernel is done with those slots
	return r.size() - (r.local - r.cached)
}

// publish makes produced entries visible to the kernel.
func (r *ringHdr) publish() { r.prod.Store(r.local) } // release

// Consumer side (RX, completion): the kernel owns prod, we own cons.

// avail returns how many entries are ready to consume.
func (r *ringHdr) avail(want uint32) uint32 {
	n := r.cached - r.local
	if n >= want {
		return n
	}
	r.cached = r.prod.Load() // acquire: descriptors up to prod are written
	return r.cached - r.local
}

// release hands consumed entries back to the kernel.
func (r *ringHdr) release() { r.cons.Store(r.local) } // release

// nativeRings is our own AF_XDP socket and its four rings on the Port's
// UMEM (private, or shared with other sockets: umem.go). It is used by the Port's owning goroutine only.
type nativeRings struct {
	sock     int
	fq, cq   addrRing
	rx, tx   descRing
	zc       bool
	needWake bool // bound with XDP_USE_NEED_WAKEUP
}

// bindMode is the bind(2) mode request.
type bindMode uint8

const (
	modeAuto     bindMode = iota // let the kernel pick (zero-copy if the driver can)
	modeCopy                     // XDP_COPY
	modeZeroCopy                 // XDP_ZEROCOPY: fail if the driver cannot
)

// newNativeRings creates a socket and binds it to (ifindex, queue) on u.
// With shareFD < 0 it registers u's memory (which the caller keeps mapped
// for the socket's whole life) with the kernel; otherwise it binds with
// XDP_SHARED_UMEM to the UMEM of the bound socket shareFD. Either way the
// socket gets its own four rings: a socket sharing a UMEM across devices or
// queues needs its own fill and completion ring, sized by setsockopt on its
// own fd before bind (Linux >= 5.10).
func newNativeRings(u *UMEM, ifindex, queue int, o *Options, shareFD int) (_ *nativeRings, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("afxdp: socket(AF_XDP): %w", err)
	}
	r := &nativeRings{sock: fd}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if shareFD < 0 {
		reg := unix.XDPUmemReg{
			Addr:     uint64(uintptr(unsafe.Pointer(&u.mem[0]))),
			Len:      uint64(len(u.mem)),
			Size:     uint32(u.frameSize),
			Headroom: uint32(u.headroom),
		}
		if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, fmt.Errorf("afxdp: XDP_UMEM_REG: %w", err)
		}
	}
	for _, s := range []struct {
		opt int
		n   int
	}{{unix.XDP_UMEM_FILL_RING, o.FillRingSize}, {unix.XDP_UMEM_COMPLETION_RING, o.CompletionRingSize},
		{unix.XDP_RX_RING, o.RxRingSize}, {unix.XDP_TX_RING, o.TxRingSize}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, s.opt, s.n); err != nil {
			return nil, fmt.Errorf("afxdp: ring size option %d = %d: %w", s.opt, s.n, err)
		}
	}
	var off unix.XDPMmapOffsets
	offLen := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&offLen)), 0); e != 0 {
		return nil, fmt.Errorf("afxdp: XDP_MMAP_OFFSETS: %w", e)
	}
	if offLen != uint32(unsafe.Sizeof(off)) {
		// Pre-5.4 layout without the flags word: we require need_wakeup.
		return nil, fmt.Errorf("afxdp: kernel returned %d-byte XDP_MMAP_OFFSETS (no ring flags); need Linux >= 5.4", offLen)
	}
	var p unsafe.Pointer
	if r.fq.ringHdr, p, err = mapRing(fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, uint32(o.FillRingSize), 8); err != nil {
		return nil, fmt.Errorf("afxdp: mmap fill ring: %w", err)
	}
	r.fq.descs = unsafe.Slice((*uint64)(p), o.FillRingSize)
	if r.cq.ringHdr, p, err = mapRing(fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, uint32(o.CompletionRingSize), 8); err != nil {
		return nil, fmt.Errorf("afxdp: mmap completion ring: %w", err)
	}
	r.cq.descs = unsafe.Slice((*uint64)(p), o.CompletionRingSize)
	descSize := unsafe.Sizeof(unix.XDPDesc{})
	if r.rx.ringHdr, p, err = mapRing(fd, unix.XDP_PGOFF_RX_RING, off.Rx, uint32(o.RxRingSize), descSize); err != nil {
		return nil, fmt.Errorf("afxdp: mmap rx ring: %w", err)
	}
	r.rx.descs = unsafe.Slice((*unix.XDPDesc)(p), o.RxRingSize)
	if r.tx.ringHdr, p, err = mapRing(fd, unix.XDP_PGOFF_TX_RING, off.Tx, uint32(o.TxRingSize), descSize); err != nil {
		return nil, fmt.Errorf("afxdp: mmap tx ring: %w", err)
	}
	r.tx.descs = unsafe.Slice((*unix.XDPDesc)(p), o.TxRingSize)
	// Start from the kernel's view of the indexes (zero on a new socket).
	r.fq.local, r.fq.cached = r.fq.prod.Load(), r.fq.cons.Load()
	r.tx.local, r.tx.cached = r.tx.prod.Load(), r.tx.cons.Load()
	r.rx.local, r.rx.cached = r.rx.cons.Load(), r.rx.prod.Load()
	r.cq.local, r.cq.cached = r.cq.cons.Load(), r.cq.prod.Load()

	var flags uint16
	if shareFD >= 0 {
		// The kernel refuses any other flag here: the socket takes the
		// registrant's copy mode and need_wakeup.
		flags = unix.XDP_SHARED_UMEM
		r.needWake = u.needWake
	} else {
		flags = bindFlags(o)
		r.needWake = flags&unix.XDP_USE_NEED_WAKEUP != 0
	}
	sa := unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifindex), QueueID: uint32(queue), SharedUmemFD: uint32(max(shareFD, 0))}
	// A queue whose previous socket was just closed stays busy until the
	// kernel's deferred release runs: retry EBUSY for up to a second
	// (natd restarting, a test re-binding).
	for try := 0; try < 20; try++ {
		if err = unix.Bind(fd, &sa); err != unix.EBUSY {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("afxdp: bind ifindex %d queue %d flags %#x: %w", ifindex, queue, flags, err)
	}
	var xo struct{ Flags uint32 } // struct xdp_options
	xoLen := uint32(unsafe.Sizeof(xo))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_OPTIONS,
		uintptr(unsafe.Pointer(&xo)), uintptr(unsafe.Pointer(&xoLen)), 0); e == 0 {
		r.zc = xo.Flags&unix.XDP_OPTIONS_ZEROCOPY != 0
	}
	if shareFD < 0 {
		u.needWake = r.needWake
	}
	return r, nil
}

// bindFlags is the bind(2) request of a socket that registers its UMEM.
func bindFlags(o *Options) uint16 {
	flags := uint16(0)
	if !o.NoNeedWakeup {
		flags |= unix.XDP_USE_NEED_WAKEUP
	}
	switch o.mode {
	case modeCopy:
		flags |= unix.XDP_COPY
	case modeZeroCopy:
		flags |= unix.XDP_ZEROCOPY
	}
	return flags
}

func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0); e != 0 {
		return e
	}
	return nil
}

func (r *nativeRings) fd() int { return r.sock }

func (r *nativeRings) fillFree() uint32 { return r.fq.free(r.fq.size()) }

func (r *nativeRings) fillQueued() uint32 {
	return r.fq.local - r.fq.cons.Load()
}

func (r *nativeRings) fill(addrs []uint64) int { return produce(&r.fq.ringHdr, r.fq.descs, addrs) }

func (r *nativeRings) receive(d []unix.XDPDesc) int { return consume(&r.rx.ringHdr, r.rx.descs, d) }

func (r *nativeRings) txFree() uint32 { return r.tx.free(r.tx.size()) }

func (r *nativeRings) transmit(d []unix.XDPDesc) int { return produce(&r.tx.ringHdr, r.tx.descs, d) }

func (r *nativeRings) txPending() uint32 { return r.tx.local - r.tx.cons.Load() }

func (r *nativeRings) txNeedsKick() bool {
	return !r.needWake || r.tx.flags.Load()&unix.XDP_RING_NEED_WAKEUP != 0
}

// kick asks the kernel to process the TX ring. Copy mode transmits at most
// a batch of descriptors (32 in current kernels) per call.
func (r *nativeRings) kick() error {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(r.sock), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// wakeRx lets a driver that set need_wakeup on the fill ring refill its RX
// queue.
func (r *nativeRings) wakeRx() (bool, error) {
	if !r.needWake || r.fq.flags.Load()&unix.XDP_RING_NEED_WAKEUP == 0 {
		return false, nil
	}
	_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(r.sock), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 && e != unix.EAGAIN {
		return true, e
	}
	return true, nil
}

func (r *nativeRings) complete(addrs []uint64) int { return consume(&r.cq.ringHdr, r.cq.descs, addrs) }

// produce puts as many of src as fit on the producer ring (fill, TX) whose
// descriptor array is descs, and publishes them.
func produce[T uint64 | unix.XDPDesc](h *ringHdr, descs, src []T) int {
	n := min(uint32(len(src)), h.free(uint32(len(src))))
	for i := range n {
		descs[(h.local+i)&h.mask] = src[i]
	}
	if n > 0 {
		h.local += n
		h.publish()
	}
	return int(n)
}

// consume takes up to len(dst) entries off the consumer ring (RX,
// completion) whose descriptor array is descs, and releases their slots.
func consume[T uint64 | unix.XDPDesc](h *ringHdr, descs, dst []T) int {
	n := min(uint32(len(dst)), h.avail(uint32(len(dst))))
	for i := range n {
		dst[i] = descs[(h.local+i)&h.mask]
	}
	if n > 0 {
		h.local += n
		h.release()
	}
	return int(n)
}

func (r *nativeRings) stats() (unix.XDPStatistics, error) { return xdpStatistics(r.sock) }

// close unmaps every ring and closes the socket. The UMEM belongs to the
// Port and is unmapped there. Closing also removes the socket from every
// XSKMAP: the ring mappings hold file references, so they must go first
// for the socket to be released at all.
func (r *nativeRings) close() error {
	var errs []error
	for _, h := range []*ringHdr{&r.fq.ringHdr, &r.cq.ringHdr, &r.rx.ringHdr, &r.tx.ringHdr} {
		if err := h.unmap(); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: munmap ring: %w", err))
		}
	}
	r.fq.descs, r.cq.descs, r.rx.descs, r.tx.descs = nil, nil, nil, nil
	if r.sock >= 0 {
		if err := unix.Close(r.sock); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: close socket: %w", err))
		}
		r.sock = -1
	}
	return errors.Join(errs...)
}

// xdpStatistics reads the kernel's per-socket drop counters.
func xdpStatistics(fd int) (unix.XDPStatistics, error) {
	var s unix.XDPStatistics
	n := uint32(unsafe.Sizeof(s))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&s)), uintptr(unsafe.Pointer(&n)), 0); e != 0 {
		return s, fmt.Errorf("afxdp: XDP_STATISTICS: %w", e)
	}
	return s, nil
}

// mapUMEM allocates page-aligned, pre-faulted anonymous memory for a UMEM.
func mapUMEM(size int) ([]byte, error) {
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("afxdp: mmap UMEM of %d bytes: %w", size, err)
	}
	return m, nil
}

// dataOffset returns the offset of b's first byte inside umem, or -1 when b
// does not point into umem.
func dataOffset(umem, b []byte) int {
	if cap(b) == 0 || len(umem) == 0 {
		return -1
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(umem)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if p < base || p >= base+uintptr(len(umem)) {
		return -1
	}
	return int(p - base)
}

// sockError fetches and clears the socket's pending error (SO_ERROR).
func sockError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return unix.Errno(v)
	}
	return nil
}
