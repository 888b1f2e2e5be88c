package lab

import (
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Child is a process that a test starts to build a lab of its own, and
// then signals or kills to see the lab go (the teardown tests, xnatlab's
// demo). Whatever happens, it is killed and its lab swept when the test
// ends. The test's goroutine reads Stdout; Stderr may be read any time.
type Child struct {
	Cmd    *exec.Cmd
	Stdout io.ReadCloser
	Stderr LogBuffer

	done chan struct{}
	err  error
}

// StartChild starts cmd, its stdout piped to Stdout and its stderr kept
// in Stderr.
func StartChild(tb testing.TB, cmd *exec.Cmd) *Child {
	tb.Helper()
	c := &Child{Cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &c.Stderr
	var err error
	if c.Stdout, err = cmd.StdoutPipe(); err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
		_ = SweepStale()
	})
	return c
}

// Wait waits up to d for the child to exit and returns how it exited (a
// non-zero status or a signal is for the test to judge).
func (c *Child) Wait(tb testing.TB, d time.Duration) syscall.WaitStatus {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		tb.Fatalf("%s did not exit within %v; stderr:\n%s", filepath.Base(c.Cmd.Path), d, c.Stderr.String())
	}
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) {
		tb.Fatal(c.err)
	}
	return c.Cmd.ProcessState.Sys().(syscall.WaitStatus)
}

// Interrupt ends the child as a user would and checks that it died of
// it: SIGPIPE by closing its stdout (its next write raises it), any other
// signal by sending it. The child has d to exit.
func (c *Child) Interrupt(tb testing.TB, sig syscall.Signal, d time.Duration) {
	tb.Helper()
	if sig == syscall.SIGPIPE {
		c.Stdout.Close()
	} else if err := c.Cmd.Process.Signal(sig); err != nil {
		tb.Fatal(err)
	}
	c.WantKilledBy(tb, sig, d)
}

// WantKilledBy waits up to d for the child to exit and fails tb unless
// signal sig killed it.
func (c *Child) WantKilledBy(tb testing.TB, sig syscall.Signal, d time.Duration) {
	tb.Helper()
	if ws := c.Wait(tb, d); !ws.Signaled() || ws.Signal() != sig {
		tb.Errorf("%s exited with %v (exit status %d), want killed by %v; stderr:\n%s",
			filepath.Base(c.Cmd.Path), ws, ws.ExitStatus(), sig, c.Stderr.String())
	}
}
