package harness

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// RenderMarkdown renders r as results.md, one section after another.
func RenderMarkdown(r *Results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mdHeader(w, r)
	mdTargets(w, r)
	mdThroughput(w, r)
	mdMaxRate(w, r)
	mdLatency(w, r)
	mdSessionRates(w, r)
	mdCapacity(w, r)
	mdQueues(w, r)
	mdKernelGen(w, r)
	mdGC(w, r)
	mdProfiles(w, r)
	mdMicro(w, r)
	mdNotes(w, r)
	return b.String()
}

// mdHeader writes the title, the machine and what the run was.
func mdHeader(w func(string, ...any), r *Results) {
	m := r.Machine
	dirty := ""
	if m.GitDirty {
		dirty = " (with uncommitted changes)"
	}
	w("# xnat benchmark results\n\n")
	w("%s run of %s, git `%s`%s, %.1f min wall time.\n\n", r.Mode, m.Date, short(m.GitRevision), dirty, r.WallSeconds/60)
	w("Machine: %s, %d vCPUs, Linux %s, %s, %d MiB RAM; load average %s at the start, %s at the end.\n\n",
		m.CPUModel, m.Cores, m.Kernel, m.GoVersion, m.MemTotalMiB, m.LoadAvgStart, m.LoadAvgEnd)
	if r.Command != "" {
		w("Command: `%s`\n\n", r.Command)
	}
	if r.Settings.TrialSeconds < 2 {
		w("> **Quick mode:** trials last %.1f s, shorter than the 2 s the full benchmark uses; the search stops at %.0f%% resolution after at most %d trials. Figures are indicative only.\n\n",
			r.Settings.TrialSeconds, 100*r.Settings.Resolution, r.Settings.MaxSearchTrials)
	}
	w("Charts: [throughput against flows](throughput.png), [latency CDFs](latency.png). Every figure: [results.json](results.json).\n\n")
	w("All figures come from one run on a shared 2-vCPU virtual machine: the generator, the device under test and the sink share both CPUs (see *Who was the bottleneck*), so read ratios, not absolute rates.\n\n")
}

// mdTargets writes the targets and whether they were met.
func mdTargets(w func(string, ...any), r *Results) {
	w("## Targets\n\n| target | want | measured | met | detail |\n|---|---|---|---|---|\n")
	for _, t := range r.Targets {
		meas := "–"
		if t.Measured != 0 || t.Met {
			meas = fmt.Sprintf("%.2f", t.Measured)
		}
		w("| %s | %s | %s | %s | %s |\n", t.Name, t.Want, meas, yesNo(t.Met, t.Detail), t.Detail)
	}
	w("\n")
}

// mdThroughput writes the zero-loss throughput table.
func mdThroughput(w func(string, ...any), r *Results) {
	duts := r.Settings.DUTs
	has := func(d string) bool {
		for _, x := range duts {
			if x == d {
				return true
			}
		}
		return false
	}
	w("## Throughput: highest rate with zero loss (RFC 2544)\n\n")
	w("Binary search over fixed-rate trials of %.1f s; frames per second offered in the best passing trial.\n\n", r.Settings.TrialSeconds)
	w("| flows | frames |")
	for _, d := range duts {
		w(" %s |", d)
	}
	if has(Xnat) && has(Kernel) {
		w(" xnat / nftables |")
	}
	if has(Xnat) && has(L2fwd) {
		w(" xnat / l2fwd |")
	}
	w("\n|---|---|%s\n", strings.Repeat("---|", len(duts)+boolInt(has(Xnat) && has(Kernel))+boolInt(has(Xnat) && has(L2fwd))))
	for _, fs := range r.scenarios() {
		w("| %s | %s |", FlowLabel(fs.flows), SizeLabel(fs.size))
		for _, d := range duts {
			w(" %s |", zeroLossCell(FindCell(r, d, fs.flows, fs.size)))
		}
		x := FindCell(r, Xnat, fs.flows, fs.size)
		if has(Xnat) && has(Kernel) {
			w(" %s |", ratioCell(x, FindCell(r, Kernel, fs.flows, fs.size)))
		}
		if has(Xnat) && has(L2fwd) {
			w(" %s |", ratioCell(x, FindCell(r, L2fwd, fs.flows, fs.size)))
		}
		w("\n")
	}
	w("\n")
}

