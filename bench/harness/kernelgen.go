package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/mgmt/metrics"
)

// The kernel-generator scenario drives the DUT with trafgen (netsniff-ng),
// a load the harness does not generate itself: its frames leave through
// the kernel's packet socket (PACKET_TX_RING, qdisc bypassed) and reach
// dut-in by veth, like frames from a kernel-stack host. trafgen runs on
// the generator's CPU at its top speed; natd busy-polls on its own CPU; the
// sink drops everything at its ingress hook (counted by the veth). Each run
// has two phases on one table: "create", where natd (or conntrack) starts
// empty and sets up the sessions while the frames arrive, and
// "established", the same flows again with every session in place.
//
// Nothing is paced, so the figures are the delivered rate at the
// generator's top speed, and the frames lost on the way, by where they
// were lost: at the veth (the generator's TX drops: dut-in's queue was
// full), in natd's socket (its receive ring full, the fill ring empty:
// natd's own XDP statistics), or after (natd received them but they did
// not reach the sink).

// KernelGen is the kernel-generator scenario.
type KernelGen struct {
	Tool    string `json:"tool"`    // trafgen's version line
	Command string `json:"command"` // one trafgen invocation
	Config  string `json:"config"`  // its packet configuration
	Frames  int    `json:"frames"`  // per phase
	Flows   int    `json:"flows"`   // distinct source ports
	GenCPU  int    `json:"gen_cpu"`
	DUTCPU  int    `json:"dut_cpu"`
	// KernelRPS is the nftables DUT's rps_cpus: none, so that the
	// kernel forwards on the sender's CPU, as a router without RPS does.
	KernelRPS string         `json:"nftables_rps_cpus"`
	Runs      []KernelGenRun `json:"runs"`
	Error     string         `json:"error,omitempty"`
}

// KernelGenRun is one trafgen run (one phase of one repetition).
type KernelGenRun struct {
	DUT    string `json:"dut"`
	Phase  string `json:"phase"` // create or established
	Repeat int    `json:"repeat"`

	Sent        uint64  `json:"sent"`      // trafgen's count
	SendSeconds float64 `json:"send_s"`    // trafgen's time on its CPU
	SentPPS     float64 `json:"sent_pps"`  // Sent / SendSeconds
	VethDropped uint64  `json:"veth_drop"` // generator's TX drops (dut-in's queue full)
	// DUTReceived and DUTRingDrops are natd's counters on dut-in (frames
	// its socket received; frames the kernel dropped before natd saw
	// them: RX ring full, fill ring empty, invalid descriptors). For
	// nftables, DUTReceived is dut-in's RX count and DUTRingDrops the
	// backlog drops of /proc/net/softnet_stat.
	DUTReceived  uint64 `json:"dut_received"`
	DUTRingDrops uint64 `json:"dut_ring_drops"`
	DUTSent      uint64 `json:"dut_sent"` // natd's TX on dut-out, nftables' dut-out TX
	Delivered    uint64 `json:"delivered"`
	// DeliveredPPS is Delivered / SendSeconds.
	DeliveredPPS float64 `json:"delivered_pps"`
	LostRatio    float64 `json:"lost_ratio"` // 1 - Delivered/Sent
	Sessions     int64   `json:"sessions_after"`
	// DUTCores is the DUT's CPU (natd's process time; the kernel's
	// softirq time on every CPU) over the wall time of the trafgen run.
	DUTCores float64 `json:"dut_cores"`
	// Created and Expired are natd's session counters over the run.
	Created float64            `json:"sessions_created,omitempty"`
	Expired float64            `json:"sessions_expired,omitempty"`
	Drops   map[string]float64 `json:"drops,omitempty"` // natd's drop reasons over the run
	// Polls, BusyPolls, PollSeconds and BusySeconds are natd's worker
	// counters over the run: how often it polled, how many polls moved
	// frames, and the time they took. Received/BusyPolls is its mean
	// burst.
	Polls       float64 `json:"polls,omitempty"`
	BusyPolls   float64 `json:"busy_polls,omitempty"`
	PollSeconds float64 `json:"poll_s,omitempty"`
	BusySeconds float64 `json:"busy_s,omitempty"`
	// XSK splits natd's ring drops by cause (its sockets' XDP_STATISTICS
	// over the run): RX ring full, fill ring empty.
	XSK *XSKStats `json:"xsk,omitempty"`
	// Profile is the perf profile of natd over the run (first
	// repetition only); it is also in Results.Profiles.
	Profile *Profile `json:"-"`
	Error   string   `json:"error,omitempty"`
}

