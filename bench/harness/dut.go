package harness

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/mgmt/metrics"
)

// dut is a device under test in the bench lab's dut namespace. Its methods
// are called from Run's goroutine only.
type dut interface {
	Name() string
	// Start brings the DUT up (process running and ready, or rules
	// loaded); Stop undoes it.
	Start() error
	Stop() error
	// CPU returns the DUT's CPU time so far, in seconds: its process's
	// user+system time, or (the kernel) the softirq time of every CPU in
	// cpus.
	CPU(cpus []CPUTimes) (float64, error)
	// Sessions returns the DUT's live sessions, -1 for a stateless DUT.
	Sessions() (int64, error)
	// PID is the DUT process's pid, 0 for the kernel.
	PID() int
}

// labEnv is what the DUTs need of the lab.
type labEnv struct {
	b               *lab.Bench
	genMAC, sinkMAC string
	// layout places the generator's, the sink's and the DUT's threads,
	// one per queue pair (layout.go).
	layout Layout
	// rpsMask is the nftables DUT's rps_cpus (hexadecimal).
	rpsMask string
	dir     string // temporary directory: configs, logs
	// nice is the DUT processes' nice value (0: unchanged).
	nice int
}

// prefix is the command prefix that runs a DUT process at env's nice
// value. (Not SCHED_FIFO: a busy-polling FIFO thread uses up the CPU's
// real-time budget, sched_rt_runtime_us, and the kernel then throttles
// every FIFO thread of that CPU, the generator's receiver included, for
// the rest of each second.)
func (e *labEnv) prefix() []string {
	if e.nice == 0 {
		return nil
	}
	return []string{"nice", "-n", strconv.Itoa(e.nice)}
}

// procDUT is the process and log of a DUT that runs as a process (natd,
// l2fwd).
type procDUT struct {
	proc *proc
	log  *os.File
}

func (d *procDUT) PID() int {
	if d.proc == nil {
		return 0
	}
	return d.proc.pid()
}

// procCPU is the process's user+system time in seconds.
func (d *procDUT) procCPU(name string) (float64, error) {
	if d.proc == nil {
		return 0, errors.New(name + " not running")
	}
	p, err := ReadProcCPU(d.proc.pid())
	return p.Seconds(), err
}

// stopProc stops the process (SIGTERM, then SIGKILL after timeout) and
// closes its log; a no-op when it is not running.
func (d *procDUT) stopProc(timeout time.Duration) error {
	if d.proc == nil {
		return nil
	}
	err := d.proc.stop(timeout)
	d.proc = nil
	d.log.Close()
	return err
}

// queueList is "0,1,...,n-1".
func queueList(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return strings.Join(s, ",")
}

func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// ---- l2fwd ----

type l2fwdDUT struct {
	env *labEnv
	bin string
	procDUT
}

func (d *l2fwdDUT) Name() string { return L2fwd }

func (d *l2fwdDUT) Start() error {
	e := d.env
	var err error
	if d.log, err = os.Create(filepath.Join(e.dir, "l2fwd.log")); err != nil {
		return err
	}
	cmd := lab.Command(e.b.DUT, append(e.prefix(), d.bin, "-in", lab.DUTInside, "-out", lab.DUTOutside, "-queues", strconv.Itoa(e.layout.Queues),
		"-in-peer", e.genMAC, "-out-peer", e.sinkMAC, "-inside", "10.0.0.0/8", "-local", "10.0.0.1,198.18.0.1",
		"-cpus", cpuList(e.layout.DUT))...)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if d.proc, err = startProc(cmd); err != nil {
		return fmt.Errorf("start l2fwd: %w", err)
	}
	// l2fwd has no readiness signal: its sockets are bound within a few
	// hundred milliseconds; wait until the XDP program is on dut-in and
	// a little more.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := lab.Exec(e.b.DUT, "ip", "-d", "link", "show", lab.DUTOutside); err == nil && strings.Contains(out, "prog/xdp") {
			time.Sleep(300 * time.Millisecond)
			return nil
		}
		if !d.proc.running() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = d.Stop()
	return fmt.Errorf("l2fwd did not attach its XDP program; log: %s", readTail(d.log.Name()))
}

