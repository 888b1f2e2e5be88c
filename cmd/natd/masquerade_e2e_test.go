package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
	"github.com/xnat/xnat/internal/wait"
)

// Masquerade end-to-end tests: natd's pool is the outside interface's own
// address (198.18.0.1, lab.OutsideGW), as on a home router. The box's own
// traffic on that address must keep working while natd translates the
// inside's, exactly as with nftables masquerade (the parity test runs the
// same checks against both).

var boxOut = natdlab.BoxAddr // the box's outside address, the pool

const masqPorts = natdlab.MasqueradePorts

// startMasq starts natd in the lab with natdlab's masquerade configuration
// (an interface pool, a port forward on the interface's address, MSS
// clamping). before runs after the lab is built, before natd starts. It
// returns the events file.
func startMasq(t *testing.T, before func(*natdlab.Env)) (*natdlab.Env, string) {
	t.Helper()
	e := newEnv(t, natdlab.Options{})
	if err := e.UseConfig(e.MasqueradeConfig("")); err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(e)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, e.EventsFile()
}

// boxChecks is the box's own traffic on its outside address, and the
// inside reaching the box: what a home router must keep doing with any NAT.
func boxChecks(t *testing.T, n *lab.NAT) {
	t.Helper()
	server := natdlab.Server
	// 1. A TCP service on the box at its outside address, from outside.
	if _, seen, err := natdlab.TCPHelloVia(n.Out, n.Box, netip.AddrPortFrom(boxOut, 2222), netip.AddrPortFrom(boxOut, 2222)); err != nil || seen.Addr() != server {
		t.Fatalf("outside -> box TCP service at %s:2222: %v (seen %v)", boxOut, err, seen)
	}
	// 2. A TCP client on the box to an outside server, from that address.
	if _, seen, err := natdlab.TCPHelloVia(n.Box, n.Out, netip.AddrPortFrom(server, 7100), netip.AddrPortFrom(server, 7100)); err != nil || seen.Addr() != boxOut {
		t.Fatalf("box TCP client -> outside server: %v (server saw %v, want %v)", err, seen, boxOut)
	}
	// 3. A UDP client on the box (DNS, NTP), several source ports.
	if answered, srcs, err := natdlab.UDPExchange(n.Box, n.Out, netip.AddrPortFrom(server, 7101), boxOut, 8); err != nil || answered != 8 {
		t.Fatalf("box UDP client -> outside server: %d of 8 answered (%v)", answered, err)
	} else {
		for s := range srcs {
			if s.Addr() != boxOut {
				t.Fatalf("box UDP seen from %v", s)
			}
		}
	}
	// 4. Ping from the box (identifier outside the NAT's ICMP range; see
	// docs/natd.md) and to the box.
	if out, err := natdlab.Ping(n.Box, server, 2, "-e", "4242"); err != nil || !strings.Contains(out, "2 received") {
		t.Fatalf("ping from the box: %v\n%s", err, out)
	}
	if out, err := natdlab.Ping(n.Out, boxOut, 2); err != nil || !strings.Contains(out, "2 received") {
		t.Fatalf("ping to the box's outside address: %v\n%s", err, out)
	}
	// An ICMP error about the box's own datagram reaches the box's socket.
	udpRefused(t, n.Box, netip.AddrPortFrom(server, 9))
	// 5. Inside hosts reach the box's inside and outside addresses (a web
	// UI, DNS forwarder, a service on the public address).
	for _, a := range []netip.Addr{lab.InsideGW.Addr(), boxOut} {
		if _, seen, err := natdlab.TCPHelloVia(n.In1, n.Box, netip.AddrPortFrom(a, 2223), netip.AddrPortFrom(a, 2223)); err != nil || seen.Addr() != natdlab.In1 {
			t.Fatalf("inside -> box TCP service at %s: %v (seen %v)", a, err, seen)
		}
		if out, err := natdlab.Ping(n.In1, a, 2); err != nil || !strings.Contains(out, "2 received") {
			t.Fatalf("inside ping to the box at %s: %v\n%s", a, err, out)
		}
	}
}

