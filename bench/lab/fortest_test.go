package lab

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/internal/wait"
)

// StopGroup reaches the whole group (a shell's child too), escalates to
// SIGKILL when the group ignores the first signal, and reaps the command.
func TestStopGroup(t *testing.T) {
	// The shell waits on its child; SIGTERM to the group ends both.
	t.Run("obeys", func(t *testing.T) { stopGroupEnds(t, "echo ready; sleep 60; :", syscall.SIGTERM) })
	// Both ignore SIGTERM: only the SIGKILL after the grace ends them.
	t.Run("ignores", func(t *testing.T) { stopGroupEnds(t, "trap '' TERM; echo ready; sleep 60; :", syscall.SIGKILL) })
}

// stopGroupEnds runs script in a shell of its own process group, stops
// the group with SIGTERM and a short grace, and checks that the shell was
// ended by want and that no member of the group is left.
func stopGroupEnds(t *testing.T, script string, want syscall.Signal) {
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signal only once the shell has set its trap.
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("shell said %q, %v", line, err)
	}
	StopGroup(cmd, syscall.SIGTERM, 200*time.Millisecond)
	st := cmd.ProcessState
	if st == nil {
		t.Fatal("StopGroup returned before reaping the command")
	}
	if ws := st.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != want {
		t.Fatalf("command ended with %v, want killed by %v", st, want)
	}
	// No member of the group is left once init has reaped the orphaned
	// sleep.
	wait.Until(t, "the group's last member to go", 10*time.Second, func() bool {
		return syscall.Kill(-cmd.Process.Pid, 0) == syscall.ESRCH
	})
}

// BenchOut takes a relative XNAT_BENCH_OUT from the repository root, not
// from this package's folder, and leaves an absolute one alone.
func TestBenchOut(t *testing.T) {
	t.Setenv("XNAT_BENCH_OUT", "")
	if got := BenchOut(t); got != "" {
		t.Fatalf("unset: %q", got)
	}
	t.Setenv("XNAT_BENCH_OUT", "/tmp/r.json")
	if got := BenchOut(t); got != "/tmp/r.json" {
		t.Fatalf("absolute: %q", got)
	}
	t.Setenv("XNAT_BENCH_OUT", "bench/results/x.json")
	root, err := filepath.Abs(filepath.Join("..", "..")) // this package is bench/lab
	if err != nil {
		t.Fatal(err)
	}
	if got, want := BenchOut(t), filepath.Join(root, "bench", "results", "x.json"); got != want {
		t.Fatalf("relative: %q, want %q", got, want)
	}
}

// RequireTools passes over installed programs and skips the test (outside
// CI) at the first missing one.
func TestRequireTools(t *testing.T) {
	t.Setenv("CI", "")
	for _, c := range []struct {
		tools []string
		skip  bool
	}{{[]string{"sh"}, false}, {[]string{"sh", "xnat-no-such-tool"}, true}} {
		var skipped, after bool
		t.Run(c.tools[len(c.tools)-1], func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			RequireTools(t, c.tools...)
			after = true
		})
		if skipped != c.skip || after == c.skip {
			t.Errorf("RequireTools(%q): skipped %v, went on %v", c.tools, skipped, after)
		}
	}
}
