package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
	"github.com/xnat/xnat/internal/wait"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
	"github.com/xnat/xnat/mgmt/metrics"
)

// End-to-end tests: natd runs as a process in the namespace lab, and real
// kernel TCP/UDP/ICMP clients and servers talk through it. They need root;
// lab.Require skips them elsewhere and fails them under CI=true.

func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBuilds()
	os.Exit(code)
}

// binaries builds natd and natctl once per test process.
func binaries(t *testing.T) (natd, natctl string) {
	t.Helper()
	dir := lab.Build(t, "github.com/xnat/xnat/cmd/natd", "github.com/xnat/xnat/cmd/natctl")
	return filepath.Join(dir, "natd"), filepath.Join(dir, "natctl")
}

// newEnv builds the lab with natd's configuration, not started yet; at
// the end of the test it is closed, with natd's log if the test failed.
func newEnv(t *testing.T, opts natdlab.Options) *natdlab.Env {
	t.Helper()
	lab.Require(t) // before the build, which is wasted where labs are not
	opts.Natd, _ = binaries(t)
	return natdlab.RequireEnv(t, opts)
}

func startEnv(t *testing.T, opts natdlab.Options) *natdlab.Env {
	t.Helper()
	e := newEnv(t, opts)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// metric is metrics.Sum that fails the test when natd exports no family
// name at all.
func metric(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	if _, ok := mfs[name]; !ok {
		t.Fatalf("metric %s missing", name)
	}
	return metrics.Sum(mfs, name, labels...)
}

// TestE2EThroughTheNAT walks the demo's steps and checks each exactly:
// the TCP hello world, UDP, ping, a TTL-limited probe, a port forward,
// hairpinning between the inside hosts, stats and metrics, and a clean
// SIGTERM.
func TestE2EThroughTheNAT(t *testing.T) {
	e := startEnv(t, natdlab.Options{})

	// 1. TCP: the outside server sees the pool address, not 10.0.0.x.
	greeting, seen, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7000))
	if err != nil {
		t.Fatalf("TCP hello: %v", err)
	}
	if seen.Addr() != natdlab.PoolAddr || !strings.HasPrefix(greeting, "hello world!") {
		t.Fatalf("server saw %v, client read %q", seen, greeting)
	}

	// 2. UDP.
	answered, srcs, err := natdlab.UDPExchange(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7001), natdlab.In1, 20)
	if err != nil || answered != 20 {
		t.Fatalf("UDP: %d of 20 answered (%v)", answered, err)
	}
	for s := range srcs {
		if s.Addr() != natdlab.PoolAddr {
			t.Fatalf("UDP source seen outside: %v", s)
		}
	}

	// 3. ping.
	if out, err := natdlab.Ping(e.In1, natdlab.Server, 3); err != nil || !strings.Contains(out, "3 received") {
		t.Fatalf("ping: %v\n%s", err, out)
	}

	// 4. TTL-limited probe: the Time Exceeded comes back translated.
	out, err := natdlab.TTLProbe(e.In1)
	if err != nil || !strings.Contains(out, "From "+natdlab.Server.String()) {
		t.Fatalf("TTL probe: %v\n%s", err, out)
	}

	// 5. Port forward: an outside client reaches in2:80 through the pool.
	greeting, seen, err = natdlab.TCPHelloVia(e.Out, e.In2, netip.AddrPortFrom(natdlab.In2, 80), netip.AddrPortFrom(natdlab.PoolAddr, natdlab.ForwardPort))
	if err != nil || !strings.HasPrefix(greeting, "hello world!") {
		t.Fatalf("port forward: %v (%q)", err, greeting)
	}
	if seen.Addr() != natdlab.Server {
		t.Fatalf("forwarded connection came from %v, want the client %v", seen, natdlab.Server)
	}

	// 6. Hairpin: in1 reaches the forwarded server through the public
	// address; in2 sees in1's external address (RFC 4787 REQ-9a).
	_, seen, err = natdlab.TCPHelloVia(e.In1, e.In2, netip.AddrPortFrom(natdlab.In2, 80), netip.AddrPortFrom(natdlab.PoolAddr, natdlab.ForwardPort))
	if err != nil {
		t.Fatalf("hairpin: %v", err)
	}
	if seen.Addr() != natdlab.PoolAddr {
		t.Fatalf("hairpinned connection came from %v, want %v", seen, natdlab.PoolAddr)
	}

	// Stats through the API, and metrics matching them.
	c, err := e.Client(false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	st, err := c.GetStats(ctx, &xnatv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetStats().GetWorkers()) != 1 {
		t.Fatalf("%d workers in stats", len(st.GetStats().GetWorkers()))
	}
	mfs, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	created := metric(t, mfs, "xnat_sessions_created_total")
	if created < 25 {
		t.Fatalf("xnat_sessions_created_total = %v after 25+ flows", created)
	}
	if rx := metric(t, mfs, "xnat_rx_packets_total", "interface", lab.NATInside); rx < 30 {
		t.Fatalf("inside rx packets %v", rx)
	}
	if hp := metric(t, mfs, "xnat_hairpinned_packets_total"); hp < 1 {
		t.Fatalf("hairpinned %v", hp)
	}

	// SIGTERM: natd exits 0 and leaves the interfaces as they were.
	if err := e.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("natd exit: %v", err)
	}
	checkInterfacesClean(t, e)
}