// mdMaxRate writes the unpaced trials and the CPU shares.
func mdMaxRate(w func(string, ...any), r *Results) {
	duts := r.Settings.DUTs
	w("## Maximum forwarded rate, and who was the bottleneck\n\n")
	w("Unpaced trial: the generator sends as fast as its CPU and the kernel take frames. CPU columns are busy shares over the sending window (softirq share in brackets); *DUT cores* is the DUT's CPU time over the window, *CPU s/Mpkt* that per million forwarded packets (see the notes for what each DUT's CPU time includes).\n\n")
	w("| flows | frames | DUT | offered | forwarded | loss | CPU0 busy | CPU1 busy | DUT cores | DUT CPU s/Mpkt |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, fs := range r.scenarios() {
		for _, d := range duts {
			c := FindCell(r, d, fs.flows, fs.size)
			if c == nil || c.Max == nil {
				continue
			}
			x := c.Max
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %.3f |\n", FlowLabel(fs.flows), SizeLabel(fs.size), d,
				pps(x.TxPPS), pps(x.ForwardedPPS), pct(x.LossRatio), cpuCell(x.CPUs, 0), cpuCell(x.CPUs, 1), x.DUTCores, c.CPUPerMpkt)
		}
	}
	w("\n")
}

// mdLatency writes the latency percentiles.
func mdLatency(w func(string, ...any), r *Results) {
	duts := r.Settings.DUTs
	w("## Latency at %.0f%% of the zero-loss rate (one way, generator to sink, µs)\n\n", 100*r.Settings.LatencyLoad)
	if n := r.Settings.LatencyRuns; n > 1 {
		w("Each cell ran %d latency trials; the row is the one whose p99 is the median, and the last column has every run's p99.\n\n", n)
	}
	w("| flows | frames | DUT | rate | p50 | p90 | p99 | p99.9 | max | lost | p99 of each run |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, fs := range r.scenarios() {
		for _, d := range duts {
			c := FindCell(r, d, fs.flows, fs.size)
			if c == nil || c.Latency == nil || c.Latency.Latency == nil {
				continue
			}
			l := c.Latency.Latency
			w("| %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %s |\n", FlowLabel(fs.flows), SizeLabel(fs.size), d,
				pps(c.Latency.OfferedPPS), us(l.P50), us(l.P90), us(l.P99), us(l.P999), us(l.Max), c.Latency.Lost, p99List(c.LatencyP99s))
		}
	}
	w("\n")
}

// p99List writes a cell's p99 of each latency run in µs, "–" for one run.
func p99List(p99s []int64) string {
	if len(p99s) == 0 {
		return "–"
	}
	parts := make([]string, len(p99s))
	for i, v := range p99s {
		parts[i] = fmt.Sprintf("%.1f", us(v))
	}
	return strings.Join(parts, ", ")
}

// mdSessionRates writes the session set-up rates.
func mdSessionRates(w func(string, ...any), r *Results) {
	if len(r.SessionRates) > 0 {
		w("## Session set-up rate\n\n")
		w("Connection-rate mode: every frame a never-used UDP flow, %.1f s trials, each with its own flows. *Zero loss* is the highest rate of new flows offered with every one forwarded (binary search as above); *unpaced* floods the DUT and counts what gets through. A flow is forwarded when it reaches the sink.\n\n", r.sessionSeconds())
		w("| DUT | new flows/s, zero loss | unpaced: sent/s | unpaced: forwarded/s | unpaced: CPU0 busy | unpaced: CPU1 busy | unpaced: DUT cores |\n|---|---|---|---|---|---|---|\n")
		for _, s := range r.SessionRates {
			t := s.Max
			w("| %s | %s | %s | %s | %s | %s | %.2f |\n", s.DUT, pps(s.PerSecond), pps(t.TxPPS), pps(s.MaxThrough),
				cpuCell(t.CPUs, 0), cpuCell(t.CPUs, 1), t.DUTCores)
		}
		w("\n")
	}
}

