// Package mgmtload measures the management plane under dataplane load: it
// lists a million sessions through natctl while natd forwards traffic at a
// steady rate, and compares the drops and losses of that window with a
// window without listing. It runs only with XNAT_BENCH=1 (as root):
//
//	XNAT_BENCH=1 go test ./bench/mgmtload/ -run Listing -v -timeout 20m
//
// and writes bench/results/mgmtload/listing.json when
// XNAT_BENCH_OUT=bench/results/mgmtload/listing.json is set.
package mgmtload

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/gen"
	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/mgmt/metrics"
)

type window struct {
	Name      string  `json:"name"`
	Seconds   float64 `json:"seconds"`
	SentPPS   float64 `json:"sent_pps"`
	Sent      uint64  `json:"sent"`
	Received  uint64  `json:"received"`
	Lost      int64   `json:"lost"`
	NatdDrops float64 `json:"natd_drops"`
	// NatdPortDrops are frames the kernel dropped on natd's sockets (RX
	// ring full, fill ring empty): the DUT's loss that natd's own drop
	// counters cannot see.
	NatdPortDrops float64 `json:"natd_port_drops"`
	// SinkReached counts frames the sink's XDP program handed to the
	// generator's receiver; SinkDropped those the receiver's socket then
	// dropped (the tester's loss, not the DUT's).
	SinkReached uint64 `json:"sink_reached"`
	SinkDropped uint64 `json:"sink_dropped"`
	// DUTLost is Sent - SinkReached: frames lost between the generator
	// and the sink, in natd or on its links.
	DUTLost       int64   `json:"dut_lost"`
	ListedCount   int     `json:"listed_sessions,omitempty"`
	ListedSeconds float64 `json:"listing_seconds,omitempty"`
	ListedPerSec  float64 `json:"listed_per_second,omitempty"`
}

