package poller

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ConfineOthers keeps the process's other threads off the poll loops' CPUs:
// it sets the affinity of every thread of the process to the CPUs the
// process may use minus workerCPUs, and returns that set. The Go runtime's
// other threads (management and metrics goroutines, the expirer, GC
// workers) then never preempt a busy-polling worker, which on a shared
// core costs it whole scheduler slices and the RX ring frames that arrive
// meanwhile.
//
// Call it before the first Runner starts. A Runner pins its own thread to
// its CPU after this, and threads created later inherit their creator's
// affinity: the runtime creates new threads from unlocked threads or, for
// a goroutine locked to its thread (as Runners are), from its template
// thread, which is started by the first LockOSThread, so after this call.
//
// When no CPU would be left (workers on every CPU) it changes nothing and
// returns nil, nil. Any goroutine may call it; it reads /proc/self/task.
func ConfineOthers(workerCPUs []int) ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	for _, c := range workerCPUs {
		if c >= 0 {
			set.Clear(c)
		}
	}
	if set.Count() == 0 {
		return nil, nil
	}
	// A thread created during a pass from a thread not yet moved keeps the
	// old mask; passes repeat until one moves nothing new.
	done := map[int]bool{}
	for pass := 0; ; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return nil, err
		}
		moved := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return nil, fmt.Errorf("sched_setaffinity thread %d: %w", tid, err)
			}
			done[tid] = true
			moved++
		}
		if moved == 0 {
			break
		}
		if pass == 16 {
			return nil, errors.New("sched_setaffinity: threads keep appearing")
		}
	}
	var cpus []int
	for c := 0; c < len(set)*64 && len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
