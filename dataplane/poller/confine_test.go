package poller

import (
	"os"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/bench/lab"
)

// TestConfineOthers confines the test process's threads away from one CPU
// and checks every thread's mask, and that a thread created afterwards by
// the runtime inherits it. The original affinity is restored at the end.
func TestConfineOthers(t *testing.T) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Count() < 2 {
		lab.Unavailable(t, "needs two CPUs, has %d", orig.Count()) // the machines we test on have two
	}
	worker := -1
	for c := 0; worker < 0; c++ {
		if orig.IsSet(c) {
			worker = c
		}
	}
	t.Cleanup(func() { setAll(t, &orig) })

	cpus, err := ConfineOthers([]int{worker})
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) != orig.Count()-1 {
		t.Fatalf("confined to %v, want the %d CPUs other than %d", cpus, orig.Count()-1, worker)
	}
	for _, c := range cpus {
		if c == worker || !orig.IsSet(c) {
			t.Fatalf("confined to %v: includes %d (worker %d, allowed %v)", cpus, c, worker, orig)
		}
	}
	// Force the runtime to create threads: goroutines locked to their
	// threads, each blocking in a system call.
	const extra = 4
	start := make(chan struct{})
	stop := make(chan struct{})
	for range extra {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			start <- struct{}{}
			<-stop
		}()
	}
	for range extra {
		<-start
	}
	defer close(stop)
	checkAll(t, worker)

	// No CPU left: nothing changes.
	var all []int
	for c := 0; c < len(orig)*64; c++ {
		if orig.IsSet(c) {
			all = append(all, c)
		}
	}
	if cpus, err := ConfineOthers(all); err != nil || cpus != nil {
		t.Fatalf("ConfineOthers(every CPU) = %v, %v; want nil, nil", cpus, err)
	}
	checkAll(t, worker)
}

// checkAll fails unless no thread of the process may run on cpu.
func checkAll(t *testing.T, cpu int) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		var s unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &s); err != nil {
			continue // exited
		}
		if s.IsSet(cpu) {
			t.Errorf("thread %d may run on CPU %d", tid, cpu)
		}
	}
}

func setAll(t *testing.T, s *unix.CPUSet) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Error(err)
		return
	}
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		_ = unix.SchedSetaffinity(tid, s)
	}
}
