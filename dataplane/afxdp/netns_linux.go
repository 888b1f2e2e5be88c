package afxdp

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetns runs f on a locked OS thread switched into ns, then switches
// back. Recovery uses it because the worker's thread may not be in the
// namespace the port was created in. A thread that cannot be switched back
// stays locked, so the runtime retires it with its goroutine. LockOSThread
// nests, so this is safe on a worker that already locked its thread.
func inNetns(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("afxdp: current netns: %w", err)
	}
	defer orig.Close()
	if orig.Equal(ns) {
		runtime.UnlockOSThread()
		return f()
	}
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("afxdp: enter netns: %w", err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("afxdp: restore netns: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// deadRing stands in for a socket that could not be re-created yet: every
// operation is a no-op, so the port keeps its frames and retries recovery.
type deadRing struct{}

func (deadRing) fd() int                            { return -1 }
func (deadRing) umem() []byte                       { return nil }
func (deadRing) zeroCopy() bool                     { return false }
func (deadRing) fillFree() uint32                   { return 0 }
func (deadRing) fillQueued() uint32                 { return 0 }
func (deadRing) fill([]uint64) int                  { return 0 }
func (deadRing) receive([]unix.XDPDesc) int         { return 0 }
func (deadRing) txFree() uint32                     { return 0 }
func (deadRing) transmit([]unix.XDPDesc) int        { return 0 }
func (deadRing) txPending() uint32                  { return 0 }
func (deadRing) txNeedsKick() bool                  { return false }
func (deadRing) rxNeedsWakeup() bool                { return false }
func (deadRing) kick() error                        { return unix.ENXIO }
func (deadRing) wakeRx() error                      { return nil }
func (deadRing) complete([]uint64) int              { return 0 }
func (deadRing) stats() (unix.XDPStatistics, error) { return unix.XDPStatistics{}, unix.ENXIO }
func (deadRing) close() error                       { return nil }
