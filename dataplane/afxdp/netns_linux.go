package afxdp

import "golang.org/x/sys/unix"

// deadRing stands in for a socket that could not be re-created yet: every
// operation is a no-op, so the port keeps its frames and retries recovery.
type deadRing struct{}

func (deadRing) fd() int                            { return -1 }
func (deadRing) fillFree() uint32                   { return 0 }
func (deadRing) fillQueued() uint32                 { return 0 }
func (deadRing) fill([]uint64) int                  { return 0 }
func (deadRing) receive([]unix.XDPDesc) int         { return 0 }
func (deadRing) txFree() uint32                     { return 0 }
func (deadRing) transmit([]unix.XDPDesc) int        { return 0 }
func (deadRing) txPending() uint32                  { return 0 }
func (deadRing) txNeedsKick() bool                  { return false }
func (deadRing) kick() error                        { return unix.ENXIO }
func (deadRing) wakeRx() (bool, error)              { return false, nil }
func (deadRing) complete([]uint64) int              { return 0 }
func (deadRing) stats() (unix.XDPStatistics, error) { return unix.XDPStatistics{}, unix.ENXIO }
func (deadRing) close() error                       { return nil }
