package harness

import "github.com/xnat/xnat/bench/gen"

// DUT names, as they appear in the results.
const (
	L2fwd  = "l2fwd"
	Xnat   = "xnat"
	Kernel = "nftables"
)

// Results is one harness run: results.json is this value.
type Results struct {
	Schema      int      `json:"schema"`
	Mode        string   `json:"mode"` // "full" or "quick"
	Command     string   `json:"command"`
	Machine     Machine  `json:"machine"`
	Settings    Settings `json:"settings"`
	Started     string   `json:"started"`
	Finished    string   `json:"finished"`
	WallSeconds float64  `json:"wall_s"`

	Cells        []Cell        `json:"cells"`
	SessionRates []SessionRate `json:"session_rates,omitempty"`
	Capacity     *Capacity     `json:"capacity,omitempty"`
	GC           *GCCheck      `json:"gc,omitempty"`
	// Profiles are perf profiles of the DUT processes in their unpaced
	// 1k-flow 64-byte trial.
	Profiles []*Profile `json:"profiles,omitempty"`
	// Queues is the queue-scaling scenario (queues.go); KernelGen the
	// kernel-generator scenario (kernelgen.go).
	Queues    []QueueRun `json:"queues,omitempty"`
	KernelGen *KernelGen `json:"kernel_generator,omitempty"`

	MicroCommand string  `json:"micro_command,omitempty"`
	MicroSeconds float64 `json:"micro_wall_s,omitempty"`
	Micro        []Micro `json:"micro,omitempty"`

	Targets  []Target `json:"targets"`
	Notes    []string `json:"notes"`
	Warnings []string `json:"warnings,omitempty"`
}

// Machine are the facts a reader needs to weigh the figures.
type Machine struct {
	CPUModel     string `json:"cpu_model"`
	Cores        int    `json:"cores"`
	Kernel       string `json:"kernel"`
	GoVersion    string `json:"go_version"`
	Date         string `json:"date"`
	GitRevision  string `json:"git_revision"`
	GitDirty     bool   `json:"git_dirty"`
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
	MemTotalMiB  int64  `json:"mem_total_mib"`
}

// Settings are the knobs every trial shared.
type Settings struct {
	TrialSeconds    float64  `json:"trial_s"`
	DrainSeconds    float64  `json:"drain_s"`
	Resolution      float64  `json:"search_resolution"`
	MaxSearchTrials int      `json:"search_max_trials"`
	LossTolerance   float64  `json:"loss_tolerance"`
	LatencyLoad     float64  `json:"latency_load"` // fraction of the zero-loss rate
	LatencyRuns     int      `json:"latency_runs"` // latency trials a cell; the median p99's is reported
	QueueRuns       int      `json:"queue_runs"`   // runs of each DUT at each queue count; the median zero-loss run's is reported
	QueueTrials     int      `json:"queue_search_max_trials"`
	Flows           []int    `json:"flows"`
	Sizes           []string `json:"sizes"`
	DUTs            []string `json:"duts"`
	GenTxCPU        int      `json:"gen_tx_cpu"`
	GenRxCPU        int      `json:"gen_rx_cpu"`
	DUTCPU          int      `json:"dut_cpu"`
	RTPriority      int      `json:"gen_rt_priority"`
	Nice            int      `json:"nice"`
	KsoftirqdNice   string   `json:"ksoftirqd"`
	Batch           int      `json:"batch"`
	Queues          int      `json:"queues"`
	Proto           string   `json:"proto"`
	Pool            string   `json:"xnat_pool"`
	MaxSessions     int      `json:"xnat_max_sessions"`
	PollMode        string   `json:"xnat_poll_mode"`
	NftRuleset      string   `json:"nft_ruleset"`
	KernelTuning    []string `json:"kernel_tuning"`
}

