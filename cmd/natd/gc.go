package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The Go heap's collection policy (gc.heap_floor_mb).
//
// natd's big tables (sessions, bindings, ports) live outside the Go heap,
// in the flowtable's preallocated arrays, so the heap itself is small: the
// configuration, the management plane's state and its buffers, a few MiB.
// Under the runtime's default policy (GOGC=100) the collector runs each
// time the heap doubles, that is after every few MiB allocated, and the
// management plane allocates that much in moments: `make bench` counted
// 21,947 objects allocated by natd in ten idle seconds holding two
// /metrics scrapes of a /24 pool (most of them the pool's per-address
// series), and a cycle in its steady ten seconds of forwarding.
// The runtime also forces a cycle every two minutes whatever the rate.
// Each cycle stops the world twice, which the pinned pollers must reach,
// and takes a quarter of GOMAXPROCS for its mark workers: jitter on an
// appliance that has none to spare.
//
// With a floor (by default 256 MiB, less on a small machine), natd turns the proportional trigger off (GOGC=off, which
// also ends the forced two-minute cycle) and sets the runtime's soft
// memory limit instead: the floor, or twice the heap that the last cycle
// found live if that is more (GOGC=100's own target once the heap has
// outgrown the floor), plus the runtime's memory outside the heap. After
// every cycle a sentinel's finalizer re-reads the live heap and moves the
// limit, so a heap that grows past the floor (a big configuration) is
// collected as GOGC=100 would, never thrashing against a stale limit. The
// cost is up to the floor of garbage held between cycles.
//
// GOGC or GOMEMLIMIT in natd's environment wins: natd then leaves the
// collector alone (the operator asked for that policy).

// defaultHeapFloor is gc.heap_floor_mb's default, in bytes: 256 MiB, or
// a sixteenth of the memory natd may use if that is less (64 MiB on a
// 1 GiB branch router, 40 MiB in a container limited to 640 MiB).
func defaultHeapFloor() int64 {
	const most = 256 << 20
	mem := int64(math.MaxInt64)
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		mem = int64(si.Totalram) * int64(si.Unit)
	}
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		if l, ok := cgroupMemoryLimit(string(b), os.ReadFile); ok {
			mem = min(mem, l)
		}
	}
	return min(most, mem/16)
}

// cgroupMemoryLimit returns the memory limit of the cgroup that
// procCgroup (/proc/self/cgroup) names, read through read: cgroup v2's
// memory.max, else v1's memory.limit_in_bytes. ok is false where there is
// none ("max", or v1's page-rounded 2^63).
func cgroupMemoryLimit(procCgroup string, read func(string) ([]byte, error)) (limit int64, ok bool) {
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(procCgroup), "\n") {
		id, rest, _ := strings.Cut(line, ":")
		ctrls, path, found := strings.Cut(rest, ":")
		switch {
		case !found:
		case id == "0" && ctrls == "":
			files = append(files, "/sys/fs/cgroup"+path+"/memory.max", "/sys/fs/cgroup/unified"+path+"/memory.max")
		case slices.Contains(strings.Split(ctrls, ","), "memory"):
			files = append(files, "/sys/fs/cgroup/memory"+path+"/memory.limit_in_bytes")
		}
	}
	for _, f := range files {
		b, err := read(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// maxHeapFloorMB bounds gc.heap_floor_mb (1 TiB): a larger value is a typo.
const maxHeapFloorMB = 1 << 20

// heapFloor is the process's collection policy. Its methods may be called
// from any goroutine; the runtime calls onCycle from its finalizer
// goroutine.
type heapFloor struct {
	floor atomic.Int64 // bytes; 0: the runtime's defaults
	armed sync.Once    // the sentinels is started once per process

	mu      sync.Mutex // serialises adjust (set and onCycle)
	samples [6]metrics.Sample
	limit   int64 // the memory limit adjust last set
}

// gcPolicy is natd's one policy: the runtime's settings are per process.
var gcPolicy = newHeapFloor()

func newHeapFloor() *heapFloor {
	h := &heapFloor{}
	for i, name := range []string{
		"/gc/heap/live:bytes",
		"/memory/classes/total:bytes",
		"/memory/classes/heap/released:bytes",
		"/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/unused:bytes",
		"/memory/classes/heap/free:bytes",
	} {
		h.samples[i].Name = name
	}
	return h
}

// applyGCPolicy applies floor (bytes; 0: the runtime's defaults) unless the
// environment sets the collector's policy, and logs what it did.
func applyGCPolicy(floor int64, log *slog.Logger) {
	if env := gcEnv(); env != "" {
		log.Info("gc: the environment sets the collector's policy; gc.heap_floor_mb is not applied", "env", env)
		return
	}
	gcPolicy.set(floor)
	if floor > 0 {
		log.Info("gc: collecting when the Go heap nears max(floor, twice its live size)",
			"heap_floor_mb", floor>>20, "memory_limit_mb", gcPolicy.currentLimit()>>20)
	}
}

// gcEnv names the collector's environment variables that are set.
func gcEnv() string {
	s := ""
	for _, v := range []string{"GOGC", "GOMEMLIMIT"} {
		if x, ok := os.LookupEnv(v); ok {
			if s != "" {
				s += " "
			}
			s += fmt.Sprintf("%s=%s", v, x)
		}
	}
	return s
}

// set makes floor the policy: with floor > 0 the limit is set before the
// proportional trigger goes off, so that the heap is never unbounded;
// with 0 the runtime's defaults (GOGC=100, no limit) come back.
func (h *heapFloor) set(floor int64) {
	h.floor.Store(floor)
	if floor <= 0 {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
		return
	}
	h.adjust()
	debug.SetGCPercent(-1)
	h.armed.Do(h.arm)
}

// gcSentinel is an object whose only use is its finalizer, which runs after
// the cycle that finds it unreachable. It is 64 bytes so that it is not
// combined with other objects by the tiny allocator, whose objects'
// finalizers may never run.
type gcSentinel [64]byte

// arm allocates the next sentinel and drops it.
func (h *heapFloor) arm() {
	runtime.SetFinalizer(new(gcSentinel), func(*gcSentinel) { h.onCycle() })
}

// onCycle runs after each cycle: it moves the limit to the heap the cycle
// found live, and arms the next sentinel.
func (h *heapFloor) onCycle() {
	if h.floor.Load() > 0 {
		h.adjust()
	}
	h.arm()
}

// adjust sets the memory limit from the floor and the last cycle's live
// heap.
func (h *heapFloor) adjust() {
	h.mu.Lock()
	defer h.mu.Unlock()
	floor := h.floor.Load()
	if floor <= 0 {
		return
	}
	metrics.Read(h.samples[:])
	var v [len(h.samples)]int64
	for i := range h.samples {
		if h.samples[i].Value.Kind() == metrics.KindUint64 {
			v[i] = int64(h.samples[i].Value.Uint64())
		}
	}
	live, total, released, objects, unused, free := v[0], v[1], v[2], v[3], v[4], v[5]
	// The limit counts all the runtime's memory except what it returned to
	// the system: the heap's target, plus stacks, metadata and the like.
	outside := max(total-released-objects-unused-free, 0)
	h.limit = max(floor, 2*live) + outside
	debug.SetMemoryLimit(h.limit)
}

// currentLimit is the memory limit adjust last set.
func (h *heapFloor) currentLimit() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.limit
}