// mdCapacity writes the session capacity and memory.
func mdCapacity(w func(string, ...any), r *Results) {
	if c := r.Capacity; c != nil {
		w("## Session capacity and memory (xnat)\n\n")
		w("| | |\n|---|---|\n")
		w("| session table (`limits.max_sessions`) | %d |\n", c.MaxSessions)
		w("| never-used flows offered | %d (at %s) |\n", c.FlowsOffered, pps(c.Trial.OfferedPPS))
		w("| sessions held at the end | %d |\n", c.SessionsHeld)
		w("| drops by reason | %s |\n", dropList(c.Drops))
		w("| natd RSS before / after the fill | %.1f / %.1f MiB |\n", mib(c.RSSBefore), mib(c.RSSAfter))
		w("| RSS growth per session held | %.1f B |\n", c.RSSGrowthPer)
		w("| natd RSS with a %d-session table | %.1f MiB |\n", c.SmallSessions, mib(c.RSSSmall))
		w("| RSS per session slot (difference of the two tables) | %.0f B |\n", c.BytesPerSlot)
		if c.ConntrackObjSize > 0 {
			w("| nftables: conntrack slab object / slab bytes per entry at the largest scenario | %d B / %.0f B (nf_conntrack_max %d in this run) |\n",
				c.ConntrackObjSize, c.ConntrackPerEntry, c.ConntrackMax)
		}
		w("\n%s\n\n", c.Note)
	}
}

// mdGC writes natd's garbage collection.
func mdGC(w func(string, ...any), r *Results) {
	if g := r.GC; g != nil && g.Steady != nil && g.Steady.GC != nil {
		s := g.Steady
		w("## Garbage collection in natd\n\n")
		w("| period | seconds | GC cycles | objects allocated | bytes allocated |\n|---|---|---|---|---|\n")
		w("| steady forwarding at %s | %.1f | %.0f | %.0f | %.0f |\n", pps(s.OfferedPPS), s.GC.Seconds, s.GC.Cycles, s.GC.AllocObjects, s.GC.AllocBytes)
		if g.Idle != nil {
			w("| idle (no traffic), same scrapes | %.1f | %.0f | %.0f | %.0f |\n", g.Idle.Seconds, g.Idle.Cycles, g.Idle.AllocObjects, g.Idle.AllocBytes)
		}
		w("| all %d natd trials of this run | | %.0f | | |\n\n", g.TrialCount, g.TrialCycles)
	}
}

// mdProfiles writes the CPU profiles.
func mdProfiles(w func(string, ...any), r *Results) {
	for _, p := range r.Profiles {
		w("## Where %s's CPU time goes (perf, %s trial, 1k flows, 64 B)\n\n", p.DUT, p.Trial)
		if p.Error != "" {
			w("Profile failed: %s\n\n", p.Error)
			continue
		}
		w("`%s`: %d samples over %.1f s; %.0f%% of them in the kernel, %.0f%% in user space.\n\n", p.Command, p.Samples, p.Seconds, 100*p.Kernel, 100*p.User)
		w("| part | share |\n|---|---|\n")
		for _, g := range profileGroups {
			if v, ok := p.Groups[g]; ok {
				w("| %s | %.1f%% |\n", g, 100*v)
			}
		}
		w("\n| symbol | share |\n|---|---|\n")
		for _, e := range p.Top {
			k := ""
			if e.Kernel {
				k = " [k]"
			}
			w("| `%s`%s | %.1f%% |\n", e.Symbol, k, 100*e.Share)
		}
		w("\n")
	}
}

