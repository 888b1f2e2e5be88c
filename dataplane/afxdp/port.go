// Package afxdp is the AF_XDP poll-mode port: one AF_XDP socket bound to one
// NIC queue, seen by the pipeline as a port.Port.
//
// It is the bottom of the pipeline. The XDP program (dataplane/xdpprog)
// redirects a queue's NAT traffic into the socket; a worker goroutine pulls
// bursts with RxBurst, the NAT rewrites them in place, and TxBurst/Flush send
// them out of the same port, or of another port on the same UMEM as they
// are (see UMEM), or of any other port by being copied (CopyFrame).
//
// Layers:
//   - ring layer (interface ring): the socket, its UMEM and its four rings.
//     Two backends: Native (our own, xsk_linux.go, the default) and Asavie
//     (github.com/asavie/xdp, asavie.go);
//   - UMEM (umem.go): the frame memory, its LIFO free stack and per-frame
//     ownership states, private to one socket or shared by a worker's
//     sockets;
//   - Port (this file): fill-ring top-up, TX kicking and completion
//     reclaim, link-error handling and recovery, counters.
//
// A Port, like every port.Port, is owned by one worker goroutine: only that
// goroutine calls its methods, and its Stats are plain fields written by
// that goroutine. Close is called after the worker has stopped.
package afxdp

import (
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/internal/nsenter"
	"github.com/xnat/xnat/internal/ospoll"
)

// ring is what the Port needs of a backend: the four rings, the two
// wake-up system calls and the socket. Both backends implement it (native:
// xsk_linux.go; github.com/asavie/xdp: asavie.go, which keeps that
// library's defects and its own accounting to itself). What only one
// backend knows (its UMEM, zero-copy) is read at construction. All methods
// are called by the Port's owning goroutine.
type ring interface {
	fd() int
	fillFree() uint32
	fillQueued() uint32
	fill(addrs []uint64) int
	receive(d []unix.XDPDesc) int
	txFree() uint32
	transmit(d []unix.XDPDesc) int
	txPending() uint32
	txNeedsKick() bool
	kick() error
	// wakeRx makes the recvfrom(2) that a driver asks for (need_wakeup on
	// the fill ring) and reports whether it was asked for.
	wakeRx() (bool, error)
	complete(addrs []uint64) int
	stats() (unix.XDPStatistics, error)
	close() error
}

// ErrLinkDown wraps the errno of a link failure (ENETDOWN, ENXIO, ...)
// returned by Flush and Wait.
var ErrLinkDown = errors.New("afxdp: link down")

// ErrClosed is returned by Flush and Wait after Close.
var ErrClosed = errors.New("afxdp: port closed")

// Stats are a port's counters. The owning goroutine updates them as plain
// fields; it folds them into its published statistics once per batch with
// Snapshot.
type Stats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64 // accepted onto the TX ring
	TxCompleted        uint64 // reclaimed from the completion ring
	TxKicks            uint64 // sendto calls
	RxWakeups          uint64 // recvfrom calls for a fill ring that asked for one
	FillEmpty          uint64 // bursts that found the fill ring drained by the kernel
	TxRingFull         uint64 // TxBurst calls that could not queue every frame
	LinkErrors         uint64 // link failures seen (each one also an error return)
	Recoveries         uint64 // successful recoveries after a link failure
	RecoveredPanics    uint64 // panics of the asavie library turned into errors
	BadFrames          uint64 // TxBurst/Free of a frame the caller does not own
}

// Port is an AF_XDP socket on one queue. See the package comment for its
// ownership rules.
type Port struct {
	Stats

	opts    Options
	ifindex int
	queue   int
	ifname  string
	ns      netns.NsHandle

	r    ring
	u    *UMEM
	umem []byte // u.mem
	zc   bool   // the kernel bound the socket in zero-copy mode
	// shift is log2(FrameSize); kst is the state of the frames this
	// socket's rings hold, frameKernel + its slot in u.
	shift uint
	kst   uint8

	rxd     []unix.XDPDesc
	txd     []unix.XDPDesc
	scratch []uint64
	pfd     [1]unix.PollFd

	filled      bool // the fill ring has been given frames at least once
	down        bool
	downErr     error
	nextRecover time.Time
	flushes     uint32
}

var _ port.Port = (*Port)(nil)
var _ port.Waiter = (*Port)(nil)