// Cell is one DUT at one flow count and frame size.
type Cell struct {
	DUT      string `json:"dut"`
	Flows    int    `json:"flows"`
	Size     string `json:"size"`
	FlowSpec string `json:"flow_spec"`

	// Warmup created the DUT's state for these flows before any trial.
	Warmup *Warmup `json:"warmup,omitempty"`
	// Max is the unpaced trial: the maximum forwarded rate is its RX
	// rate.
	Max *Trial `json:"max,omitempty"`
	// Search is the RFC 2544 throughput search; Trials its trials in
	// detail (retries included).
	Search *SearchResult `json:"search,omitempty"`
	Trials []Trial       `json:"search_trials,omitempty"`
	// ZeroLossPPS is the throughput (Search.Rate); ZeroLossGbps the
	// frame bits per second at that rate (without FCS/preamble/IFG).
	ZeroLossPPS  float64 `json:"zero_loss_pps"`
	ZeroLossGbps float64 `json:"zero_loss_gbps"`
	// Latency is the trial at Settings.LatencyLoad of the throughput:
	// of Settings.LatencyRuns such trials, the one with the median p99
	// (pickLatency). LatencyP99s are every run's p99, in order, when
	// there was more than one.
	Latency     *Trial  `json:"latency,omitempty"`
	LatencyP99s []int64 `json:"latency_p99s_ns,omitempty"`
	// CPUPerMpkt is the DUT's CPU seconds per million forwarded packets
	// in the Max trial (see Trial.DUTCPUSeconds for what is counted).
	CPUPerMpkt float64 `json:"dut_cpu_s_per_mpkt"`
	// Runs are, in the queue-scaling scenario with Settings.QueueRuns >
	// 1, every run's figures in the order they ran: the cell itself is
	// the run with the median zero-loss rate (pickQueueCell).
	Runs  []CellRun `json:"runs,omitempty"`
	Error string    `json:"error,omitempty"`
}

// CellRun is one run of a repeated cell: its zero-loss rate, its maximum
// forwarded rate and its CPU per packet, or the error that ended it.
type CellRun struct {
	ZeroLossPPS float64 `json:"zero_loss_pps"`
	MaxPPS      float64 `json:"max_forwarded_pps"`
	CPUPerMpkt  float64 `json:"dut_cpu_s_per_mpkt"`
	Error       string  `json:"error,omitempty"`
}

// Warmup is the pass (or passes) that opened every flow of a cell before
// its trials, so that the trials measure established sessions.
type Warmup struct {
	Passes   int     `json:"passes"`
	Seconds  float64 `json:"wall_s"`
	Sessions int64   `json:"sessions_after"`
	Wanted   int     `json:"flows"`
}

// Trial is one generator run against a DUT.
type Trial struct {
	Kind       string  `json:"kind"`        // max, search, latency, steady, connrate, capacity
	OfferedPPS float64 `json:"offered_pps"` // 0: unpaced
	Seconds    float64 `json:"tx_span_s"`
	TxPackets  uint64  `json:"tx_packets"`
	TxPPS      float64 `json:"tx_pps"`
	TxGbps     float64 `json:"tx_gbps"`
	// Forwarded is what crossed the DUT: the frames the sink's XDP
	// program saw and redirected to our receiver's socket (whether or
	// not the receiver then kept up). Lost is TxPackets - Forwarded, the
	// DUT's loss; LossRatio Lost/TxPackets.
	Forwarded    uint64  `json:"forwarded"`
	ForwardedPPS float64 `json:"forwarded_pps"`
	Lost         int64   `json:"lost"`
	LossRatio    float64 `json:"loss_ratio"`
	// RxPackets are the frames our receiver counted (and timed);
	// OwnRxDrops those its socket dropped (RX ring full: the receiver
	// thread fell behind). Forwarded = RxPackets + OwnRxDrops.
	RxPackets  uint64          `json:"rx_packets"`
	RxPPS      float64         `json:"rx_pps"`
	OwnRxDrops uint64          `json:"gen_rx_kernel_drops"`
	Latency    *gen.Latency    `json:"latency_ns,omitempty"`
	Diag       gen.Diagnostics `json:"gen_diagnostics"`
	// Window is the part of the run over which CPU was sampled: from the
	// generator's first progress tick to just before it stopped sending.
	WindowSeconds float64    `json:"cpu_window_s"`
	CPUs          []CPUShare `json:"cpus"`
	// DUTCPUSeconds is the DUT's CPU time in the window: natd's and
	// l2fwd's user+system time (/proc/<pid>/stat), the kernel's softirq
	// time on every CPU (/proc/stat). DUTCores is that over the window.
	DUTCPUSeconds float64 `json:"dut_cpu_s"`
	DUTCores      float64 `json:"dut_cores"`
	// GC is natd's garbage collector and allocator over the whole trial
	// (scraped before and after).
	GC *GCDelta `json:"gc,omitempty"`
	// Sessions is the DUT's session count after the trial (-1: none
	// kept).
	Sessions *int64 `json:"sessions_after,omitempty"`
	// Through is, in connection-rate trials, the new flows that crossed
	// the DUT (Forwarded: each frame is a new flow), and
	// ThroughPerSecond their rate.
	Through          uint64   `json:"new_flows_through,omitempty"`
	ThroughPerSecond float64  `json:"new_flows_through_per_s,omitempty"`
	Attempt          int      `json:"attempt,omitempty"`
	Warnings         []string `json:"warnings,omitempty"`
}

