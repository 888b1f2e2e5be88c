package harness

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xnat/xnat/bench/gen"
)

// mustContain fails t for each of wants that text (named what) lacks.
func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q", what, want)
		}
	}
}

// sample builds results as a run would, with round numbers.
func sample(quick bool) *Results {
	r := &Results{
		Schema: 1, Mode: "full", Command: "xnatbench -out x",
		Machine: Machine{CPUModel: "AMD EPYC", Cores: 2, Kernel: "6.18", GoVersion: "go1.26", Date: "2026-11-24T00:00:00Z",
			GitRevision: "0123456789abcdef0123", LoadAvgStart: "1 1 1", LoadAvgEnd: "2 2 2", MemTotalMiB: 1024},
		Settings: Settings{TrialSeconds: 2, Resolution: 0.03, MaxSearchTrials: 8, LatencyLoad: 0.5,
			Flows: []int{1000, 1000000}, Sizes: []string{"64", "imix"}, DUTs: []string{L2fwd, Xnat, Kernel}, Nice: -20},
		WallSeconds: 600,
	}
	if quick {
		r.Mode = "quick"
		r.Settings.TrialSeconds = 0.5
		r.Settings.Sizes = []string{"64"}
	}
	zl := map[string]float64{L2fwd: 300e3, Xnat: 280e3, Kernel: 200e3}
	p99 := map[string]int64{L2fwd: 2e6, Xnat: 3e6, Kernel: 2.5e6}
	for _, d := range r.Settings.DUTs {
		for _, f := range r.Settings.Flows {
			for _, s := range r.Settings.Sizes {
				z := zl[d]
				if f == 1000000 {
					z /= 2
				}
				c := Cell{DUT: d, Flows: f, Size: s, ZeroLossPPS: z,
					Max: &Trial{Kind: "max", TxPPS: 2 * z, ForwardedPPS: 1.1 * z, LossRatio: 0.45, DUTCores: 0.9,
						CPUs: []CPUShare{{CPU: 0, User: 0.5, SoftIRQ: 0.5}, {CPU: 1, User: 0.9, Idle: 0.1}}},
					Search:  &SearchResult{Rate: z, Converged: true},
					Latency: &Trial{Kind: "latency", OfferedPPS: z / 2, Latency: &gen.Latency{Samples: 100, Min: 5e3, P50: 20e3, P90: 100e3, P99: p99[d], P999: 4e6, Max: 5e6}},
				}
				c.CPUPerMpkt = c.Max.DUTCores / (c.Max.ForwardedPPS / 1e6)
				r.Cells = append(r.Cells, c)
			}
		}
	}
	r.SessionRates = []SessionRate{{DUT: Xnat, PerSecond: 250e3, MaxThrough: 200e3, Max: Trial{TxPPS: 800e3, Seconds: 2}},
		{DUT: Kernel, PerSecond: 100e3, MaxThrough: 150e3, Max: Trial{TxPPS: 200e3, Seconds: 2}}}
	r.GC = &GCCheck{Steady: &Trial{OfferedPPS: 140e3, GC: &GCDelta{Seconds: 10, Cycles: 0, AllocObjects: 9000, AllocBytes: 800000}},
		Idle: &GCDelta{Seconds: 10, AllocObjects: 28000}, TrialCycles: 0, TrialCount: 20}
	r.Capacity = &Capacity{MaxSessions: 2 << 20, FlowsOffered: 2306867, SessionsHeld: 2 << 20, Drops: map[string]float64{"table_full": 1000},
		RSSBefore: 693 << 20, RSSAfter: 745 << 20, BytesPerSlot: 314, Note: "note"}
	r.Micro = []Micro{{Package: "github.com/xnat/xnat/checksum", Name: "BenchmarkChecksum/impl=opt/size=20", Runs: 5, MedianNs: 5.2, HasMem: true, Extra: map[string]float64{"MB/s": 3800}}}
	r.MicroCommand = "go test -bench ."
	r.Targets = Targets(r)
	r.Notes = notes(r)
	return r
}

func target(t *testing.T, r *Results, prefix string) Target {
	t.Helper()
	for _, x := range r.Targets {
		if strings.HasPrefix(x.Name, prefix) {
			return x
		}
	}
	t.Fatalf("no target %q in %+v", prefix, r.Targets)
	return Target{}
}

