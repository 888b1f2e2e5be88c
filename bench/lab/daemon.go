package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// ErrDaemonRunning is Daemon.Start's error while the program started last
// has not been stopped.
var ErrDaemonRunning = errors.New("already running")

// Daemon runs a long-lived program (natd) inside a lab namespace, in a
// process group of its own: `ip netns exec` runs the program as its
// child, so a signal goes to the group to be sure it arrives. The zero
// value is ready to Start; its methods may be called from any goroutine.
type Daemon struct {
	// Name starts the errors Daemon makes, "natdlab: natd" for example.
	Name string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	exit   error
	exitAt time.Time
}

// Start runs argv in namespace ns with its output going to out, and
// returns once it has started. A Daemon runs one program at a time.
func (d *Daemon) Start(ns string, out io.Writer, argv ...string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return fmt.Errorf("%s %w", d.Name, ErrDaemonRunning)
	}
	cmd := Command(ns, argv...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Wait returns this long after the program's exit even if something
	// it left behind still holds its output pipe.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	d.cmd, d.exited = cmd, done
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.exit, d.exitAt = err, time.Now()
		d.mu.Unlock()
		close(done)
	}()
	return nil
}

// Exited is closed when the program started last exits; nil before
// the first Start.
func (d *Daemon) Exited() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exited
}

// ExitErr returns Wait's error for the program started last: its exit
// status. Meaningful once Exited is closed.
func (d *Daemon) ExitErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exit
}

// ExitAt returns when the program started last exited, as Wait saw it.
func (d *Daemon) ExitAt() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exitAt
}

// Running reports whether a program was started and has not exited.
func (d *Daemon) Running() bool {
	ch := d.Exited()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// Pid returns the process id of the running program (`ip netns exec`'s,
// which execs it), or 0.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Signal sends sig to the program's process group without waiting.
func (d *Daemon) Signal(sig syscall.Signal) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return errors.New(d.Name + " not running")
	}
	return syscall.Kill(-d.cmd.Process.Pid, sig)
}

// Stop sends sig and waits up to timeout for the program to exit; one
// still running then is SIGKILLed, and Stop reports killed. The wait is
// bounded after a SIGKILL by cmd.WaitDelay. After Stop the Daemon may
// Start again. err is Signal's: the program was not running.
func (d *Daemon) Stop(sig syscall.Signal, timeout time.Duration) (killed bool, err error) {
	exited := d.Exited()
	if err := d.Signal(sig); err != nil {
		return false, err
	}
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = d.Signal(syscall.SIGKILL)
		<-exited
		killed = true
	}
	d.mu.Lock()
	d.cmd = nil
	d.mu.Unlock()
	return killed, nil
}

// LogBuffer keeps a daemon's output for error messages and copies it as it
// comes to W (when not nil), each line after Prefix, so that the logs of
// several daemons sharing W stay apart. It may be written from any
// goroutine; writes to W never fail it.
type LogBuffer struct {
	W      io.Writer
	Prefix string

	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.W == nil {
		return len(p), nil
	}
	if b.Prefix == "" {
		b.W.Write(p)
		return len(p), nil
	}
	for _, line := range bytes.SplitAfter(p, []byte("\n")) {
		if len(line) > 0 {
			io.WriteString(b.W, b.Prefix)
			b.W.Write(line)
		}
	}
	return len(p), nil
}

// String returns all that was written.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
