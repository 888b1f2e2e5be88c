package gencheck

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/bench/gen"
	"github.com/xnat/xnat/bench/harness"
	"github.com/xnat/xnat/bench/lab"
)

const (
	command = "XNAT_BENCH=1 XNAT_BENCH_OUT=bench/results/gencheck go test ./bench/gencheck -run TestGenCheck -v -count=1 -timeout 15m  (bench/gencheck/run.sh)"
	warmup  = 700 * time.Millisecond
	window  = 4 * time.Second
	rounds  = 3
)

// Measurement is one generator's run in one round.
type Measurement struct {
	Round     int    `json:"round"`
	Generator string `json:"generator"`
	Flows     int    `json:"flows"`
	// SinkPPS is the drop sink's XDP_DROP count over the window; GenTxPPS
	// the generator interface's TX counter over the same window.
	SinkPPS  float64 `json:"sink_pps"`
	GenTxPPS float64 `json:"gen_tx_pps"`
	// CPU0Busy and CPU0Softirq are CPU 0's busy and softirq shares over
	// the window (from /proc/stat): CPU 0 runs the generator and, on veth,
	// the sink's XDP program in the generator's softirq.
	CPU0Busy    float64 `json:"cpu0_busy"`
	CPU0Softirq float64 `json:"cpu0_softirq"`
	// CPUSeconds is the generator process's user+sys time over its whole
	// life and Sent the frames its interface sent in that life;
	// NsPerPacket their ratio (what the kernel charged to the process).
	CPUSeconds  float64 `json:"cpu_s"`
	UserSeconds float64 `json:"user_s"`
	Sent        uint64  `json:"sent"`
	NsPerPacket float64 `json:"cpu_ns_per_packet"`
	LoadAvg     string  `json:"loadavg_before"`
	// Trafficgen's own view (its JSON result): its TX rate, and how
	// often the TX ring was full (the kernel, not the generator, setting
	// the pace).
	SelfTxPPS  float64 `json:"self_tx_pps,omitempty"`
	TxRingFull uint64  `json:"tx_ring_full,omitempty"`
	TxKicks    uint64  `json:"tx_kicks,omitempty"`
	// With trafficgen's own AF_XDP receiver as the sink: what it
	// received, lost (including its own RX drops) and the latency.
	SelfRxPPS     float64 `json:"self_rx_pps,omitempty"`
	SelfLoss      float64 `json:"self_loss_ratio,omitempty"`
	RxKernelDrops uint64  `json:"rx_kernel_drops,omitempty"`
	LatencyP50    int64   `json:"latency_p50_ns,omitempty"`
	LatencyP99    int64   `json:"latency_p99_ns,omitempty"`
}

// Report is the recorded result.
type Report struct {
	Date         string             `json:"date"`
	Kernel       string             `json:"kernel"`
	CPUs         int                `json:"cpus"`
	Command      string             `json:"command"`
	Setup        string             `json:"setup"`
	WindowS      float64            `json:"window_s"`
	Rounds       []Measurement      `json:"rounds"`
	MedianSink   map[string]float64 `json:"median_sink_pps"`
	MedianNs     map[string]float64 `json:"median_cpu_ns_per_packet"`
	RatioVsTrafg map[string]float64 `json:"median_sink_pps_ratio_vs_trafgen"`
}

type generator struct {
	name  string
	flows int
	start func() (*exec.Cmd, string, error) // the process and, for trafficgen, its JSON path
	// ownSink: the sink is trafficgen's own AF_XDP receiver instead of
	// the XDP_DROP program, which is detached for the run.
	ownSink bool
}

