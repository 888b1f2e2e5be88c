package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Profile is where a DUT process's CPU time went during one trial, from
// `perf record -e cpu-clock` (a software clock: the VM exposes no hardware
// counters) and `perf report --sort sym`.
type Profile struct {
	DUT     string  `json:"dut"`
	Trial   string  `json:"trial"`
	Command string  `json:"command"`
	Samples int     `json:"samples"`
	Seconds float64 `json:"seconds"`
	// Kernel and User are the shares of samples in the kernel ([k]) and
	// in user space ([.]).
	Kernel float64 `json:"kernel_share"`
	User   float64 `json:"user_share"`
	// Groups sums the shares by part of the program (see groupOf).
	Groups map[string]float64 `json:"groups"`
	Top    []ProfileEntry     `json:"top"`
	Error  string             `json:"error,omitempty"`
}

// ProfileEntry is one symbol's share of the samples.
type ProfileEntry struct {
	Symbol string  `json:"symbol"`
	Share  float64 `json:"share"`
	Kernel bool    `json:"kernel"`
}

// Profile groups, in display order.
var profileGroups = []string{
	"kernel: AF_XDP, veth, skb, syscalls",
	"NAT engine (dataplane/nat)",
	"flow table (flowtable)",
	"parse and rewrite (dataplane/header, checksum)",
	"AF_XDP rings (dataplane/afxdp)",
	"worker loop, neighbours (dataplane/poller, neigh)",
	"Go runtime and syscall stubs",
	"other",
}

func groupOf(sym string, kernel bool) string {
	switch {
	case kernel:
		return profileGroups[0]
	case strings.HasPrefix(sym, "github.com/xnat/xnat/dataplane/nat."):
		return profileGroups[1]
	case strings.HasPrefix(sym, "github.com/xnat/xnat/flowtable."):
		return profileGroups[2]
	case strings.HasPrefix(sym, "github.com/xnat/xnat/dataplane/header."), strings.HasPrefix(sym, "github.com/xnat/xnat/checksum."):
		return profileGroups[3]
	case strings.HasPrefix(sym, "github.com/xnat/xnat/dataplane/afxdp."):
		return profileGroups[4]
	case strings.HasPrefix(sym, "github.com/xnat/xnat/dataplane/poller."), strings.HasPrefix(sym, "github.com/xnat/xnat/dataplane/neigh."):
		return profileGroups[5]
	case strings.HasPrefix(sym, "runtime."), strings.HasPrefix(sym, "internal/runtime/"), strings.HasPrefix(sym, "syscall."),
		strings.HasPrefix(sym, "time."), strings.HasPrefix(sym, "__vdso"):
		return profileGroups[6]
	}
	return profileGroups[7]
}

// ParsePerfReport parses `perf report --stdio --sort sym -g none` output
// (lines "  12.34%  [k] symbol") into p, keeping the top n symbols.
func ParsePerfReport(r io.Reader, p *Profile, n int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	p.Groups = map[string]float64{}
	var all []ProfileEntry
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "Samples:") || strings.Contains(line, "of event") {
			continue
		}
		pct, rest, ok := strings.Cut(line, "%")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 || (f[0] != "[k]" && f[0] != "[.]") {
			continue
		}
		e := ProfileEntry{Symbol: strings.Join(f[1:], " "), Share: v / 100, Kernel: f[0] == "[k]"}
		all = append(all, e)
		if e.Kernel {
			p.Kernel += e.Share
		} else {
			p.User += e.Share
		}
		p.Groups[groupOf(e.Symbol, e.Kernel)] += e.Share
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(all) == 0 {
		return fmt.Errorf("perf report: no samples")
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Share > all[j].Share })
	p.Top = all[:min(n, len(all))]
	return nil
}

var samplesRE = regexp.MustCompile(`\((\d+) samples\)`)

// perfSamples reads the sample count from perf record's summary
// ("[ perf record: Captured and wrote 0.318 MB perf.data (1879 samples) ]").
func perfSamples(out []byte) int {
	m := samplesRE.FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// perfRecorder is `perf record` attached to a DUT process with its events
// disabled until the CPU window opens: perf takes a few hundred
// milliseconds to start, so it is started before the trial and switched
// on and off through its control fifo (--control), which the sampler
// goroutine writes at the window's edges.
type perfRecorder struct {
	cmd     *exec.Cmd
	ctl     *os.File
	out     bytes.Buffer
	data    string
	stopped bool
	err     error
}

func startPerf(dir string, pid int) (*perfRecorder, error) {
	p := &perfRecorder{data: filepath.Join(dir, "perf.data")}
	fifo := filepath.Join(dir, "perf.ctl")
	_ = os.Remove(fifo)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return nil, fmt.Errorf("perf control fifo: %w", err)
	}
	// Read-write, so the open does not wait for perf to open its end.
	ctl, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	p.ctl = ctl
	p.cmd = exec.Command("perf", "record", "-e", "cpu-clock", "-F", "999", "-p", strconv.Itoa(pid),
		"-o", p.data, "-D", "-1", "--control", "fifo:"+fifo)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		ctl.Close()
		return nil, fmt.Errorf("perf record: %w", err)
	}
	return p, nil
}

func (p *perfRecorder) enable()  { _, _ = p.ctl.WriteString("enable\n") }
func (p *perfRecorder) disable() { _, _ = p.ctl.WriteString("disable\n") }

// stop ends the recording (SIGINT, as at a terminal) and waits for perf
// to write its file.
func (p *perfRecorder) stop() error {
	if p.stopped {
		return p.err
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		// perf exits non-zero after SIGINT on some versions; the file
		// is what matters.
		if _, serr := os.Stat(p.data); serr != nil {
			p.err = fmt.Errorf("perf record: %v: %s", err, bytes.TrimSpace(p.out.Bytes()))
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		p.err = errors.New("perf record did not stop")
	}
	p.ctl.Close()
	return p.err
}
