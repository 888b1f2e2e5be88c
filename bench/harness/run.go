package harness

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/bench/gen"
	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/header"
)

// Options configure Run. Zero values take the defaults of Full.
type Options struct {
	Mode    string // "full" or "quick"
	Command string // how the run was invoked, for the record
	Repo    string // the checkout (git revision, go test)

	Natd, L2fwd string // binaries

	DUTs  []string
	Flows []int
	Sizes []string

	Trial       time.Duration // fixed-rate trial length
	Drain       time.Duration
	Resolution  float64
	MaxTrials   int
	LatencyLoad float64
	// LatencyRuns is how many latency trials each cell runs; its latency
	// is the run with the median p99 (pickLatency). 0 means 1.
	LatencyRuns int
	// Nice is the nice value of every thread that moves frames: this
	// process's (the generator's), the DUT processes' and ksoftirqd's
	// (restored afterwards); see sched_linux.go. 0 leaves them alone.
	Nice int
	// RTPriority > 0 runs the generator's workers under SCHED_FIFO
	// (not used by default, see sched_linux.go).
	RTPriority    int
	GenRxCPU      int           // the sink receiver's CPU (the TX worker is on 0, the DUT on 1)
	SessionTrial  time.Duration // connection-rate trial length
	SteadyTrial   time.Duration // natd GC check
	CapacityTable int           // natd max_sessions in the capacity trial (0: skip)
	MaxSessions   int           // natd max_sessions elsewhere
	// NatdPollMode is natd's poll_mode: busy (the default, what the
	// issue's targets are about) or adaptive (sleeps in poll(2) when idle).
	NatdPollMode string

	// Profile runs `perf record` on natd and l2fwd during their unpaced
	// 1k-flow 64-byte trial (if perf is installed).
	Profile bool

	// Cells runs the main scenarios (DUTs x Flows x Sizes, session rate,
	// capacity); off, a run measures only the scenarios below.
	Cells bool
	// Queues are the queue counts of the queue-scaling scenario (nil:
	// none), QueueFlows its flows (64-byte frames).
	Queues         []int
	QueueFlows     int
	QueueMaxTrials int // the search's trial budget there (0: MaxTrials)
	// QueueRuns is how many times each queue count measures every DUT,
	// the DUTs taking turns (l2fwd, xnat, nftables, l2fwd, ...), so that
	// a slow stretch of the machine falls on all of them; each DUT's
	// reported cell is its run with the median zero-loss rate
	// (pickQueueCell). 0 means 1.
	QueueRuns int
	// KernelGenRuns repeats the kernel-generator scenario (0: none), each
	// phase sending KernelGenFrames frames.
	KernelGenRuns   int
	KernelGenFrames int

	MicroPackages []string // go test -bench packages ("" none)
	MicroArgs     []string // extra go test flags (-count, -benchtime)

	Log io.Writer
}

// Full is `make bench`: every scenario, 2 s trials.
func Full() Options {
	return Options{
		Mode: "full", DUTs: []string{L2fwd, Xnat, Kernel},
		Flows: []int{1, 1000, 100000, 1000000}, Sizes: []string{"64", "imix"},
		Trial: 2 * time.Second, Drain: 200 * time.Millisecond, Resolution: 0.03, MaxTrials: 8, LatencyLoad: 0.5, LatencyRuns: 3,
		Nice: -20, GenRxCPU: 0, SessionTrial: time.Second, SteadyTrial: 10 * time.Second,
		CapacityTable: 2 << 20, MaxSessions: 2 << 20, NatdPollMode: "busy", Profile: true,
		Cells: true, Queues: DefaultQueues(runtime.NumCPU()), QueueFlows: 65536, QueueRuns: 3, KernelGenRuns: 4, KernelGenFrames: 1000000,
		MicroPackages: []string{"./checksum/", "./ring/", "./flowtable/", "./dataplane/nat/", "./dataplane/header/"},
		MicroArgs:     []string{"-count", "5", "-benchtime", "200ms"},
	}
}

// Quick is `make bench-quick`: 1k and 1M flows of 64-byte frames, 0.5 s
// trials (shorter than RFC 2544's and the 2 s: the output says
// so), fewer search steps, a smaller capacity trial and one short run of
// the micro-benchmarks (without flowtable's, whose tables of up to 10M
// entries take half a minute to build).
func Quick() Options {
	o := Full()
	o.Mode = "quick"
	o.Flows = []int{1000, 1000000}
	o.Sizes = []string{"64"}
	o.Trial = 500 * time.Millisecond
	o.Drain = 200 * time.Millisecond
	o.Resolution = 0.06
	o.MaxTrials = 5
	o.LatencyRuns = 1
	o.SessionTrial = 500 * time.Millisecond
	o.SteadyTrial = 3 * time.Second
	o.CapacityTable = 256 << 10
	o.Queues = []int{1, 2}
	o.QueueFlows = 4096
	o.QueueMaxTrials = 3
	o.QueueRuns = 1
	o.KernelGenRuns = 1
	o.KernelGenFrames = 300000
	o.MicroPackages = []string{"./checksum/", "./ring/", "./dataplane/nat/", "./dataplane/header/"}
	o.MicroArgs = []string{"-count", "1", "-benchtime", "100ms"}
	return o
}