// TestGenCheck measures trafficgen (one flow and 1 Mi flows) and trafgen
// into an XDP_DROP sink, three alternating rounds each.
func TestGenCheck(t *testing.T) {
	lab.RequireBenchmark(t, "the generator check", "trafgen", "taskset", "ethtool")
	dir := t.TempDir()
	bin := filepath.Join(lab.BuildTemp(t, "../../cmd/trafficgen"), "trafficgen")
	b := lab.RequireBench(t)
	genLink := lab.MustLink(t, b.Gen, lab.HostDev)
	sinkLink := lab.MustLink(t, b.DUT, lab.DUTInside)
	prog := loadDrop(t)
	defer prog.Close()
	if err := setXDP(b.DUT, lab.DUTInside, prog.FD()); err != nil {
		t.Fatal(err)
	}

	// The frame both generators send: 60 bytes (64 with FCS), UDP
	// 10.0.0.2:1024 -> 198.18.0.2:9, to the sink's MAC. trafgen's payload
	// is zeros; trafficgen's carries its 18-byte Mark instead.
	cfg := filepath.Join(dir, "udp64.cfg")
	pkt := fmt.Sprintf(`{
  %s, %s, c16(0x0800),
  0x45, 0x00, c16(46), c16(0), c16(0x4000), 64, 17, csumip(14, 33),
  10, 0, 0, 2, 198, 18, 0, 2,
  c16(1024), c16(9), c16(26), csumudp(14, 34),
  fill(0x00, 18)
}
`, harness.TrafgenMAC(sinkLink.MAC.String()), harness.TrafgenMAC(genLink.MAC.String()))
	if err := os.WriteFile(cfg, []byte(pkt), 0o644); err != nil {
		t.Fatal(err)
	}
	runFor := warmup + window + 600*time.Millisecond
	trafficgen := func(flows int, src, ports string, extra ...string) func() (*exec.Cmd, string, error) {
		return func() (*exec.Cmd, string, error) {
			js := filepath.Join(dir, fmt.Sprintf("tg-%d.json", flows))
			args := append([]string{"-tx-netns", b.Gen, "-tx-dev", lab.HostDev, "-dst-mac", sinkLink.MAC.String(),
				"-src", src, "-src-ports", ports, "-dst", "198.18.0.2", "-dst-ports", "9", "-flows", strconv.Itoa(flows),
				"-size", "64", "-duration", runFor.String(), "-cpus", "0", "-quiet", "-json", js}, extra...)
			cmd := exec.Command(bin, args...)
			return cmd, js, cmd.Start()
		}
	}
	gens := []generator{
		{"trafficgen", 1, trafficgen(1, "10.0.0.2", "1024"), false},
		{"trafficgen-1Mflows", 1 << 20, trafficgen(1<<20, "10.1.0.0/16", "1024-1039"), false},
		{"trafgen", 1, func() (*exec.Cmd, string, error) {
			cmd := lab.Command(b.Gen, "taskset", "-c", "0", "trafgen", "-o", lab.HostDev, "-i", cfg, "-P", "1", "--no-sock-mem", "-Q", "-C")
			// trafgen forks its sender: signal the whole process group.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			return cmd, "", cmd.Start()
		}, false},
		{"trafficgen->own-afxdp-sink", 1, trafficgen(1, "10.0.0.2", "1024",
			"-rx-netns", b.DUT, "-rx-dev", lab.DUTInside, "-rx-cpus", "1", "-rt-prio", "10"), true},
	}

	rep := Report{
		Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Command: command, WindowS: window.Seconds(),
		Setup: "lab.NewBench; gen eth0 -> dut-in, where an XDP_DROP program is the sink (counted by veth's rx_queue_0_xdp_drops); " +
			"one 64-byte UDP frame (60 B + FCS) 10.0.0.2:1024 -> 198.18.0.2:9 (trafficgen-1Mflows: 1,048,576 flows 10.1.0.0/16 x ports 1024-1039); " +
			"trafficgen: AF_XDP copy mode, native ring backend, batch 64, TX worker pinned to CPU 0 (-cpus 0), TX only; " +
			"trafgen -P 1 under taskset -c 0 (netsniff-ng's defaults: PF_PACKET with qdisc bypass; -Q leaves IRQ affinity alone, -C no CPU stats), UDP checksum set; " +
			"window 4 s after 0.7 s warm-up; rounds alternate the generators; " +
			"trafficgen->own-afxdp-sink: the XDP_DROP program replaced by trafficgen's receiver on dut-in (RX worker on CPU 1), " +
			"both workers SCHED_FIFO (-rt-prio 10) so other engineers' processes on the shared CPUs do not starve the receiver, rates over trafficgen's own TX span",
		MedianSink: map[string]float64{}, MedianNs: map[string]float64{}, RatioVsTrafg: map[string]float64{},
	}
	rep.Kernel = harness.KernelRelease()
	for r := range rounds {
		for _, g := range gens {
			if g.ownSink {
				if err := setXDP(b.DUT, lab.DUTInside, -1); err != nil {
					t.Fatal(err)
				}
			}
			m, err := measure(b, g)
			if g.ownSink {
				if err := setXDP(b.DUT, lab.DUTInside, prog.FD()); err != nil {
					t.Fatal(err)
				}
			}
			if err != nil {
				t.Fatalf("round %d %s: %v", r, g.name, err)
			}
			m.Round = r
			t.Logf("%+v", m)
			rep.Rounds = append(rep.Rounds, m)
		}
	}
	for _, g := range gens {
		var pps, ns []float64
		for _, m := range rep.Rounds {
			if m.Generator == g.name {
				pps = append(pps, m.SinkPPS)
				ns = append(ns, m.NsPerPacket)
			}
		}
		rep.MedianSink[g.name] = harness.Median(pps)
		rep.MedianNs[g.name] = harness.Median(ns)
	}
	for _, g := range gens {
		if tr := rep.MedianSink["trafgen"]; tr > 0 && !g.ownSink {
			rep.RatioVsTrafg[g.name] = rep.MedianSink[g.name] / tr
		}
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("%s", js)
	for _, m := range rep.Rounds {
		if m.SinkPPS <= 0 {
			t.Errorf("%s round %d: nothing reached the sink", m.Generator, m.Round)
		}
	}
	if out := lab.BenchOut(t); out != "" {
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, "results.json"), append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(markdown(&rep, gens)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// loadDrop loads a two-instruction XDP program that drops every frame.
func loadDrop(t *testing.T) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "gencheck_drop", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1 /* XDP_DROP */), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// setXDP attaches program fd to dev in ns in native mode (fd -1 detaches).
func setXDP(ns, dev string, fd int) error {
	return lab.Do(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, fd, unix.XDP_FLAGS_DRV_MODE)
	})
}