// New opens an AF_XDP socket on (ifindex, queue) in the calling thread's
// network namespace, which the port remembers for recovery. If
// opts.Register is set it is called with the socket's fd. With
// opts.UMEM set the socket shares that UMEM (see NewUMEM), and its
// FrameSize and Headroom are the UMEM's.
func New(ifindex, queue int, opts *Options) (_ *Port, err error) {
	if opts == nil {
		opts = &Options{}
	}
	o := opts.withDefaults()
	if u := o.UMEM; u != nil {
		if !o.Backend.SharesUMEM() {
			return nil, fmt.Errorf("afxdp: the %v backend cannot share a UMEM", o.Backend)
		}
		o.FrameSize, o.Headroom = u.frameSize, u.headroom
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	link, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("afxdp: link %d: %w", ifindex, err)
	}
	p := &Port{
		opts: o, ifindex: ifindex, queue: queue, ifname: link.Attrs().Name,
		shift:   uint(bits.TrailingZeros(uint(o.FrameSize))),
		rxd:     make([]unix.XDPDesc, max(o.BatchSize, 256)),
		txd:     make([]unix.XDPDesc, max(o.BatchSize, 256)),
		scratch: make([]uint64, max(o.FillRingSize, o.CompletionRingSize)),
	}
	if p.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("afxdp: current netns: %w", err)
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	switch o.Backend {
	case Native:
		if o.UMEM == nil {
			mem, err := mapUMEM(o.NumFrames * o.FrameSize)
			if err != nil {
				return nil, err
			}
			o.UMEM = newUMEM(mem, true, &o)
		}
		if err = p.joinUMEM(o.UMEM); err != nil {
			return nil, err
		}
		nr, err := newNativeRings(p.u, ifindex, queue, &p.opts, p.u.sharedFD(p.kst-frameKernel))
		if err != nil {
			return nil, err
		}
		p.r, p.zc = nr, nr.zc
	case Asavie:
		var ar *asavieRings
		if ar, err = newAsavieRings(ifindex, queue, &p.opts, &p.Stats); err != nil {
			return nil, err
		}
		p.r = ar
		if err = p.joinUMEM(newUMEM(ar.umem(), false, &o)); err != nil {
			return nil, err
		}
	}
	p.refill()
	if o.Register != nil {
		if err := o.Register(ifindex, queue, p.r.fd()); err != nil {
			return nil, fmt.Errorf("afxdp: register socket: %w", err)
		}
	}
	return p, nil
}

// joinUMEM makes the port a member of u.
func (p *Port) joinUMEM(u *UMEM) error {
	slot, err := u.join(p)
	if err != nil {
		return err
	}
	p.u, p.umem, p.kst = u, u.mem, frameKernel+slot
	return nil
}

// UMEM is the frame memory the port's frames belong to.
func (p *Port) UMEM() *UMEM { return p.u }

// Pool implements port.Pooler: ports on one UMEM report the same value,
// and take each other's frames.
func (p *Port) Pool() uint64 {
	if p.u == nil {
		return 0
	}
	return p.u.id
}

// FD is the socket's file descriptor, for registering it in an XSKMAP.
func (p *Port) FD() int {
	if p.r == nil {
		return -1
	}
	return p.r.fd()
}

// Ifindex is the interface the socket is bound to (it changes if recovery
// re-binds to a re-created interface of the same name).
func (p *Port) Ifindex() int { return p.ifindex }

// Queue is the bound queue id.
func (p *Port) Queue() int { return p.queue }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode.
func (p *Port) ZeroCopy() bool { return p.r != nil && p.zc }

// FrameSize implements port.Port.
func (p *Port) FrameSize() int { return p.opts.FrameSize }

// Frames is the number of frames in the port's UMEM (all of a shared
// UMEM's).
func (p *Port) Frames() int {
	if p.u == nil {
		return p.opts.NumFrames
	}
	return p.u.Frames()
}

// FreeFrames is the depth of the UMEM's free stack (for tests and gauges).
func (p *Port) FreeFrames() int {
	if p.u == nil {
		return 0
	}
	return p.u.nfree
}

// refill moves frames from the free stack to the fill ring.
func (p *Port) refill() {
	if p.filled && p.r.fillQueued() == 0 {
		p.FillEmpty++
	}
	u := p.u
	n := min(int(p.r.fillFree()), u.nfree, len(p.scratch))
	if n == 0 {
		return
	}
	top := u.nfree
	copy(p.scratch[:n], u.free[top-n:top])
	got := p.r.fill(p.scratch[:n])
	for i := range got {
		u.state[p.scratch[i]>>p.shift] = p.kst
	}
	// The frames the ring did not take are still at free[top-n+got:top];
	// keep them by shrinking the stack only by what was taken from its
	// top. scratch[i] came from free[top-n+i], so move the leftovers down.
	if got < n {
		copy(u.free[top-n:], u.free[top-n+got:top])
	}
	u.nfree -= got
	p.filled = p.filled || got > 0
}