// diagnose collects what explains lost packets: natd's drops by reason,
// its per-queue counters, the XSK rings' kernel statistics as natd sees
// them, and the kernel's UDP and interface counters in each namespace.
func diagnose(e *natdlab.Env) string {
	var b strings.Builder
	if mfs, err := e.Scrape(); err == nil {
		for _, name := range []string{"xnat_dropped_packets_total", "xnat_rx_packets_total", "xnat_tx_packets_total"} {
			if mf := mfs[name]; mf != nil {
				for _, m := range mf.Metric {
					if v := m.GetCounter().GetValue(); v != 0 {
						fmt.Fprintf(&b, "%s%v %v\n", name, m.Label, v)
					}
				}
			}
		}
	}
	for _, ns := range []string{e.In1, e.Out, e.Box} {
		out, _ := lab.Exec(ns, "nstat", "-az", "UdpRcvbufErrors", "UdpInErrors", "UdpNoPorts", "UdpInDatagrams", "UdpOutDatagrams")
		fmt.Fprintf(&b, "%s:\n%s", ns, out)
	}
	out, _ := lab.Exec(e.Box, "ip", "-s", "link")
	b.WriteString(out)
	return b.String()
}

func checkInterfacesClean(t *testing.T, e *natdlab.Env) {
	t.Helper()
	for _, dev := range []string{lab.NATInside, lab.NATOutside} {
		out, err := lab.Exec(e.Box, "ip", "-d", "link", "show", dev)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "xdp") {
			t.Fatalf("%s still has an XDP program after natd stopped:\n%s", dev, out)
		}
	}
	out, _ := lab.Exec(e.Box, "ip", "-4", "addr", "show", lab.NATOutside)
	if strings.Contains(out, natdlab.PoolAddr.String()) {
		t.Fatalf("pool address left on %s:\n%s", lab.NATOutside, out)
	}
	if !strings.Contains(out, "198.18.0.1/24") {
		t.Fatalf("the outside interface lost its own address:\n%s", out)
	}
}

// TestE2EIperf3 runs iperf3 TCP through the NAT for 5 s: the transfer
// completes, throughput is reported, and the receiver counts no checksum
// errors.
func TestE2EIperf3(t *testing.T) {
	lab.RequireTools(t, "iperf3")
	e := startEnv(t, natdlab.Options{})
	startIperf3(t, e)
	before, _ := natdlab.Nstat(e.Out, "TcpInCsumErrors", "IpExtInCsumErrors")
	r := iperf3Through(t, e, 5)
	t.Logf("iperf3 TCP through natd: %.1f Mbit/s, %d bytes received", r.BitsPerSecond/1e6, r.Bytes)
	after, _ := natdlab.Nstat(e.Out, "TcpInCsumErrors", "IpExtInCsumErrors")
	for k := range after {
		if after[k] != before[k] {
			t.Fatalf("receiver counted %s: %d -> %d", k, before[k], after[k])
		}
	}
}