type counters struct {
	sink, genTx uint64
	cpuBusy     uint64 // CPU 0 jiffies not idle
	cpuSoftirq  uint64
	cpuTotal    uint64
}

func read(b *lab.Bench) (counters, error) {
	var c counters
	out, err := lab.Exec(b.DUT, "ethtool", "-S", lab.DUTInside)
	if err != nil {
		return c, err
	}
	found := false
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == "rx_queue_0_xdp_drops" {
			c.sink, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			found = err == nil
		}
	}
	if !found {
		return c, fmt.Errorf("no rx_queue_0_xdp_drops in ethtool -S %s:\n%s", lab.DUTInside, out)
	}
	if _, c.genTx, err = lab.LinkStats(b.Gen, lab.HostDev); err != nil {
		return c, err
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, err
	}
	for _, line := range strings.Split(string(stat), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != "cpu0" {
			continue
		}
		var v [8]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		// user nice system idle iowait irq softirq steal
		for _, x := range v {
			c.cpuTotal += x
		}
		c.cpuBusy = c.cpuTotal - v[3] - v[4]
		c.cpuSoftirq = v[6]
	}
	return c, nil
}

func measure(b *lab.Bench, g generator) (Measurement, error) {
	m := Measurement{Generator: g.name, Flows: g.flows}
	m.LoadAvg = harness.LoadAvg()
	c0, err := read(b)
	if err != nil {
		return m, err
	}
	cmd, js, err := g.start()
	if err != nil {
		return m, err
	}
	stop := func() {
		if js != "" {
			// trafficgen stops by itself after -duration.
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			return
		}
		lab.StopGroup(cmd, syscall.SIGINT, 3*time.Second)
	}
	time.Sleep(warmup)
	c1, err := read(b)
	if err != nil {
		stop()
		return m, err
	}
	t1 := time.Now()
	time.Sleep(window)
	c2, err := read(b)
	el := time.Since(t1).Seconds()
	stop()
	if err != nil {
		return m, err
	}
	c3, err := read(b)
	if err != nil {
		return m, err
	}
	if !g.ownSink {
		m.SinkPPS = float64(c2.sink-c1.sink) / el
	}
	m.GenTxPPS = float64(c2.genTx-c1.genTx) / el
	if d := c2.cpuTotal - c1.cpuTotal; d > 0 {
		m.CPU0Busy = float64(c2.cpuBusy-c1.cpuBusy) / float64(d)
		m.CPU0Softirq = float64(c2.cpuSoftirq-c1.cpuSoftirq) / float64(d)
	}
	if st := cmd.ProcessState; st != nil {
		m.CPUSeconds = (st.UserTime() + st.SystemTime()).Seconds()
		m.UserSeconds = st.UserTime().Seconds()
	}
	m.Sent = c3.genTx - c0.genTx
	if m.Sent > 0 {
		m.NsPerPacket = m.CPUSeconds * 1e9 / float64(m.Sent)
	}
	if js != "" {
		if st := cmd.ProcessState; st == nil || !st.Success() {
			return m, fmt.Errorf("trafficgen failed: %v", cmd.ProcessState)
		}
		raw, err := os.ReadFile(js)
		if err != nil {
			return m, err
		}
		var r gen.Result
		if err := json.Unmarshal(raw, &r); err != nil {
			return m, fmt.Errorf("trafficgen result: %w", err)
		}
		m.SelfTxPPS = r.TX.PPS
		m.TxRingFull = r.Diag.TxRingFull
		m.TxKicks = r.Diag.TxKicks
		if g.ownSink {
			if r.RX == nil || r.Latency == nil {
				return m, fmt.Errorf("trafficgen reported no receive side")
			}
			// The receiver's rate over trafficgen's own TX span.
			m.SinkPPS = r.RX.PPS
			m.SelfRxPPS = r.RX.PPS
			m.SelfLoss = r.LossRatio
			m.RxKernelDrops = r.Diag.RxKernelDrops
			m.LatencyP50, m.LatencyP99 = r.Latency.P50, r.Latency.P99
		}
	}
	return m, nil
}

