package harness

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/xnat/xnat/mgmt/metrics"
)

func TestPlanLayout(t *testing.T) {
	for _, tc := range []struct {
		cores, n    int
		tx, dut, rx []int
		shared      bool
		noteHas     string
	}{
		// 16 cores: each side on its own cores up to 5 queue pairs.
		{16, 1, []int{1}, []int{2}, []int{3}, false, "own cores"},
		{16, 4, []int{1, 2, 3, 4}, []int{5, 6, 7, 8}, []int{9, 10, 11, 12}, false, "own cores"},
		{16, 5, []int{1, 2, 3, 4, 5}, []int{6, 7, 8, 9, 10}, []int{11, 12, 13, 14, 15}, false, "own cores"},
		// 6 and 7: the sink shares the generator's cores, the DUT keeps its own.
		{16, 6, []int{1, 2, 3, 4, 5, 6}, []int{7, 8, 9, 10, 11, 12}, []int{1, 2, 3, 4, 5, 6}, false, "share the generator's"},
		{16, 7, []int{1, 2, 3, 4, 5, 6, 7}, []int{8, 9, 10, 11, 12, 13, 14}, []int{1, 2, 3, 4, 5, 6, 7}, false, "share the generator's"},
		{16, 8, []int{0, 1, 2, 3, 4, 5, 6, 7}, []int{1, 2, 3, 4, 5, 6, 7, 8}, []int{0, 1, 2, 3, 4, 5, 6, 7}, true, "do not show scaling"},
		// This machine: one pair keeps the main runs' layout; two share everything.
		{2, 1, []int{0}, []int{1}, []int{0}, false, "DUT on CPU 1"},
		{2, 2, []int{0, 1}, []int{1, 0}, []int{0, 1}, true, "do not show scaling"},
	} {
		l, err := PlanLayout(tc.cores, tc.n)
		if err != nil {
			t.Fatalf("%d cores, %d queues: %v", tc.cores, tc.n, err)
		}
		if l.Queues != tc.n || !reflect.DeepEqual(l.GenTx, tc.tx) || !reflect.DeepEqual(l.DUT, tc.dut) || !reflect.DeepEqual(l.GenRx, tc.rx) ||
			l.Shared != tc.shared || !strings.Contains(l.Note, tc.noteHas) {
			t.Errorf("%d cores, %d queues: got %+v", tc.cores, tc.n, l)
		}
	}
	if _, err := PlanLayout(16, 0); err == nil {
		t.Error("0 queues: no error")
	}
}

func TestQueueLists(t *testing.T) {
	if got := DefaultQueues(2); !reflect.DeepEqual(got, []int{1, 2}) {
		t.Errorf("DefaultQueues(2) = %v", got)
	}
	if got := DefaultQueues(16); !reflect.DeepEqual(got, []int{1, 2, 4, 6}) {
		t.Errorf("DefaultQueues(16) = %v", got)
	}
	if got, err := ParseQueues("1, 2,4"); err != nil || !reflect.DeepEqual(got, []int{1, 2, 4}) {
		t.Errorf("ParseQueues = %v, %v", got, err)
	}
	if got, err := ParseQueues("0"); err != nil || got != nil {
		t.Errorf("ParseQueues(0) = %v, %v", got, err)
	}
	for _, bad := range []string{"x", "-1", "65", "1,,z"} {
		if _, err := ParseQueues(bad); err == nil {
			t.Errorf("ParseQueues(%q): no error", bad)
		}
	}
	if m := cpuMask([]int{1, 2, 3}); m != "e" {
		t.Errorf("cpuMask = %s", m)
	}
	if s := queueList(3); s != "0,1,2" {
		t.Errorf("queueList = %s", s)
	}
	if s := workerList([]int{5, 6}); s != "\n  - cpu: 5\n  - cpu: 6" {
		t.Errorf("workerList = %q", s)
	}
}

func TestParseTrafgen(t *testing.T) {
	// trafgen 0.6.8's exit summary, after its warnings about socket memory
	// it may not tune inside a namespace.
	out := []byte(`Cannot set system socket memory in /proc/sys/net/core/wmem_default: Permission denied

      500000 packets outgoing
    30000000 bytes outgoing
           1 sec, 350186 usec on CPU0 (500000 packets)
`)
	r, err := ParseTrafgen(out)
	if err != nil || r.Packets != 500000 || math.Abs(r.Seconds-1.350186) > 1e-9 {
		t.Errorf("ParseTrafgen = %+v, %v", r, err)
	}
	if got := string(trafgenNoise(out)); strings.Contains(got, "Cannot set") || !strings.Contains(got, "500000 packets outgoing") {
		t.Errorf("trafgenNoise kept %q", got)
	}
	if _, err := ParseTrafgen([]byte("trafgen: cannot open device\n")); err == nil {
		t.Error("no summary: no error")
	}
}