// RxBurst implements port.Port: it tops up the fill ring, then hands out up
// to len(bufs) received frames.
func (p *Port) RxBurst(bufs []port.Buf) int {
	if p.r == nil || p.down {
		return 0
	}
	p.refill()
	n := p.r.receive(p.rxd[:min(len(bufs), len(p.rxd))])
	if n == 0 {
		if woke, _ := p.r.wakeRx(); woke {
			p.RxWakeups++
		}
		return 0
	}
	fs := uint64(p.opts.FrameSize)
	out := 0
	var bytes uint64
	for _, d := range p.rxd[:n] {
		chunk := d.Addr >> p.shift
		end := (chunk + 1) * fs
		if end > uint64(len(p.umem)) || d.Addr+uint64(d.Len) > end {
			p.BadFrames++ // cannot happen with a sane kernel; never slice out of bounds
			continue
		}
		p.u.state[chunk] = frameUser
		bufs[out] = port.Buf{Data: p.umem[d.Addr : d.Addr+uint64(d.Len) : end], Handle: d.Addr}
		bytes += uint64(d.Len)
		out++
	}
	p.RxPackets += uint64(out)
	p.RxBytes += bytes
	return out
}

// TxBurst implements port.Port. Each frame must belong to this port's UMEM
// (received or allocated on this port or on another port of a shared UMEM)
// and be held by the caller; its data may start anywhere inside its frame. When
// the TX ring is short of room it reclaims completions and kicks once
// before giving up on the rest.
func (p *Port) TxBurst(bufs []port.Buf) int {
	if p.r == nil || p.down || len(bufs) == 0 {
		return 0
	}
	want := min(len(bufs), len(p.txd))
	if int(p.r.txFree()) < want {
		p.kickOnce()
		p.reclaim()
	}
	room := min(want, int(p.r.txFree()))
	n := 0
	var bytes uint64
	for ; n < room; n++ {
		b := &bufs[n]
		off := dataOffset(p.umem, b.Data)
		chunk := b.Handle >> p.shift
		if off < 0 || uint64(off)>>p.shift != chunk || chunk >= uint64(len(p.u.state)) ||
			p.u.state[chunk] != frameUser || len(b.Data) == 0 ||
			uint64(off+len(b.Data)) > (chunk+1)<<p.shift {
			p.BadFrames++
			break
		}
		p.txd[n] = unix.XDPDesc{Addr: uint64(off), Len: uint32(len(b.Data))}
		bytes += uint64(len(b.Data))
	}
	got := p.r.transmit(p.txd[:n])
	for i := range got {
		p.u.state[p.txd[i].Addr>>p.shift] = p.kst
	}
	if got < len(bufs) {
		p.TxRingFull++
	}
	if got < n {
		bytes = 0
		for i := range got {
			bytes += uint64(p.txd[i].Len)
		}
	}
	p.TxPackets += uint64(got)
	p.TxBytes += bytes
	return got
}

// kickOnce is a single TX kick whose errors Flush will see again.
func (p *Port) kickOnce() {
	if p.r.txPending() > 0 && p.r.txNeedsKick() {
		p.TxKicks++
		_ = p.r.kick()
	}
}

// Flush implements port.Port: it kicks the kernel while the TX ring has
// unconsumed descriptors (copy mode sends at most 32 per kick), bounded by
// MaxKicks, and reclaims completed frames onto the free stack.
func (p *Port) Flush() error {
	if p.r == nil {
		return ErrClosed
	}
	if p.down {
		return p.tryRecover()
	}
	var err error
	for k := 0; k < p.opts.MaxKicks; k++ {
		pend := p.r.txPending()
		if pend == 0 || !p.r.txNeedsKick() {
			break
		}
		p.TxKicks++
		e := p.r.kick()
		p.reclaim()
		if e == nil {
			continue
		}
		if isLinkErrno(e) {
			err = p.linkDown(e)
			break
		}
		// EAGAIN: more to send (or completion ring full, which reclaim
		// just drained). EBUSY/ENOBUFS: the device is busy; retry on
		// the next Flush. Stop when a kick made no progress.
		if !errors.Is(e, unix.EAGAIN) || p.r.txPending() >= pend {
			break
		}
	}
	p.reclaim()
	// An RX-only socket never kicks, so look for a dead socket now and
	// then: about every 64 Ki flushes, one poll(0) syscall.
	p.flushes++
	if err == nil && p.flushes&0xffff == 0 {
		err = p.checkSocket()
	}
	return err
}

