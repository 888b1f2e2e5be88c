package lab

import (
	"bufio"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/internal/wait"
)

// StopGroup reaches the whole group (a shell's child too), escalates to
// SIGKILL when the group ignores the first signal, and reaps the command.
func TestStopGroup(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		want   syscall.Signal
	}{
		// The shell waits on its child; SIGTERM to the group ends both.
		{"obeys", "echo ready; sleep 60; :", syscall.SIGTERM},
		// Both ignore SIGTERM: only the SIGKILL after the grace ends them.
		{"ignores", "trap '' TERM; echo ready; sleep 60; :", syscall.SIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tc.script)
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
			start := time.Now()
			StopGroup(cmd, syscall.SIGTERM, 200*time.Millisecond)
			st := cmd.ProcessState
			if st == nil {
				t.Fatal("StopGroup returned before reaping the command")
			}
			ws := st.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != tc.want {
				t.Fatalf("command ended with %v, want killed by %v", st, tc.want)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Fatalf("StopGroup took %v", d)
			}
			// No member of the group is left once init has reaped the
			// orphaned sleep.
			wait.Until(t, "the group's last member to go", 10*time.Second, func() bool {
				return syscall.Kill(-cmd.Process.Pid, 0) == syscall.ESRCH
			})
		})
	}
}