// Kernel-generator flows: one inside host (the generator's own address,
// 10.0.0.2), random source ports in [kgFirstPort, kgFirstPort+kgPorts),
// one server (198.19.0.1 port 9). 60000 ports fit one external address of
// natd's pool (endpoint-independent mapping: a port per inside endpoint)
// with room to spare.
const (
	kgFirstPort = 1024
	kgPorts     = 60000
)

// TrafgenConfig is trafgen's packet configuration: a 60-byte UDP frame
// (64 bytes on the wire with the FCS) whose source port trafgen draws at
// random for every frame (drnd), with the UDP checksum recomputed.
func TrafgenConfig(dstMAC, srcMAC, src, dst string, firstPort, ports int) string {
	return fmt.Sprintf(`{
  eth(da=%s, sa=%s, type=0x0800),
  ipv4(saddr=%s, daddr=%s, ttl=64),
  udp(sp=drnd(%d, %d), dp=9),
  fill(0x00, 18)
}
`, dstMAC, srcMAC, src, dst, firstPort, firstPort+ports-1)
}

// TrafgenMAC writes a MAC address ("02:00:00:00:00:01") as the bytes of
// a trafgen packet ("0x02, 0x00, 0x00, 0x00, 0x00, 0x01"), for the
// configurations that spell out their frames byte by byte.
func TrafgenMAC(mac string) string {
	parts := strings.Split(mac, ":")
	for i, p := range parts {
		parts[i] = "0x" + p
	}
	return strings.Join(parts, ", ")
}

// TrafgenResult is what trafgen printed at exit.
type TrafgenResult struct {
	Packets uint64
	Seconds float64 // the longest of its workers' times
}

// ParseTrafgen reads trafgen's exit summary:
//
//	 1000000 packets outgoing
//	60000000 bytes outgoing
//	       0 sec, 723011 usec on CPU0 (1000000 packets)
func ParseTrafgen(out []byte) (TrafgenResult, error) {
	var r TrafgenResult
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[1] == "packets" && f[2] == "outgoing":
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("trafgen: %q: %w", sc.Text(), err)
			}
			r.Packets, found = n, true
		case len(f) >= 6 && f[1] == "sec," && f[3] == "usec" && f[4] == "on":
			s, err1 := strconv.ParseUint(f[0], 10, 64)
			u, err2 := strconv.ParseUint(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				return r, fmt.Errorf("trafgen: %q: bad time", sc.Text())
			}
			r.Seconds = max(r.Seconds, float64(s)+float64(u)/1e6)
		}
	}
	if !found || r.Seconds <= 0 {
		return r, fmt.Errorf("trafgen: no packet count or time in its output: %q", tail(out, 400))
	}
	return r, nil
}

// trafgenNoise drops trafgen's warnings about the socket memory it may not
// tune inside a network namespace, which would hide its real error.
func trafgenNoise(out []byte) []byte {
	var keep []byte
	for _, l := range bytes.SplitAfter(out, []byte("\n")) {
		if !bytes.HasPrefix(l, []byte("Cannot set system socket memory")) {
			keep = append(keep, l...)
		}
	}
	return keep
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// sinkDrop drops the scenario's frames (UDP to port 9) at the sink's
// ingress hook: the sink's IP stack, which would answer each frame with an
// ICMP error, stays out of the figures (and off the DUT's CPU, where the
// veth delivers). ARP and the harness's pings pass. The rule counts what
// it drops in the counter sinkCounter, which is what the scenario calls
// delivered: the veth's RX counter counts every frame, and a run once read
// 1,000,001 frames delivered of 1,000,000 sent there (the kernel DUT sends
// frames of its own, such as neighbour requests: 200,001 out of dut-out
// for 200,000 in a check run).
const sinkDrop = `table netdev xnatbench_sink {
	counter scenario {
	}
	chain in {
		type filter hook ingress device "eth0" priority 0; policy accept;
		udp dport 9 counter name "scenario" drop
	}
}
`

// sinkCounter is the nft command that lists sinkDrop's counter as JSON.
var sinkCounter = []string{"nft", "-j", "list", "counter", "netdev", "xnatbench_sink", "scenario"}

// counterPackets returns the packets of the one counter in out, nft's
// JSON listing of a named counter (sinkCounter).
func counterPackets(out []byte) (uint64, error) {
	var l struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &l); err != nil {
		return 0, fmt.Errorf("nft counter listing: %w", err)
	}
	for _, o := range l.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets, nil
		}
	}
	return 0, errors.New("nft counter listing: no counter")
}

