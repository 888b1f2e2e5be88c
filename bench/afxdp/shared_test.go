package afxdpbench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/harness"
	"github.com/xnat/xnat/bench/lab"
)

// benchLab skips the test unless XNAT_BENCH=1, checks for the tools,
// builds l2fwd and the bench lab (gone at the test's end), and returns the
// lab and the l2fwd binary.
func benchLab(t *testing.T, what string) (*lab.Bench, string) {
	t.Helper()
	lab.RequireBenchmark(t, what, "trafgen", "taskset")
	bin := filepath.Join(lab.BuildTemp(t, "../../cmd/l2fwd"), "l2fwd")
	return lab.RequireBench(t), bin
}

// forwarderFlags are l2fwd's flags for a forwarder of the comparisons:
// native and asavie copy each frame into the other socket's UMEM (the
// backend comparison compares like with like), native-shared binds the
// pair to one UMEM and forwards frames as they are.
func forwarderFlags(fw string) []string {
	switch fw {
	case "native-shared":
		return []string{"-backend", "native", "-shared-umem=true"}
	case "native":
		return []string{"-backend", "native", "-shared-umem=false"}
	}
	return []string{"-backend", fw}
}

// udpConfig writes a trafgen configuration of one UDP frame 10.0.0.2 ->
// 198.18.0.2 of size bytes on the wire (FCS included; 64 to 1518) and
// returns its path.
func udpConfig(dir string, size int, dstMAC, srcMAC string) (string, error) {
	if size < 64 || size > 1518 {
		return "", fmt.Errorf("frame size %d not in 64..1518", size)
	}
	frame := size - 4     // without FCS
	ipLen := frame - 14   // IPv4 total length
	udpLen := ipLen - 20  // UDP length
	payload := udpLen - 8 // zero bytes after the UDP header
	cfg := filepath.Join(dir, fmt.Sprintf("udp%d.cfg", size))
	pkt := fmt.Sprintf(`{
  %s, %s, c16(0x0800),
  0x45, 0x00, c16(%d), c16(0), c16(0x4000), 64, 17, csumip(14, 33),
  10, 0, 0, 2, 198, 18, 0, 2,
  c16(1024), c16(9), c16(%d), c16(0),
  fill(0x00, %d)
}
`, harness.TrafgenMAC(dstMAC), harness.TrafgenMAC(srcMAC), ipLen, udpLen, payload)
	return cfg, os.WriteFile(cfg, []byte(pkt), 0o644)
}

// SharedResult is the JSON record of TestSharedUMEMComparison.
type SharedResult struct {
	Date    string  `json:"date"`
	Kernel  string  `json:"kernel"`
	CPUs    int     `json:"cpus"`
	Window  float64 `json:"window_s"`
	Command string  `json:"command"`
	Setup   string  `json:"setup"`
	Rounds  []struct {
		Size int `json:"frame_bytes"`
		Round
	} `json:"rounds"`
	// Medians and ratios (shared / copy) per frame size.
	Medians map[string]map[string]float64 `json:"medians"`
}