// TestE2E10kUDPFlows opens 10,000 UDP flows from distinct source ports;
// every one must be answered.
func TestE2E10kUDPFlows(t *testing.T) {
	e := startEnv(t, natdlab.Options{})
	// Let the NAT learn the server's MAC first: this test is about flows,
	// not about the frames that wait for (or overflow) an unresolved
	// neighbour, which TestPendingNeighbour covers.
	if _, err := natdlab.Ping(e.In1, natdlab.Server, 1); err != nil {
		t.Fatal(err)
	}
	answered, srcs, err := natdlab.UDPExchange(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 9000), natdlab.In1, 10000, 20000)
	if err != nil {
		t.Fatal(err)
	}
	if answered != 10000 {
		t.Fatalf("%d of 10000 flows answered\n%s", answered, diagnose(e))
	}
	if len(srcs) != 10000 {
		t.Fatalf("server saw %d distinct sources for 10000 flows", len(srcs))
	}
}

// TestE2EPortExhaustion gives the pool four UDP ports: four flows work,
// later ones are refused and counted, and the first four keep working.
func TestE2EPortExhaustion(t *testing.T) {
	e := startEnv(t, natdlab.Options{Config: natdlab.ConfigParams{PortsUDP: "40000-40003"}})
	natdlab.EchoUDP(t, e.Out, netip.AddrPortFrom(natdlab.Server, 9100))
	var ok []*natdlab.UDPFlow
	for i := 0; i < 4; i++ {
		f := natdlab.MustUDPFlow(t, e.In1, natdlab.In1, netip.AddrPortFrom(natdlab.Server, 9100))
		if !f.RoundTrip("first") {
			t.Fatalf("flow %d not answered with ports free", i)
		}
		ok = append(ok, f)
	}
	for i := 0; i < 3; i++ {
		f := natdlab.MustUDPFlow(t, e.In1, natdlab.In1, netip.AddrPortFrom(natdlab.Server, 9100))
		if f.RoundTrip("refused") {
			t.Fatalf("flow %d answered with the four ports taken", 4+i)
		}
	}
	for i, f := range ok {
		if !f.RoundTrip("again") {
			t.Fatalf("established flow %d broke when the pool ran out", i)
		}
	}
	mfs, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	if n := metric(t, mfs, "xnat_dropped_packets_total", "reason", "port_exhausted"); n < 3 {
		t.Fatalf("port_exhausted drops %v, want >= 3", n)
	}
	if n := metric(t, mfs, "xnat_port_alloc_failures_total"); n < 3 {
		t.Fatalf("port allocation failures %v", n)
	}
}