func TestTrafgenConfig(t *testing.T) {
	got := TrafgenConfig("02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.2", "198.19.0.1", 1024, 60000)
	mustContain(t, "trafgen config", got, "eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01, type=0x0800)",
		"ipv4(saddr=10.0.0.2, daddr=198.19.0.1, ttl=64)", "udp(sp=drnd(1024, 61023), dp=9)",
		// 14 + 20 + 8 + 18 = 60 bytes, 64 on the wire with the FCS.
		"fill(0x00, 18)")
}

func TestParseSoftnetDrops(t *testing.T) {
	b := []byte("0000a1b2 00000010 00000000 00000000\n0000ffff 0000000f 00000001 00000000\n")
	if n, err := ParseSoftnetDrops(b); err != nil || n != 0x1f {
		t.Errorf("ParseSoftnetDrops = %d, %v", n, err)
	}
	if _, err := ParseSoftnetDrops([]byte("1 zz\n")); err == nil {
		t.Error("bad column: no error")
	}
}

// TestRenderScaling renders both new sections from hand-made results.
func TestRenderScaling(t *testing.T) {
	r := sample(true)
	l1, _ := PlanLayout(16, 1)
	l4, _ := PlanLayout(16, 4)
	r.Queues = []QueueRun{
		{Queues: 1, Layout: l1, Cells: []Cell{{DUT: L2fwd, Flows: 65536, ZeroLossPPS: 1e6, CPUPerMpkt: 1}, {DUT: Xnat, Flows: 65536, ZeroLossPPS: 0.5e6, CPUPerMpkt: 2}}},
		{Queues: 4, Layout: l4, Cells: []Cell{{DUT: L2fwd, Flows: 65536, ZeroLossPPS: 3e6, CPUPerMpkt: 1.3}, {DUT: Xnat, Flows: 65536, ZeroLossPPS: 1.9e6, CPUPerMpkt: 2.1}}},
	}
	r.KernelGen = &KernelGen{Tool: "trafgen 0.6.8", Frames: 1000000, Flows: 60000, GenCPU: 0, DUTCPU: 1, KernelRPS: "0", Command: "trafgen ...",
		Runs: []KernelGenRun{
			{DUT: Xnat, Phase: "create", Repeat: 1, Sent: 1000000, DeliveredPPS: 0.5e6, LostRatio: 0.4, DUTRingDrops: 400000, DUTReceived: 600000, BusyPolls: 10000},
			{DUT: Xnat, Phase: "create", Repeat: 2, Sent: 1000000, DeliveredPPS: 0.4e6, LostRatio: 0.5, DUTRingDrops: 500000, DUTReceived: 500000, BusyPolls: 10000},
			{DUT: Xnat, Phase: "established", Repeat: 1, Sent: 1000000, DeliveredPPS: 0.3e6, LostRatio: 0.6, DUTRingDrops: 600000},
		}}
	r.Targets = Targets(r)
	md := RenderMarkdown(r)
	mustContain(t, "results.md", md,
		"## Scaling across queues",
		"| 4 | 1,2,3,4 / 5,6,7,8 / 9,10,11,12 | xnat | 1.900 Mpps | 0 pps | 2.10 | 3.80 | 0.63 | – |",
		"## Kernel generator (trafgen)",
		"| xnat | create | 2 | 0.400–0.500 | 40.0–50.0% | 450000 | 0 | 0.00 | 55.0 |",
		"| xnat | established | 1 | 0.300–0.300 | 60.0–60.0% | 600000 |",
		"| xnat zero-loss throughput at 4 queue pairs vs 1 | >= 3.50x | 3.80 | yes | 1.900 Mpps at 4 vs 500.0 kpps at 1 |",
		"| xnat zero-loss throughput vs l2fwd at 4 queue pair(s) | >= 0.90x | 0.63 | **no** | xnat 1.900 Mpps vs l2fwd 3.000 Mpps |",
	)
	if t.Failed() {
		i := strings.Index(md, "## Scaling")
		t.Log(md[i:])
	}
}

