package poller

import (
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/internal/ospoll"
	"golang.org/x/sys/unix"
)

// The raw system calls of the poll loop: CPU affinity and the adaptive
// sleep on both ports' sockets.

// pin binds the calling thread to cpu.
func pin(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

type fder interface{ FD() int }

// sleep waits until either port may have frames, or the timeout. Ports
// with a socket are polled together with one poll(2); a port whose link is
// down is given its own Wait, which drives its recovery. Ports without a
// socket (in-memory ports) make the sleep a plain timeout.
func (r *Runner) sleep() error {
	var pfds [nat.NumSides]unix.PollFd
	n := 0
	for s := nat.Inside; s < nat.NumSides; s++ {
		p := r.cfg.Ports[s]
		if d, ok := p.(port.LinkDowner); ok && d.LinkDown() {
			if wt, ok := p.(port.Waiter); ok {
				if err := wt.Wait(0); err != nil {
					return err
				}
			}
		}
		if f, ok := p.(fder); ok && f.FD() >= 0 {
			pfds[n] = unix.PollFd{Fd: int32(f.FD()), Events: unix.POLLIN}
			n++
		}
	}
	_, err := ospoll.Poll(pfds[:n], r.cfg.SleepMillis)
	return err
}
