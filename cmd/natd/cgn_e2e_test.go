package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
	"github.com/xnat/xnat/internal/wait"
)

// TestE2ECGNExport runs natd with port-block allocation and both
// exporters in the lab: IPFIX to nfcapd (nfdump) and syslog to rsyslog,
// both running in the outside server's namespace with their files in the
// lab's temporary directory. tcpdump captures the IPFIX datagrams there,
// and Wireshark's dissector (tshark) decodes them: the test checks the
// decoded fields against the traffic it sent, then asks natctl lookup
// who held the ports it saw.
func TestE2ECGNExport(t *testing.T) {
	lab.Require(t)
	lab.RequireTools(t, "tshark", "tcpdump", "nfcapd", "nfdump", "rsyslogd")
	_, natctl := binaries(t)
	const ipfixPort, syslogPort = 4739, 5514
	server := natdlab.Server // 198.18.0.2, in e.Out
	extra := fmt.Sprintf(`  port_allocation: block
  block_size: 64
  max_blocks: 2
  log_sessions: true
logging:
  ipfix: {collector: "%s:%d", source: 198.18.0.1, observation_domain: 7, template_refresh: 5s}
  syslog: {server: "%s:%d", transport: udp, hostname: cgnlab}
`, server, ipfixPort, server, syslogPort)
	e := newEnv(t, natdlab.Options{Config: natdlab.ConfigParams{Extra: extra}})
	dir, err := e.TempDir("collectors")
	if err != nil {
		t.Fatal(err)
	}

	// Collectors and the capture, in the server's namespace.
	pcap := filepath.Join(dir, "ipfix.pcap")
	dump := startDaemon(t, e.Out, "tcpdump", "-i", "eth0", "-n", "-U", "-w", pcap, "udp", "port", strconv.Itoa(ipfixPort))
	nfdir := filepath.Join(dir, "nfcapd")
	os.Mkdir(nfdir, 0o755)
	nf := startDaemon(t, e.Out, "nfcapd", "-w", nfdir, "-b", server.String(), "-p", strconv.Itoa(ipfixPort), "-P", filepath.Join(dir, "nfcapd.pid"))
	sysLog := filepath.Join(dir, "syslog.log")
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory="%s")
module(load="imudp")
input(type="imudp" address="%s" port="%d")
template(name="raw" type="string" string="%%rawmsg%%\n")
*.* action(type="omfile" file="%s" template="raw")
`, dir, server, syslogPort, sysLog)), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, e.Out, "rsyslogd", "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	await(t, "the collectors to listen", func() bool {
		out, _ := lab.Exec(e.Out, "ss", "-Hlun")
		return strings.Contains(out, fmt.Sprintf("%s:%d", server, ipfixPort)) && strings.Contains(out, fmt.Sprintf("%s:%d", server, syslogPort)) &&
			strings.Contains(dump.stderr(), "listening on")
	})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Traffic: six UDP flows from 10.0.0.2 to an echo server that notes
	// the translated source of each.
	srv, err := natdlab.ListenUDP(e.Out, netip.AddrPortFrom(server, 9100))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var senders natdlab.Senders
	go senders.Echo(srv)
	t0 := time.Now()
	inside := map[uint16]bool{}
	for i := 0; i < 6; i++ {
		c, err := natdlab.ListenUDP(e.In1, netip.AddrPortFrom(natdlab.In1, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		inside[c.LocalAddr().(*net.UDPAddr).AddrPort().Port()] = true
		if !udpRoundTrip(c, netip.AddrPortFrom(server, 9100)) {
			t.Fatalf("flow %d not answered", i)
		}
	}
	t1 := time.Now()
	outside := map[uint16]bool{}
	for ap := range senders.Seen() {
		if ap.Addr() != natdlab.PoolAddr {
			t.Fatalf("server saw %v, not the pool address", ap)
		}
		outside[ap.Port()] = true
	}
	if len(outside) != 6 {
		t.Fatalf("server saw %d sources, want 6", len(outside))
	}

	// IPFIX, as Wireshark decodes it: one address binding, one block
	// allocation, six session creations, every field as sent.
	var recs []ipfixRecord
	await(t, "tshark to decode 8 records", func() bool {
		recs = decodeIPFIX(t, pcap, ipfixPort)
		return len(recs) >= 8
	})
	var block *ipfixRecord
	sessions, binds := 0, 0
	for i := range recs {
		r := &recs[i]
		if r.Domain != "7" {
			t.Fatalf("observation domain %s", r.Domain)
		}
		if r.Time.Before(t0.Add(-time.Second)) || r.Time.After(t1.Add(time.Second)) {
			t.Fatalf("record time %v outside the traffic's %v..%v: %+v", r.Time, t0, t1, r.F)
		}
		switch r.F["cflow.nat_event"] {
		case "16": // port block allocation
			block = r
		case "14": // address binding create (log_sessions logs it too)
			binds++
			if r.F["cflow.srcaddr"] != natdlab.In1.String() || r.F["cflow.post_natsource_ipv4_address"] != natdlab.PoolAddr.String() {
				t.Fatalf("binding record %v", r.F)
			}
		case "4": // NAT44 session create
			sessions++
			sp, _ := strconv.Atoi(r.F["cflow.srcport"])
			pp, _ := strconv.Atoi(r.F["cflow.post_naptsource_transport_port"])
			if r.F["cflow.protocol"] != "17" || r.F["cflow.srcaddr"] != natdlab.In1.String() || !inside[uint16(sp)] ||
				r.F["cflow.post_natsource_ipv4_address"] != natdlab.PoolAddr.String() || !outside[uint16(pp)] {
				t.Fatalf("session record does not match the traffic: %v", r.F)
			}
		default:
			t.Fatalf("unexpected record %v", r.F)
		}
	}
	if block == nil || sessions != 6 || binds != 1 {
		t.Fatalf("%d session records, %d bindings, block %v", sessions, binds, block)
	}
	lo, _ := strconv.Atoi(block.F["cflow.port_range_start"])
	hi, _ := strconv.Atoi(block.F["cflow.port_range_end"])
	if block.F["cflow.srcaddr"] != natdlab.In1.String() || block.F["cflow.post_natsource_ipv4_address"] != natdlab.PoolAddr.String() ||
		hi-lo != 63 || block.F["cflow.port_range_num_ports"] != "64" {
		t.Fatalf("block record %v", block.F)
	}
	for p := range outside {
		if int(p) < lo || int(p) > hi {
			t.Fatalf("port %d outside the logged block %d-%d", p, lo, hi)
		}
	}

	// Syslog, as rsyslog wrote it: the same block.
	wantBlock := fmt.Sprintf("event=block_allocated natEvent=16 sourceIPv4Address=%s postNATSourceIPv4Address=%s portRangeStart=%d portRangeEnd=%d",
		natdlab.In1, natdlab.PoolAddr, lo, hi)
	await(t, "rsyslog to write the block and the sessions", func() bool {
		b, _ := os.ReadFile(sysLog)
		return strings.Contains(string(b), wantBlock) && strings.Count(string(b), "event=session_created natEvent=4 protocolIdentifier=17 sourceIPv4Address=10.0.0.2") == 6
	})

	// natctl lookup, on the read-only socket, for a port seen.
	for p := range outside {
		out, err := exec.Command(natctl, "--socket", e.ROSocket, "lookup", "outside", fmt.Sprintf("%s:%d", natdlab.PoolAddr, p), "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("natctl lookup: %v\n%s", err, out)
		}
		var res struct {
			Holders []struct{ Subscriber, Source, Inside string }
		}
		if err := json.Unmarshal(out, &res); err != nil || len(res.Holders) < 2 || res.Holders[0].Subscriber != natdlab.In1.String() || res.Holders[0].Source != "block" {
			t.Fatalf("lookup %d: %s", p, out)
		}
		break
	}

	// The exporters' health on /metrics.
	await(t, "the exporters' counters", func() bool {
		mfs, err := e.Scrape()
		if err != nil {
			return false
		}
		return metric(t, mfs, "xnat_export_records_sent_total", "exporter", "ipfix") >= 7 &&
			metric(t, mfs, "xnat_export_records_sent_total", "exporter", "syslog") >= 7 &&
			metric(t, mfs, "xnat_export_templates_sent_total", "exporter", "ipfix") >= 6 &&
			metric(t, mfs, "xnat_export_up", "exporter", "ipfix") == 1
	})

	// nfcapd stored what it received: stop it, read its file with nfdump.
	nf.stop(t)
	out, err := exec.Command("nfdump", "-R", nfdir, "-o", "raw").CombinedOutput()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "nat event    =                 4"); n != 6 {
		t.Fatalf("nfdump shows %d NAT44 session creations, want 6:\n%s", n, out)
	}
	dump.stop(t)
}

type ipfixRecord struct {
	Domain string
	Time   time.Time
	F      map[string]string
}

// decodeIPFIX decodes the capture with tshark's IPFIX (cflow) dissector.
func decodeIPFIX(t *testing.T, pcap string, port int) []ipfixRecord {
	out, err := exec.Command("tshark", "-r", pcap, "-d", fmt.Sprintf("udp.port==%d,cflow", port), "-T", "json").Output()
	if err != nil {
		return nil // the capture may end mid-packet while tcpdump writes
	}
	var pkts []struct {
		Source struct {
			Layers map[string]json.RawMessage `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &pkts); err != nil {
		return nil
	}
	var recs []ipfixRecord
	for _, p := range pkts {
		var c map[string]json.RawMessage
		if err := json.Unmarshal(p.Source.Layers["cflow"], &c); err != nil {
			continue
		}
		var domain string
		json.Unmarshal(c["cflow.od_id"], &domain)
		for k, v := range c {
			if !strings.HasPrefix(k, "Set ") {
				continue
			}
			var set map[string]json.RawMessage
			json.Unmarshal(v, &set)
			for fk, fv := range set {
				if !strings.HasPrefix(fk, "Flow ") {
					continue
				}
				var f map[string]string
				if err := json.Unmarshal(fv, &f); err != nil {
					continue
				}
				ts, err := time.Parse("Jan _2, 2006 15:04:05.000000000 MST", f["cflow.observation_time_milliseconds"])
				if err != nil {
					t.Fatalf("observation time %q: %v", f["cflow.observation_time_milliseconds"], err)
				}
				recs = append(recs, ipfixRecord{Domain: domain, Time: ts, F: f})
			}
		}
	}
	return recs
}

func udpRoundTrip(c *net.UDPConn, to netip.AddrPort) bool {
	buf := make([]byte, 64)
	for try := 0; try < 5; try++ {
		c.WriteToUDPAddrPort([]byte("cgn"), to)
		c.SetReadDeadline(time.Now().Add(time.Second))
		if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil && string(buf[:n]) == "cgn" {
			return true
		}
	}
	return false
}

// await fails the test unless cond holds within a generous deadline.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, what, 30*time.Second, cond)
}

// collector is a collector process in a lab namespace.
type collector struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	errBuf strings.Builder
	done   chan struct{}
}

func (d *collector) stderr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.errBuf.String()
}

// startDaemon runs argv in namespace ns until the test ends.
func startDaemon(t *testing.T, ns string, argv ...string) *collector {
	t.Helper()
	d := &collector{cmd: lab.Command(ns, argv...), done: make(chan struct{})}
	pr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout = nil
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", argv[0], err)
	}
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			d.mu.Lock()
			d.errBuf.WriteString(s.Text() + "\n")
			d.mu.Unlock()
		}
		d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
	})
	return d
}

// stop ends the daemon with SIGTERM (collectors flush their files) and
// waits for it.
func (d *collector) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop", d.cmd.Path)
	}
}