// TestE2ELinkFlap takes the outside link down and up while traffic flows:
// natd neither crashes nor needs a restart.
func TestE2ELinkFlap(t *testing.T) {
	e := startEnv(t, natdlab.Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			natdlab.Ping(e.In1, natdlab.Server, 1)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		if err := lab.SetLink(e.Box, lab.NATOutside, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if err := lab.SetLink(e.Box, lab.NATOutside, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if !e.Running() {
		t.Fatal("natd exited during the link flaps")
	}
	// Forwarding resumes without a restart.
	var out string
	if !wait.For(10*time.Second, func() bool {
		var err error
		out, err = natdlab.Ping(e.In1, natdlab.Server, 2)
		return err == nil && strings.Contains(out, " 0% packet loss")
	}) {
		t.Fatalf("no recovery after the link came back:\n%s", out)
	}
	if _, _, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7002)); err != nil {
		t.Fatalf("TCP after the flaps: %v", err)
	}
}

// TestE2EReloadUnderTraffic reloads the configuration with SIGHUP while a
// TCP connection is open: the connection survives, and the new pool takes
// new subscribers.
func TestE2EReloadUnderTraffic(t *testing.T) {
	e := startEnv(t, natdlab.Options{})
	conn, seen, err := natdlab.OpenEcho(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7100))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if seen.Addr() != natdlab.PoolAddr {
		t.Fatalf("connection from %v", seen)
	}
	var sent atomic.Int64
	stop := make(chan struct{})
	errCh := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		for i := 0; ; i++ {
			select {
			case <-stop:
				errCh <- nil
				return
			default:
			}
			msg := fmt.Sprintf("msg %06d\n", i)
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Write([]byte(msg)); err != nil {
				errCh <- err
				return
			}
			if _, err := readFull(conn, buf[:len(msg)]); err != nil || string(buf[:len(msg)]) != msg {
				errCh <- fmt.Errorf("echo %d: %v", i, err)
				return
			}
			sent.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// waitSent waits until the echo loop has completed more than n
	// round trips.
	waitSent := func(n int64, what string) {
		t.Helper()
		if !wait.For(15*time.Second, func() bool { return sent.Load() > n }) {
			t.Fatalf("%s: %d echoes, want more than %d", what, sent.Load(), n)
		}
	}
	waitSent(10, "before the reload")
	// New config: a second pool address (via a rewritten file) and a
	// longer UDP timeout.
	cfg, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	newCfg := strings.Replace(string(cfg), "addresses: [198.18.0.100/32]", "addresses: [198.18.0.100/32, 198.18.0.101/32]", 1)
	// And a section natd reads only at start: it must say it ignores it.
	newCfg = strings.Replace(newCfg, "poll_mode: adaptive", "poll_mode: busy", 1)
	if !strings.Contains(newCfg, "198.18.0.101") || !strings.Contains(newCfg, "poll_mode: busy") {
		t.Fatalf("config rewrite did not apply:\n%s", newCfg)
	}
	if err := os.WriteFile(e.ConfigPath, []byte(newCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	before := sent.Load()
	if err := e.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"reloaded", "section=poll_mode old=adaptive new=busy"} {
		e.WaitLog(t, want)
	}
	// Traffic crosses the reload: more echoes complete after natd said
	// it reloaded than had before the signal.
	waitSent(max(before, sent.Load())+10, "after the reload")
	close(stop)
	if err := <-errCh; err != nil {
		t.Fatalf("established connection broke across the reload: %v", err)
	}
	out, _ := lab.Exec(e.Box, "ip", "-4", "addr", "show", lab.NATOutside)
	if !strings.Contains(out, "198.18.0.101") {
		t.Fatalf("new pool address not on the outside link:\n%s", out)
	}
	// An invalid file is refused and changes nothing.
	os.WriteFile(e.ConfigPath, []byte(strings.Replace(newCfg, "inside_prefixes: [10.0.0.0/24]", "inside_prefixes: [bogus]", 1)), 0o644)
	e.Signal(syscall.SIGHUP)
	e.WaitLog(t, "reload refused")
	if !e.Running() {
		t.Fatalf("natd stopped after a refused reload:\n%s", e.Log())
	}
	if _, _, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7003)); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
}

func readFull(c interface{ Read([]byte) (int, error) }, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestE2EKillAndRestart: after SIGKILL the kernel handles traffic again
// (the XDP program passes what no socket takes), and the next natd
// replaces the stale program cleanly.
func TestE2EKillAndRestart(t *testing.T) {
	e := startEnv(t, natdlab.Options{})
	if _, _, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7004)); err != nil {
		t.Fatal(err)
	}
	e.Stop(syscall.SIGKILL, 5*time.Second)
	// The stale program is still attached, but with no socket bound the
	// box's own addresses answer through the kernel again.
	if out, err := natdlab.Ping(e.Out, lab.OutsideGW.Addr(), 2); err != nil {
		t.Fatalf("kernel fallback after SIGKILL: %v\n%s", err, out)
	}
	if out, err := natdlab.Ping(e.In1, lab.InsideGW.Addr(), 2); err != nil {
		t.Fatalf("kernel fallback after SIGKILL (inside): %v\n%s", err, out)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("restart after SIGKILL: %v", err)
	}
	if _, seen, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7005)); err != nil || seen.Addr() != natdlab.PoolAddr {
		t.Fatalf("after restart: %v (seen %v)", err, seen)
	}
	if err := e.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	checkInterfacesClean(t, e)
}