// kernelGen runs the scenario against natd and nftables (those of
// Options.DUTs) on the main lab.
func (r *runner) kernelGen() {
	kg := &KernelGen{Frames: r.o.KernelGenFrames, Flows: kgPorts, GenCPU: genTxCPU, DUTCPU: dutCPU, KernelRPS: "0"}
	r.res.KernelGen = kg
	fail := func(err error) {
		kg.Error = err.Error()
		r.warn("kernel generator: %v", err)
	}
	if _, err := exec.LookPath("trafgen"); err != nil {
		fail(errors.New("trafgen (netsniff-ng) is not installed"))
		return
	}
	// trafgen -v prints its version and exits with status 1.
	v, _ := exec.Command("trafgen", "-v").CombinedOutput()
	if kg.Tool = strings.TrimSpace(strings.SplitN(string(v), "\n", 2)[0]); kg.Tool == "" {
		kg.Tool = "trafgen"
	}
	e := r.env
	kg.Config = TrafgenConfig(net.HardwareAddr(r.dutMAC).String(), e.genMAC, lab.In1Addr.Addr().String(), "198.19.0.1", kgFirstPort, kgPorts)
	cfgPath := filepath.Join(e.dir, "trafgen.cfg")
	sinkPath := filepath.Join(e.dir, "sink.nft")
	if err := errors.Join(os.WriteFile(cfgPath, []byte(kg.Config), 0o644), os.WriteFile(sinkPath, []byte(sinkDrop), 0o644)); err != nil {
		fail(err)
		return
	}
	// trafgen's one worker runs on CPU 0 (-P 1: its worker i is pinned
	// to CPU i); -Q leaves IRQ affinities alone.
	argv := []string{"trafgen", "-o", lab.HostDev, "-i", cfgPath, "-n", strconv.Itoa(kg.Frames), "-P", "1", "-Q"}
	kg.Command = "ip netns exec " + e.b.Gen + " " + strings.Join(argv, " ")
	if err := lab.Run(e.b.Sink, "nft", "-f", sinkPath); err != nil {
		fail(err)
		return
	}
	defer func() {
		if err := lab.Run(e.b.Sink, "nft", "delete", "table", "netdev", "xnatbench_sink"); err != nil {
			r.warn("kernel generator: %v", err)
		}
	}()
	for _, name := range []string{Xnat, Kernel} {
		if !slices.Contains(r.o.DUTs, name) || r.ctx.Err() != nil {
			continue
		}
		d, err := r.newDUT(name)
		if err != nil {
			r.warn("kernel generator: %s: %v", name, err)
			continue
		}
		if k, ok := d.(*kernelDUT); ok {
			k.rpsMask = "0"
		}
		if err := d.Start(); err != nil {
			r.warn("kernel generator: %s: start: %v", name, err)
			continue
		}
		for rep := 1; rep <= r.o.KernelGenRuns && r.ctx.Err() == nil; rep++ {
			if err := r.emptyTable(d); err != nil {
				r.warn("kernel generator: %s: %v", name, err)
				break
			}
			if err := r.resolveNeighbours(); err != nil {
				r.warn("kernel generator: %s: %v", name, err)
			}
			for _, phase := range []string{"create", "established"} {
				prof := ""
				if rep == 1 && r.o.Profile && name == Xnat {
					prof = "kernel generator, " + phase
				}
				run := r.trafgenRun(d, argv, prof)
				run.DUT, run.Phase, run.Repeat = name, phase, rep
				kg.Runs = append(kg.Runs, run)
				r.logf("%-8s trafgen %-11s #%d: sent %s, delivered %s (%.1f%% lost: veth %d, %s ring %d, after %d), %d sessions, dut %.2f cores %s",
					name, phase, rep, pps(run.SentPPS), pps(run.DeliveredPPS), 100*run.LostRatio, run.VethDropped,
					name, run.DUTRingDrops, int64(run.DUTReceived)-int64(run.Delivered), run.Sessions, run.DUTCores, run.Error)
				if x := run.XSK; x != nil {
					r.logf("   natd sockets: RX ring full %d, fill ring empty %d, other RX drops %d", x.RxRingFull, x.FillEmpty, x.RxDropped-x.FillEmpty)
				}
				if run.BusyPolls > 0 {
					r.logf("   natd worker: %.0f polls (%.0f moved frames, %.1f frames each), busy %.2f of %.2f s polled", run.Polls, run.BusyPolls,
						float64(run.DUTReceived)/run.BusyPolls, run.BusySeconds, run.PollSeconds)
				}
			}
		}
		if err := d.Stop(); err != nil {
			r.warn("kernel generator: %s: stop: %v", name, err)
		}
	}
}