func (d *l2fwdDUT) Stop() error { return d.stopProc(10 * time.Second) }

func (d *l2fwdDUT) CPU([]CPUTimes) (float64, error) { return d.procCPU("l2fwd") }

func (d *l2fwdDUT) Sessions() (int64, error) { return -1, nil }

// ---- natd ----

type natdDUT struct {
	env         *labEnv
	bin         string
	metrics     string
	maxSessions int
	pool        string
	pollMode    string // natd's poll_mode: busy or adaptive
	cfgPath     string
	procDUT
}

func (d *natdDUT) Name() string { return Xnat }

// workerList is natd's workers: section, one pinned worker per CPU.
func workerList(cpus []int) string {
	var b strings.Builder
	for _, c := range cpus {
		fmt.Fprintf(&b, "\n  - cpu: %d", c)
	}
	return b.String()
}

func (d *natdDUT) config() string {
	e := d.env
	return fmt.Sprintf(`# written by bench/harness
interfaces:
  inside: {name: %s, queues: [%s]}
  outside: {name: %s, queues: [%s]}
workers:%s
poll_mode: %s
nat:
  inside_prefixes: [10.0.0.0/8]
  pools:
    - name: bench
      addresses: [%s]
  limits:
    max_sessions: %d
    max_subscribers: 131072
management:
  socket: %s
  readonly_socket: %s
metrics:
  listen: %s
log:
  level: warn
`, lab.DUTInside, queueList(e.layout.Queues), lab.DUTOutside, queueList(e.layout.Queues), workerList(e.layout.DUT), d.pollMode, d.pool, d.maxSessions,
		filepath.Join(e.dir, "natd.sock"), filepath.Join(e.dir, "natd-ro.sock"), d.metrics)
}

