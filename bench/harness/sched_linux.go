package harness

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Scheduling. The machine has two vCPUs that other people's builds and
// tests also use. Every thread that moves the benchmark's frames runs at
// the same raised priority, nice -20 by default: the generator's workers
// (threads of this process), the DUT processes (natd, l2fwd) and the
// kernel's ksoftirqd threads, which carry the softirq work the kernel
// defers (for the nftables DUT, its forwarding under load). Equal nice
// values keep the three DUTs on equal terms against each other and ahead
// of everything else.
//
// Not SCHED_FIFO: a busy-polling FIFO thread exhausts its CPU's real-time
// budget (sched_rt_runtime_us) and a FIFO receiver sharing a CPU with a
// busy DUT delayed frames by tens of milliseconds in our trials (softirq
// work deferred to ksoftirqd waits behind it), where equal CFS priorities
// kept the tail to a few milliseconds.

// reniceSelf sets every thread of this process to nice n. On Linux nice
// is per thread and inherited at creation, so threads the Go runtime
// starts later (the generator's locked worker threads) inherit it.
func reniceSelf(n int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("nice thread %d: %w", tid, err))
		}
	}
	return errors.Join(errs...)
}

// renicedThread is a kernel thread whose nice value the harness changed.
type renicedThread struct {
	pid  int
	comm string
	old  int
}

// reniceKsoftirqd sets every ksoftirqd/N thread to nice n and returns
// what to restore.
func reniceKsoftirqd(n int) ([]renicedThread, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []renicedThread
	var errs []error
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(string(comm), "ksoftirqd/") {
			continue
		}
		// getpriority returns 20 - nice (the raw syscall avoids
		// negative return values).
		p, err := unix.Getpriority(unix.PRIO_PROCESS, pid)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		old := 20 - p
		if err := unix.Setpriority(unix.PRIO_PROCESS, pid, n); err != nil {
			errs = append(errs, fmt.Errorf("nice %s: %w", strings.TrimSpace(string(comm)), err))
			continue
		}
		out = append(out, renicedThread{pid: pid, comm: strings.TrimSpace(string(comm)), old: old})
	}
	return out, errors.Join(errs...)
}

func restoreNice(ts []renicedThread) error {
	var errs []error
	for _, t := range ts {
		if err := unix.Setpriority(unix.PRIO_PROCESS, t.pid, t.old); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("restore nice of %s: %w", t.comm, err))
		}
	}
	return errors.Join(errs...)
}