func TestParseAutogroup(t *testing.T) {
	name, n, err := ParseAutogroup([]byte("/autogroup-49 nice -20\n"))
	if err != nil || name != "/autogroup-49" || n != -20 {
		t.Errorf("ParseAutogroup = %q %d %v", name, n, err)
	}
	for _, bad := range []string{"", "/autogroup-1 nice", "/autogroup-1 prio 0", "/autogroup-1 nice x"} {
		if _, _, err := ParseAutogroup([]byte(bad)); err == nil {
			t.Errorf("ParseAutogroup(%q): no error", bad)
		}
	}
}

func TestLabelMetrics(t *testing.T) {
	body := []byte(`# TYPE xnat_rx_packets_total counter
xnat_rx_packets_total{interface="dut-in",queue="0"} 10
xnat_rx_packets_total{interface="dut-in",queue="1"} 20
xnat_rx_packets_total{interface="dut-out",queue="1"} 40
`)
	m, err := metrics.Parse("test", 200, body)
	if err != nil {
		t.Fatal(err)
	}
	if v := metrics.Sum(m, "xnat_rx_packets_total", "interface", "dut-in", "queue", "1"); v != 20 {
		t.Errorf("dut-in queue 1: %v", v)
	}
	if v := metrics.Sum(m, "xnat_rx_packets_total", "queue", "1"); v != 60 {
		t.Errorf("queue 1: %v", v)
	}
	if v := metrics.Sum(m, "xnat_missing", "queue", "1"); v != 0 {
		t.Errorf("missing metric: %v", v)
	}
}

// TestPickQueueCell: of one DUT's runs at a queue count, the run with the
// median zero-loss rate is kept whole (its own maximum and CPU), every
// run's figures are listed in the order they ran, runs that failed take
// no part in the median, and a single run lists nothing beside itself.
func TestPickQueueCell(t *testing.T) {
	run := func(zl, max float64, err string) Cell {
		return Cell{DUT: Xnat, Flows: 65536, Size: "64", ZeroLossPPS: zl, Max: &Trial{Kind: "max", ForwardedPPS: max}, CPUPerMpkt: zl / 1e6, Error: err}
	}
	for _, c := range []struct {
		name    string
		cells   []Cell
		wantZL  float64
		wantMax float64
		runs    int
	}{
		{"three, one slow", []Cell{run(0.5e6, 0.7e6, ""), run(0.2e6, 0.3e6, ""), run(0.55e6, 0.8e6, "")}, 0.5e6, 0.7e6, 3},
		{"four: the lower middle", []Cell{run(4, 40, ""), run(1, 10, ""), run(3, 30, ""), run(2, 20, "")}, 2, 20, 4},
		{"a failed run is left out", []Cell{run(0, 0, "start: boom"), run(7, 70, ""), run(9, 90, "")}, 7, 70, 3},
		{"every run failed: the last", []Cell{run(0, 1, "a"), run(0, 2, "b")}, 0, 2, 2},
		{"one run", []Cell{run(6, 60, "")}, 6, 60, 0},
	} {
		got := pickQueueCell(c.cells)
		if got.ZeroLossPPS != c.wantZL || maxFwd(&got) != c.wantMax || got.CPUPerMpkt != c.wantZL/1e6 || len(got.Runs) != c.runs {
			t.Errorf("%s: picked %+v (max %v), want zero loss %v, max %v, %d runs listed", c.name, got, maxFwd(&got), c.wantZL, c.wantMax, c.runs)
			continue
		}
		for i, x := range got.Runs {
			in := c.cells[i]
			if x.ZeroLossPPS != in.ZeroLossPPS || x.MaxPPS != maxFwd(&in) || x.Error != in.Error {
				t.Errorf("%s: run %d listed as %+v, ran as %+v", c.name, i, x, in)
			}
		}
	}
}