func (d *natdDUT) Start() error {
	e := d.env
	d.cfgPath = filepath.Join(e.dir, "natd.yaml")
	if err := os.WriteFile(d.cfgPath, []byte(d.config()), 0o644); err != nil {
		return err
	}
	var err error
	if d.log, err = os.OpenFile(filepath.Join(e.dir, "natd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return err
	}
	cmd := lab.Command(e.b.DUT, append(e.prefix(), d.bin, "--config", d.cfgPath)...)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if d.proc, err = startProc(cmd); err != nil {
		return fmt.Errorf("start natd: %w", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.proc.exited:
			d.proc = nil
			d.log.Close()
			return fmt.Errorf("natd exited during start-up; log: %s", readTail(d.log.Name()))
		case <-time.After(100 * time.Millisecond):
		}
		if code, _, err := lab.HTTPGet(e.b.DUT, d.metrics, "/readyz", ""); err == nil && code == http.StatusOK {
			return nil
		}
	}
	_ = d.Stop()
	return fmt.Errorf("natd not ready after 60 s; log: %s", readTail(d.log.Name()))
}

func (d *natdDUT) Stop() error { return d.stopProc(20 * time.Second) }

// RSS is natd's resident set size in bytes.
func (d *natdDUT) RSS() (int64, error) {
	if d.proc == nil {
		return 0, errors.New("natd not running")
	}
	return ReadRSS(d.proc.pid())
}

func (d *natdDUT) CPU([]CPUTimes) (float64, error) { return d.procCPU("natd") }

func (d *natdDUT) Sessions() (int64, error) {
	m, err := d.scrape()
	if err != nil {
		return 0, err
	}
	return int64(metrics.Sum(m, "xnat_sessions")), nil
}

// gcSample reads natd's Go runtime counters (runtime/metrics, exported by
// the Prometheus Go collector).
func (d *natdDUT) gcSample() (gcSample, error) {
	m, err := d.scrape()
	if err != nil {
		return gcSample{}, err
	}
	s := gcSample{at: time.Now(),
		cycles:  metrics.Sum(m, "go_gc_cycles_total_gc_cycles_total"),
		objects: metrics.Sum(m, "go_gc_heap_allocs_objects_total"),
		bytes:   metrics.Sum(m, "go_gc_heap_allocs_bytes_total"),
	}
	if _, ok := m["go_gc_cycles_total_gc_cycles_total"]; !ok {
		return s, errors.New("natd /metrics has no go_gc_cycles_total_gc_cycles_total")
	}
	return s, nil
}

// drops returns natd's drop counters by reason (non-zero ones).
func (d *natdDUT) drops() (map[string]float64, error) {
	m, err := d.scrape()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	if f := m["xnat_dropped_packets_total"]; f != nil {
		for _, mt := range f.Metric {
			v := metrics.SampleValue(mt)
			if v == 0 {
				continue
			}
			for _, l := range mt.Label {
				if l.GetName() == "reason" {
					out[l.GetValue()] = v
				}
			}
		}
	}
	return out, nil
}

func (d *natdDUT) scrape() (map[string]*dto.MetricFamily, error) {
	code, body, err := lab.HTTPGet(d.env.b.DUT, d.metrics, "/metrics", "")
	if err != nil {
		return nil, err
	}
	return metrics.Parse("natd /metrics", code, body)
}

type gcSample struct {
	at                     time.Time
	cycles, objects, bytes float64
}

func (a gcSample) delta(b gcSample) *GCDelta {
	return &GCDelta{Seconds: b.at.Sub(a.at).Seconds(), Cycles: b.cycles - a.cycles,
		AllocObjects: b.objects - a.objects, AllocBytes: b.bytes - a.bytes}
}

// ---- the kernel: nftables masquerade ----

// nftRuleset masquerades everything leaving dut-out: the kernel's
// conntrack and NAT, as a Linux router doing NAT44 is usually set up.
const nftRuleset = `table ip xnatbench {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "dut-out" masquerade
	}
}
`

type kernelDUT struct {
	env *labEnv
	// rpsMask is written to rps_cpus of every rx queue of the DUT's
	// veths; flowCnt to rps_flow_cnt and (globally)
	// net.core.rps_sock_flow_entries.
	rpsMask      string
	flowCnt      int
	conntrackMax int64
	// restore holds the global settings to put back at Stop.
	restore []globalSetting
	tuning  []string
}

type globalSetting struct{ path, value string }

func (d *kernelDUT) Name() string { return Kernel }

func (d *kernelDUT) Start() error {
	e := d.env
	ns := e.b.DUT
	d.tuning = nil
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		// As long as natd's UDP timeout (5 min), so no entry expires
		// while the trials revisit it (the default 30 s for unreplied
		// UDP would expire most of 1M flows between two visits).
		{"net.netfilter.nf_conntrack_udp_timeout", "300"},
		{"net.netfilter.nf_conntrack_udp_timeout_stream", "300"},
	} {
		if err := lab.Run(ns, "sysctl", "-q", "-w", kv[0]+"="+kv[1]); err != nil {
			return err
		}
		d.tuning = append(d.tuning, fmt.Sprintf("dut netns: %s=%s", kv[0], kv[1]))
	}
	// Global settings (the root namespace's; they apply to every
	// namespace): conntrack's table limit and RFS's socket flow table.
	// Both are read-only inside a namespace. Old values are restored at
	// Stop.
	for _, g := range []globalSetting{
		{"/proc/sys/net/netfilter/nf_conntrack_max", strconv.FormatInt(d.conntrackMax, 10)},
		{"/proc/sys/net/core/rps_sock_flow_entries", strconv.Itoa(d.flowCnt)},
	} {
		old, err := os.ReadFile(g.path)
		if err != nil {
			return fmt.Errorf("read %s: %w", g.path, err)
		}
		oldv := strings.TrimSpace(string(old))
		if g.path == "/proc/sys/net/netfilter/nf_conntrack_max" {
			// Only ever raise the limit.
			if n, _ := strconv.ParseInt(oldv, 10, 64); n >= d.conntrackMax {
				d.tuning = append(d.tuning, fmt.Sprintf("global: %s already %s", g.path, oldv))
				continue
			}
		}
		if err := os.WriteFile(g.path, []byte(g.value), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", g.path, err)
		}
		d.restore = append(d.restore, globalSetting{g.path, oldv})
		d.tuning = append(d.tuning, fmt.Sprintf("global: %s=%s (was %s, restored after)", g.path, g.value, oldv))
	}
	for _, dev := range []string{lab.DUTInside, lab.DUTOutside} {
		script := fmt.Sprintf(`for q in /sys/class/net/%s/queues/rx-*; do echo %s > $q/rps_cpus && echo %d > $q/rps_flow_cnt || exit 1; done`,
			dev, d.rpsMask, d.flowCnt)
		if err := lab.Run(ns, "sh", "-c", script); err != nil {
			return err
		}
		d.tuning = append(d.tuning, fmt.Sprintf("dut netns: %s rx queues rps_cpus=%s rps_flow_cnt=%d", dev, d.rpsMask, d.flowCnt))
	}
	rules := filepath.Join(e.dir, "nat.nft")
	if err := os.WriteFile(rules, []byte(nftRuleset), 0o644); err != nil {
		return err
	}
	if err := lab.Run(ns, "nft", "-f", rules); err != nil {
		return err
	}
	return d.flush()
}