// reclaim moves completed TX frames back to the free stack.
func (p *Port) reclaim() {
	n := p.r.complete(p.scratch)
	for _, a := range p.scratch[:n] {
		if !p.u.release(a>>p.shift, p.kst) {
			p.BadFrames++
		}
	}
	p.TxCompleted += uint64(n)
}

// Alloc implements port.Port. Frames come from the top of the free stack
// (the most recently used, so likely still in cache); the data starts after
// Headroom and may grow to the end of the frame.
func (p *Port) Alloc(bufs []port.Buf) int {
	if p.r == nil {
		return 0
	}
	u := p.u
	if u.nfree < len(bufs) {
		p.reclaim()
	}
	n := min(len(bufs), u.nfree)
	h := uint64(p.opts.Headroom)
	fs := uint64(p.opts.FrameSize)
	for i := range n {
		u.nfree--
		base := u.free[u.nfree]
		u.state[base>>p.shift] = frameUser
		bufs[i] = port.Buf{Data: p.umem[base+h : base+h : base+fs], Handle: base + h}
	}
	return n
}

// Free implements port.Port. Frames of its UMEM that the caller does not
// hold are counted in BadFrames and ignored rather than corrupting the
// stack.
func (p *Port) Free(bufs []port.Buf) {
	for i := range bufs {
		if !p.u.release(bufs[i].Handle>>p.shift, frameUser) {
			p.BadFrames++
		}
	}
}

// Wait implements port.Waiter with poll(2) on the socket: it returns when
// the RX ring may have frames, after timeoutMillis, or with an error wrapping
// ErrLinkDown when the socket reports a link failure.
func (p *Port) Wait(timeoutMillis int) error {
	if p.r == nil {
		return ErrClosed
	}
	if p.down {
		if err := p.tryRecover(); err != nil {
			time.Sleep(min(time.Duration(timeoutMillis)*time.Millisecond, p.opts.RecoverInterval))
			return err
		}
	}
	p.refill()
	p.pfd[0] = unix.PollFd{Fd: int32(p.r.fd()), Events: unix.POLLIN}
	n, err := ospoll.Poll(p.pfd[:], timeoutMillis)
	if err != nil {
		return fmt.Errorf("afxdp: poll: %w", err)
	}
	if n == 0 {
		// Idle: a cheap moment to look for an unbound socket.
		return p.checkSocket()
	}
	if p.pfd[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
		e := sockError(p.r.fd())
		if e == nil {
			e = unix.ENETDOWN
		}
		return p.linkDown(e)
	}
	return nil
}

// checkSocket reads the socket's pending error. The kernel sets SO_ERROR
// to ENETDOWN when it unbinds the socket from a device being deleted, but
// xsk_poll does not report POLLERR for it, so an RX-only socket would never
// notice without asking.
func (p *Port) checkSocket() error {
	if e := sockError(p.r.fd()); e != nil {
		return p.linkDown(e)
	}
	return nil
}

// isLinkErrno reports whether e means the device is gone or down rather
// than busy.
func isLinkErrno(e error) bool {
	for _, x := range []unix.Errno{unix.ENETDOWN, unix.ENXIO, unix.ENODEV, unix.ENETUNREACH, unix.EBADF} {
		if errors.Is(e, x) {
			return true
		}
	}
	return false
}

// linkDown records a link failure and returns the error for the caller.
func (p *Port) linkDown(e error) error {
	p.LinkErrors++
	p.down = true
	p.downErr = fmt.Errorf("%w: %s queue %d: %w", ErrLinkDown, p.ifname, p.queue, e)
	p.nextRecover = time.Now().Add(p.opts.RecoverInterval)
	return p.downErr
}

// LinkDown reports whether the port is waiting for its link to come back.
func (p *Port) LinkDown() bool { return p.down }

