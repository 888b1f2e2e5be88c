package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xnat/xnat/bench/gen"
	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/header"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{
		"-tx-dev", "eth0", "-rx-dev", "eth1", "-mode", "connrate-bidir", "-proto", "tcp",
		"-src", "10.1.0.0/16", "-src-ports", "1024-1279", "-dst", "198.19.0.1-198.19.0.2", "-dst-ports", "80",
		"-flows", "16777216", "-size", "imix", "-rate", "1.5M", "-duration", "3s", "-queues", "2",
		"-cpus", "0,1", "-rx-cpus", "1", "-dst-mac", "02:00:00:00:00:01", "-ring", "4096", "-quiet",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Mode != gen.ConnRateBidir || c.Proto != header.ProtocolTCP || c.Flows.Count != 1<<24 ||
		c.Flows.Src.Count != 65536 || c.Flows.SrcPorts.Count != 256 || c.Flows.Dst.Count != 2 ||
		c.Sizes.String() != "imix" || c.Rate != 1.5e6 || c.TxQueues != 2 || len(c.TxCPUs) != 2 ||
		c.DstMAC.String() != "02:00:00:00:00:01" || c.Port.FillRingSize != 4096 || c.Progress != nil {
		t.Fatalf("parsed %+v", c)
	}
	for _, bad := range [][]string{
		{},                             // no -tx-dev
		{"-tx-dev", "a", "-mode", "x"}, // bad mode
		{"-tx-dev", "a", "-proto", "sctp"},
		{"-tx-dev", "a", "-flows", "70000"}, // one source address, 64512 ports
		{"-tx-dev", "a", "-flows", "0"},
		{"-tx-dev", "a", "-size", "63"},
		{"-tx-dev", "a", "-size", "1519"},
		{"-tx-dev", "a", "-rate", "-5"},
		{"-tx-dev", "a", "-rate", "fast"},
		{"-tx-dev", "a", "-dst-mac", "zz"},
		{"-tx-dev", "a", "-cpus", "0,x"},
		{"-tx-dev", "a", "-backend", "dpdk"},
		{"-tx-dev", "a", "-ttl", "0"},
		{"-tx-dev", "a", "stray"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestOneWayJSON runs the built binary in the bench lab, as a benchmark
// script would: a short paced one-way run through kernel forwarding, the
// JSON result written to a file, progress lines on stderr.
func TestOneWayJSON(t *testing.T) {
	b := lab.RequireBench(t, lab.WithIPForward())
	bin := filepath.Join(lab.BuildTemp(t, "."), "trafficgen")
	if err := lab.Run(b.DUT, "ping", "-c", "1", "-W", "2", "198.18.0.2"); err != nil {
		t.Fatal(err)
	}
	js := filepath.Join(t.TempDir(), "r.json")
	cmd := exec.Command(bin, "-tx-netns", b.Gen, "-tx-dev", lab.HostDev, "-rx-netns", b.Sink, "-rx-dev", lab.HostDev,
		"-src", "10.0.0.2", "-src-ports", "2000-2099", "-dst", "198.18.0.2", "-flows", "100",
		"-size", "512", "-rate", "1k", "-duration", "1s", "-progress", "300ms", "-json", js)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("trafficgen: %v\n%s", err, stderr.String())
	}
	raw, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var r gen.Result
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("result: %v\n%s", err, raw)
	}
	t.Logf("%s\nstderr:\n%s", raw, stderr.String())
	if r.TX.Packets < 64 || r.RX == nil || r.RX.Packets != r.TX.Packets || r.Lost != 0 || r.Latency.Samples == 0 {
		t.Fatalf("tx %d rx %+v lost %d", r.TX.Packets, r.RX, r.Lost)
	}
	if r.Config.FrameLens[0] != 508 || r.Config.Flows != 100 || len(r.Streams) != 64 {
		t.Fatalf("config %+v, %d streams", r.Config, len(r.Streams))
	}
	if n := strings.Count(stderr.String(), "] tx "); n < 1 {
		t.Fatalf("%d progress lines:\n%s", n, stderr.String())
	}
}
