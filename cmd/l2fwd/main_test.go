package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/internal/wait"
)

func buildL2fwd(t *testing.T) string {
	t.Helper()
	return filepath.Join(lab.BuildTemp(t, "."), "l2fwd")
}

// TestForwardPingAndUDP runs l2fwd in the NAT box (no NAT: the server gets a
// route back) and sends ping, TCP and UDP from in1 to the server through it.
func TestForwardPingAndUDP(t *testing.T) {
	lab.Require(t)
	bin := buildL2fwd(t)
	// native shares a UMEM between the two sockets (no copy); native-copy
	// and asavie copy every frame into the other socket's UMEM.
	for _, tc := range []struct {
		name, backend, shared string
	}{{"native", "native", "true"}, {"native-copy", "native", "false"}, {"asavie", "asavie", "true"}} {
		backend := tc.backend
		t.Run(tc.name, func(t *testing.T) {
			n := lab.RequireNAT(t, lab.WithReturnRoute())
			// Without l2fwd nothing forwards (ip_forward is off).
			if _, err := lab.Exec(n.In1, "ping", "-c", "1", "-W", "1", "198.18.0.2"); err == nil {
				t.Fatal("traffic forwarded without l2fwd")
			}
			srvLink := lab.MustLink(t, n.Out, lab.HostDev)
			// The outside peer is configured, the inside one learned.
			cmd := lab.Command(n.Box, bin, "-in", lab.NATInside, "-out", lab.NATOutside, "-backend", backend, "-shared-umem="+tc.shared,
				"-out-peer", srvLink.MAC.String(),
				"-inside", "10.0.0.0/24", "-local", "10.0.0.1,198.18.0.1", "-public", "10.0.0.2,10.0.0.3")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			stopped := false
			stop := func() {
				if !stopped {
					stopped = true
					cmd.Process.Signal(syscall.SIGTERM)
					cmd.Wait()
				}
			}
			defer stop()
			var err error
			if !wait.For(10*time.Second, func() bool {
				_, err = lab.Exec(n.In1, "ping", "-c", "1", "-W", "1", "198.18.0.2")
				return err == nil
			}) {
				t.Fatalf("no ping through l2fwd: %v\nstderr: %s", err, stderr.String())
			}
			if out, err := lab.Exec(n.In1, "ping", "-c", "10", "-i", "0.05", "-W", "1", "198.18.0.2"); err != nil {
				t.Fatalf("ping: %v\n%s", err, out)
			}
			// The box itself still answers (XDP_PASS for local addresses).
			if out, err := lab.Exec(n.In1, "ping", "-c", "1", "-W", "1", "10.0.0.1"); err != nil {
				t.Fatalf("ping box: %v\n%s", err, out)
			}
			// Not one-off (-1): a one-off server may tear the control
			// connection down before the client has read the results.
			srv := lab.Command(n.Out, "iperf3", "-s", "-B", "198.18.0.2")
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { srv.Process.Kill(); srv.Wait() }()
			// The server may take a moment to listen, and a run on a
			// loaded machine may lose datagrams (the sender, l2fwd and
			// the receiver share two CPUs): what must hold is that the
			// datagrams the server received went through l2fwd, whatever
			// the loss, which is logged, not judged (a rate is the
			// benchmarks' business).
			var res struct {
				End struct {
					Sum struct {
						Packets     int     `json:"packets"`
						LostPackets int     `json:"lost_packets"`
						LostPercent float64 `json:"lost_percent"`
					} `json:"sum"`
				} `json:"end"`
			}
			var out string
			if !wait.For(20*time.Second, func() bool {
				out, err = lab.Exec(n.In1, "iperf3", "-c", "198.18.0.2", "-u", "-b", "20M", "-t", "1", "-J")
				res.End.Sum.Packets, res.End.Sum.LostPackets = 0, 0
				return err == nil && json.Unmarshal([]byte(out), &res) == nil &&
					res.End.Sum.Packets > res.End.Sum.LostPackets
			}) {
				t.Fatalf("iperf3 UDP through l2fwd delivered nothing (%v):\n%s", err, out)
			}
			received := res.End.Sum.Packets - res.End.Sum.LostPackets
			stop()
			var sum Summary
			if err := json.Unmarshal([]byte(stdout.String()), &sum); err != nil {
				t.Fatalf("summary: %v\n%s\nstderr: %s", err, stdout.String(), stderr.String())
			}
			// Every datagram the server received crossed l2fwd inside
			// out, beside the 11 pings at least.
			if sum.In2Out < uint64(11+received) || sum.Out2In < 11 || len(sum.WorkerErrors) > 0 || sum.SharedUMEM != (tc.name == "native") {
				t.Fatalf("summary %+v, with %d UDP datagrams received", sum, received)
			}
			t.Logf("%s: %+v; UDP %d packets %.2f%% lost", backend, sum, res.End.Sum.Packets, res.End.Sum.LostPercent)
		})
	}
}

func TestParseFlags(t *testing.T) {
	if _, err := parseFlags([]string{"-in", "a"}); err == nil {
		t.Fatal("missing -out accepted")
	}
	if _, err := parseFlags([]string{"-in", "a", "-out", "b", "-backend", "dpdk"}); err == nil {
		t.Fatal("bad backend accepted")
	}
	c, err := parseFlags([]string{"-in", "a", "-out", "b", "-in-peer", "02:00:00:00:00:01", "-public", "10.0.0.2", "-cpus", "1"})
	if err != nil {
		t.Fatal(err)
	}
	// asavie cannot share a UMEM: -shared-umem is off for it.
	if a, err := parseFlags([]string{"-in", "a", "-out", "b", "-backend", "asavie"}); err != nil || a.sharedUMEM {
		t.Fatalf("asavie: %v, sharedUMEM %v", err, a != nil && a.sharedUMEM)
	}
	if c.inPeer.String() != "02:00:00:00:00:01" || len(c.public) != 1 || c.cpus[0] != 1 || c.batch != 64 || !c.sharedUMEM {
		t.Fatalf("parsed %+v", c)
	}
}
