package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

// TestVisCommandsUsage: the visibility commands' usage errors.
func TestVisCommandsUsage(t *testing.T) {
	e := newTestEnv(t)
	wantRun(t, e.admin_(t, "capture"), 2, "", "say where to write: -w FILE")
	wantRun(t, natctl(t, map[string]string{"XNAT_SOCKET": e.admin, "TTY": "1"}, "capture", "-w", "-"), 2, "", "not writing pcapng to a terminal")
	wantRun(t, e.admin_(t, "capture", "-w", "-", "--inside", "nonsense"), 2, "", `--inside address "nonsense"`)
	wantRun(t, e.admin_(t, "explain", "udp", "10.0.0.2:1", "198.18.0.2:53"), 2, "", "--side inside or --side outside")
	wantRun(t, e.readonly(t, "explain", "--side", "inside", "sctp", "10.0.0.2:1", "198.18.0.2:53"), 2, "", `protocol "sctp"`)
	wantRun(t, e.admin_(t, "trace", "-n", "0"), 4, "", "count 0 out of range 1..1000")
	wantRun(t, e.readonly(t, "trace", "-n", "1"), 4, "", "Trace shows subscribers' packets")
	wantRun(t, e.readonly(t, "capture", "-w", "-"), 4, "", "Capture shows subscribers' packets")
}

// TestVisExplainAndDropsOutput: explain and drops on the read-only socket,
// as tables and as JSON.
func TestVisExplainAndDropsOutput(t *testing.T) {
	e := newTestEnv(t)
	e.core.Send(nat.Inside, mgmttest.Frame(nat.Inside, nat.UDP, netip.MustParseAddrPort("192.168.5.5:999"), netip.MustParseAddrPort("203.0.113.9:53")))
	wantRun(t, e.readonly(t, "explain", "--side", "outside", "tcp", "203.0.113.9:4000", "198.18.0.100:8080"), 0,
		"tcp 203.0.113.9:4000 -> 198.18.0.100:8080 arriving on the outside: forwarded\n  route     inbound to public address 198.18.0.100: translate the destination\n  session   miss\n  mapping   port forward 198.18.0.100:8080 <-> inside 10.0.0.50:80\n", "")
	r := e.readonly(t, "explain", "-o", "json", "--side", "inside", "udp", "192.168.5.5:999", "203.0.113.9:53")
	var ex struct {
		Verdict string `json:"verdict"`
		Steps   []struct{ Stage, Code, Text string }
	}
	if err := json.Unmarshal([]byte(r.out), &ex); err != nil || ex.Verdict != "not_inside" || len(ex.Steps) != 2 || ex.Steps[0].Code != "not_inside" {
		t.Fatalf("explain -o json: %v %+v\n%s", err, ex, r.out)
	}
	wantRun(t, e.readonly(t, "drops", "--interval", "100ms"), 0, "not_inside  1      0.0         ", "")
	wantRun(t, e.readonly(t, "drops", "--interval", "100ms"), 0, "udp 192.168.5.5:999 -> 203.0.113.9:53 on inside", "")
	r = e.readonly(t, "drops", "-o", "json", "--interval", "100ms")
	var ds []struct {
		Reason  string
		Total   uint64
		Samples []struct{ Source, Destination string }
	}
	if err := json.Unmarshal([]byte(r.out), &ds); err != nil || len(ds) != 1 || ds[0].Reason != "not_inside" || ds[0].Samples[0].Source != "192.168.5.5:999" {
		t.Fatalf("drops -o json: %v %+v\n%s", err, ds, r.out)
	}
}

// TestVisCaptureAndTrace: capture writes pcapng that pcapgo reads, with
// the inside frame as it arrived and the translated one; trace prints one
// block per packet. Both stop by themselves at their count.
func TestVisCaptureAndTrace(t *testing.T) {
	e := newTestEnv(t)
	capDone, trDone := make(chan result, 1), make(chan result, 1)
	go func() {
		capDone <- e.admin_(t, "capture", "-w", "-", "--inside", "10.0.0.7", "-c", "2", "--duration", "30s")
	}()
	go func() { trDone <- e.admin_(t, "trace", "-n", "1", "--inside", "10.0.0.7", "--timeout", "30s") }()
	// Send until both have seen a packet: they start asynchronously.
	var c, tr *result
	deadline := time.Now().Add(20 * time.Second)
	for c == nil || tr == nil {
		if time.Now().After(deadline) {
			t.Fatal("capture or trace saw nothing")
		}
		e.core.Send(nat.Inside, mgmttest.Frame(nat.Inside, nat.UDP, netip.MustParseAddrPort("10.0.0.7:1234"), netip.MustParseAddrPort("203.0.113.9:53")))
		select {
		case r := <-capDone:
			c = &r
		case r := <-trDone:
			tr = &r
		case <-time.After(20 * time.Millisecond):
		}
	}
	if c.code != 0 || !strings.Contains(c.err, "2 frames captured, 0 lost") {
		t.Fatalf("capture: exit %d, stderr %s", c.code, c.err)
	}
	var ifcs []int
	for _, f := range mgmttest.ReadPcapng(t, []byte(c.out)) {
		ifcs = append(ifcs, f.Interface)
	}
	if len(ifcs) != 2 || ifcs[0] != 0 || ifcs[1] != 1 {
		t.Fatalf("captured on interfaces %v, want [0 1] (inside as arrived, outside as left)", ifcs)
	}
	if tr.code != 0 || !strings.HasPrefix(tr.out, "Packet 1: worker 0, arrived on inside at ") ||
		!strings.Contains(tr.out, "  rewrite   source 10.0.0.7:1234 -> 198.18.0.100:1234\n") || !strings.Contains(tr.out, "  transmit  queued on outside\n") {
		t.Fatalf("trace: exit %d\n%s%s", tr.code, tr.out, tr.err)
	}
}