// kgCounters are the counters read before and after a trafgen run.
type kgCounters struct {
	genTxDropped, sinkRx, dutInRx, dutOutTx uint64
	softnetDrops                            uint64
	natdRx, natdRing, natdTx                float64
	created, expired                        float64
	polls, busyPolls, pollSecs, busySecs    float64
	xsk                                     *XSKStats
	drops                                   map[string]float64
	cpus                                    []CPUTimes
	dutCPU                                  float64
}

func (r *runner) readKG(d dut) (kgCounters, error) {
	var c kgCounters
	e := r.env
	var errs []error
	g, err := linkStats(e.b.Gen, lab.HostDev)
	errs = append(errs, err)
	in, err := linkStats(e.b.DUT, lab.DUTInside)
	errs = append(errs, err)
	out, err := linkStats(e.b.DUT, lab.DUTOutside)
	errs = append(errs, err)
	c.genTxDropped, c.dutInRx, c.dutOutTx = g.TxDropped, in.RxPackets, out.TxPackets
	if l, err := lab.Exec(e.b.Sink, sinkCounter...); err != nil {
		errs = append(errs, err)
	} else {
		c.sinkRx, err = counterPackets([]byte(l))
		errs = append(errs, err)
	}
	c.softnetDrops, err = softnetDrops()
	errs = append(errs, err)
	c.cpus, err = ReadCPUTimes()
	errs = append(errs, err)
	if err == nil {
		c.dutCPU, err = d.CPU(c.cpus)
		errs = append(errs, err)
	}
	if n, ok := d.(*natdDUT); ok {
		m, err := n.scrape()
		if err != nil {
			return c, err
		}
		c.natdRx = metrics.Sum(m, "xnat_rx_packets_total", "interface", lab.DUTInside)
		c.natdRing = metrics.Sum(m, "xnat_interface_dropped_packets_total", "interface", lab.DUTInside)
		c.natdTx = metrics.Sum(m, "xnat_tx_packets_total", "interface", lab.DUTOutside)
		c.created = metrics.Sum(m, "xnat_sessions_created_total")
		c.expired = metrics.Sum(m, "xnat_sessions_expired_total")
		c.drops, _ = n.drops()
		c.polls = metrics.Sum(m, "xnat_worker_polls_total")
		c.busyPolls = metrics.Sum(m, "xnat_worker_busy_polls_total")
		c.pollSecs = metrics.Sum(m, "xnat_worker_poll_seconds_total")
		c.busySecs = metrics.Sum(m, "xnat_worker_busy_seconds_total")
		if x, err := readXSKStats(n.PID()); err == nil {
			c.xsk = &x
		}
	}
	return c, errors.Join(errs...)
}

