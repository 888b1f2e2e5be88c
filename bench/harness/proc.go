package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of every time in /proc/stat and
// /proc/<pid>/stat. It is 100 on every Linux architecture Go supports
// (the kernel scales its internal HZ to it for user space), and reading
// it properly (sysconf(_SC_CLK_TCK)) needs cgo.
const clockTicks = 100

// CPUTimes is one line of /proc/stat, in ticks.
type CPUTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
}

// Total is every tick of the line.
func (c CPUTimes) Total() uint64 {
	return c.User + c.Nice + c.System + c.Idle + c.IOWait + c.IRQ + c.SoftIRQ + c.Steal
}

// Sub is c - o field by field (o taken earlier).
func (c CPUTimes) Sub(o CPUTimes) CPUTimes {
	return CPUTimes{c.User - o.User, c.Nice - o.Nice, c.System - o.System, c.Idle - o.Idle,
		c.IOWait - o.IOWait, c.IRQ - o.IRQ, c.SoftIRQ - o.SoftIRQ, c.Steal - o.Steal}
}

// ParseCPUTimes parses /proc/stat's per-CPU lines ("cpu0", "cpu1", ...),
// indexed by CPU number. The aggregate "cpu" line is skipped.
func ParseCPUTimes(data []byte) ([]CPUTimes, error) {
	var out []CPUTimes
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		if len(f) < 9 {
			return nil, fmt.Errorf("/proc/stat: short line %q", sc.Text())
		}
		var v [8]uint64
		for i := range v {
			if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				return nil, fmt.Errorf("/proc/stat: %q: %w", sc.Text(), err)
			}
		}
		for len(out) <= n {
			out = append(out, CPUTimes{})
		}
		out[n] = CPUTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("/proc/stat: no per-CPU lines")
	}
	return out, nil
}

// ReadCPUTimes reads /proc/stat.
func ReadCPUTimes() ([]CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	return ParseCPUTimes(b)
}

// CPUShare is one CPU's use over a window, as fractions of the window
// (they add up to 1 with Idle).
type CPUShare struct {
	CPU     int     `json:"cpu"`
	User    float64 `json:"user"`
	System  float64 `json:"system"`
	SoftIRQ float64 `json:"softirq"`
	IRQ     float64 `json:"irq"`
	Idle    float64 `json:"idle"` // idle + iowait
	Steal   float64 `json:"steal"`
}

// Busy is the share not idle.
func (s CPUShare) Busy() float64 { return 1 - s.Idle }

// Shares turns two /proc/stat readings into per-CPU shares.
func Shares(before, after []CPUTimes) []CPUShare {
	out := make([]CPUShare, 0, len(after))
	for i := range min(len(before), len(after)) {
		d := after[i].Sub(before[i])
		t := float64(d.Total())
		if t == 0 {
			out = append(out, CPUShare{CPU: i, Idle: 1})
			continue
		}
		out = append(out, CPUShare{
			CPU: i, User: float64(d.User+d.Nice) / t, System: float64(d.System) / t,
			SoftIRQ: float64(d.SoftIRQ) / t, IRQ: float64(d.IRQ) / t,
			Idle: float64(d.Idle+d.IOWait) / t, Steal: float64(d.Steal) / t,
		})
	}
	return out
}

// SoftIRQSeconds is the softirq time of every CPU between two readings.
func SoftIRQSeconds(before, after []CPUTimes) float64 {
	var t uint64
	for i := range min(len(before), len(after)) {
		t += after[i].SoftIRQ - before[i].SoftIRQ
	}
	return float64(t) / clockTicks
}

// ProcCPU is a process's user and system time, in ticks, from
// /proc/<pid>/stat (fields 14 and 15; the command name in field 2 may
// contain spaces and parentheses, so fields are counted from the last
// ')').
type ProcCPU struct{ User, System uint64 }

// Seconds is user + system in seconds.
func (p ProcCPU) Seconds() float64 { return float64(p.User+p.System) / clockTicks }

// ParseProcStat parses the contents of /proc/<pid>/stat.
func ParseProcStat(data []byte) (ProcCPU, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return ProcCPU{}, fmt.Errorf("/proc/pid/stat: no command field")
	}
	f := strings.Fields(string(data[i+1:]))
	// After the command: state(3) ppid(4) ... utime(14) stime(15), so
	// utime is f[11] and stime f[12].
	if len(f) < 13 {
		return ProcCPU{}, fmt.Errorf("/proc/pid/stat: %d fields after the command", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ProcCPU{}, fmt.Errorf("/proc/pid/stat: utime %q stime %q", f[11], f[12])
	}
	return ProcCPU{User: u, System: s}, nil
}

// ReadProcCPU reads /proc/<pid>/stat.
func ReadProcCPU(pid int) (ProcCPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcCPU{}, err
	}
	return ParseProcStat(b)
}

// ParseStatusRSS returns VmRSS from /proc/<pid>/status, in bytes.
func ParseStatusRSS(data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "VmRSS" {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/pid/status: VmRSS %q", v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/pid/status: VmRSS %q: %w", v, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("/proc/pid/status: no VmRSS")
}

// ReadRSS reads a process's resident set size in bytes.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatusRSS(b)
}

// Slab is one cache of /proc/slabinfo.
type Slab struct {
	Active, Objects, ObjSize int64
}

// ParseSlabinfo returns the named cache's counts from /proc/slabinfo
// ("name active_objs num_objs objsize ...").
func ParseSlabinfo(data []byte, name string) (Slab, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[0] != name {
			continue
		}
		var v [3]int64
		for i := range v {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return Slab{}, fmt.Errorf("/proc/slabinfo %s: %w", name, err)
			}
			v[i] = n
		}
		return Slab{Active: v[0], Objects: v[1], ObjSize: v[2]}, nil
	}
	return Slab{}, fmt.Errorf("/proc/slabinfo: no cache %q", name)
}

// CPUModel returns the first "model name" of /proc/cpuinfo.
func CPUModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