// Pinning: CPU 0 sends (the generator's TX worker, and on veth the DUT's
// receive work, which runs in the sender's softirq); CPU 1 runs the DUT's
// worker (natd, l2fwd). The generator's receiver at the sink goes where
// Options.GenRxCPU says: CPU 0 by default, so that the tester stays off the
// DUT's core. (With the receiver on CPU 1, a busy-polling DUT and the
// receiver take turns at CFS slice boundaries: the busy-polling DUTs'
// zero-loss rates drop, the kernel DUT's rise; bench/results/README.md
// compares runs of both placements.)
const (
	genTxCPU = 0
	dutCPU   = 1
	// natdPool is natd's address pool (added to dut-out by natd itself).
	natdPool    = "198.18.2.0/24"
	natdMetrics = "127.0.0.1:9469"
)

// runner is one Run's state; used by Run's goroutine only.
type runner struct {
	ctx    context.Context
	o      Options
	log    io.Writer
	res    *Results
	env    *labEnv
	dutMAC []byte // dut-in, the generator's next hop

	natd   *natdDUT
	kernel *kernelDUT
	// natdGC sums GC deltas over natd's trials.
	gcCycles float64
	gcTrials int
	// kernelSlab is conntrack's slab use, measured at the largest
	// scenario's warm-up.
	kernelSlab *kernelSlab
	// perf is whether `perf` is installed.
	perf bool
}

type kernelSlab struct {
	objSize  int64
	perEntry float64
	count    int64
}