// tryRecover is called while the port is down, at most once per
// RecoverInterval. Experiments on veth (TestLinkDownUp,
// TestLinkDeletedAndRecreated) showed:
//   - link set down/up: the socket stays bound, nothing reports an error
//     unless we transmit, and once the link is up the same socket receives
//     and transmits again; nothing needs re-creating;
//   - interface deleted: the kernel unbinds the socket and sets SO_ERROR to
//     ENETDOWN (poll(2) shows no POLLERR); sendto then fails with ENXIO.
//     The XDP program and its XSKMAP go with the device. A socket cannot be
//     re-bound, so once an interface of the same name exists and is up we
//     close the rings, keep the UMEM and every frame the caller holds,
//     create and bind a new socket, and call Options.Register (which must
//     re-attach the XDP program on the new interface and register the fd).
//
// It returns nil when the port works again and the link error otherwise.
func (p *Port) tryRecover() error {
	now := time.Now()
	if now.Before(p.nextRecover) {
		return p.downErr
	}
	p.nextRecover = now.Add(p.opts.RecoverInterval)
	var (
		ifindex int
		up      bool
	)
	err := nsenter.Run(p.ns, func() error {
		link, err := netlink.LinkByName(p.ifname)
		if err != nil {
			return err
		}
		ifindex = link.Attrs().Index
		up = link.Attrs().Flags&(1<<0) != 0 // net.FlagUp
		return nil
	})
	if err != nil || !up {
		return p.downErr
	}
	// Is our socket still bound? A kick answers without side effects:
	// ENXIO means unbound, ENETDOWN still down.
	_, wasDead := p.r.(deadRing)
	probe := p.r.kick()
	dead := wasDead || errors.Is(probe, unix.ENXIO) || ifindex != p.ifindex
	if !dead {
		if probe != nil && isLinkErrno(probe) {
			return p.downErr
		}
		p.down = false
		p.Recoveries++
		return nil
	}
	if !p.u.own {
		return fmt.Errorf("%w (the asavie backend cannot re-create its socket)", p.downErr)
	}
	_ = p.r.close()
	p.r = nil
	// The old socket is gone, and with it every frame on its rings.
	p.u.reset(p.kst - frameKernel)
	p.filled = false
	var nr *nativeRings
	err = nsenter.Run(p.ns, func() error {
		var err error
		nr, err = newNativeRings(p.u, ifindex, p.queue, &p.opts, p.u.sharedFD(p.kst-frameKernel))
		return err
	})
	if err != nil {
		// Keep the port usable for another attempt: a closed ring stand-in
		// would make every call fail with ErrClosed, so rebuild later.
		p.r = deadRing{}
		return fmt.Errorf("%w; re-create: %w", p.downErr, err)
	}
	p.r, p.zc = nr, nr.zc
	p.ifindex = ifindex
	p.refill()
	if p.opts.Register != nil {
		// In the port's namespace, like the call from New.
		if err := nsenter.Run(p.ns, func() error { return p.opts.Register(ifindex, p.queue, nr.fd()) }); err != nil {
			return fmt.Errorf("%w; register re-created socket: %w", p.downErr, err)
		}
	}
	p.down = false
	p.Recoveries++
	return nil
}

// KernelStats reads the socket's XDP_STATISTICS (drops the kernel counted:
// RX ring full, fill ring empty, invalid descriptors).
func (p *Port) KernelStats() (unix.XDPStatistics, error) {
	if p.r == nil {
		return unix.XDPStatistics{}, ErrClosed
	}
	return p.r.stats()
}

// Snapshot copies the counters into dst, for the worker to publish.
func (p *Port) Snapshot(dst *Stats) { *dst = p.Stats }

// Add folds o into s (summing ports or workers, off the packet path).
// Every field of Stats is a uint64 counter (TestStatsAddSumsEveryField).
func (s *Stats) Add(o *Stats) {
	sv, ov := reflect.ValueOf(s).Elem(), reflect.ValueOf(o).Elem()
	for i := range sv.NumField() {
		f := sv.Field(i)
		f.SetUint(f.Uint() + ov.Field(i).Uint())
	}
}

// Close closes the socket (which removes it from any XSKMAP) and unmaps the
// rings, and the UMEM when no other port uses it. Frames the caller still
// holds become invalid once the UMEM goes.
func (p *Port) Close() error {
	var errs []error
	if p.r != nil {
		errs = append(errs, p.r.close())
		p.r = nil
	}
	if p.u != nil {
		errs = append(errs, p.u.leave(p.kst-frameKernel))
		p.u = nil
	}
	p.umem = nil
	if p.ns.IsOpen() {
		p.ns.Close()
	}
	return errors.Join(errs...)
}

// CopyFrame copies src into a frame dst freshly allocated from another port
// (frames never move between UMEMs by reference; between ports of one
// shared UMEM they need no copy). It returns false, leaving
// dst empty, when src does not fit.
func CopyFrame(dst *port.Buf, src []byte) bool {
	if len(src) > cap(dst.Data) {
		dst.Data = dst.Data[:0]
		return false
	}
	dst.Data = dst.Data[:len(src)]
	copy(dst.Data, src)
	return true
}