// mdMicro writes the micro-benchmarks.
func mdMicro(w func(string, ...any), r *Results) {
	if len(r.Micro) > 0 {
		w("## Micro-benchmarks\n\n`%s` (%.0f s). Median of the runs; B/op and allocs/op are the largest of the runs.\n\n", r.MicroCommand, r.MicroSeconds)
		w("| package | benchmark | runs | median ns/op | B/op | allocs/op | other |\n|---|---|---|---|---|---|---|\n")
		for _, m := range r.Micro {
			mem := "–"
			allocs := "–"
			if m.HasMem {
				mem, allocs = fmt.Sprintf("%.0f", m.BytesPerOp), fmt.Sprintf("%.0f", m.AllocsPerOp)
			}
			w("| %s | %s | %d | %s | %s | %s | %s |\n", strings.TrimPrefix(m.Package, "github.com/xnat/xnat/"), m.Name, m.Runs,
				num(m.MedianNs), mem, allocs, extras(m.Extra))
		}
		w("\n")
	}
}

// mdNotes writes the notes and warnings.
func mdNotes(w func(string, ...any), r *Results) {
	w("## How this was measured\n\n")
	for _, n := range r.Notes {
		w("- %s\n", n)
	}
	w("\n")
	if len(r.Warnings) > 0 {
		w("## Warnings\n\n")
		for _, x := range r.Warnings {
			w("- %s\n", x)
		}
		w("\n")
	}
}

type flowSize struct {
	flows int
	size  string
}

// scenarios lists the (flows, size) pairs measured, in settings order.
func (r *Results) scenarios() []flowSize {
	var out []flowSize
	seen := map[flowSize]bool{}
	for _, f := range r.Settings.Flows {
		for _, s := range r.Settings.Sizes {
			fs := flowSize{f, s}
			if !seen[fs] {
				seen[fs] = true
				out = append(out, fs)
			}
		}
	}
	for _, c := range r.Cells {
		fs := flowSize{c.Flows, c.Size}
		if !seen[fs] {
			seen[fs] = true
			out = append(out, fs)
		}
	}
	return out
}

func (r *Results) sessionSeconds() float64 {
	for _, s := range r.SessionRates {
		return s.Max.Seconds
	}
	return 0
}

func zeroLossCell(c *Cell) string {
	switch {
	case c == nil:
		return "–"
	case c.Error != "" && c.Search == nil:
		return "error"
	case c.ZeroLossPPS == 0:
		return "none found"
	}
	s := pps(c.ZeroLossPPS)
	if c.Search != nil && c.Search.AtCeiling {
		s += " (all offered)"
	}
	return s
}

func ratioCell(a, b *Cell) string {
	if a == nil || b == nil || a.ZeroLossPPS == 0 || b.ZeroLossPPS == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a.ZeroLossPPS/b.ZeroLossPPS)
}

func cpuCell(s []CPUShare, cpu int) string {
	for _, c := range s {
		if c.CPU == cpu {
			return fmt.Sprintf("%.0f%% (%.0f%%)", 100*c.Busy(), 100*c.SoftIRQ)
		}
	}
	return "–"
}

func pct(v float64) string { return fmt.Sprintf("%.3f%%", 100*v) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func extras(m map[string]float64) string {
	return listSorted(m, "", func(k string, v float64) string { return num(v) + " " + k })
}

func dropList(m map[string]float64) string {
	return listSorted(m, "none", func(k string, v float64) string { return fmt.Sprintf("%s %.0f", k, v) })
}

// listSorted lists m by key as "a, b, c", each entry written by item, or
// returns empty when m is.
func listSorted(m map[string]float64, empty string, item func(k string, v float64) string) string {
	if len(m) == 0 {
		return empty
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = item(k, m[k])
	}
	return strings.Join(parts, ", ")
}

func yesNo(met bool, detail string) string {
	switch {
	case met:
		return "yes"
	case strings.HasPrefix(detail, "not measured"):
		return "–"
	}
	return "**no**"
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
