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
	if os.Getenv("CI") == "true" {
		tb.Fatalf("lab: privileged lab unavailable in CI: %v", probeErr)
	}
	tb.Skipf("lab: skipping privileged test: %v", probeErr)
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