func TestListingMillionSessionsUnderLoad(t *testing.T) {
	lab.RequireBenchmark(t, "the listing benchmark (as root)")
	const flows = 1_000_000
	dir := lab.BuildTemp(t, "github.com/xnat/xnat/cmd/natd", "github.com/xnat/xnat/cmd/natctl")
	e := natdlab.RequireEnv(t, natdlab.Options{
		Natd: filepath.Join(dir, "natd"),
		Config: natdlab.ConfigParams{
			Pool:        "198.18.2.0/24",
			MaxSessions: 1 << 21,
			PollMode:    "busy",
			CPUs:        []int{1},
		},
	})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	natIn := lab.MustLink(t, e.Box, lab.NATInside)
	// 64 inside hosts x 16384 ports = 1M flows to one server; each host's
	// mappings fit in its paired address's 64512 ports.
	src, _ := gen.ParseAddrRange("10.0.0.64-10.0.0.127")
	dst, _ := gen.ParseAddrRange(natdlab.Server.String())
	sports, _ := gen.ParsePortRange("20000-36383")
	dports, _ := gen.ParsePortRange("9")
	spec := gen.FlowSpec{Src: src, Dst: dst, SrcPorts: sports, DstPorts: dports, Count: flows}
	base := gen.Config{
		Proto: header.ProtocolUDP, TxNetns: e.In1, TxDev: lab.HostDev, RxNetns: e.Out, RxDev: lab.HostDev,
		DstMAC: natIn.MAC, Flows: spec, Sizes: gen.FixedSize(64), TxCPUs: []int{0}, RxCPUs: []int{0},
	}
	ctx := context.Background()

	// 1. Create the sessions: every flow once, paced so nothing is lost.
	setup := base
	setup.Mode, setup.Rate, setup.Duration = gen.ConnRate, 50_000, 60*time.Second
	res, err := gen.Run(ctx, setup)
	if err != nil {
		t.Fatal(err)
	}
	mfs, _ := e.Scrape()
	live := metrics.Sum(mfs, "xnat_sessions")
	t.Logf("setup: created %v, expired %v, deleted %v", metrics.Sum(mfs, "xnat_sessions_created_total"), metrics.Sum(mfs, "xnat_sessions_expired_total"), metrics.Sum(mfs, "xnat_sessions_deleted_total"))
	if live < flows {
		time.Sleep(2 * time.Second)
		mfs, _ = e.Scrape()
		t.Logf("2 s later: %v live, created %v", metrics.Sum(mfs, "xnat_sessions"), metrics.Sum(mfs, "xnat_sessions_created_total"))
	}
	t.Logf("setup: %d new flows sent, %v sessions live", res.Sessions.NewFlows, live)
	if live < flows {
		var drops []string
		if mf := mfs["xnat_dropped_packets_total"]; mf != nil {
			for _, m := range mf.Metric {
				if v := m.GetCounter().GetValue(); v > 0 {
					drops = append(drops, fmt.Sprintf("%s=%v", m.GetLabel()[0].GetValue(), v))
				}
			}
		}
		t.Fatalf("only %v of %d sessions established (generator: %+v; natd drops: %v; natd port-layer drops: %v)",
			live, flows, res.Diag, drops, metrics.Sum(mfs, "xnat_interface_dropped_packets_total"))
	}

	natctl := filepath.Join(dir, "natctl")
	steady := base
	steady.Mode, steady.Rate, steady.Duration = gen.OneWay, 100_000, 20*time.Second

	measure := func(name string, list bool) window {
		before, _ := e.Scrape()
		type listed struct {
			n   int
			dur time.Duration
			err error
		}
		lc := make(chan listed, 1)
		run, cfg := ctx, steady
		if list {
			// The window lasts until a second after the listing ends.
			var cancel context.CancelFunc
			run, cancel = context.WithCancel(ctx)
			defer cancel()
			cfg.Duration = 3 * time.Minute
			go func() {
				defer func() { time.Sleep(time.Second); cancel() }()
				time.Sleep(2 * time.Second) // into the steady window
				start := time.Now()
				// natctl on CPU 0, off the worker's core, as an operator's
				// shell on the appliance's housekeeping cores would be
				// (natd keeps its own management threads there too).
				out, err := exec.Command("taskset", "-c", "0", natctl, "--socket", e.ROSocket, "sessions", "-o", "json").Output()
				lc <- listed{strings.Count(string(out), "\n"), time.Since(start), err}
			}()
		}
		r, err := gen.Run(run, cfg)
		if err != nil {
			t.Fatal(err)
		}
		after, _ := e.Scrape()
		w := window{Name: name, Seconds: r.Seconds, SentPPS: r.TX.PPS, Sent: r.TX.Packets, Lost: r.Lost,
			NatdDrops:     metrics.Sum(after, "xnat_dropped_packets_total") - metrics.Sum(before, "xnat_dropped_packets_total"),
			NatdPortDrops: metrics.Sum(after, "xnat_interface_dropped_packets_total") - metrics.Sum(before, "xnat_interface_dropped_packets_total"),
			SinkReached:   r.Diag.XDPRedirected, SinkDropped: r.Diag.RxKernelDrops,
		}
		w.DUTLost = int64(w.Sent) - int64(w.SinkReached)
		if r.RX != nil {
			w.Received = r.RX.Packets
		}
		if list {
			l := <-lc
			if l.err != nil {
				t.Fatalf("natctl sessions: %v", l.err)
			}
			w.ListedCount, w.ListedSeconds = l.n, l.dur.Seconds()
			w.ListedPerSec = float64(l.n) / l.dur.Seconds()
		}
		return w
	}
	baseline := measure("forwarding only", false)
	withList := measure("forwarding while listing 1M sessions", true)
	for _, w := range []window{baseline, withList} {
		t.Logf("%s: sent %d at %.0f pps, received %d, lost %d (before the sink: %d; natd drops %v, natd socket drops %v; at the sink's socket: %d); listed %d in %.2fs (%.0f/s)",
			w.Name, w.Sent, w.SentPPS, w.Received, w.Lost, w.DUTLost, w.NatdDrops, w.NatdPortDrops, w.SinkDropped, w.ListedCount, w.ListedSeconds, w.ListedPerSec)
	}
	if withList.ListedSeconds+2 > withList.Seconds {
		t.Errorf("the listing (%.1f s from 2 s in) outlasted the %.1f s window", withList.ListedSeconds, withList.Seconds)
	}
	if withList.ListedCount < flows {
		t.Errorf("listed %d sessions, want at least %d", withList.ListedCount, flows)
	}
	if out := lab.BenchOut(t); out != "" {
		b, _ := json.MarshalIndent(map[string]any{
			"command":  "XNAT_BENCH=1 go test ./bench/mgmtload/ -run Listing -v",
			"sessions": live, "windows": []window{baseline, withList},
			"date": time.Now().UTC().Format(time.RFC3339),
		}, "", "  ")
		os.MkdirAll(filepath.Dir(out), 0o755)
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintln(os.Stderr, "natd log tail:", lastLines(e.Log(), 5))
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