// udpRefused sends a datagram from a connected UDP socket in ns to a port
// nobody listens on and reports whether the ICMP Port Unreachable came
// back to the socket (as ECONNREFUSED). Through the NAT the error quotes
// the NAT's port and must go to natd; for the box's own socket it quotes
// a kernel port and must go to the kernel.
func udpRefused(t *testing.T, ns string, dst netip.AddrPort) {
	t.Helper()
	var c net.Conn
	if err := lab.Do(ns, func() error {
		var err error
		c, err = net.Dial("udp", dst.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 16)
	for i := 0; i < 3; i++ {
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
	}
	t.Fatalf("%s: no ICMP Port Unreachable from %s reached the socket", ns, dst)
}

// translatedChecks is the NAT's own job on the box's address.
func translatedChecks(t *testing.T, n *lab.NAT, forward bool) {
	t.Helper()
	_, seen, err := natdlab.TCPHello(n.In1, n.Out, netip.AddrPortFrom(natdlab.Server, 7000))
	if err != nil || seen.Addr() != boxOut {
		t.Fatalf("translated TCP: %v (server saw %v)", err, seen)
	}
	answered, srcs, err := natdlab.UDPExchange(n.In1, n.Out, netip.AddrPortFrom(natdlab.Server, 7001), natdlab.In1, 10)
	if err != nil || answered != 10 {
		t.Fatalf("translated UDP: %d of 10 (%v)", answered, err)
	}
	for s := range srcs {
		if s.Addr() != boxOut {
			t.Fatalf("translated UDP seen from %v", s)
		}
	}
	if out, err := natdlab.Ping(n.In1, natdlab.Server, 3); err != nil || !strings.Contains(out, "3 received") {
		t.Fatalf("translated ping: %v\n%s", err, out)
	}
	if out, err := natdlab.TTLProbe(n.In1); err != nil {
		t.Fatalf("TTL probe: %v\n%s", err, out)
	}
	udpRefused(t, n.In1, netip.AddrPortFrom(natdlab.Server, 9))
	if !forward {
		return
	}
	fwd := netip.AddrPortFrom(boxOut, natdlab.ForwardPort)
	if _, seen, err := natdlab.TCPHelloVia(n.Out, n.In2, netip.AddrPortFrom(natdlab.In2, 80), fwd); err != nil || seen.Addr() != natdlab.Server {
		t.Fatalf("port forward on the box's address: %v (seen %v)", err, seen)
	}
	if _, seen, err := natdlab.TCPHelloVia(n.In1, n.In2, netip.AddrPortFrom(natdlab.In2, 80), fwd); err != nil || seen.Addr() != boxOut {
		t.Fatalf("hairpin to the port forward on the box's address: %v (seen %v)", err, seen)
	}
}

// TestE2EMasquerade: with natd, then with nftables masquerade in place of
// natd in an identical lab, the box keeps its own traffic on its outside
// address while the inside is translated to it.
func TestE2EMasquerade(t *testing.T) {
	t.Run("natd", func(t *testing.T) {
		e, _ := startMasq(t, nil)
		translatedChecks(t, e.NAT, true)
		boxChecks(t, e.NAT)
		// And the NAT still works after the box's own traffic.
		translatedChecks(t, e.NAT, false)
		mfs, err := e.Scrape()
		if err != nil {
			t.Fatal(err)
		}
		if hp := metric(t, mfs, "xnat_hairpinned_packets_total"); hp < 1 {
			t.Fatalf("hairpinned %v", hp)
		}
		out, _ := lab.Exec(e.Box, "sysctl", "-n", "net.ipv4.ip_local_reserved_ports")
		if !strings.Contains(out, masqPorts) {
			t.Fatalf("NAT ports not reserved from the kernel: %q", out)
		}
		if err := e.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
			t.Fatalf("natd exit: %v", err)
		}
		out, _ = lab.Exec(e.Box, "sysctl", "-n", "net.ipv4.ip_local_reserved_ports")
		if strings.TrimSpace(out) != "" {
			t.Fatalf("natd left ip_local_reserved_ports = %q", out)
		}
		checkInterfacesClean(t, e)
	})
	t.Run("nftables", func(t *testing.T) {
		n := lab.RequireNAT(t, lab.WithIPForward(), lab.WithFarHost())
		for _, argv := range [][]string{
			{"nft", "add", "table", "ip", "masq"},
			{"nft", "add", "chain", "ip", "masq", "post", "{ type nat hook postrouting priority srcnat ; }"},
			{"nft", "add", "rule", "ip", "masq", "post", "oifname", lab.NATOutside, "ip", "saddr", "10.0.0.0/24", "masquerade"},
		} {
			if out, err := lab.Exec(n.Box, argv...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		translatedChecks(t, n, false)
		boxChecks(t, n)
	})
}

// udpSource opens a new UDP socket on host ns for each probe and returns
// the source address the echo server saw (it answers with it).
type sourceEcho struct{ c *net.UDPConn }

func newSourceEcho(t *testing.T, ns string, at netip.AddrPort) *sourceEcho {
	t.Helper()
	c, err := natdlab.ListenUDP(ns, at)
	lab.CloseAtEnd(t, c, err)
	go lab.ServeUDP(c, func(_ []byte, from netip.AddrPort) []byte { return []byte(from.Addr().String()) })
	return &sourceEcho{c: c}
}

// probeSource sends one datagram from a fresh socket (a new flow) and
// returns the source the server saw, or "" on timeout.
func probeSource(ns string, server netip.AddrPort, timeout time.Duration) string {
	f, err := natdlab.ListenUDP(ns, netip.AddrPortFrom(natdlab.In1, 0))
	if err != nil {
		return ""
	}
	defer f.Close()
	f.WriteToUDPAddrPort([]byte("?"), server)
	f.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	k, _, err := f.ReadFromUDPAddrPort(buf)
	if err != nil {
		return ""
	}
	return string(buf[:k])
}

// TestE2EMasqueradeAddressChange: the outside address is replaced (ip addr
// del, ip addr add) while traffic flows. New flows leave from the new
// address within 1 s, the sessions on the old one are flushed with events,
// and natd carries on.
func TestE2EMasqueradeAddressChange(t *testing.T) {
	e, events := startMasq(t, nil)
	server := netip.AddrPortFrom(natdlab.Server, 7200)
	newSourceEcho(t, e.Out, server)
	if got := probeSource(e.In1, server, 2*time.Second); got != boxOut.String() {
		t.Fatalf("before the change the server saw %q, want %s", got, boxOut)
	}
	// Traffic that keeps flowing during the change: a long-lived flow.
	flow := natdlab.MustUDPFlow(t, e.In1, natdlab.In1, netip.AddrPortFrom(natdlab.Server, 7201))
	natdlab.EchoUDP(t, e.Out, netip.AddrPortFrom(natdlab.Server, 7201))
	if !flow.RoundTrip("before") {
		t.Fatal("long-lived flow does not work before the change")
	}
	stop := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				flow.RoundTrip(strconv.Itoa(i))
			}
		}
	}()
	defer close(stop)

	newAddr := netip.MustParseAddr("198.18.0.50")
	if out, err := lab.Exec(e.Box, "ip", "addr", "del", lab.OutsideGW.String(), "dev", lab.NATOutside); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := lab.Exec(e.Box, "ip", "addr", "add", newAddr.String()+"/24", "dev", lab.NATOutside); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	changed := time.Now()
	var took time.Duration
	for {
		got := probeSource(e.In1, server, 200*time.Millisecond)
		if got == newAddr.String() {
			took = time.Since(changed)
			break
		}
		if time.Since(changed) > 10*time.Second {
			t.Fatalf("10 s after the change new flows still leave from %q, want %s", got, newAddr)
		}
	}
	t.Logf("address change followed: the first new flow from %s answered %v after ip addr add", newAddr, took.Round(time.Millisecond))
	// The probe itself takes a round trip and a socket; 1 s is the issue's
	// bound for new flows.
	if took > time.Second {
		t.Errorf("new flows used the new address only after %v, want within 1 s", took)
	}
	// The old sessions were flushed, each with its event.
	oldDeleted := regexp.MustCompile(`"type":"session_deleted"[^\n]*"outside":"` + regexp.QuoteMeta(boxOut.String()) + `:`)
	var b []byte
	var n int
	if !wait.For(10*time.Second, func() bool {
		b, _ = os.ReadFile(events)
		n = len(oldDeleted.FindAll(b, -1))
		return n >= 2 // at least the probe's flow and the long-lived one
	}) {
		t.Fatalf("fewer than 2 session_deleted events for the old address in %s:\n%s", events, b)
	}
	t.Logf("%d session_deleted events for %s, %v after the change", n, boxOut, time.Since(changed).Round(time.Millisecond))
	if out := e.Log(); !strings.Contains(out, "address changed") {
		t.Fatalf("no log line about the change:\n%s", out)
	}
	// Traffic keeps flowing on the new address, and natd is alive.
	_, seen, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7202))
	if err != nil || seen.Addr() != newAddr {
		t.Fatalf("TCP after the change: %v (seen %v)", err, seen)
	}
	if !e.Running() {
		t.Fatal("natd exited")
	}
	// The box's own TCP service on its new address.
	if _, _, err := natdlab.TCPHelloVia(e.Out, e.Box, netip.AddrPortFrom(newAddr, 2222), netip.AddrPortFrom(newAddr, 2222)); err != nil {
		t.Fatalf("box service on the new address: %v", err)
	}
}

