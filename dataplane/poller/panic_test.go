package poller

import (
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/port/memport"
	"github.com/xnat/xnat/internal/wait"
)

// testWorker builds a one-worker NAT (10.0.0.0/8 inside, one pool
// address) on two memports.
func testWorker(t *testing.T) (*nat.Worker, *memport.Port, *memport.Port) {
	t.Helper()
	cfg := nat.DefaultConfig()
	cfg.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cfg.Pools = []nat.Pool{{Name: "p", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}}}
	cfg.Limits.MaxSessions = 1024
	eng, err := nat.New(cfg, nat.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	in, _ := memport.New(memport.Config{Frames: 256})
	out, _ := memport.New(memport.Config{Frames: 256})
	w, err := eng.NewWorker(0, nat.WorkerConfig{Ports: [2]port.Port{in, out}, Neighbors: oneMAC{}})
	if err != nil {
		t.Fatal(err)
	}
	return w, in, out
}

// panicRunner builds a runner whose poll loop panics (in its PortStats
// hook, which runs inside the loop) as long as panicking says so.
func panicRunner(t *testing.T, panicking func(call int64) bool) (*Runner, *memport.Port, *memport.Port, *lab.LogBuffer) {
	t.Helper()
	w, in, out := testWorker(t)
	var calls atomic.Int64
	logs := &lab.LogBuffer{} // the worker goroutine writes it while the test reads
	r, err := New(Config{Worker: w, Ports: [2]port.Port{in, out}, CPU: -1, Mode: Adaptive, SleepMillis: 1,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		PortStats: func() {
			if panicking(calls.Add(1)) {
				var m map[string]int
				//lint:ignore SA5000 the panic is the point
				m["boom"]++ // a nil-map write: a runtime panic, as a bug would raise
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r, in, out, logs
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, what, 20*time.Second, cond)
}

// TestRunnerRecoversPanic: a panic of the poll loop is counted, logged with
// its stack, and the loop goes on translating (issue 11: nothing recovered
// a worker's panic, and natd died).
func TestRunnerRecoversPanic(t *testing.T) {
	r, in, out, logs := panicRunner(t, func(call int64) bool { return call <= 2 })
	waitFor(t, "two panics", func() bool { return r.Panics() == 2 })
	for i := 0; i < 10; i++ {
		in.Inject(udpFrame())
	}
	got := 0
	waitFor(t, "10 frames forwarded after the panics", func() bool {
		got += len(out.Drain())
		return got >= 10
	})
	if !r.Running() || r.Err() != nil {
		t.Fatalf("running %v, err %v after recovered panics", r.Running(), r.Err())
	}
	l := logs.String()
	if !strings.Contains(l, "assignment to entry in nil map") || !strings.Contains(l, "panic_test.go") {
		t.Fatalf("the log lacks the panic or its stack:\n%s", l)
	}
}

// TestRunnerStopsOnRepeatedPanics: a loop that panics over and over stops
// with an error instead of spinning on its bug.
func TestRunnerStopsOnRepeatedPanics(t *testing.T) {
	r, _, _, _ := panicRunner(t, func(int64) bool { return true })
	waitFor(t, "the loop to stop", func() bool { return !r.Running() && r.Err() != nil })
	if n := r.Panics(); n != maxPanics {
		t.Fatalf("%d panics counted, want %d", n, maxPanics)
	}
	if !strings.Contains(r.Err().Error(), "panicked") {
		t.Fatalf("err %v", r.Err())
	}
}
