package lab

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/internal/wait"
)

// The set-up every privileged test repeats, in one place: the lab policy
// (Require), the topology, and its removal when the test ends. The
// helpers fail the test (tb.Fatal) when the lab cannot be built: Require
// has already decided that this machine can build labs, so a failure past
// it is the lab's or the test's fault, never a reason to skip.

// RequireNAT applies Require, builds the NAT topology with opts and
// closes it when the test and its subtests end (tb.Cleanup).
func RequireNAT(tb testing.TB, opts ...Option) *NAT {
	tb.Helper()
	return requireLab(tb, NewNAT, opts)
}

// RequireBench applies Require, builds the benchmark topology with opts
// and closes it when the test and its subtests end (tb.Cleanup).
func RequireBench(tb testing.TB, opts ...Option) *Bench {
	tb.Helper()
	return requireLab(tb, NewBench, opts)
}

// requireLab is RequireNAT and RequireBench with the topology's
// constructor as a parameter.
func requireLab[T io.Closer](tb testing.TB, build func(...Option) (T, error), opts []Option) T {
	tb.Helper()
	Require(tb)
	l, err := build(opts...)
	return CloseAtEnd(tb, l, err)
}

// CloseAtEnd is the tail of the labs' constructors for tests: it fails tb
// on err, or else closes v when the test and its subtests end
// (tb.Cleanup), and returns v.
func CloseAtEnd[T io.Closer](tb testing.TB, v T, err error) T {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { v.Close() })
	return v
}

// RequireBenchmark gates a lab benchmark: it skips tb unless XNAT_BENCH=1
// (a benchmark takes minutes and loads every CPU, so it runs only when
// asked for), applies Require, and fails tb when one of tools is not
// installed: a benchmark that was asked for must not vanish for want of a
// tool.
func RequireBenchmark(tb testing.TB, what string, tools ...string) {
	tb.Helper()
	if os.Getenv("XNAT_BENCH") != "1" {
		tb.Skip("set XNAT_BENCH=1 to run " + what)
	}
	Require(tb)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s not installed: %v", tool, err)
		}
	}
}

// RequireTools applies the lab policy to external programs: the test is
// skipped when one of tools is not on PATH, or failed under CI=true, where
// .ci/run installs them (see Unavailable).
func RequireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(tb, "%s not installed: %v", tool, err)
		}
	}
}

// MustLink is Link for a test: it fails tb when dev is not in ns.
func MustLink(tb testing.TB, ns, dev string) LinkInfo {
	tb.Helper()
	li, err := Link(ns, dev)
	if err != nil {
		tb.Fatal(err)
	}
	return li
}

// BenchOut returns the path XNAT_BENCH_OUT names, where a benchmark
// writes its results, or "" when it is unset. A relative path is taken
// from the repository root (the folder of go.mod above the test's
// folder), where the benchmarks' documented commands run, not from the
// test's package folder, where go test runs the test.
func BenchOut(tb testing.TB) string {
	tb.Helper()
	out := os.Getenv("XNAT_BENCH_OUT")
	if out == "" || filepath.IsAbs(out) {
		return out
	}
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, out)
		}
		up := filepath.Dir(dir)
		if up == dir {
			tb.Fatalf("XNAT_BENCH_OUT=%s: no go.mod above the test's folder", out)
		}
		dir = up
	}
}

// StopGroup stops a command started in its own process group (Setpgid;
// `ip netns exec` and tools such as trafgen fork, so the signal goes to
// the group): sig, then SIGKILL if the command has not exited within
// grace. It reaps the command (cmd.Wait), so cmd.ProcessState is set
// when it returns.
func StopGroup(cmd *exec.Cmd, sig syscall.Signal, grace time.Duration) {
	pg := -cmd.Process.Pid
	syscall.Kill(pg, sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		syscall.Kill(pg, syscall.SIGKILL)
		<-done
	}
}

// WaitFootprint waits, with a generous deadline, until the labs of process
// pid (a test's child that builds one) hold at least want namespaces, and
// returns their footprint. It fails tb if they never do.
func WaitFootprint(tb testing.TB, pid, want int) Footprint {
	tb.Helper()
	var f Footprint
	if !wait.For(3*time.Minute, func() bool {
		f = FootprintOf(pid)
		return len(f.Namespaces) >= want
	}) {
		tb.Fatalf("process %d's lab has namespaces %v after 3 minutes, want %d", pid, f.Namespaces, want)
	}
	return f
}
