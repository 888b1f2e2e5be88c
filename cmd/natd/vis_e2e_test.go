package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/internal/wait"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

// natctlRun runs natctl against a lab natd and returns its output.
func natctlRun(t *testing.T, sock string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	_, natctl := binaries(t)
	cmd := exec.Command(natctl, append([]string{"--socket", sock}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// natctlStart starts a long-running natctl (capture, trace) writing stdout
// to out, and waits until it says that natd runs the session ("natctl:
// capturing", "natctl: tracing"): packets sent from then on are seen.
func natctlStart(t *testing.T, e *natdlab.Env, out io.Writer, args ...string) (cmd *exec.Cmd, stderr *lab.LogBuffer) {
	t.Helper()
	_, natctl := binaries(t)
	cmd = exec.Command(natctl, append([]string{"--socket", e.Socket}, args...)...)
	stderr = &lab.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !wait.For(15*time.Second, func() bool {
		s := stderr.String()
		return strings.Contains(s, "natctl: capturing") || strings.Contains(s, "natctl: tracing")
	}) {
		t.Fatalf("natctl %v never started; stderr %s; natd log:\n%s", args, stderr, e.Log())
	}
	return cmd, stderr
}

// waitCmd waits for a natctl started by natctlStart to exit on its own.
func waitCmd(t *testing.T, cmd *exec.Cmd, stderr *lab.LogBuffer) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("natctl: %v\n%s", err, stderr)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("natctl did not finish; stderr %s", stderr)
	}
}

// checkChecksums verifies a captured frame's IPv4 and TCP checksums.
func checkChecksums(t *testing.T, f []byte) (ip *layers.IPv4, tcp *layers.TCP) {
	t.Helper()
	pk := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ = pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ = pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil {
		t.Fatalf("captured frame is not TCP/IPv4: %x", f)
	}
	if checksum.Checksum(ip.Contents, 0) != 0xffff {
		t.Fatalf("bad IPv4 header checksum: %x", f)
	}
	l4 := ip.Payload
	ps := checksum.PseudoHeaderSum([4]byte(ip.SrcIP.To4()), [4]byte(ip.DstIP.To4()), 6, uint16(len(l4)))
	if checksum.Checksum(l4, ps) != 0xffff {
		t.Fatalf("bad TCP checksum: %x", f)
	}
	return ip, tcp
}

// tcpdumpOn runs tcpdump on dev in namespace ns and returns a function
// that stops it and returns the packets the kernel passed to its filter.
func tcpdumpOn(t *testing.T, ns, dev, filter, file string) (stop func() int) {
	t.Helper()
	cmd := lab.Command(ns, "tcpdump", "-Z", "root", "--immediate-mode", "-i", dev, "-n", "-w", file, filter)
	var stderr lab.LogBuffer // tcpdump writes it while we wait for "listening on"
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !wait.For(10*time.Second, func() bool { return strings.Contains(stderr.String(), "listening on") }) {
		t.Fatalf("tcpdump -i %s in %s did not start: %s", dev, ns, stderr.String())
	}
	return func() int {
		t.Helper()
		// SIGINT makes tcpdump flush and exit; "ip netns exec" passes
		// the signal on by exec'ing tcpdump in place.
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
		}
		// What the kernel handed to tcpdump's filter, whether or not
		// tcpdump had read it yet.
		var n int
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.HasSuffix(l, " packets received by filter") {
				if _, err := fmt.Sscanf(l, "%d", &n); err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
		t.Fatalf("tcpdump -i %s in %s printed no statistics: %s", dev, ns, stderr.String())
		return 0
	}
}

// TestE2EVisibility runs natctl capture, explain, trace and drops against
// natd in the lab: a capture of a TCP hello read back with gopacket and
// tshark, while tcpdump on the NAT's own interfaces sees none of it (the
// claim docs/troubleshooting.md makes: the XDP program redirects the
// traffic to AF_XDP sockets before the kernel's packet taps, and natd
// transmits through them, past the taps again; tcpdump on the hosts' side
// of the same veths, a control, sees it); the full-cone STUN check that address-dependent filtering
// refuses, explained before it happens, traced as it happens, and found
// in the drop samples after.
func TestE2EVisibility(t *testing.T) {
	lab.RequireTools(t, "tshark", "tcpdump")
	e := startEnv(t, natdlab.Options{Config: natdlab.ConfigParams{Extra: "  filtering:\n    udp: address-dependent\n"}})
	in1, pool, server, far := natdlab.In1.String(), natdlab.PoolAddr.String(), natdlab.Server.String(), natdlab.Far.String()

	// 1. Capture a TCP hello: SYN and SYN-ACK, each as arrived and as left;
	// tcpdump listens on the NAT's interfaces and, as a control, on in1's.
	dir := t.TempDir()
	dumps := []func() int{
		tcpdumpOn(t, e.In1, lab.HostDev, "tcp port 7000", filepath.Join(dir, "in1.pcap")),
		tcpdumpOn(t, e.Box, lab.NATInside, "tcp port 7000", filepath.Join(dir, "nat-in.pcap")),
		tcpdumpOn(t, e.Box, lab.NATOutside, "tcp port 7000", filepath.Join(dir, "nat-out.pcap")),
	}
	out := &lab.LogBuffer{}
	cmd, errb := natctlStart(t, e, out, "capture", "-w", "-", "--inside", in1, "--proto", "tcp", "--port", "7000", "-c", "4", "--duration", "60s")
	if _, seen, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7000)); err != nil || seen.Addr() != natdlab.PoolAddr {
		t.Fatalf("TCP hello: %v (seen %v)", err, seen)
	}
	waitCmd(t, cmd, errb)
	// The control first: once it had the packets, the NAT's taps had
	// their chance too.
	nHost, nIn, nOut := dumps[0](), dumps[1](), dumps[2]()
	t.Logf("tcpdump during a TCP hello through natd: in1's eth0 %d packets, the NAT's nat-in %d, nat-out %d", nHost, nIn, nOut)
	if nHost < 4 { // SYN, SYN-ACK, ACK and the greeting at least
		t.Fatalf("the control tcpdump on in1 saw %d packets of the TCP hello", nHost)
	}
	if nIn != 0 || nOut != 0 {
		t.Fatalf("tcpdump on the NAT's interfaces saw %d (nat-in) and %d (nat-out) of the forwarded packets; docs/troubleshooting.md says none", nIn, nOut)
	}
	type seenFrame struct {
		ifc        int
		src, dst   string
		sport, dpt uint16
		syn, ack   bool
	}
	pcap := []byte(out.String())
	var frames []seenFrame
	for _, f := range mgmttest.ReadPcapng(t, pcap) {
		ip, tcp := checkChecksums(t, f.Data)
		frames = append(frames, seenFrame{f.Interface, ip.SrcIP.String(), ip.DstIP.String(), uint16(tcp.SrcPort), uint16(tcp.DstPort), tcp.SYN, tcp.ACK})
	}
	if len(frames) != 4 {
		t.Fatalf("%d frames in the capture, want 4: %+v", len(frames), frames)
	}
	// SYN in on the inside from in1, out on the outside from the pool
	// address; SYN-ACK in on the outside to the pool, out to in1.
	syn, synOut, synack, synackOut := frames[0], frames[1], frames[2], frames[3]
	if syn.ifc != 0 || syn.src != in1 || !syn.syn || syn.ack ||
		synOut.ifc != 1 || synOut.src != pool || synOut.dst != server || synOut.dpt != 7000 || synOut.sport != syn.sport ||
		synack.ifc != 1 || synack.dst != pool || !synack.ack || synackOut.ifc != 0 || synackOut.dst != in1 || synackOut.dpt != syn.sport {
		t.Fatalf("captured %+v", frames)
	}
	// tshark reads the same bytes from a pipe, with checksum validation
	// on, and sees the interfaces, directions and comments.
	ts := exec.Command("tshark", "-r", "-", "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-T", "fields",
		"-e", "frame.interface_name", "-e", "frame.packet_flags_direction", "-e", "frame.comment",
		"-e", "ip.src", "-e", "ip.checksum.status", "-e", "tcp.checksum.status")
	ts.Stdin = bytes.NewReader(pcap)
	tout, err := ts.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(tout)), "\n")
	want := []string{
		fmt.Sprintf("xnat-inside\t0x00000001\tworker 0 rx packet %%d\t%s\t1\t1", in1),
		fmt.Sprintf("xnat-outside\t0x00000002\tworker 0 tx packet %%d\t%s\t1\t1", pool),
		fmt.Sprintf("xnat-outside\t0x00000001\tworker 0 rx packet %%d\t%s\t1\t1", server),
		fmt.Sprintf("xnat-inside\t0x00000002\tworker 0 tx packet %%d\t%s\t1\t1", server),
	}
	if len(lines) != 4 {
		t.Fatalf("tshark printed:\n%s", tout)
	}
	for i, l := range lines {
		var n int
		if _, err := fmt.Sscanf(strings.SplitN(strings.Split(l, "\t")[2], "packet ", 2)[1], "%d", &n); err != nil || l != fmt.Sprintf(want[i], n) {
			t.Fatalf("tshark line %d: %q, want %q", i, l, fmt.Sprintf(want[i], n))
		}
	}

	// 2. The STUN check. in1:40000 sends a binding request to the server,
	// which answers: a mapping, port kept.
	c, err := natdlab.ListenUDP(e.In1, netip.MustParseAddrPort(in1+":40000"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	natdlab.EchoUDP(t, e.Out, netip.MustParseAddrPort(server+":3478"))
	o, _, code := natctlRun(t, e.ROSocket, "explain", "--side", "inside", "udp", in1+":40000", server+":3478")
	if code != 0 || !strings.Contains(o, "new endpoint-independent mapping") || !strings.Contains(o, "40000 kept (RFC 4787 REQ-3") {
		t.Fatalf("explain before the binding request (exit %d):\n%s", code, o)
	}
	if _, err := c.WriteToUDPAddrPort([]byte("binding request"), netip.MustParseAddrPort(server+":3478")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
		t.Fatalf("no binding response: %v", err)
	}
	// The "change address" test: the server's other address (the far
	// host) sends to the mapped address. Explain says it will be filtered.
	mapped := pool + ":40000"
	o, _, code = natctlRun(t, e.ROSocket, "explain", "--side", "outside", "udp", far+":3479", mapped)
	if code != 0 || !strings.Contains(o, ": filtered") || !strings.Contains(o, "address-dependent filtering and no permission for "+far) {
		t.Fatalf("explain of the far host's packet (exit %d):\n%s", code, o)
	}
	// Trace it as it happens.
	out = &lab.LogBuffer{}
	cmd, errb = natctlStart(t, e, out, "trace", "-n", "1", "--outside", far, "--proto", "udp", "--timeout", "60s")
	fc, err := natdlab.ListenUDP(e.Far, netip.MustParseAddrPort(far+":3479"))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if _, err := fc.WriteToUDPAddrPort([]byte("binding response from the other address"), netip.MustParseAddrPort(mapped)); err != nil {
		t.Fatal(err)
	}
	waitCmd(t, cmd, errb)
	trace := out.String()
	if !strings.Contains(trace, "filtered, address-dependent filtering and no permission for "+far) || !strings.Contains(trace, "drop      dropped: filtered") {
		t.Fatalf("trace:\n%s", trace)
	}
	t.Logf("trace:\n%s", trace)
	// The drop is sampled.
	o, _, code = natctlRun(t, e.ROSocket, "drops", "--interval", "200ms")
	if code != 0 || !strings.Contains(o, "filtered") || !strings.Contains(o, far+":3479 -> "+mapped) {
		t.Fatalf("drops (exit %d):\n%s", code, o)
	}
	// Capture and trace need the admin socket.
	_, se, code := natctlRun(t, e.ROSocket, "trace", "-n", "1", "--timeout", "1s")
	if code != 4 || !strings.Contains(se, "permission denied") {
		t.Fatalf("trace on the read-only socket: exit %d, %s", code, se)
	}
	// Every session was audited with its request, at start and end.
	for _, m := range []string{"Capture", "Trace"} {
		var start, end bool
		for _, l := range strings.Split(e.Log(), "\n") {
			if strings.Contains(l, "msg=audit") && strings.Contains(l, "method="+m) && strings.Contains(l, "inside") || strings.Contains(l, "outside") {
				start = start || strings.Contains(l, "result=started")
				end = end || strings.Contains(l, "result=OK")
			}
		}
		if !start || !end {
			t.Fatalf("%s not audited at start and end:\n%s", m, e.Log())
		}
	}
}

// TestE2ECaptureBounded leaves a capture of everything running while
// iperf3 pushes TCP through natd as fast as it can, and natctl's reader
// stalls (nobody reads its pipe): natd's memory stays put, forwarding goes
// on, and the frames the full rings could not take are counted.
func TestE2ECaptureBounded(t *testing.T) {
	lab.RequireTools(t, "iperf3")
	e := startEnv(t, natdlab.Options{})
	startIperf3(t, e)
	iperf := func() (mbps float64) {
		t.Helper()
		return iperf3Through(t, e, 3).BitsPerSecond / 1e6
	}
	// A reference run without capture (reported, not compared: the
	// machine is shared).
	ref := iperf()

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd, stderr := natctlStart(t, e, pw, "capture", "-w", "-", "--ring", "256", "--duration", "6s")
	pw.Close()
	pid := natdPID(t, e)
	rss0, heap0 := vmRSS(t, pid), heapInuse(t, e)
	mbps := iperf()
	rss1, heap1 := vmRSS(t, pid), heapInuse(t, e)
	t.Logf("iperf3 TCP through natd: %.1f Mbit/s without capture, %.1f Mbit/s with a stalled capture of everything; natd RSS %.1f -> %.1f MiB, Go heap %.1f -> %.1f MiB",
		ref, mbps, rss0/mib, rss1/mib, heap0/mib, heap1/mib)
	if rss1-rss0 > 16*mib || heap1-heap0 > 16*mib {
		t.Fatalf("natd grew during the capture: RSS %.1f -> %.1f MiB, heap %.1f -> %.1f MiB", rss0/mib, rss1/mib, heap0/mib, heap1/mib)
	}
	// Read the pipe now: natctl gets the rest and reports the overflow.
	go io.Copy(io.Discard, pr)
	waitCmd(t, cmd, stderr)
	var frames, lost uint64
	summary := stderr.String()
	summary = summary[strings.LastIndex(strings.TrimSpace(summary), "\n")+1:]
	if _, err := fmt.Sscanf(strings.TrimPrefix(summary, "natctl: "), "%d frames captured, %d lost", &frames, &lost); err != nil || lost == 0 {
		t.Fatalf("natctl's summary %q: want frames lost to the full rings counted (%v)", stderr.String(), err)
	}
	t.Logf("natctl: %d frames captured, %d lost to full rings", frames, lost)
}