// Run performs the benchmark and returns its results; it needs root.
// Results are returned (partial, with warnings) even when a scenario
// fails; the error is for failures that left nothing to report.
func Run(ctx context.Context, o Options) (*Results, error) {
	// The generator's two workers each hold a P while they run; with
	// GOMAXPROCS = 2 CPUs no P is left to run timers, and a TX worker
	// sleeping between paced bursts overslept by milliseconds and fell
	// 20-60% short of its target rate. Spare Ps fix that (they cost
	// nothing while idle).
	if runtime.GOMAXPROCS(0) < 8 {
		runtime.GOMAXPROCS(8)
	}
	def := Full()
	if o.Mode == "" {
		o.Mode = def.Mode
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Repo == "" {
		o.Repo = "."
	}
	if o.Trial <= 0 || o.Resolution <= 0 || o.LatencyLoad <= 0 || len(o.DUTs) == 0 || len(o.Flows) == 0 || len(o.Sizes) == 0 ||
		len(o.Queues) > 0 && o.QueueFlows < 1 || o.KernelGenRuns > 0 && o.KernelGenFrames < 1 {
		return nil, errors.New("harness: incomplete options (start from Full() or Quick())")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("harness: needs root (network namespaces, XDP, AF_XDP)")
	}
	started := time.Now()
	r := &runner{ctx: ctx, o: o, log: o.Log}
	if _, err := exec.LookPath("perf"); err == nil {
		r.perf = true
	}
	r.res = &Results{Schema: 1, Mode: o.Mode, Command: o.Command, Machine: ReadMachine(o.Repo),
		Started: started.UTC().Format(time.RFC3339)}
	r.res.Settings = Settings{
		TrialSeconds: o.Trial.Seconds(), DrainSeconds: o.Drain.Seconds(), Resolution: o.Resolution,
		MaxSearchTrials: o.MaxTrials, LatencyLoad: o.LatencyLoad, LatencyRuns: max(o.LatencyRuns, 1), QueueRuns: max(o.QueueRuns, 1), QueueTrials: cmp.Or(o.QueueMaxTrials, o.MaxTrials), Flows: o.Flows, Sizes: o.Sizes, DUTs: o.DUTs,
		GenTxCPU: genTxCPU, GenRxCPU: o.GenRxCPU, DUTCPU: dutCPU, RTPriority: o.RTPriority, Nice: o.Nice, Batch: 64, Queues: 1,
		Proto: "udp", Pool: natdPool, MaxSessions: o.MaxSessions, PollMode: o.NatdPollMode, NftRuleset: nftRuleset,
	}
	if o.Nice != 0 {
		if err := reniceSelf(o.Nice); err != nil {
			return nil, err
		}
		ks, err := reniceKsoftirqd(o.Nice)
		defer func() {
			if err := restoreNice(ks); err != nil {
				r.warn("%v", err)
			}
		}()
		if err != nil {
			return nil, err
		}
		r.res.Settings.KsoftirqdNice = fmt.Sprintf("%d ksoftirqd and kworker threads at nice %d during the run (restored after)", len(ks), o.Nice)
		restore, note, err := reniceAutogroup(o.Nice)
		defer func() {
			if err := restore(); err != nil {
				r.warn("restore autogroup: %v", err)
			}
		}()
		if err != nil {
			return nil, err
		}
		r.res.Settings.KsoftirqdNice += "; autogroup " + note
	}
	defer r.closeLab() // also after a half-built lab
	if err := r.setupLab(); err != nil {
		return nil, err
	}

	for _, name := range o.DUTs {
		if !o.Cells {
			break
		}
		if err := ctx.Err(); err != nil {
			r.warn("stopped: %v", err)
			break
		}
		r.runDUT(name)
	}
	if o.KernelGenRuns > 0 && ctx.Err() == nil {
		r.kernelGen()
	}
	if len(o.Queues) > 0 && ctx.Err() == nil {
		r.queueScaling()
	}
	if c, ks := r.res.Capacity, r.kernelSlab; c != nil && ks != nil && r.kernel != nil {
		c.ConntrackMax, c.ConntrackObjSize, c.ConntrackPerEntry = r.kernel.conntrackMax, ks.objSize, ks.perEntry
	}
	if len(o.MicroPackages) > 0 && ctx.Err() == nil {
		r.runMicro()
	}
	r.res.Machine.LoadAvgEnd = LoadAvg()
	r.res.Targets = Targets(r.res)
	r.res.Notes = notes(r.res)
	r.res.Finished = time.Now().UTC().Format(time.RFC3339)
	r.res.WallSeconds = time.Since(started).Seconds()
	return r.res, nil
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (r *runner) warn(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.res.Warnings = append(r.res.Warnings, s)
	r.logf("WARNING: %s", s)
}

// setupLab builds the single-queue lab of the main scenarios.
func (r *runner) setupLab() error {
	// nftables' RPS spreads over both CPUs here (the DUT's and the
	// generator's), as before the queue-scaling runs existed.
	env, err := r.newLab(Layout{Queues: 1, GenTx: []int{genTxCPU}, DUT: []int{dutCPU}, GenRx: []int{r.o.GenRxCPU}}, "3")
	r.env = env
	return err
}

// newLab builds gen -> dut -> sink with layout.Queues queue pairs, routes
// for the generator's ranges in the DUT and its neighbours resolved, and
// makes it r's lab (r.env, r.dutMAC). rpsMask is the kernel DUT's
// rps_cpus. On error the lab is returned if it was built, for the caller
// to close.
func (r *runner) newLab(layout Layout, rpsMask string) (*labEnv, error) {
	b, err := lab.NewBench(lab.WithQueues(layout.Queues))
	if err != nil {
		return nil, err
	}
	// Named after the lab, so that the lab's teardown, or the next
	// lab's sweep, removes it.
	dir, err := b.TempDir("xnatbench")
	if err != nil {
		b.Close()
		return nil, err
	}
	env := &labEnv{b: b, layout: layout, rpsMask: rpsMask, dir: dir, nice: r.o.Nice}
	r.env = env
	for _, argv := range [][]string{
		{"ip", "route", "add", "10.0.0.0/8", "via", "10.0.0.2"},
		{"ip", "route", "add", "198.19.0.0/16", "via", "198.18.0.2"},
	} {
		if err := lab.Run(b.DUT, argv...); err != nil {
			return env, err
		}
	}
	if err := r.resolveNeighbours(); err != nil {
		return env, err
	}
	g, err := lab.Link(b.Gen, lab.HostDev)
	if err != nil {
		return env, err
	}
	s, err := lab.Link(b.Sink, lab.HostDev)
	if err != nil {
		return env, err
	}
	d, err := lab.Link(b.DUT, lab.DUTInside)
	if err != nil {
		return env, err
	}
	env.genMAC, env.sinkMAC = g.MAC.String(), s.MAC.String()
	r.dutMAC = d.MAC
	r.logf("lab %s (%d queue pairs): gen %s, sink %s, dut-in %s; temp dir %s", b.Prefix, layout.Queues, g.MAC, s.MAC, d.MAC, dir)
	return env, nil
}

// resolveNeighbours pings both next hops from the DUT, so the first frames
// of a trial do not wait for ARP (the kernel queues only a few per
// neighbour; natd resolves from the kernel's table).
func (r *runner) resolveNeighbours() error {
	for _, a := range []string{"10.0.0.2", "198.18.0.2"} {
		if err := lab.Run(r.env.b.DUT, "ping", "-c", "1", "-W", "2", a); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) closeLab() {
	if r.kernel != nil {
		_ = r.kernel.restoreGlobals()
	}
	r.closeEnv(r.env)
}

// closeEnv removes a lab and its temporary directory.
func (r *runner) closeEnv(e *labEnv) {
	if e == nil {
		return
	}
	if err := e.b.Close(); err != nil {
		r.warn("lab close: %v", err)
	}
	os.RemoveAll(e.dir)
}

func (r *runner) newDUT(name string) (dut, error) {
	switch name {
	case L2fwd:
		if r.o.L2fwd == "" {
			return nil, errors.New("no l2fwd binary")
		}
		return &l2fwdDUT{env: r.env, bin: r.o.L2fwd}, nil
	case Xnat:
		if r.o.Natd == "" {
			return nil, errors.New("no natd binary")
		}
		r.natd = &natdDUT{env: r.env, bin: r.o.Natd, metrics: natdMetrics, maxSessions: r.o.MaxSessions, pool: natdPool, pollMode: r.o.NatdPollMode}
		return r.natd, nil
	case Kernel:
		// conntrack must hold the largest scenario's flows plus the
		// connection-rate trial's.
		maxFlows := slices.Max(r.o.Flows)
		r.kernel = &kernelDUT{env: r.env, rpsMask: r.env.rpsMask, flowCnt: 32768, conntrackMax: int64(maxFlows) + 4<<20}
		return r.kernel, nil
	}
	return nil, fmt.Errorf("unknown DUT %q (want %s, %s or %s)", name, L2fwd, Xnat, Kernel)
}

// runDUT runs every scenario of one DUT.
func (r *runner) runDUT(name string) {
	d, err := r.newDUT(name)
	if err != nil {
		r.warn("%s: %v", name, err)
		return
	}
	r.logf("== %s: start", name)
	if err := d.Start(); err != nil {
		r.warn("%s: start: %v", name, err)
		return
	}
	if k, ok := d.(*kernelDUT); ok {
		r.res.Settings.KernelTuning = k.tuning
	}
	defer func() {
		if err := d.Stop(); err != nil {
			r.warn("%s: stop: %v", name, err)
		}
		r.logf("== %s: stopped", name)
	}()
	if err := r.resolveNeighbours(); err != nil {
		r.warn("%s: neighbours: %v", name, err)
	}
	for _, flows := range r.o.Flows {
		var wu *Warmup
		if name != L2fwd {
			if wu, err = r.warmup(d, flows); err != nil {
				r.warn("%s %d flows: warm-up: %v", name, flows, err)
			}
		}
		for _, size := range r.o.Sizes {
			if r.ctx.Err() != nil {
				return
			}
			c := r.cell(d, flows, size)
			c.Warmup = wu
			r.res.Cells = append(r.res.Cells, c)
		}
	}
	if r.ctx.Err() != nil {
		return
	}
	switch name {
	case Xnat:
		r.gcCheck()
		// A fresh natd, so new sessions meet an empty table.
		if err := r.restart(d); err != nil {
			r.warn("xnat: restart: %v", err)
			return
		}
		r.sessionRate(d)
		if r.o.CapacityTable > 0 {
			r.capacity()
		}
	case Kernel:
		if err := r.kernel.flush(); err != nil {
			r.warn("nftables: %v", err)
		}
		r.sessionRate(d)
	}
}

func (r *runner) restart(d dut) error {
	if err := d.Stop(); err != nil {
		return err
	}
	if err := d.Start(); err != nil {
		return err
	}
	return r.resolveNeighbours()
}

// ---- trials ----

// trialSpec is one generator run.
type trialSpec struct {
	kind    string
	mode    gen.Mode
	flows   gen.FlowSpec
	size    string
	rate    float64
	dur     time.Duration
	receive bool // count at the sink (else TX only)
	profile bool // perf record the DUT process over the CPU window
}

// sampleWindow measures CPU over the generator's sending phase: it starts
// at the first progress line (one ProgressEvery after the workers
// started) and ends just before the send phase does. It is the
// generator's Progress writer; Write is called from the generator's
// progress goroutine and only starts the sampler goroutine.
type sampleWindow struct {
	d      dut
	length time.Duration
	once   sync.Once
	done   chan windowResult
	// perf, if set, records the DUT process during the window.
	perf *perfRecorder
}

type windowResult struct {
	seconds float64
	shares  []CPUShare
	dutCPU  float64
	err     error
}

func (w *sampleWindow) Write(p []byte) (int, error) {
	w.once.Do(func() { go w.sample() })
	return len(p), nil
}

func (w *sampleWindow) sample() {
	var res windowResult
	c0, err0 := ReadCPUTimes()
	d0, err1 := w.d.CPU(c0)
	t0 := time.Now()
	if w.perf != nil {
		w.perf.enable()
	}
	time.Sleep(w.length)
	if w.perf != nil {
		w.perf.disable()
	}
	c1, err2 := ReadCPUTimes()
	d1, err3 := w.d.CPU(c1)
	res.seconds = time.Since(t0).Seconds()
	if res.err = errors.Join(err0, err1, err2, err3); res.err == nil {
		res.shares = Shares(c0, c1)
		res.dutCPU = d1 - d0
	}
	w.done <- res
}

const progressEvery = 200 * time.Millisecond

// trial runs one generator run against d and records it.
func (r *runner) trial(d dut, t trialSpec) (Trial, error) {
	out := Trial{Kind: t.kind, OfferedPPS: t.rate}
	if err := r.ctx.Err(); err != nil {
		return out, err
	}
	sizes, err := gen.ParseSizes(t.size)
	if err != nil {
		return out, err
	}
	every := progressEvery
	if t.dur < 4*every {
		every = t.dur / 4
	}
	win := &sampleWindow{d: d, length: t.dur - every - 30*time.Millisecond, done: make(chan windowResult, 1)}
	var prof *Profile
	if t.profile {
		if pid := d.PID(); pid > 0 {
			prof = &Profile{DUT: d.Name(), Trial: t.kind}
			pr, err := startPerf(r.env.dir, pid)
			if err != nil {
				prof.Error = err.Error()
				r.res.Profiles = append(r.res.Profiles, prof)
				prof = nil
			} else {
				win.perf = pr
				prof.Command = strings.Join(pr.cmd.Args, " ")
				defer pr.stop() // on the error paths; a second stop is a no-op
			}
		}
	}
	b := r.env.b
	cfg := gen.Config{
		Mode: t.mode, Proto: header.ProtocolUDP,
		TxNetns: b.Gen, TxDev: lab.HostDev, DstMAC: r.dutMAC,
		Flows: t.flows, Sizes: sizes, Rate: t.rate, Duration: t.dur, Drain: r.o.Drain,
		TxQueues: r.env.layout.Queues, RxQueues: r.env.layout.Queues,
		TxCPUs: r.env.layout.GenTx, RxCPUs: r.env.layout.GenRx, RTPriority: r.o.RTPriority,
		Progress: win, ProgressEvery: every,
	}
	if t.receive {
		cfg.RxNetns, cfg.RxDev = b.Sink, lab.HostDev
	}
	var gc0 gcSample
	natd, isNatd := d.(*natdDUT)
	if isNatd {
		if gc0, err = natd.gcSample(); err != nil {
			out.Warnings = append(out.Warnings, "gc scrape: "+err.Error())
			isNatd = false
		}
	}
	res, err := gen.Run(r.ctx, cfg)
	if err != nil {
		return out, err
	}
	select {
	case w := <-win.done:
		if prof != nil {
			r.finishProfile(prof, win.perf, w.seconds)
		}
		if w.err != nil {
			out.Warnings = append(out.Warnings, "cpu sampling: "+w.err.Error())
		} else {
			out.WindowSeconds, out.CPUs, out.DUTCPUSeconds = w.seconds, w.shares, w.dutCPU
			if w.seconds > 0 {
				out.DUTCores = w.dutCPU / w.seconds
			}
		}
	case <-time.After(2 * time.Second):
		out.Warnings = append(out.Warnings, "no CPU sample (the generator printed no progress line)")
	}
	if isNatd {
		if gc1, err := natd.gcSample(); err == nil {
			out.GC = gc0.delta(gc1)
			r.gcCycles += out.GC.Cycles
			r.gcTrials++
		}
	}
	if n, err := d.Sessions(); err == nil && n >= 0 {
		out.Sessions = &n
	}
	out.Seconds = res.Seconds
	out.TxPackets, out.TxPPS, out.TxGbps = res.TX.Packets, res.TX.PPS, res.TX.Gbps
	out.OwnRxDrops = res.Diag.RxKernelDrops
	out.Diag = res.Diag
	if res.RX != nil {
		out.RxPackets, out.RxPPS = res.RX.Packets, res.RX.PPS
		out.Latency = res.Latency
		out.Forwarded = res.Diag.XDPRedirected
		if out.Forwarded == 0 && res.RX.Packets > 0 {
			// The sink program's counters could not be read.
			out.Forwarded = res.RX.Packets + res.Diag.RxKernelDrops
			out.Warnings = append(out.Warnings, "no XDP counters at the sink: forwarded = received + our receiver's drops")
		}
		if res.Seconds > 0 {
			out.ForwardedPPS = float64(out.Forwarded) / res.Seconds
		}
		out.Lost = int64(out.TxPackets) - int64(out.Forwarded)
		if out.TxPackets > 0 {
			out.LossRatio = float64(out.Lost) / float64(out.TxPackets)
		}
	}
	if res.Sessions != nil {
		out.Through, out.ThroughPerSecond = out.Forwarded, out.ForwardedPPS
	}
	out.Warnings = append(out.Warnings, res.Warnings...)
	return out, nil
}

// finishProfile stops the perf recording of a trial and reads it into p.
func (r *runner) finishProfile(p *Profile, pr *perfRecorder, seconds float64) {
	r.res.Profiles = append(r.res.Profiles, p)
	p.Seconds = seconds
	if err := pr.stop(); err != nil {
		p.Error = err.Error()
		return
	}
	p.Samples = perfSamples(pr.out.Bytes())
	rep, err := exec.Command("perf", "report", "-i", pr.data, "--stdio", "--sort", "sym", "-g", "none").Output()
	if err != nil {
		p.Error = "perf report: " + err.Error()
		return
	}
	if err := ParsePerfReport(bytes.NewReader(rep), p, 15); err != nil {
		p.Error = err.Error()
	}
}

// GlitchLoss is the largest loss ratio that gets a failing fixed-rate
// trial a second chance, and ShortOffer the share of its target rate a
// trial must really offer not to get one (see measured).
const (
	GlitchLoss = 1e-3
	ShortOffer = 0.9
)

// measured runs a trial and repeats a paced one once when
//
//   - the DUT lost at most GlitchLoss of the frames: a thread of this
//     shared machine descheduled for a few milliseconds loses a few
//     hundred frames at any rate, while a DUT beyond its capacity loses
//     far more; or
//   - the generator offered less than ShortOffer of the target rate (its
//     CPU was taken by other work), so the trial did not test the rate.
//
// The repeat's outcome is the trial's outcome; both are recorded, so a rate
// passes only after a whole trial without loss.
func (r *runner) measured(d dut, t trialSpec) (Trial, []Trial, error) {
	var all []Trial
	busy := 0
	for attempt := 1; ; attempt++ {
		tr, err := r.trial(d, t)
		if err != nil && errors.Is(err, unix.EBUSY) && busy < busyRetries && r.ctx.Err() == nil {
			// The generator could not bind a queue that its previous
			// trial's socket still held (the kernel releases it from
			// a work item, xp_release_deferred, which has been seen
			// to wait tens of seconds on this shared machine, past
			// gen's own retries): not a measurement of the DUT, so
			// wait and run the trial again rather than lose the
			// search to it.
			busy++
			r.logf("   %s at %s: %v; waiting %s and repeating", t.kind, pps(t.rate), err, busyWait)
			select {
			case <-time.After(busyWait):
			case <-r.ctx.Done():
			}
			attempt--
			continue
		}
		if err != nil {
			return tr, all, err
		}
		tr.Attempt = attempt
		all = append(all, tr)
		if attempt == 2 || t.rate == 0 {
			return tr, all, nil
		}
		switch {
		case tr.TxPPS < ShortOffer*t.rate:
			r.logf("   %s at %s: the generator offered only %s; repeating", t.kind, pps(t.rate), pps(tr.TxPPS))
		case tr.Lost > 0 && tr.LossRatio <= GlitchLoss:
			r.logf("   %s at %s: the DUT lost %d frames (%.3f%%); repeating", t.kind, pps(t.rate), tr.Lost, 100*tr.LossRatio)
		default:
			return tr, all, nil
		}
	}
}

// busyRetries and busyWait bound measured's waits for a generator queue
// still bound to the previous trial's socket.
const (
	busyRetries = 3
	busyWait    = 15 * time.Second
)

// cell measures one DUT at one flow count and size: its zero-loss rate,
// then its latency at LatencyLoad of that rate.
func (r *runner) cell(d dut, flows int, size string) Cell {
	c, base, ok := r.zeroLoss(d, flows, size)
	if !ok {
		return c
	}
	mx := c.Max
	lrate := r.o.LatencyLoad * c.ZeroLossPPS
	if lrate <= 0 {
		lrate = r.o.LatencyLoad * mx.ForwardedPPS
		r.warn("%s %d flows %s: no zero-loss rate found; latency measured at %.0f%% of the maximum forwarded rate instead",
			c.DUT, flows, size, 100*r.o.LatencyLoad)
	}
	t := base
	t.kind, t.rate = "latency", lrate
	var runs []Trial
	for i := 0; i < max(r.o.LatencyRuns, 1); i++ {
		lt, _, err := r.measured(d, t)
		if err != nil {
			c.Error = err.Error()
			r.warn("%s %d flows %s: %v", c.DUT, flows, size, err)
			return c
		}
		if l := lt.Latency; l != nil {
			r.logf("   latency at %s: p50 %.1f µs p99 %.1f µs p99.9 %.1f µs (dut lost %d, our receiver dropped %d)", pps(lrate), us(l.P50), us(l.P99), us(l.P999), lt.Lost, lt.OwnRxDrops)
		}
		runs = append(runs, lt)
	}
	c.Latency, c.LatencyP99s = pickLatency(runs)
	return c
}

// pickLatency returns, of a cell's latency trials, the one whose p99 is
// the median (of an even number, the lower of the middle two), and every
// trial's p99 in the order they ran. One run's p99 on this shared machine
// can be a stretch of milliseconds in which the host gave the busy DUT's
// core away, hitting l2fwd as hard as natd (bench/results/README.md); the
// median of three is what the DUT did. The trial is kept whole, so that
// its other percentiles and its CDF are one run's. Trials without a
// latency summary are left out; nil if none has one.
func pickLatency(runs []Trial) (*Trial, []int64) {
	var with []Trial
	var p99s []int64
	for _, t := range runs {
		if t.Latency != nil {
			with = append(with, t)
			p99s = append(p99s, t.Latency.P99)
		}
	}
	if len(with) == 0 {
		return nil, nil
	}
	sorted := slices.Clone(with)
	slices.SortStableFunc(sorted, func(a, b Trial) int { return cmp.Compare(a.Latency.P99, b.Latency.P99) })
	m := sorted[(len(sorted)-1)/2]
	if len(p99s) == 1 {
		p99s = nil // one run: nothing beside the trial's own
	}
	return &m, p99s
}

// zeroLoss measures one DUT's maximum forwarded rate and CPU per packet
// (an unpaced trial), then searches its zero-loss rate. ok is false when
// the cell ended in an error (recorded in it); base is the trial spec the
// search used.
func (r *runner) zeroLoss(d dut, flows int, size string) (c Cell, base trialSpec, ok bool) {
	c = Cell{DUT: d.Name(), Flows: flows, Size: size}
	spec, err := TrafficFlows(flows)
	if err != nil {
		c.Error = err.Error()
		return c, base, false
	}
	c.FlowSpec = DescribeFlows(spec)
	base = trialSpec{mode: gen.OneWay, flows: spec, size: size, dur: r.o.Trial, receive: true}
	fail := func(err error) (Cell, trialSpec, bool) {
		c.Error = err.Error()
		r.warn("%s %d flows %s: %v", c.DUT, flows, size, err)
		return c, base, false
	}

	t := base
	t.kind = "max"
	t.profile = r.o.Profile && flows == 1000 && size == "64" && r.perf && r.env.layout.Queues == 1
	mx, _, err := r.measured(d, t)
	if err != nil {
		return fail(err)
	}
	c.Max = &mx
	if mx.ForwardedPPS > 0 && mx.WindowSeconds > 0 {
		c.CPUPerMpkt = mx.DUTCores / (mx.ForwardedPPS / 1e6)
	}
	r.logf("%-8s %7d flows %4s: max tx %s forwarded %s (dut loss %.3f%%, our receiver dropped %d)  cpu0 %.0f%% cpu1 %.0f%% dut %.2f cores",
		c.DUT, flows, size, pps(mx.TxPPS), pps(mx.ForwardedPPS), 100*mx.LossRatio, mx.OwnRxDrops, busy(mx.CPUs, 0), busy(mx.CPUs, 1), mx.DUTCores)
	if mx.TxPPS <= 0 {
		return fail(errors.New("the generator sent nothing"))
	}

	sc := SearchConfig{Lo: 0, Hi: mx.TxPPS, Start: mx.ForwardedPPS, Resolution: r.o.Resolution, MaxTrials: r.o.MaxTrials}
	sr, err := Search(sc, func(rate float64) (Outcome, error) {
		t := base
		t.kind, t.rate = "search", rate
		tr, all, err := r.measured(d, t)
		c.Trials = append(c.Trials, all...)
		if err != nil {
			return Outcome{}, err
		}
		o := Outcome{Sent: tr.TxPackets, Received: tr.Forwarded}
		pass := Passes(o, 0)
		if pass && tr.TxPPS > c.ZeroLossPPS {
			// The throughput is the highest rate really offered
			// without loss: a trial may fall short of its target.
			c.ZeroLossPPS, c.ZeroLossGbps = tr.TxPPS, tr.TxGbps
		}
		r.logf("   search %s: tx %s forwarded %s dut lost %d (our receiver dropped %d) %s", pps(rate), pps(tr.TxPPS), pps(tr.ForwardedPPS), tr.Lost, tr.OwnRxDrops, passFail(pass))
		return o, nil
	})
	c.Search = &sr
	if err != nil {
		return fail(err)
	}
	r.logf("%-8s %7d flows %4s: zero-loss %s after %d trials", c.DUT, flows, size, pps(c.ZeroLossPPS), len(c.Trials))
	return c, base, true
}

// warmup opens every flow of the scenario in a stateful DUT before its
// trials (connection-rate mode sends each flow once), repeating until the
// DUT holds a session for each (frames lost to overload leave gaps).
func (r *runner) warmup(d dut, flows int) (*Warmup, error) {
	spec, err := TrafficFlows(flows)
	if err != nil {
		return nil, err
	}
	wu := &Warmup{Wanted: flows}
	start := time.Now()
	const rate = 200e3
	var slab0 Slab
	if d.Name() == Kernel {
		slab0, _ = readSlab("nf_conntrack")
	}
	c0, _ := d.Sessions()
	for wu.Passes < 4 {
		wu.Passes++
		// Connection-rate mode stops when every flow has been sent;
		// the duration only bounds a generator that cannot keep the
		// pace (the machine is shared), which must still reach the
		// last flow.
		dur := time.Duration(3*float64(flows)/rate*float64(time.Second)) + time.Second
		if _, err := r.trial(d, trialSpec{kind: "warmup", mode: gen.ConnRate, flows: spec, size: "64", rate: rate, dur: dur}); err != nil {
			return wu, err
		}
		n, err := d.Sessions()
		if err != nil {
			return wu, err
		}
		wu.Sessions = n
		if n >= int64(flows) {
			break
		}
	}
	wu.Seconds = time.Since(start).Seconds()
	r.logf("%-8s %7d flows: warm-up %d pass(es), %d sessions, %.1f s", d.Name(), flows, wu.Passes, wu.Sessions, wu.Seconds)
	if wu.Sessions < int64(flows) {
		r.warn("%s %d flows: warm-up left %d sessions (< flows): trials also set up sessions", d.Name(), flows, wu.Sessions)
	}
	if d.Name() == Kernel && flows == slices.Max(r.o.Flows) {
		if slab1, err := readSlab("nf_conntrack"); err == nil && wu.Sessions > c0 {
			r.kernelSlab = &kernelSlab{objSize: slab1.ObjSize, perEntry: float64((slab1.Active-slab0.Active)*slab1.ObjSize) / float64(wu.Sessions-c0),
				count: wu.Sessions}
		}
	}
	return wu, nil
}

func readSlab(name string) (Slab, error) {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return Slab{}, err
	}
	return ParseSlabinfo(b, name)
}

// sessionRate measures the DUT's new-session rate in connection-rate
// mode (every frame a never-used flow, counted where it reaches the
// sink): an unpaced trial, then a zero-loss search over paced ones. Every
// trial uses its own block of flows. natd is restarted, and conntrack
// flushed, when half of the table is taken, so the table never fills.
func (r *runner) sessionRate(d dut) {
	s := SessionRate{DUT: d.Name()}
	block := 0
	run := func(kind string, rate float64) (Trial, error) {
		if n, err := d.Sessions(); err == nil && n > int64(r.o.MaxSessions/2) {
			if err := r.emptyTable(d); err != nil {
				return Trial{}, err
			}
		}
		t := trialSpec{kind: kind, mode: gen.ConnRate, flows: SessionFlows(block), size: "64", rate: rate, dur: r.o.SessionTrial, receive: true}
		block++
		return r.trial(d, t)
	}
	mx, err := run("connrate-max", 0)
	if err != nil {
		r.warn("%s: session rate: %v", d.Name(), err)
		return
	}
	s.Max, s.MaxThrough = mx, mx.ThroughPerSecond
	r.logf("%-8s session set-up, unpaced: %s new flows sent/s, %s forwarded/s", d.Name(), pps(mx.TxPPS), pps(mx.ThroughPerSecond))
	if mx.TxPPS > 0 {
		sc := SearchConfig{Hi: mx.TxPPS, Start: mx.ThroughPerSecond, Resolution: r.o.Resolution, MaxTrials: r.o.MaxTrials}
		sr, err := Search(sc, func(rate float64) (Outcome, error) {
			tr, err := run("connrate", rate)
			if err != nil {
				return Outcome{}, err
			}
			s.Trials = append(s.Trials, tr)
			o := Outcome{Sent: tr.TxPackets, Received: tr.Forwarded}
			if Passes(o, 0) && tr.TxPPS > s.PerSecond {
				s.PerSecond = tr.TxPPS
			}
			r.logf("   session search %s: sent %s/s forwarded %s/s lost %d %s", pps(rate), pps(tr.TxPPS), pps(tr.ThroughPerSecond), tr.Lost, passFail(Passes(o, 0)))
			return o, nil
		})
		s.Search = &sr
		if err != nil {
			r.warn("%s: session rate search: %v", d.Name(), err)
		}
	}
	if n, ok := d.(*natdDUT); ok {
		s.Drops, _ = n.drops()
	}
	r.res.SessionRates = append(r.res.SessionRates, s)
	r.logf("%-8s session set-up rate (zero loss): %s new flows/s; drops %v", d.Name(), pps(s.PerSecond), s.Drops)
}

// emptyTable gives the DUT an empty session table: a fresh natd, or a
// flushed conntrack table.
func (r *runner) emptyTable(d dut) error {
	switch d := d.(type) {
	case *natdDUT:
		return r.restart(d)
	case *kernelDUT:
		return d.flush()
	}
	return nil
}

// gcCheck runs natd at LatencyLoad of its smallest multi-flow scenario's
// throughput for SteadyTrial and reads its GC counters around it, and
// around an idle period as long (what the scrapes themselves cost).
func (r *runner) gcCheck() {
	var ref *Cell
	for i := range r.res.Cells {
		c := &r.res.Cells[i]
		if c.DUT == Xnat && c.Flows > 1 && c.ZeroLossPPS > 0 && (ref == nil || c.Flows < ref.Flows) {
			ref = c
		}
	}
	g := &GCCheck{}
	r.res.GC = g
	rate := 100e3
	flows, size := 1000, "64"
	if ref != nil {
		rate, flows, size = r.o.LatencyLoad*ref.ZeroLossPPS, ref.Flows, ref.Size
	}
	spec, _ := TrafficFlows(flows)
	tr, err := r.trial(r.natd, trialSpec{kind: "steady", mode: gen.OneWay, flows: spec, size: size, rate: rate, dur: r.o.SteadyTrial, receive: true})
	if err != nil {
		r.warn("xnat: GC check: %v", err)
	} else {
		g.Steady = &tr
	}
	s0, err0 := r.natd.gcSample()
	time.Sleep(r.o.SteadyTrial)
	s1, err1 := r.natd.gcSample()
	if err := errors.Join(err0, err1); err == nil {
		g.Idle = s0.delta(s1)
	}
	g.TrialCycles, g.TrialCount = r.gcCycles, r.gcTrials
	if g.Steady != nil && g.Steady.GC != nil {
		r.logf("xnat GC: steady %.1f s at %s: %.0f cycles, %.0f objects, %.0f bytes allocated; idle %.0f cycles, %.0f objects; all trials %.0f cycles",
			g.Steady.GC.Seconds, pps(rate), g.Steady.GC.Cycles, g.Steady.GC.AllocObjects, g.Steady.GC.AllocBytes,
			g.Idle.Cycles, g.Idle.AllocObjects, g.TrialCycles)
	}
}

// capacity fills a fresh natd's session table with never-used flows (10%
// more than it holds) at a pace it can take, then reads its sessions, drop
// reasons and RSS; a second, small-table natd gives the RSS baseline.
func (r *runner) capacity() {
	n := r.natd
	c := &Capacity{MaxSessions: r.o.CapacityTable, FlowsOffered: r.o.CapacityTable + r.o.CapacityTable/10}
	r.res.Capacity = c
	n.maxSessions = r.o.CapacityTable
	defer func() { n.maxSessions = r.o.MaxSessions }()
	if err := r.restart(n); err != nil {
		r.warn("capacity: %v", err)
		return
	}
	var err error
	if c.RSSBefore, err = n.RSS(); err != nil {
		r.warn("capacity: %v", err)
	}
	// Pace at the zero-loss set-up rate; a second pass fills any gaps.
	rate := 150e3
	for _, s := range r.res.SessionRates {
		if s.DUT == Xnat && s.PerSecond > 0 {
			rate = s.PerSecond
		}
	}
	spec := CapacityFlows(c.FlowsOffered)
	dur := time.Duration(float64(c.FlowsOffered)/rate*float64(time.Second)) + time.Second
	for pass := 0; pass < 2; pass++ {
		tr, err := r.trial(n, trialSpec{kind: "capacity", mode: gen.ConnRate, flows: spec, size: "64", rate: rate, dur: dur, receive: true})
		if err != nil {
			r.warn("capacity: %v", err)
			return
		}
		c.Trial = tr
	}
	if c.SessionsHeld, err = n.Sessions(); err != nil {
		r.warn("capacity: %v", err)
	}
	if c.Drops, err = n.drops(); err != nil {
		r.warn("capacity: %v", err)
	}
	if c.RSSAfter, err = n.RSS(); err != nil {
		r.warn("capacity: %v", err)
	}
	if c.SessionsHeld > 0 {
		c.RSSGrowthPer = float64(c.RSSAfter-c.RSSBefore) / float64(c.SessionsHeld)
	}
	// Baseline: the same natd with a 64 Ki-session table.
	c.SmallSessions = 64 << 10
	n.maxSessions = c.SmallSessions
	if err := r.restart(n); err != nil {
		r.warn("capacity baseline: %v", err)
		return
	}
	if c.RSSSmall, err = n.RSS(); err == nil && c.MaxSessions > c.SmallSessions {
		c.BytesPerSlot = float64(c.RSSBefore-c.RSSSmall) / float64(c.MaxSessions-c.SmallSessions)
	}
	r.logf("xnat capacity: table %d, %d flows offered, %d sessions held, drops %v; RSS %d -> %d MiB (%.0f B/session growth), %.0f B per table slot",
		c.MaxSessions, c.FlowsOffered, c.SessionsHeld, c.Drops, c.RSSBefore>>20, c.RSSAfter>>20, c.RSSGrowthPer, c.BytesPerSlot)
}

// runMicro runs the Go benchmarks of the packet core and parses them.
func (r *runner) runMicro() {
	args := append([]string{"test", "-run", "XXX", "-bench", ".", "-benchmem"}, r.o.MicroArgs...)
	args = append(args, r.o.MicroPackages...)
	r.res.MicroCommand = "go " + strings.Join(args, " ")
	r.logf("micro-benchmarks: %s", r.res.MicroCommand)
	start := time.Now()
	cmd := exec.CommandContext(r.ctx, "go", args...)
	cmd.Dir = r.o.Repo
	var out strings.Builder
	cmd.Stdout = io.MultiWriter(&out, r.log)
	cmd.Stderr = r.log
	err := cmd.Run()
	r.res.MicroSeconds = time.Since(start).Seconds()
	if err != nil {
		r.warn("micro-benchmarks: %v", err)
	}
	m, perr := ParseBench(strings.NewReader(out.String()))
	if perr != nil {
		r.warn("micro-benchmarks: %v", perr)
	}
	r.res.Micro = m
}

// ---- small formatting helpers for the log ----

// pps formats a rate as the generator's progress lines do.
func pps(v float64) string { return gen.FormatPPS(v) }

func us(ns int64) float64 { return float64(ns) / 1e3 }

func busy(s []CPUShare, cpu int) float64 {
	for _, c := range s {
		if c.CPU == cpu {
			return 100 * c.Busy()
		}
	}
	return 0
}

func passFail(p bool) string {
	if p {
		return "pass"
	}
	return "FAIL"
}
