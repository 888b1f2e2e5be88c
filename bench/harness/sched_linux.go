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

// reniceKsoftirqd sets every ksoftirqd/N and kworker thread to nice n
// and returns what to restore. The kworkers matter once the run's
// autogroup is raised (see reniceAutogroup): a closed AF_XDP socket frees
// its queue from a kworker (xp_release_deferred, which takes the RTNL
// lock, itself held by other kworkers such as network namespace cleanup),
// and at nice 0 against a busy-polling DUT and generator at -20 they ran so
// rarely that the generator's next bind of the same queue still failed
// with EBUSY after 40 s of retries (three cells of one run lost their
// zero-loss search to it). Workers the kernel starts during the run come
// at the pool's nice value (0).
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
		if err != nil || !strings.HasPrefix(string(comm), "ksoftirqd/") && !strings.HasPrefix(string(comm), "kworker/") {
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

// Autogroups. With CONFIG_SCHED_AUTOGROUP on (kernel.sched_autogroup_enabled
// = 1, as on this machine), the scheduler first shares a CPU between the
// autogroups (one per session, setsid) of its runnable tasks, and nice
// values act only inside an autogroup. Every other session's builds and
// tests then got as much of the DUT's CPU as the whole benchmark: natd,
// busy-polling at nice -20 alone on CPU 1, ran 4.5% of a 7.5 s window in
// which four other sessions' compilers and tests ran there at nice 0
// (measured from /proc/stat and the worker thread's /proc/<pid>/task
// times). Setting the benchmark's own autogroup to the same nice value
// restores the intent of renicing: the benchmark's threads ahead of other
// work. The generator and the DUT processes are in this process's session,
// so one autogroup holds them all.

// autogroupPath is this process's autogroup control file.
const autogroupPath = "/proc/self/autogroup"

// ParseAutogroup parses /proc/<pid>/autogroup ("/autogroup-49 nice 0").
func ParseAutogroup(b []byte) (name string, nice int, err error) {
	f := strings.Fields(string(b))
	if len(f) != 3 || f[1] != "nice" {
		return "", 0, fmt.Errorf("autogroup: %q", strings.TrimSpace(string(b)))
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return "", 0, fmt.Errorf("autogroup: %q: %w", strings.TrimSpace(string(b)), err)
	}
	return f[0], n, nil
}

// reniceAutogroup sets this process's autogroup to nice n and returns a
// function that puts the old value back. Without autogroups (the file is
// missing, or scheduling ignores it) it does nothing and says so in note.
func reniceAutogroup(n int) (restore func() error, note string, err error) {
	nop := func() error { return nil }
	if b, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled"); err != nil || strings.TrimSpace(string(b)) != "1" {
		return nop, "autogroups off: nothing to do", nil
	}
	b, err := os.ReadFile(autogroupPath)
	if err != nil {
		return nop, "", err
	}
	name, old, err := ParseAutogroup(b)
	if err != nil {
		return nop, "", err
	}
	if err := os.WriteFile(autogroupPath, []byte(strconv.Itoa(n)), 0o644); err != nil {
		return nop, "", fmt.Errorf("set %s to nice %d: %w", name, n, err)
	}
	restore = func() error { return os.WriteFile(autogroupPath, []byte(strconv.Itoa(old)), 0o644) }
	return restore, fmt.Sprintf("%s (this run's session) at nice %d during the run, was %d (restored after)", name, n, old), nil
}
