// Package poller runs the dataplane's poll loops: one goroutine per
// (inside queue, outside queue) pair, locked to its OS thread and pinned to
// a CPU, calling nat.Worker.Poll in a busy or adaptive loop.
//
// This is the outermost layer of the pipeline: below it, nat.Worker moves
// bursts between the two ports; above it, natd decides which queues and
// CPUs there are. A Runner owns its goroutine; the methods documented as
// such are the only ones other goroutines may call.
package poller

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/internal/enumtext"
)

// PollMode chooses how a worker waits for traffic.
type PollMode uint8

const (
	// Adaptive spins while there is traffic, then sleeps in poll(2) with a
	// short timeout. It is the default: an idle appliance stays cool.
	Adaptive PollMode = iota
	// Busy spins all the time, for benchmarks and latency.
	Busy
)

var pollModeNames = []string{Adaptive: "adaptive", Busy: "busy"}

func (m PollMode) String() string { return enumtext.String(pollModeNames, "poll_mode", m) }

// MarshalText and UnmarshalText are the poll mode's form in natd.yaml.
func (m PollMode) MarshalText() ([]byte, error) {
	return enumtext.Marshal(pollModeNames, "poll_mode", m)
}
func (m *PollMode) UnmarshalText(b []byte) error { return enumtext.Unmarshal(pollModeNames, b, m) }

// Config configures one Runner.
type Config struct {
	Worker *nat.Worker
	Ports  [nat.NumSides]port.Port
	// CPU to pin the goroutine's thread to; -1 leaves it unpinned.
	CPU  int
	Mode PollMode
	// IdlePolls is how many consecutive empty polls an adaptive worker
	// makes before sleeping (default 256, a few tens of microseconds).
	IdlePolls int
	// SleepMillis is the poll(2) timeout of an adaptive worker's sleep
	// (default 10): the longest a frame waits for an idle worker to wake,
	// beyond the kernel's own wake-up.
	SleepMillis int
	// PortStats, if set, is called on the worker goroutine about every
	// statsEveryMillis while it polls (and when it goes to sleep) to
	// publish port-level counters.
	PortStats func()
	// Logger receives the report of a panic of the poll loop; default
	// slog.Default().
	Logger *slog.Logger
}

// A poll loop that panics is restarted (see Runner.loop), unless it has
// panicked maxPanics times within panicWindow: then it stops, and Err
// says why.
const (
	maxPanics   = 5
	panicWindow = 10 * time.Second
)

// statsEveryMillis is how often a busy worker publishes port-level
// counters (two getsockopt(2) calls per port pair); it checks every
// statsCheckPolls polls, against the worker's cached clock.
const (
	statsEveryMillis = 100
	statsCheckPolls  = 1024
)

// Runner is one poll-loop goroutine.
type Runner struct {
	cfg     Config
	stop    atomic.Bool
	done    chan struct{}
	started atomic.Bool
	running atomic.Bool
	panics  atomic.Uint64
	errMu   sync.Mutex
	err     error
}

// New checks cfg and returns a Runner that has not started.
func New(cfg Config) (*Runner, error) {
	if cfg.Worker == nil || cfg.Ports[nat.Inside] == nil || cfg.Ports[nat.Outside] == nil {
		return nil, errors.New("worker: a nat.Worker and both ports are required")
	}
	if cfg.CPU >= runtime.NumCPU() {
		return nil, fmt.Errorf("worker %d: CPU %d does not exist (this machine has %d)", cfg.Worker.ID(), cfg.CPU, runtime.NumCPU())
	}
	if cfg.IdlePolls <= 0 {
		cfg.IdlePolls = 256
	}
	if cfg.SleepMillis <= 0 {
		cfg.SleepMillis = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runner{cfg: cfg, done: make(chan struct{})}, nil
}

// Start launches the goroutine. It returns once the thread is pinned (or
// pinning failed, which is returned).
func (r *Runner) Start() error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("worker: already started")
	}
	ready := make(chan error, 1)
	go r.loop(ready)
	return <-ready
}

// Stop asks the goroutine to finish its current burst and exit, and waits
// for it. Any goroutine may call it.
func (r *Runner) Stop() {
	r.stop.Store(true)
	if r.started.Load() {
		<-r.done
	}
}

// Running reports whether the poll loop is running. Any goroutine may call
// it.
func (r *Runner) Running() bool { return r.running.Load() }

// Panics returns how many times the poll loop has panicked. The loop was
// restarted after each, except after one that made it stop (Err). Any
// goroutine may call it.
func (r *Runner) Panics() uint64 { return r.panics.Load() }

// Err returns the error that ended the loop, if any.
func (r *Runner) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

func (r *Runner) loop(ready chan<- error) {
	defer close(r.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r.cfg.CPU >= 0 {
		if err := pin(r.cfg.CPU); err != nil {
			ready <- fmt.Errorf("worker %d: pin to CPU %d: %w", r.cfg.Worker.ID(), r.cfg.CPU, err)
			return
		}
	}
	ready <- nil
	r.running.Store(true)
	defer r.running.Store(false)

	// A panic of the poll loop is a bug (issue 11: an index out of range
	// in the NAT engine killed natd). One worker's bug must not take the
	// appliance down: it is counted, logged with its stack, and the loop
	// starts again with the next burst. The burst it was translating is
	// lost, and the frames it held may stay out of the ports' pools. A
	// loop that keeps panicking stops instead of spinning on its bug.
	var recent []time.Time
	for !r.poll() {
		now := time.Now()
		recent = append(recent, now)
		for len(recent) > 0 && now.Sub(recent[0]) > panicWindow {
			recent = recent[1:]
		}
		if len(recent) >= maxPanics {
			r.errMu.Lock()
			r.err = fmt.Errorf("worker %d: poll loop panicked %d times within %v; stopped", r.cfg.Worker.ID(), len(recent), panicWindow)
			r.errMu.Unlock()
			r.cfg.Logger.Error("worker stopped: its poll loop keeps panicking", "worker", r.cfg.Worker.ID(), "panics", r.panics.Load())
			return
		}
	}
}

// poll runs the poll loop until Stop (true), or until it panics (false).
func (r *Runner) poll() (stopped bool) {
	defer func() {
		if v := recover(); v != nil {
			n := r.panics.Add(1)
			r.cfg.Logger.Error("worker poll loop panicked; restarting it", "worker", r.cfg.Worker.ID(),
				"panic", fmt.Sprint(v), "panics", n, "stack", string(debug.Stack()))
			stopped = false
		}
	}()
	w := r.cfg.Worker
	idle := 0
	polls := 0
	lastStats := w.Tick()
	for !r.stop.Load() {
		n := w.Poll()
		polls++
		if r.cfg.PortStats != nil && polls%statsCheckPolls == 0 {
			// A poll count alone would be a rate that varies with
			// load: empty polls take tens of nanoseconds.
			if t := w.Tick(); t-lastStats >= statsEveryMillis {
				lastStats = t
				r.cfg.PortStats()
			}
		}
		if n > 0 || r.cfg.Mode == Busy {
			idle = 0
			continue
		}
		idle++
		if idle < r.cfg.IdlePolls {
			continue
		}
		if r.cfg.PortStats != nil {
			r.cfg.PortStats()
		}
		w.Publish()
		if err := r.sleep(); err != nil {
			// A link failure: the port counts it and recovers on its own;
			// do not spin on it.
			time.Sleep(time.Duration(r.cfg.SleepMillis) * time.Millisecond)
		}
	}
	if r.cfg.PortStats != nil {
		r.cfg.PortStats()
	}
	w.Publish()
	return true
}