// TestRenderScalingRuns: a run that repeated each queue count says how,
// lists every run and its spread in the table, and gives the targets'
// ratios of the median runs with the runs' own range beside them.
func TestRenderScalingRuns(t *testing.T) {
	r := sample(true)
	r.Settings.QueueRuns = 3
	l1, _ := PlanLayout(16, 1)
	l4, _ := PlanLayout(16, 4)
	l8, _ := PlanLayout(16, 8) // shared: measured once
	cell := func(dut string, zl ...float64) Cell {
		cs := make([]Cell, len(zl))
		for i, z := range zl {
			cs[i] = Cell{DUT: dut, Flows: 65536, Size: "64", ZeroLossPPS: z, Max: &Trial{ForwardedPPS: 2 * z}}
		}
		return pickQueueCell(cs)
	}
	r.Queues = []QueueRun{
		{Queues: 1, Layout: l1, Runs: 3, Cells: []Cell{cell(L2fwd, 1e6, 0.9e6, 1.1e6), cell(Xnat, 0.5e6, 0.4e6, 0.6e6)}},
		{Queues: 4, Layout: l4, Runs: 3, Cells: []Cell{cell(L2fwd, 3e6, 3.2e6, 2.8e6), cell(Xnat, 2e6, 1.8e6, 2.2e6)}},
		{Queues: 8, Layout: l8, Runs: 1, Cells: []Cell{cell(L2fwd, 4e6), cell(Xnat, 3.8e6)}},
	}
	r.Targets = Targets(r)
	md := RenderMarkdown(r)
	mustContain(t, "results.md", md,
		"Each DUT ran 3 times at each N, the DUTs taking turns",
		"| 1 | 1 / 2 / 3 | xnat | 500.0 kpps | 1.000 Mpps | 0.00 | 1.00 | 0.50 | 0.500, 0.400, 0.600 (1.50) |",
		"| 4 | 1,2,3,4 / 5,6,7,8 / 9,10,11,12 | l2fwd | 3.000 Mpps | 6.000 Mpps | 0.00 | 3.00 | 1.00 | 3.000, 3.200, 2.800 (1.14) |",
		// 2.0 / 0.5; pairings from 1.8 / 0.6 to 2.2 / 0.4.
		"| xnat zero-loss throughput at 4 queue pairs vs 1 | >= 3.50x | 4.00 | yes | 2.000 Mpps at 4 vs 500.0 kpps at 1; the median runs' ratio; runs at 4: 2.000, 1.800, 2.200 Mpps, at 1: 0.500, 0.400, 0.600; every pairing of a run at 4 with one at 1 gives 3.00–5.50 |",
		// 2.0/3.0, 1.8/3.2, 2.2/2.8.
		"| xnat zero-loss throughput vs l2fwd at 4 queue pair(s) | >= 0.90x | 0.67 | **no** | xnat 2.000 Mpps vs l2fwd 3.000 Mpps; the median runs' ratio; run by run (the two measured in the same turn): 0.67, 0.56, 0.79 |",
		"| 8 | 0,1,2,3,4,5,6,7 / 1,2,3,4,5,6,7,8 / 0,1,2,3,4,5,6,7 (shared) | xnat | 3.800 Mpps | 7.600 Mpps | 0.00 | 7.60 | 0.95 | – |",
		"One run of each DUT, not 3: the cores are shared.",
		"| xnat zero-loss throughput vs l2fwd at 8 queue pair(s) | >= 0.90x | 0.95 | yes | xnat 3.800 Mpps vs l2fwd 4.000 Mpps (cores shared: does not show scaling) |",
	)
	if t.Failed() {
		i := strings.Index(md, "## Scaling")
		t.Log(md[i:])
	}
	if got := pairedRatios([]CellRun{{ZeroLossPPS: 1}, {ZeroLossPPS: 2, Error: "x"}}, []CellRun{{ZeroLossPPS: 2}, {ZeroLossPPS: 2}, {ZeroLossPPS: 9}}); len(got) != 2 || got[0] != 0.5 || !math.IsNaN(got[1]) {
		t.Errorf("pairedRatios = %v", got)
	}
	if _, _, ok := crossRange([]CellRun{{ZeroLossPPS: 1}}, []CellRun{{ZeroLossPPS: 1}, {ZeroLossPPS: 2}}); ok {
		t.Error("crossRange of a single run: ok")
	}
	if got := runsCell(nil); got != "–" {
		t.Errorf("runsCell(nil) = %q", got)
	}
}

// TestQueueTurns: the DUTs take turns run after run, never one DUT's runs
// back to back.
func TestQueueTurns(t *testing.T) {
	var got []string
	for run, dut := range queueTurns([]string{L2fwd, Xnat, Kernel}, 2) {
		got = append(got, fmt.Sprintf("%d:%s", run, dut))
	}
	want := []string{"1:l2fwd", "1:xnat", "1:nftables", "2:l2fwd", "2:xnat", "2:nftables"}
	if !slices.Equal(got, want) {
		t.Errorf("turns %v, want %v", got, want)
	}
	got = nil
	for run, dut := range queueTurns([]string{Xnat}, 0) {
		got = append(got, fmt.Sprintf("%d:%s", run, dut))
	}
	if !slices.Equal(got, []string{"1:xnat"}) {
		t.Errorf("0 runs: turns %v, want one", got)
	}
	for range queueTurns([]string{L2fwd, Xnat}, 3) {
		break // stopping early must not panic
	}
}
