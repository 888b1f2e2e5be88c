package harness

import (
	"math"
	"reflect"
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
		"| 4 | 1,2,3,4 / 5,6,7,8 / 9,10,11,12 | xnat | 1.900 Mpps | 0 pps | 2.10 | 3.80 | 0.63 |",
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