// TestSharedUMEMComparison runs only with XNAT_BENCH=1 (about two minutes,
// both cores loaded). It measures l2fwd forwarding 64 B and 1518 B frames
// with the pair's sockets on one UMEM (no copy) and on two (a copy per
// frame), back to back in each round, in one lab:
//
//	XNAT_BENCH=1 go test ./bench/afxdp/ -run SharedUMEMComparison -v -timeout 15m
//
// XNAT_BENCH_OUT names the JSON file to write (default: print only);
// XNAT_BENCH_ROUNDS the rounds (default 5). It asserts nothing about speed:
// on a shared machine the figures are for reading, not for failing.
func TestSharedUMEMComparison(t *testing.T) {
	b, bin := benchLab(t, "the shared-UMEM benchmark")
	rounds := 5
	if v := os.Getenv("XNAT_BENCH_ROUNDS"); v != "" {
		if _, err := fmt.Sscan(v, &rounds); err != nil || rounds < 1 {
			t.Fatalf("XNAT_BENCH_ROUNDS=%q", v)
		}
	}
	var mac [3]string
	for i, l := range []struct{ ns, dev string }{{b.Gen, lab.HostDev}, {b.DUT, lab.DUTInside}, {b.Sink, lab.HostDev}} {
		mac[i] = lab.MustLink(t, l.ns, l.dev).MAC.String()
	}
	sizes := []int{64, 1518}
	cfgs := map[int]string{}
	for _, size := range sizes {
		var err error
		if cfgs[size], err = udpConfig(t.TempDir(), size, mac[1], mac[0]); err != nil {
			t.Fatal(err)
		}
	}
	const window = 3 * time.Second
	res := SharedResult{
		Date: time.Now().UTC().Format(time.RFC3339), CPUs: 2, Window: window.Seconds(),
		Command: "XNAT_BENCH=1 go test ./bench/afxdp/ -run SharedUMEMComparison -v -timeout 15m",
		Setup: "lab.NewBench (gen -> dut -> sink, 1 queue, veth, native XDP, copy mode); trafgen -P 1 pinned to CPU 0 in gen; " +
			"l2fwd -batch 64 worker pinned to CPU 1 in dut, native backend, -shared-umem=true (native-shared) or false (native: " +
			"a copy per frame); default afxdp.Options; sink eth0 RX counter over the window; in each round both modes back to back per size",
		Medians: map[string]map[string]float64{},
	}
	res.Kernel = harness.KernelRelease()
	modes := []string{"native-shared", "native"}
	for r := range rounds {
		for _, size := range sizes {
			for i := range modes {
				fw := modes[(i+r)%len(modes)] // alternate which goes first
				rd, err := measure(b, bin, fw, cfgs[size], mac[0], mac[2], window)
				if err != nil {
					t.Fatalf("%s %d B round %d: %v", fw, size, r, err)
				}
				rd.Round = r
				t.Logf("%d B %+v", size, rd)
				res.Rounds = append(res.Rounds, struct {
					Size int `json:"frame_bytes"`
					Round
				}{size, rd})
			}
		}
	}
	for _, size := range sizes {
		m := map[string]float64{}
		for _, fw := range modes {
			var pps, ns []float64
			for _, rd := range res.Rounds {
				if rd.Size == size && rd.Forwarder == fw {
					pps = append(pps, rd.SinkPPS)
					ns = append(ns, rd.NsPerPacket)
				}
			}
			m[fw+"_sink_pps"] = harness.Median(pps)
			m[fw+"_ns_per_pkt"] = harness.Median(ns)
		}
		if c := m["native_sink_pps"]; c > 0 {
			m["ratio_sink_pps_shared_over_copy"] = m["native-shared_sink_pps"] / c
		}
		if c := m["native_ns_per_pkt"]; c > 0 {
			m["ratio_ns_per_pkt_shared_over_copy"] = m["native-shared_ns_per_pkt"] / c
		}
		res.Medians[fmt.Sprint(size)] = m
		t.Logf("%d B: shared %.0f pps %.0f ns/pkt, copy %.0f pps %.0f ns/pkt; shared/copy pps %.3f, ns/pkt %.3f", size,
			m["native-shared_sink_pps"], m["native-shared_ns_per_pkt"], m["native_sink_pps"], m["native_ns_per_pkt"],
			m["ratio_sink_pps_shared_over_copy"], m["ratio_ns_per_pkt_shared_over_copy"])
	}
	writeResult(t, res)
}

// writeResult logs res as JSON and writes it to the file XNAT_BENCH_OUT
// names (relative to the repository root), if any.
func writeResult(t *testing.T, res any) {
	t.Helper()
	js, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", js)
	if out := lab.BenchOut(t); out != "" {
		if err := os.WriteFile(out, append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