// GCDelta is the change of natd's Go runtime counters over a period.
type GCDelta struct {
	Seconds      float64 `json:"seconds"`
	Cycles       float64 `json:"gc_cycles"`
	AllocObjects float64 `json:"alloc_objects"`
	AllocBytes   float64 `json:"alloc_bytes"`
}

// SessionRate is a DUT's new-session rate: connection-rate mode, every
// frame a new UDP flow, unpaced.
type SessionRate struct {
	DUT string `json:"dut"`
	// Max is the unpaced trial: MaxThrough its new flows forwarded per
	// second (with the DUT flooded by more than it can set up).
	Max        Trial   `json:"max"`
	MaxThrough float64 `json:"max_new_flows_forwarded_per_s"`
	// Search is the zero-loss search over paced trials (every trial
	// with never-used flows); PerSecond is the highest rate of new flows
	// really offered in a trial where every one of them was forwarded:
	// the set-up rate (RFC 8219 section 9.2's connection establishment
	// rate, for UDP).
	Search    *SearchResult `json:"search,omitempty"`
	Trials    []Trial       `json:"search_trials,omitempty"`
	PerSecond float64       `json:"new_sessions_per_s"`
	// Drops are natd's drop counters by reason at the end of the
	// session trials (natd was restarted before them).
	Drops map[string]float64 `json:"natd_drops_by_reason,omitempty"`
}

// Capacity is natd's session capacity and memory per session.
type Capacity struct {
	MaxSessions   int                `json:"max_sessions"`
	FlowsOffered  int                `json:"flows_offered"`
	Trial         Trial              `json:"trial"`
	SessionsHeld  int64              `json:"sessions_held"`
	Drops         map[string]float64 `json:"drops_by_reason"`
	RSSBefore     int64              `json:"rss_before_bytes"`
	RSSAfter      int64              `json:"rss_after_bytes"`
	RSSGrowthPer  float64            `json:"rss_growth_bytes_per_session"`
	RSSSmall      int64              `json:"rss_small_table_bytes"`
	SmallSessions int                `json:"small_table_sessions"`
	BytesPerSlot  float64            `json:"rss_bytes_per_session_slot"`
	// Kernel side, for comparison: conntrack's limit in this run and the
	// slab bytes per entry.
	ConntrackMax      int64   `json:"conntrack_max"`
	ConntrackObjSize  int64   `json:"conntrack_slab_objsize"`
	ConntrackPerEntry float64 `json:"conntrack_slab_bytes_per_entry"`
	Note              string  `json:"note"`
}

// GCCheck is natd's runtime behaviour in a steady forwarding run.
type GCCheck struct {
	Steady *Trial   `json:"steady"`
	Idle   *GCDelta `json:"idle_baseline"`
	// TrialCycles sums the GC cycles over every natd trial of the run
	// (search and latency trials included).
	TrialCycles float64 `json:"gc_cycles_all_trials"`
	TrialCount  int     `json:"trials"`
}

// Target is one of the targets, measured as a ratio in this run.
type Target struct {
	Name     string  `json:"name"`
	Want     string  `json:"want"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
	Detail   string  `json:"detail"`
}