func markdown(r *Report, gens []generator) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Generator check: trafficgen vs trafgen into a drop sink\n\n")
	fmt.Fprintf(&s, "Recorded %s on Linux %s, %d vCPUs (shared with other engineers' test runs), by:\n\n```\n%s\n```\n\n",
		r.Date, r.Kernel, r.CPUs, r.Command)
	fmt.Fprintf(&s, "Raw figures: [`results.json`](results.json). Harness: [`bench/gencheck/gencheck_test.go`](../../gencheck/gencheck_test.go).\n\n")
	fmt.Fprintf(&s, "Setup: %s.\n\n", r.Setup)
	fmt.Fprintf(&s, "| round | generator | sink pps | gen TX pps | CPU0 busy | CPU0 softirq | CPU ns/pkt (user share) | TX ring full / kicks | load avg before |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range r.Rounds {
		ring := "–"
		if strings.HasPrefix(m.Generator, "trafficgen") {
			ring = fmt.Sprintf("%d / %d", m.TxRingFull, m.TxKicks)
		}
		user := 0.0
		if m.CPUSeconds > 0 {
			user = 100 * m.UserSeconds / m.CPUSeconds
		}
		fmt.Fprintf(&s, "| %d | %s | %s | %s | %.0f%% | %.0f%% | %.0f (%.0f%%) | %s | %s |\n", m.Round, m.Generator,
			thousands(m.SinkPPS), thousands(m.GenTxPPS), 100*m.CPU0Busy, 100*m.CPU0Softirq, m.NsPerPacket, user, ring, m.LoadAvg)
	}
	fmt.Fprintf(&s, "\nWith trafficgen's own AF_XDP receiver (xdpprog redirect on dut-in, RX worker on CPU 1, -rt-prio 10) as the sink:\n\n")
	fmt.Fprintf(&s, "| round | TX pps | RX pps | loss | own RX drops | latency p50 | p99 |\n|---|---|---|---|---|---|---|\n")
	for _, m := range r.Rounds {
		if m.SelfRxPPS > 0 {
			fmt.Fprintf(&s, "| %d | %s | %s | %.3f%% | %d | %.1f µs | %.1f µs |\n", m.Round, thousands(m.SelfTxPPS), thousands(m.SelfRxPPS),
				100*m.SelfLoss, m.RxKernelDrops, float64(m.LatencyP50)/1e3, float64(m.LatencyP99)/1e3)
		}
	}
	fmt.Fprintf(&s, "\nMedians of sink pps (ratio to trafgen) and of CPU ns per packet charged to the generator process:\n\n")
	fmt.Fprintf(&s, "| generator | median sink pps | vs trafgen | median CPU ns/pkt |\n|---|---|---|---|\n")
	for _, g := range gens {
		ratio := fmt.Sprintf("%.2f", r.RatioVsTrafg[g.name])
		if g.ownSink {
			ratio = "– (other sink)"
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %.0f |\n", g.name, thousands(r.MedianSink[g.name]), ratio, r.MedianNs[g.name])
	}
	return s.String()
}

func thousands(v float64) string {
	n := strconv.FormatInt(int64(v+0.5), 10)
	var out []byte
	for i := range n {
		if i > 0 && (len(n)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, n[i])
	}
	return string(out)
}