// TestE2EInterfaceRecreated: the outside veth is deleted and created again
// with the same name while an inside host pings through. natd re-attaches
// without a restart; forwarding resumes within 2 s of the link coming up;
// the outage is counted and logged.
func TestE2EInterfaceRecreated(t *testing.T) {
	e, _ := startMasq(t, nil)
	macs := [2]string{}
	for i, nd := range [][2]string{{e.Box, lab.NATOutside}, {e.Out, lab.HostDev}} {
		macs[i] = lab.MustLink(t, nd[0], nd[1]).MAC.String()
	}
	// ping -D prints the time of each reply; -O reports the ones missing.
	cmd := lab.Command(e.In1, "ping", "-n", "-D", "-O", "-i", "0.1", "-W", "1", natdlab.Server.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	replies := make(chan float64, 1024)
	go func() {
		re := regexp.MustCompile(`^\[(\d+\.\d+)\] \d+ bytes from`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				replies <- v
			}
		}
		close(replies)
		io.Copy(io.Discard, stdout)
	}()
	waitReply := func(after time.Time, within time.Duration) (time.Time, bool) {
		deadline := time.After(within)
		for {
			select {
			case v, ok := <-replies:
				if !ok {
					return time.Time{}, false
				}
				at := time.Unix(0, int64(v*1e9))
				if at.After(after) {
					return at, true
				}
			case <-deadline:
				return time.Time{}, false
			}
		}
	}
	if _, ok := waitReply(time.Now().Add(-time.Second), 5*time.Second); !ok {
		t.Fatal("the inside host's ping does not get through before the re-creation")
	}
	before, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	linkErrs := metric(t, before, "xnat_worker_link_errors_total")

	if out, err := lab.Exec(e.Box, "ip", "link", "del", lab.NATOutside); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond) // an outage natd must notice
	if out, err := lab.Exec(e.Box, "ip", "link", "add", lab.NATOutside, "address", macs[0], "type", "veth",
		"peer", "name", lab.HostDev, "netns", e.Out, "address", macs[1]); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, step := range []struct {
		ns   string
		argv []string
	}{
		{e.Box, []string{"ip", "addr", "add", lab.OutsideGW.String(), "dev", lab.NATOutside}},
		{e.Out, []string{"ip", "addr", "add", lab.OutAddr.String(), "dev", lab.HostDev}},
		{e.Out, []string{"ip", "link", "set", lab.HostDev, "up"}},
		{e.Box, []string{"ip", "link", "set", lab.NATOutside, "up"}},
	} {
		if step.argv[1] == "addr" {
			dev := step.argv[len(step.argv)-1]
			if err := lab.DisableOffloads(step.ns, dev); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := lab.Exec(step.ns, step.argv...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	up := time.Now()
	lab.Exec(e.Box, "ip", "route", "replace", lab.FarAddr.Masked().String(), "via", natdlab.Server.String())
	at, ok := waitReply(up, 10*time.Second)
	if !ok {
		t.Fatalf("no ping reply within 10 s of the link coming back")
	}
	resumed := at.Sub(up)
	t.Logf("forwarding resumed %v after the re-created link came up", resumed.Round(time.Millisecond))
	if resumed > 2*time.Second {
		t.Errorf("forwarding resumed only %v after the link came up, want within 2 s", resumed)
	}
	if !e.Running() {
		t.Fatal("natd exited")
	}
	after, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	if n := metric(t, after, "xnat_worker_link_errors_total"); n <= linkErrs {
		t.Fatalf("xnat_worker_link_errors_total %v -> %v: the outage was not counted", linkErrs, n)
	}
	if !strings.Contains(e.Log(), "interface re-created") {
		t.Fatalf("the re-attachment was not logged:\n%s", e.Log())
	}
	// The translated TCP and the box's own service work on the new link.
	translatedChecks(t, e.NAT, true)
	if _, _, err := natdlab.TCPHelloVia(e.Out, e.Box, netip.AddrPortFrom(boxOut, 2222), netip.AddrPortFrom(boxOut, 2222)); err != nil {
		t.Fatalf("box service after the re-creation: %v", err)
	}
}

// TestE2EMSSClamp: the box's outside link has MTU 1492 (PPPoE), both end
// hosts 1500. With mss_clamp: auto, a 10 MB download and a 10 MB upload
// with DF (Linux TCP's default) complete without a single ICMP
// Fragmentation Needed: neither the router beyond the 1492 link nor natd
// has to send one, because natd clamped both SYNs to 1492 - 40.
func TestE2EMSSClamp(t *testing.T) {
	e, _ := startMasq(t, func(e *natdlab.Env) {
		for _, nd := range [][2]string{{e.Box, lab.NATOutside}, {e.Out, lab.HostDev}} {
			if out, err := lab.Exec(nd[0], "ip", "link", "set", nd[1], "mtu", "1492"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
	})
	const size = 10 << 20
	fragNeeded := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, ns := range []string{e.Out, e.Far, e.In1} {
			c, err := natdlab.Nstat(ns, "IcmpOutDestUnreachs", "IcmpInDestUnreachs")
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c {
				out[ns+" "+k] = v
			}
		}
		mfs, err := e.Scrape()
		if err != nil {
			t.Fatal(err)
		}
		out["natd icmp_errors_sent"] = uint64(metric(t, mfs, "xnat_icmp_errors_sent_total"))
		return out
	}
	before := fragNeeded()
	far := netip.AddrPortFrom(natdlab.Far, 7300)
	ln, err := natdlab.ListenTCP(e.Far, far)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 2)
	go func() {
		// First connection: send size bytes (the download).
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		_, err = c.Write(make([]byte, size))
		c.Close()
		done <- err
		// Second: read size bytes (the upload) and say how many.
		c, err = ln.Accept()
		if err != nil {
			done <- err
			return
		}
		n, err := io.Copy(io.Discard, io.LimitReader(c, size))
		fmt.Fprintf(c, "%d\n", n)
		c.Close()
		done <- err
	}()
	start := time.Now()
	c, err := natdlab.DialTCP(e.In1, far, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	n, err := io.Copy(io.Discard, c)
	c.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d of %d bytes (%v)", n, size, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c, err = natdlab.DialTCP(e.In1, far, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatalf("upload: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || strings.TrimSpace(line) != strconv.Itoa(size) {
		t.Fatalf("upload: server read %q (%v)", line, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("10 MB each way over the 1492-byte link in %v", time.Since(start).Round(time.Millisecond))
	mfs, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	if n := metric(t, mfs, "xnat_mss_clamped_total"); n < 2 {
		t.Errorf("xnat_mss_clamped_total = %v after two connections (each SYN 1460 > 1452)", n)
	}
	after := fragNeeded()
	for k, v := range after {
		if v != before[k] {
			t.Errorf("%s: %d -> %d: an ICMP error (Fragmentation Needed) was sent or received", k, before[k], v)
		}
	}
}
