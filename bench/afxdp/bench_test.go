// Package afxdpbench holds the AF_XDP backend comparison: forwarded packets
// per second through cmd/l2fwd with the native and the asavie ring
// backends (and the kernel's own forwarding as context), measured in one
// lab run. The recorded results and their reading are in README.md and
// results.json beside this file.
package afxdpbench

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/harness"
	"github.com/xnat/xnat/bench/lab"
)

// Round is one measurement of one forwarder.
type Round struct {
	Forwarder   string  `json:"forwarder"` // native, asavie or kernel
	Round       int     `json:"round"`
	Seconds     float64 `json:"seconds"`
	GenPPS      float64 `json:"generated_pps"`    // gen eth0 TX
	SinkPPS     float64 `json:"sink_rx_pps"`      // sink eth0 RX: the figure of merit
	CPUSeconds  float64 `json:"l2fwd_cpu_s"`      // l2fwd user+sys over its whole run
	Forwarded   uint64  `json:"l2fwd_forwarded"`  // packets l2fwd forwarded over its whole run
	NsPerPacket float64 `json:"l2fwd_ns_per_pkt"` // l2fwd CPU / packets it forwarded
}

// Result is the JSON record.
type Result struct {
	Date     string             `json:"date"`
	Kernel   string             `json:"kernel"`
	CPUs     int                `json:"cpus"`
	Frame    int                `json:"frame_bytes"`
	Window   float64            `json:"window_s"`
	Command  string             `json:"command"`
	Setup    string             `json:"setup"`
	Rounds   []Round            `json:"rounds"`
	MedianPP map[string]float64 `json:"median_sink_pps"`
	MedianNs map[string]float64 `json:"median_ns_per_pkt"`
}

// TestBackendComparison runs only with XNAT_BENCH=1 (it takes about a
// minute and loads both cores):
//
//	XNAT_BENCH=1 go test ./bench/afxdp/ -run BackendComparison -v -timeout 10m
//
// XNAT_BENCH_OUT names the JSON file to write (default: print only).
func TestBackendComparison(t *testing.T) {
	b, bin := benchLab(t, "the AF_XDP backend benchmark")
	gen := lab.MustLink(t, b.Gen, lab.HostDev)
	dutIn := lab.MustLink(t, b.DUT, lab.DUTInside)
	sink := lab.MustLink(t, b.Sink, lab.HostDev)
	cfg, err := udpConfig(t.TempDir(), 64, dutIn.MAC.String(), gen.MAC.String())
	if err != nil {
		t.Fatal(err)
	}

	const window = 4 * time.Second
	const rounds = 3
	res := Result{
		Date: time.Now().UTC().Format(time.RFC3339), CPUs: 2, Frame: 64, Window: window.Seconds(),
		Command: "XNAT_BENCH=1 XNAT_BENCH_OUT=bench/afxdp/results.json go test ./bench/afxdp/ -run BackendComparison -v -timeout 10m",
		Setup: "lab.NewBench (gen -> dut -> sink, 1 queue, veth, native XDP, copy mode); trafgen -P 1 pinned to CPU 0 in gen; " +
			"l2fwd -batch 64 worker pinned to CPU 1 in dut; default afxdp.Options (4096 x 2048 B frames, 2048-entry rings); " +
			"sink eth0 RX counter over the window",
		MedianPP: map[string]float64{}, MedianNs: map[string]float64{},
	}
	res.Kernel = harness.KernelRelease()
	for r := range rounds {
		for _, fw := range []string{"native", "asavie", "kernel"} {
			rd, err := measure(b, bin, fw, cfg, gen.MAC.String(), sink.MAC.String(), window)
			if err != nil {
				t.Fatalf("%s round %d: %v", fw, r, err)
			}
			rd.Round = r
			t.Logf("%+v", rd)
			res.Rounds = append(res.Rounds, rd)
		}
	}
	for _, fw := range []string{"native", "asavie", "kernel"} {
		var pps, ns []float64
		for _, rd := range res.Rounds {
			if rd.Forwarder == fw {
				pps = append(pps, rd.SinkPPS)
				ns = append(ns, rd.NsPerPacket)
			}
		}
		res.MedianPP[fw] = harness.Median(pps)
		res.MedianNs[fw] = harness.Median(ns)
	}
	writeResult(t, res)
}