func TestTargets(t *testing.T) {
	r := sample(false)
	x := target(t, r, "xnat zero-loss throughput vs nftables, 1k flows")
	if x.Measured != 1.4 || x.Met || !strings.Contains(x.Detail, "short by 7% of the target") {
		t.Fatalf("%+v", x)
	}
	x = target(t, r, "xnat zero-loss throughput vs l2fwd, 1k flows")
	if x.Measured != 280.0/300 || !x.Met {
		t.Fatalf("%+v", x)
	}
	x = target(t, r, "xnat session set-up rate")
	if x.Measured != 2.5 || !x.Met {
		t.Fatalf("%+v", x)
	}
	x = target(t, r, "xnat p99 latency vs nftables at 50% load, 1k flows")
	if x.Measured != 1.2 || x.Met || !strings.Contains(x.Detail, "20% worse") {
		t.Fatalf("%+v", x)
	}
	x = target(t, r, "xnat GC cycles")
	if x.Measured != 0 || !x.Met {
		t.Fatalf("%+v", x)
	}
	// A DUT with no zero-loss rate gives no ratio (JSON has no
	// infinity) and says why.
	FindCell(r, Kernel, 1000, "64").ZeroLossPPS = 0
	x = Targets(r)[0]
	if x.Measured != 0 || !x.Met || !strings.Contains(x.Detail, "found no zero-loss rate") {
		t.Fatalf("%+v", x)
	}
	// A search that ended in an error (a trial that could not run) is
	// not a measurement: no ratio, and the error said.
	FindCell(r, Kernel, 1000, "64").ZeroLossPPS = 200e3
	FindCell(r, Xnat, 1000, "64").Error = "gen: eth0 queue 0: device or resource busy"
	x = Targets(r)[0]
	if x.Measured != 0 || x.Met || !strings.Contains(x.Detail, "not measured: xnat's search failed: gen: eth0 queue 0") {
		t.Fatalf("%+v", x)
	}
	r.Queues = []QueueRun{{Queues: 2, Cells: []Cell{
		{DUT: Xnat, Error: "gen: busy"},
		{DUT: L2fwd, ZeroLossPPS: 170e3},
	}}}
	for _, x := range queueTargets(r) {
		if strings.Contains(x.Name, "at 2 queue pair") && (x.Measured != 0 || x.Met || !strings.Contains(x.Detail, "xnat's search failed: gen: busy")) {
			t.Fatalf("%+v", x)
		}
	}
	// Missing measurements are reported as such, not as misses.
	empty := &Results{Settings: Settings{Flows: []int{1000}, LatencyLoad: 0.5}}
	for _, x := range Targets(empty) {
		if x.Met || x.Detail != "not measured in this run" {
			t.Fatalf("%+v", x)
		}
	}
}

func TestRenderMarkdown(t *testing.T) {
	r := sample(false)
	md := RenderMarkdown(r)
	mustContain(t, "markdown", md,
		"# xnat benchmark results",
		"full run of 2026-11-24T00:00:00Z, git `0123456789ab`",
		"| xnat zero-loss throughput vs nftables, 1k flows, 64 B | >= 1.50x | 1.40 | **no** |",
		"| 1k | 64 B | 300.0 kpps | 280.0 kpps | 200.0 kpps | 1.40 | 0.93 |",
		"| 1M | IMIX | 150.0 kpps | 140.0 kpps | 100.0 kpps | 1.40 | 0.93 |",
		"| 1k | 64 B | xnat | 560.0 kpps | 308.0 kpps | 45.000% | 100% (50%) | 90% (0%) | 0.90 | 2.922 |",
		"| 1k | 64 B | nftables | 100.0 kpps | 20.0 | 100.0 | 2500.0 | 4000.0 | 5000.0 | 0 |",
		"| xnat | 250.0 kpps | 800.0 kpps | 200.0 kpps |",
		"| sessions held at the end | 2097152 |",
		"| RSS per session slot (difference of the two tables) | 314 B |",
		"| steady forwarding at 140.0 kpps | 10.0 | 0 | 9000 | 800000 |",
		"| checksum | BenchmarkChecksum/impl=opt/size=20 | 5 | 5.20 | 0 | 0 | 3800 MB/s |",
		"## How this was measured",
		"[results.json](results.json)",
	)
	if strings.Contains(md, "Quick mode") {
		t.Error("full run labelled quick")
	}
	q := RenderMarkdown(sample(true))
	if !strings.Contains(q, "**Quick mode:** trials last 0.5 s, shorter than the 2 s") {
		t.Error("quick run not labelled")
	}
	if strings.Contains(q, "| IMIX |") {
		t.Error("quick sample has no IMIX rows")
	}
}

