package harness

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// RevisionEnv names the commit of a run whose checkout git cannot read
// (see ReadMachine).
const RevisionEnv = "XNATBENCH_GIT_REVISION"

// ReadMachine gathers the machine facts of a run; repo is the checkout
// whose revision is recorded.
func ReadMachine(repo string) Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = CPUModel(b)
	}
	m.Kernel = KernelRelease()
	m.LoadAvgStart = LoadAvg()
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemTotalMiB = kb / 1024
				}
			}
		}
	}
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output(); err == nil {
		m.GitRevision = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		m.GitDirty = len(bytes.TrimSpace(out)) > 0
	}
	// A lent machine gets a copy of the tree without its repository (or
	// git): bench/device/scaling.sh passes the commit its binaries were
	// built from, "-dirty" appended for a modified tree.
	if v := os.Getenv(RevisionEnv); m.GitRevision == "" && v != "" {
		m.GitRevision, m.GitDirty = strings.CutSuffix(v, "-dirty")
	}
	return m
}

// KernelRelease returns the running kernel's release (uname -r), "" when
// uname fails.
func KernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// LoadAvg returns the three load averages of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