// TestE2EMultiQueue runs two workers on two-queue veths: flows spread over
// both queues, and every flow's replies find their session whichever queue
// they arrive on.
func TestE2EMultiQueue(t *testing.T) {
	e := startEnv(t, natdlab.Options{Queues: 2})
	answered, _, err := natdlab.UDPExchange(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 9200), natdlab.In1, 2000)
	if err != nil || answered != 2000 {
		t.Fatalf("%d of 2000 answered (%v)", answered, err)
	}
	for i := 0; i < 20; i++ {
		if _, _, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, uint16(7200+i))); err != nil {
			t.Fatalf("TCP %d: %v", i, err)
		}
	}
	mfs, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	for q := 0; q < 2; q++ {
		for _, dev := range []string{lab.NATInside, lab.NATOutside} {
			n := metric(t, mfs, "xnat_rx_packets_total", "interface", dev, "queue", strconv.Itoa(q))
			t.Logf("%s queue %d: %v packets", dev, q, n)
			if n == 0 {
				t.Errorf("%s queue %d received nothing: traffic did not spread", dev, q)
			}
		}
	}
}

// TestE2EIdleAdaptive checks that an idle adaptive worker sleeps: its poll
// count grows by at most a few hundred per second (a spinning worker makes
// millions), and reports the CPU natd used while idle.
func TestE2EIdleAdaptive(t *testing.T) {
	e := startEnv(t, natdlab.Options{})
	c, err := e.Client(true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	polls := func() uint64 {
		st, err := c.GetStats(ctx, &xnatv1.GetStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st.GetStats().GetWorkers()[0].GetPolls()
	}
	time.Sleep(500 * time.Millisecond)
	pid := natdPID(t, e)
	cpu0 := procCPU(t, pid)
	p0, t0 := polls(), time.Now()
	time.Sleep(3 * time.Second)
	p1, t1 := polls(), time.Now()
	cpu1 := procCPU(t, pid)
	rate := float64(p1-p0) / t1.Sub(t0).Seconds()
	cpuPct := 100 * (cpu1 - cpu0).Seconds() / t1.Sub(t0).Seconds()
	t.Logf("idle adaptive natd: %.0f polls/s, %.2f%% of one CPU", rate, cpuPct)
	if rate > 5000 {
		t.Fatalf("idle adaptive worker polled %.0f times per second: it is spinning", rate)
	}
}

func natdPID(t *testing.T, e *natdlab.Env) int {
	out, err := exec.Command("pgrep", "-f", "natd --config "+e.ConfigPath).Output()
	if err != nil {
		t.Fatalf("pgrep natd: %v", err)
	}
	f := strings.Fields(string(out))
	pid, _ := strconv.Atoi(f[len(f)-1])
	return pid
}

// procCPU is the user+system CPU time of pid.
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// TestE2ENatctlAndMetrics drives natd in the lab with the natctl binary
// (the operator's view) and checks natd's /metrics against traffic of
// known size.
func TestE2ENatctlAndMetrics(t *testing.T) {
	e := startEnv(t, natdlab.Options{})
	_, natctl := binaries(t)
	run := func(socket string, args ...string) (string, int) {
		cmd := exec.Command(natctl, append([]string{"--socket", socket}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}

	// Known traffic: 50 UDP datagrams of one flow, answered.
	if _, err := natdlab.Ping(e.In1, natdlab.Server, 1); err != nil {
		t.Fatal(err)
	}
	before, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	natdlab.EchoUDP(t, e.Out, netip.AddrPortFrom(natdlab.Server, 9300))
	flow := natdlab.MustUDPFlow(t, e.In1, natdlab.In1, netip.AddrPortFrom(natdlab.Server, 9300))
	for i := 0; i < 50; i++ {
		if !flow.RoundTrip(fmt.Sprintf("known %02d", i)) {
			t.Fatalf("datagram %d not answered", i)
		}
	}
	// Counters are published per burst and at idle, so the last frame's
	// may come a moment after its reply: wait for the four packet counts
	// (which only grow) to reach the 50 frames, then judge that scrape.
	var after map[string]*dto.MetricFamily
	delta := func(name string, labels ...string) float64 {
		return metric(t, after, name, labels...) - metric(t, before, name, labels...)
	}
	if !wait.For(10*time.Second, func() bool {
		if after, err = e.Scrape(); err != nil {
			t.Fatal(err)
		}
		for _, c := range [][]string{{"xnat_rx_packets_total", lab.NATInside}, {"xnat_tx_packets_total", lab.NATOutside},
			{"xnat_rx_packets_total", lab.NATOutside}, {"xnat_tx_packets_total", lab.NATInside}} {
			if delta(c[0], "interface", c[1]) < 50 {
				return false
			}
		}
		return true
	}) {
		t.Errorf("the packet counters did not reach the 50 frames in 10 s")
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"xnat_rx_packets_total", []string{"interface", lab.NATInside}, 50},
		{"xnat_tx_packets_total", []string{"interface", lab.NATOutside}, 50},
		{"xnat_rx_packets_total", []string{"interface", lab.NATOutside}, 50},
		{"xnat_tx_packets_total", []string{"interface", lab.NATInside}, 50},
		// 8-byte payload: 14 + 20 + 8 + 8 = 50 bytes per frame.
		{"xnat_rx_bytes_total", []string{"interface", lab.NATInside}, 50 * 50},
		{"xnat_sessions_created_total", []string{"protocol", "udp"}, 1},
		{"xnat_dropped_packets_total", nil, 0},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v grew by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := metric(t, after, "xnat_sessions", "protocol", "udp"); got < 1 {
		t.Errorf("xnat_sessions{udp} = %v", got)
	}
	if metric(t, after, "xnat_build_info") != 1 {
		t.Error("xnat_build_info missing")
	}

	// natctl: status, sessions as JSON, rules, pools, read-only refusal.
	out, code := run(e.Socket, "status")
	if code != 0 || !strings.Contains(out, lab.NATInside) || !strings.Contains(out, natdlab.PoolAddr.String()) {
		t.Fatalf("natctl status (exit %d):\n%s", code, out)
	}
	out, code = run(e.ROSocket, "sessions", "--proto", "udp", "--inside", natdlab.In1.String(), "-o", "json")
	if code != 0 {
		t.Fatalf("natctl sessions (exit %d):\n%s", code, out)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var s struct {
			Protocol string `json:"protocol"`
			Inside   string `json:"inside"`
			Outside  string `json:"outside"`
			Remote   string `json:"remote"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("sessions -o json line %q: %v", line, err)
		}
		if s.Protocol == "udp" && strings.HasSuffix(s.Remote, ":9300") && strings.HasPrefix(s.Outside, natdlab.PoolAddr.String()+":") {
			found = true
		}
	}
	if !found {
		t.Fatalf("the known flow is not in natctl sessions -o json:\n%s", out)
	}
	if out, code = run(e.Socket, "rules", "add", "forward", "udp", "198.18.0.100:5353", "10.0.0.3:53"); code != 0 {
		t.Fatalf("rules add (exit %d):\n%s", code, out)
	}
	out, code = run(e.Socket, "rules", "list", "-o", "json")
	if code != 0 || !strings.Contains(out, "198.18.0.100:5353") {
		t.Fatalf("rules list (exit %d):\n%s", code, out)
	}
	// A conflicting rule is refused by natd (exit 4), nothing changes.
	if out, code = run(e.Socket, "rules", "add", "forward", "udp", "198.18.0.100:5353", "10.0.0.2:53"); code != 4 {
		t.Fatalf("conflicting rule: exit %d, want 4:\n%s", code, out)
	}
	// The read-only socket refuses changes.
	if out, code = run(e.ROSocket, "rules", "del", "forward", "udp", "198.18.0.100:5353"); code != 4 || !strings.Contains(strings.ToLower(out), "read-only") {
		t.Fatalf("delete through the read-only socket: exit %d:\n%s", code, out)
	}
	if out, code = run(e.Socket, "rules", "del", "forward", "udp", "198.18.0.100:5353"); code != 0 {
		t.Fatalf("rules del (exit %d):\n%s", code, out)
	}
	out, code = run(e.Socket, "pools", "list")
	if code != 0 || !strings.Contains(out, "lab") {
		t.Fatalf("pools list (exit %d):\n%s", code, out)
	}
	// natd not reachable: exit 3 and a clear message.
	out, code = run(filepath.Join(e.Dir, "nope.sock"), "status")
	if code != 3 || !strings.Contains(out, "natd") {
		t.Fatalf("unreachable natd: exit %d:\n%s", code, out)
	}
}