func measure(b *lab.Bench, bin, fw, cfg, genMAC, sinkMAC string, window time.Duration) (Round, error) {
	rd := Round{Forwarder: fw}
	var l2 *exec.Cmd
	var l2out strings.Builder
	if fw == "kernel" {
		if err := lab.Run(b.DUT, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
			return rd, err
		}
		defer lab.Run(b.DUT, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
		// Resolve the sink's MAC before the flood.
		if err := lab.Run(b.DUT, "ping", "-c", "1", "-W", "1", "198.18.0.2"); err != nil {
			return rd, err
		}
	} else {
		argv := append([]string{"taskset", "-c", "1", bin}, forwarderFlags(fw)...)
		l2 = lab.Command(b.DUT, append(argv, "-in", lab.DUTInside, "-out", lab.DUTOutside,
			"-in-peer", genMAC, "-out-peer", sinkMAC, "-inside", "10.0.0.0/8", "-local", "10.0.0.1,198.18.0.1", "-cpus", "1")...)
		l2.Stdout = &l2out
		if err := l2.Start(); err != nil {
			return rd, err
		}
		defer func() {
			if l2.ProcessState == nil {
				l2.Process.Kill()
				l2.Wait()
			}
		}()
		time.Sleep(700 * time.Millisecond)
	}
	tg := lab.Command(b.Gen, "taskset", "-c", "0", "trafgen", "-o", lab.HostDev, "-i", cfg, "-P", "1", "--no-sock-mem", "-Q", "-C")
	// trafgen forks its sender: signal the whole process group, and
	// escalate to SIGKILL if it does not stop.
	tg.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := tg.Start(); err != nil {
		return rd, err
	}
	stopTG := func() { lab.StopGroup(tg, syscall.SIGINT, 3*time.Second) }
	time.Sleep(500 * time.Millisecond) // warm up
	_, gtx0, err := lab.LinkStats(b.Gen, lab.HostDev)
	if err != nil {
		stopTG()
		return rd, err
	}
	srx0, _, err := lab.LinkStats(b.Sink, lab.HostDev)
	if err != nil {
		stopTG()
		return rd, err
	}
	t0 := time.Now()
	time.Sleep(window)
	_, gtx1, _ := lab.LinkStats(b.Gen, lab.HostDev)
	srx1, _, _ := lab.LinkStats(b.Sink, lab.HostDev)
	el := time.Since(t0).Seconds()
	stopTG()
	rd.Seconds = el
	rd.GenPPS = float64(gtx1-gtx0) / el
	rd.SinkPPS = float64(srx1-srx0) / el
	if l2 != nil {
		l2.Process.Signal(syscall.SIGTERM)
		l2.Wait()
		if st := l2.ProcessState; st != nil {
			rd.CPUSeconds = (st.UserTime() + st.SystemTime()).Seconds()
		}
		// CPU per packet: l2fwd's user+sys time over its whole run
		// against everything it forwarded in that run (its JSON summary).
		// The busy-polling worker burns its CPU even when idle, so this is
		// meaningful only when the forwarder is the bottleneck.
		var sum struct {
			In2Out uint64 `json:"in_to_out_packets"`
		}
		if err := json.Unmarshal([]byte(l2out.String()), &sum); err != nil {
			return rd, fmt.Errorf("l2fwd summary %q: %w", l2out.String(), err)
		}
		rd.Forwarded = sum.In2Out
		if sum.In2Out > 0 {
			rd.NsPerPacket = rd.CPUSeconds * 1e9 / float64(sum.In2Out)
		}
	}
	return rd, nil
}
