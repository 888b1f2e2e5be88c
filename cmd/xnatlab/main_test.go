package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/internal/wait"
)

func TestMain(m *testing.M) {
	code := m.Run()
	lab.RemoveBuilds()
	os.Exit(code)
}

// binaries builds xnatlab, natd and natctl once per test process.
func binaries(t *testing.T) (xnatlab, natd, natctl string) {
	t.Helper()
	dir := lab.Build(t, "./", "../natd", "../natctl")
	return filepath.Join(dir, "xnatlab"), filepath.Join(dir, "natd"), filepath.Join(dir, "natctl")
}

// running lists the processes whose executable is bin.
func running(bin string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// demoRun is a running `xnatlab demo`.
type demoRun struct{ *lab.Child }

func startDemo(t *testing.T) *demoRun {
	t.Helper()
	xnatlab, natd, natctl := binaries(t)
	return &demoRun{lab.StartChild(t, exec.Command(xnatlab, "demo", "-natd", natd, "-natctl", natctl, "-config", "../../deploy/examples/lab.yaml"))}
}

// waitLine reads the demo's output until a line contains s, with a
// generous deadline; the rest of the output is discarded unless keep.
func (d *demoRun) waitLine(t *testing.T, s string, keep bool) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(d.Stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				found <- true
				if !keep {
					io.Copy(io.Discard, d.Stdout)
				}
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("demo ended without printing %q; stderr:\n%s", s, d.Stderr.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("demo did not print %q within 3 minutes", s)
	}
}

// assertNoLab checks that nothing of the demo's lab is left: namespaces,
// its directory (natd's configuration and sockets), a process in one of
// its namespaces (so no veth either), or a natd.
func assertNoLab(t *testing.T, pid int, had lab.Footprint, natd string) {
	t.Helper()
	had.Add(lab.FootprintOf(pid))
	if f := lab.FootprintOf(pid); !f.Empty() {
		t.Errorf("left behind: namespaces %v, directories %v", f.Namespaces, f.Dirs)
	}
	if h := had.Holders(); len(h) > 0 {
		t.Errorf("processes still hold the lab's namespaces (and so its veths): %v", h)
	}
	if p := running(natd); len(p) > 0 {
		t.Errorf("natd still running: pids %v", p)
	}
}

// `make demo` interrupted by Ctrl-C, SIGTERM or a closed pipe must remove
// its lab, natd included.
func TestDemoTornDownOnSignal(t *testing.T) {
	lab.Require(t)
	_, natd, _ := binaries(t)
	const labNamespaces = 6
	for _, c := range []struct {
		name      string
		sig       syscall.Signal
		early     bool // while the lab is being built
		closePipe bool
	}{
		{name: "SIGINT during build", sig: syscall.SIGINT, early: true},
		{name: "SIGINT", sig: syscall.SIGINT},
		{name: "SIGTERM", sig: syscall.SIGTERM},
		{name: "closed stdout", sig: syscall.SIGPIPE, closePipe: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := startDemo(t)
			pid := d.Cmd.Process.Pid
			var had lab.Footprint
			if c.early {
				had = lab.WaitFootprint(t, pid, 1)
				go io.Copy(io.Discard, d.Stdout)
			} else {
				d.waitLine(t, "natd is running.", c.closePipe)
				had = lab.WaitFootprint(t, pid, labNamespaces)
				if len(running(natd)) == 0 {
					t.Fatal("natd is not running")
				}
			}
			d.Interrupt(t, c.sig, 2*time.Minute)
			assertNoLab(t, pid, had, natd)
		})
	}
}

// A demo killed outright (SIGKILL: no handler runs) leaves its lab and
// natd; the next lab built removes both.
func TestDemoKilledIsSweptByNextLab(t *testing.T) {
	lab.Require(t)
	_, natd, _ := binaries(t)
	d := startDemo(t)
	pid := d.Cmd.Process.Pid
	d.waitLine(t, "natd is running.", false)
	had := lab.WaitFootprint(t, pid, 6)
	if err := d.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.Wait(t, 2*time.Minute)
	if len(running(natd)) == 0 || len(had.Holders()) == 0 {
		t.Fatal("natd did not outlive the killed demo; the test proves nothing")
	}
	next, err := lab.NewBench()
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	// natd was SIGKILLed by the sweep; wait for the kernel to finish it.
	wait.For(time.Minute, func() bool { return len(running(natd)) == 0 })
	assertNoLab(t, pid, had, natd)
}
