package lab

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

var (
	probeOnce sync.Once
	probeErr  error
)

// Require is the privileged-test policy shared by every lab test: it checks
// once per process that we are root and can create and delete a namespace
// and a veth pair. When that fails the test is skipped, except when the
// environment has CI=true, where it fails: CI must never skip the
// privileged tests silently.
func Require(tb testing.TB) {
	tb.Helper()
	probeOnce.Do(func() { probeErr = probe() })
	if probeErr == nil {
		return
	}
	Unavailable(tb, "lab: privileged lab unavailable: %v", probeErr)
}

// Unavailable skips a test whose prerequisite (root, a tool, a second
// CPU, a resource limit) this machine lacks, except when the environment
// has CI=true: CI machines are set up to run everything, so there a
// missing prerequisite fails the test instead of hiding it.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf(format+" (CI=true: failing instead of skipping)", args...)
	}
	tb.Skipf(format, args...)
}

func probe() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"ip", "ethtool", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: %w", tool, err)
		}
	}
	l := newLab()
	defer l.Close()
	a, err := l.AddNamespace("probe-a")
	if err != nil {
		return err
	}
	b, err := l.AddNamespace("probe-b")
	if err != nil {
		return err
	}
	if err := l.AddVeth(Veth{NS: a, Name: "v0", PeerNS: b, PeerName: "v1"}); err != nil {
		return err
	}
	return l.Close()
}