func TestResultsEncode(t *testing.T) {
	r := sample(false)
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Cells) != len(r.Cells) || back.Cells[0].Latency.Latency.P99 != r.Cells[0].Latency.Latency.P99 {
		t.Fatal("round trip lost cells")
	}
}

func TestCharts(t *testing.T) {
	dir := t.TempDir()
	if err := Charts(sample(false), dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"throughput.png", "latency.png"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 5000 {
			t.Fatalf("%s: not a plausible PNG (%d bytes)", f, len(b))
		}
	}
	// No latency trials: the chart says so instead of failing.
	r := sample(true)
	for i := range r.Cells {
		r.Cells[i].Latency = nil
	}
	if err := Charts(r, dir); err != nil {
		t.Fatal(err)
	}
}

// TestPickLatency: of a cell's latency trials, the one with the median
// p99 is reported whole (the lower middle one of an even number), every
// run's p99 kept in the order they ran, and trials without a summary
// left out.
func TestPickLatency(t *testing.T) {
	run := func(p99 int64) Trial {
		return Trial{Kind: "latency", OfferedPPS: float64(p99), Latency: &gen.Latency{P50: p99 / 10, P99: p99}}
	}
	for _, c := range []struct {
		name string
		runs []Trial
		want int64 // the picked trial's p99; 0 for none
		p99s []int64
	}{
		{"three, one a host's stall", []Trial{run(15e6), run(3e6), run(4e6)}, 4e6, []int64{15e6, 3e6, 4e6}},
		{"four: the lower middle", []Trial{run(5), run(1), run(3), run(2)}, 2, []int64{5, 1, 3, 2}},
		{"one without a summary", []Trial{run(7), {Kind: "latency"}, run(9)}, 7, []int64{7, 9}},
		{"one run", []Trial{run(6)}, 6, nil},
		{"none with a summary", []Trial{{Kind: "latency"}}, 0, nil},
	} {
		got, p99s := pickLatency(c.runs)
		switch {
		case c.want == 0 && got != nil:
			t.Errorf("%s: picked %+v, want none", c.name, got)
		case c.want != 0 && (got == nil || got.Latency.P99 != c.want || got.OfferedPPS != float64(c.want)):
			t.Errorf("%s: picked %+v, want the trial of p99 %d", c.name, got, c.want)
		case !slices.Equal(p99s, c.p99s):
			t.Errorf("%s: p99s %v, want %v", c.name, p99s, c.p99s)
		}
	}
}

// TestLatencyRunsReported: with several latency runs a cell, the report
// says so, lists each run's p99, and the p99 target names them.
func TestLatencyRunsReported(t *testing.T) {
	r := sample(false)
	r.Settings.LatencyRuns = 3
	FindCell(r, Xnat, 1000, "64").LatencyP99s = []int64{15.6e6, 3e6, 2.9e6}
	FindCell(r, Kernel, 1000, "64").LatencyP99s = []int64{2.5e6, 2.4e6, 2.6e6}
	r.Targets, r.Notes = Targets(r), notes(r) // as Run makes them, from the cells
	md := RenderMarkdown(r)
	mustContain(t, "markdown", md,
		"Each cell ran 3 latency trials; the row is the one whose p99 is the median",
		"| 1k | 64 B | xnat | 140.0 kpps | 20.0 | 100.0 | 3000.0 | 4000.0 | 5000.0 | 0 | 15600.0, 3000.0, 2900.0 |",
		"| 1M | 64 B | xnat | 70.0 kpps | 20.0 | 100.0 | 3000.0 | 4000.0 | 5000.0 | 0 | – |",
		"3 trials a cell, of which the one with the median p99 is reported whole",
	)
	x := target(t, r, "xnat p99 latency vs nftables at 50% load, 1k flows")
	if !strings.Contains(x.Detail, "each the median of its runs' p99: xnat 15600.0, 3000.0, 2900.0, nftables 2500.0, 2400.0, 2600.0 µs") {
		t.Fatalf("%+v", x)
	}
	if y := target(t, r, "xnat p99 latency vs nftables at 50% load, 1M flows"); strings.Contains(y.Detail, "median") {
		t.Fatalf("a cell of one run named a median: %+v", y)
	}
}
