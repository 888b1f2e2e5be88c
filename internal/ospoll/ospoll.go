// Package ospoll holds the one poll(2) call of the tree's poll loops (the
// worker's adaptive sleep and the AF_XDP port's Wait).
package ospoll

import "golang.org/x/sys/unix"

// Poll is poll(2) on fds for up to timeoutMillis (negative: no limit),
// restarted when a signal interrupts it (EINTR): the Go runtime's
// preemption signals interrupt it often, and an interrupted sleep is not an
// error. A restart waits the whole timeout again, so a sleep may last longer
// than asked when signals keep coming; the callers' timeouts are short
// idle sleeps, for which that is harmless. It allocates nothing.
func Poll(fds []unix.PollFd, timeoutMillis int) (int, error) {
	for {
		n, err := unix.Poll(fds, timeoutMillis)
		if err != unix.EINTR {
			return n, err
		}
	}
}