func (d *kernelDUT) Stop() error {
	ns := d.env.b.DUT
	var errs []error
	errs = append(errs, lab.Run(ns, "nft", "delete", "table", "ip", "xnatbench"))
	errs = append(errs, lab.Run(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"))
	for _, dev := range []string{lab.DUTInside, lab.DUTOutside} {
		errs = append(errs, lab.Run(ns, "sh", "-c",
			fmt.Sprintf(`for q in /sys/class/net/%s/queues/rx-*; do echo 0 > $q/rps_cpus; echo 0 > $q/rps_flow_cnt; done`, dev)))
	}
	errs = append(errs, d.flush())
	errs = append(errs, d.restoreGlobals())
	return errors.Join(errs...)
}

func (d *kernelDUT) restoreGlobals() error {
	var errs []error
	for i := len(d.restore) - 1; i >= 0; i-- {
		g := d.restore[i]
		errs = append(errs, os.WriteFile(g.path, []byte(g.value), 0o644))
	}
	d.restore = nil
	return errors.Join(errs...)
}

// flush empties the DUT namespace's conntrack table.
func (d *kernelDUT) flush() error {
	nh, err := netns.GetFromName(d.env.b.DUT)
	if err != nil {
		return err
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flush conntrack: %w", err)
	}
	return nil
}

func (d *kernelDUT) CPU(cpus []CPUTimes) (float64, error) {
	var t uint64
	for _, c := range cpus {
		t += c.SoftIRQ
	}
	return float64(t) / clockTicks, nil
}

func (d *kernelDUT) PID() int { return 0 }

func (d *kernelDUT) Sessions() (int64, error) {
	out, err := lab.Exec(d.env.b.DUT, "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(out), 10, 64)
}

// ---- helpers ----

// proc is a DUT process started in its own process group. `ip netns
// exec` execs the command after entering the namespace, so the pid is the
// DUT's own (its /proc/<pid>/stat is the DUT's CPU time).
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's result, valid once exited is closed
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group and waits, then SIGKILL.
func (p *proc) stop(timeout time.Duration) error {
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("%s did not stop within %v of SIGTERM", filepath.Base(p.cmd.Path), timeout)
	}
}

// readTail returns the last 2 KiB of a log file.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}
