package main

import (
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestGCHeapFloorConfig(t *testing.T) {
	if f := defaultHeapFloor(); f <= 0 || f > 256<<20 {
		t.Errorf("default floor %d, want (0, 256 MiB]", f)
	}
	for _, tc := range []struct {
		yaml string
		want int64
		err  string
	}{
		{"", defaultHeapFloor(), ""},
		{"gc: {heap_floor_mb: 0}\n", 0, ""},
		{"gc: {heap_floor_mb: 64}\n", 64 << 20, ""},
		{"gc: {heap_floor_mb: -1}\n", 0, "gc.heap_floor_mb"},
		{"gc: {heap_floor_mb: 2000000}\n", 0, "gc.heap_floor_mb"},
	} {
		c, err := ParseConfig("natd.yaml", []byte(baseYAML+tc.yaml))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one naming %s", tc.yaml, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case c.GCHeapFloor != tc.want:
			t.Errorf("%q: floor %d, want %d", tc.yaml, c.GCHeapFloor, tc.want)
		}
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	files := map[string]string{
		"/sys/fs/cgroup/kubepods/pod1/memory.max":                   "671088640\n",
		"/sys/fs/cgroup/system.slice/natd.service/memory.max":       "max\n",
		"/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes":    "1073741824\n",
		"/sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": "9223372036854771712\n",
	}
	read := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, os.ErrNotExist
	}
	for _, tc := range []struct {
		cgroup string
		want   int64
		ok     bool
	}{
		{"0::/kubepods/pod1\n", 640 << 20, true},
		{"0::/system.slice/natd.service\n", 0, false},
		{"12:memory:/docker/abc\n0::/docker/abc\n", 1 << 30, true},
		{"4:memory:/process_api/x\n0::/\n", 0, false}, // v1's "no limit"
		{"3:cpu,cpuacct:/\n", 0, false},
		{"", 0, false},
	} {
		got, ok := cgroupMemoryLimit(tc.cgroup, read)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %d %v, want %d %v", tc.cgroup, got, ok, tc.want, tc.ok)
		}
	}
}

// withGCPolicy runs f under a floor, then restores the runtime's settings
// as they were (the policy is per process).
func withGCPolicy(t *testing.T, floor int64, f func()) {
	t.Helper()
	if env := gcEnv(); env != "" {
		// The test process's own collector policy is then the
		// environment's, and the policy must not be applied.
		t.Fatalf("the test environment sets %s: run the tests without it", env)
	}
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	defer func() {
		gcPolicy.set(0)
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	}()
	applyGCPolicy(floor, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f()
}

func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var gcTestSink [][]byte

// TestGCHeapFloorDefersCollection allocates a quarter of the floor in
// garbage, in the small pieces the management plane allocates, and checks
// that no cycle ran, where GOGC=100 runs one per few MiB. It also checks
// the runtime's settings while the floor is in force.
func TestGCHeapFloorDefersCollection(t *testing.T) {
	withGCPolicy(t, 512<<20, func() {
		if p := debug.SetGCPercent(-1); p != -1 {
			t.Errorf("GOGC %d under a floor, want off", p)
		}
		if l := debug.SetMemoryLimit(-1); l < 512<<20 || l == math.MaxInt64 {
			t.Errorf("memory limit %d under a 512 MiB floor", l)
		}
		// A cycle the test binary's earlier garbage started under
		// GOGC=100 could complete in the loop: finish one first.
		runtime.GC()
		before := gcCycles()
		for range 128 << 10 {
			gcTestSink = append(gcTestSink[:0], make([]byte, 1024))
		}
		if n := gcCycles() - before; n != 0 {
			t.Errorf("%d cycles for 128 MiB of garbage under a 512 MiB floor", n)
		}
	})
	gcTestSink = nil
}

// TestGCHeapFloorFollowsLiveHeap grows the live heap past the floor and
// checks that the limit follows it to twice its size, as GOGC=100's target
// would, so that a heap past the floor is not collected over and over; and
// that it comes back to the floor when the heap shrinks.
func TestGCHeapFloorFollowsLiveHeap(t *testing.T) {
	const floor = 64 << 20
	withGCPolicy(t, floor, func() {
		live := make([][]byte, 0, 192)
		for range 192 {
			live = append(live, make([]byte, 1<<20)) // 192 MiB, three floors
		}
		waitLimit(t, "with 192 MiB live", func(l int64) bool { return l >= 2*192<<20 })
		runtime.KeepAlive(live)
		live = nil
		waitLimit(t, "with the 192 MiB dropped", func(l int64) bool { return l < 2*floor })
	})
}

// waitLimit runs cycles until the limit the policy set satisfies ok: the
// policy moves it from the finalizer goroutine after each cycle.
func waitLimit(t *testing.T, what string, ok func(int64) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		runtime.GC()
		if l := gcPolicy.currentLimit(); ok(l) && ok(debug.SetMemoryLimit(-1)) {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s: memory limit %d MiB (runtime %d MiB) after 30 s", what, l>>20, debug.SetMemoryLimit(-1)>>20)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