// trafgenRun sends one trafgen run through d and reads the counters
// around it.
// With profile (and perf installed), perf records natd over the run.
func (r *runner) trafgenRun(d dut, argv []string, profile string) KernelGenRun {
	var run KernelGenRun
	var pr *perfRecorder
	if profile != "" && r.perf && d.PID() > 0 {
		var err error
		if pr, err = startPerf(r.env.dir, d.PID()); err != nil {
			r.warn("kernel generator: perf: %v", err)
		} else {
			defer pr.stop() // on the error paths; a second stop is a no-op
			// perf takes a few hundred milliseconds to attach.
			time.Sleep(500 * time.Millisecond)
		}
	}
	c0, err := r.readKG(d)
	if err != nil {
		run.Error = err.Error()
		return run
	}
	t0 := time.Now()
	if pr != nil {
		pr.enable()
	}
	cmd := lab.Command(r.env.b.Gen, argv...)
	out, err := cmd.CombinedOutput()
	if pr != nil {
		pr.disable()
		run.Profile = &Profile{DUT: d.Name(), Trial: profile, Command: strings.Join(pr.cmd.Args, " ")}
		r.finishProfile(run.Profile, pr, time.Since(t0).Seconds())
	}
	if err != nil {
		run.Error = fmt.Sprintf("trafgen: %v: %s", err, tail(trafgenNoise(out), 400))
		return run
	}
	tg, err := ParseTrafgen(out)
	if err != nil {
		run.Error = err.Error()
		return run
	}
	// The frames still in flight when trafgen exits (dut-in's queue,
	// natd's rings) arrive within milliseconds; wait until the sink's
	// count stops moving.
	prev := uint64(0)
	for i := 0; i < 20; i++ {
		time.Sleep(50 * time.Millisecond)
		s, err := linkStats(r.env.b.Sink, lab.HostDev)
		if err == nil && s.RxPackets == prev {
			break
		}
		prev = s.RxPackets
	}
	wall := time.Since(t0).Seconds()
	c1, err := r.readKG(d)
	if err != nil {
		run.Error = err.Error()
		return run
	}
	run.Sent, run.SendSeconds = tg.Packets, tg.Seconds
	run.SentPPS = float64(tg.Packets) / tg.Seconds
	run.VethDropped = c1.genTxDropped - c0.genTxDropped
	run.Delivered = c1.sinkRx - c0.sinkRx
	run.DeliveredPPS = float64(run.Delivered) / tg.Seconds
	if run.Sent > 0 {
		run.LostRatio = 1 - float64(run.Delivered)/float64(run.Sent)
	}
	if _, ok := d.(*natdDUT); ok {
		run.DUTReceived = uint64(c1.natdRx - c0.natdRx)
		run.DUTRingDrops = uint64(c1.natdRing - c0.natdRing)
		run.DUTSent = uint64(c1.natdTx - c0.natdTx)
		run.Created, run.Expired = c1.created-c0.created, c1.expired-c0.expired
		run.Polls, run.BusyPolls = c1.polls-c0.polls, c1.busyPolls-c0.busyPolls
		run.PollSeconds, run.BusySeconds = c1.pollSecs-c0.pollSecs, c1.busySecs-c0.busySecs
		if c0.xsk != nil && c1.xsk != nil {
			x := c1.xsk.sub(*c0.xsk)
			run.XSK = &x
		}
		run.Drops = map[string]float64{}
		for k, v := range c1.drops {
			if dv := v - c0.drops[k]; dv != 0 {
				run.Drops[k] = dv
			}
		}
	} else {
		run.DUTReceived = c1.dutInRx - c0.dutInRx
		run.DUTRingDrops = c1.softnetDrops - c0.softnetDrops
		run.DUTSent = c1.dutOutTx - c0.dutOutTx
	}
	if wall > 0 {
		run.DUTCores = (c1.dutCPU - c0.dutCPU) / wall
	}
	if n, err := d.Sessions(); err == nil {
		run.Sessions = n
	}
	return run
}

// linkStats reads an interface's kernel counters in a namespace.
func linkStats(ns, dev string) (netlink.LinkStatistics, error) {
	nh, err := netns.GetFromName(ns)
	if err != nil {
		return netlink.LinkStatistics{}, err
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return netlink.LinkStatistics{}, err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return netlink.LinkStatistics{}, err
	}
	if s := l.Attrs().Statistics; s != nil {
		return *s, nil
	}
	return netlink.LinkStatistics{}, fmt.Errorf("no statistics for %s in %s", dev, ns)
}

// softnetDrops sums the second column of /proc/net/softnet_stat: frames
// dropped because a CPU's input backlog was full (the kernel forwarder's
// ring before its work starts).
func softnetDrops() (uint64, error) {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0, err
	}
	return ParseSoftnetDrops(b)
}

// ParseSoftnetDrops parses /proc/net/softnet_stat (hexadecimal columns,
// one line per CPU; the second is the backlog drops).
func ParseSoftnetDrops(b []byte) (uint64, error) {
	var sum uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("softnet_stat: %q: %w", sc.Text(), err)
		}
		sum += v
	}
	return sum, nil
}
