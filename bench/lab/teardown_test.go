package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/internal/wait"
)

// childEnv makes this test binary a lab-building child (see labChild)
// instead of running the tests.
const childEnv = "XNAT_LAB_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(labChild())
	}
	os.Exit(m.Run())
}

// labChild builds a lab the way the demo does (the NAT topology with the
// far host, six namespaces), starts a stand-in for natd in the NAT box's
// namespace (in its own process group, as natdlab starts natd, and deaf
// to SIGTERM, so that only the teardown's SIGKILL stops it), says
// "ready <prefix>" and then writes a line every 50 ms until it is stopped.
func labChild() int {
	n, err := NewNAT(WithFarHost())
	if err != nil {
		// A signal during the build makes it fail; the signal's
		// teardown then ends the process, by the signal.
		WaitIfInterrupted()
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer n.Close()
	if _, err := n.TempDir("child"); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	cmd := Command(n.Box, "sh", "-c", "trap '' TERM INT HUP PIPE; while :; do sleep 0.1; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	// `ip netns exec` enters the namespace after it starts: wait for it.
	id, err := statNS(filepath.Join(netnsDir, n.Box))
	for err == nil && !strings.Contains(holders(map[nsID]string{id: n.Box}, false)[cmd.Process.Pid], "its network namespace") {
		if time.Since(start) > time.Minute {
			err = errors.New("stand-in natd not in the nat namespace after a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	fmt.Printf("ready %s %d\n", n.Prefix, cmd.Process.Pid)
	// Bounded, so that a child whose test died does not run forever;
	// it then closes its lab on the way out.
	for range 2400 {
		time.Sleep(50 * time.Millisecond)
		fmt.Println("tick")
	}
	return 0
}

// child is a running labChild.
type child struct {
	*Child
	lines *bufio.Scanner
}

func startChild(t *testing.T) *child {
	t.Helper()
	return startChildArgs(t, os.Args[0])
}

// startChildArgs starts argv, which must exec this test binary.
func startChildArgs(t *testing.T, argv ...string) *child {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	c := &child{Child: StartChild(t, cmd)}
	c.lines = bufio.NewScanner(c.Stdout)
	return c
}

// ready waits for the child's "ready" line and returns the pid of its
// stand-in natd.
func (c *child) ready(t *testing.T) int {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		if c.lines.Scan() {
			got <- c.lines.Text()
		}
		close(got)
	}()
	select {
	case line, ok := <-got:
		var prefix string
		var pid int
		if !ok {
			t.Fatalf("child exited before its lab was ready: %s", c.Stderr.String())
		}
		if _, err := fmt.Sscanf(line, "ready %s %d", &prefix, &pid); err != nil {
			t.Fatalf("child said %q: %v", line, err)
		}
		return pid
	case <-time.After(2 * time.Minute):
		t.Fatal("child's lab not ready after 2 minutes")
	}
	return 0
}

// drain reads the child's output until it ends.
func (c *child) drain() { go io.Copy(io.Discard, c.Stdout) }

// assertGone checks that nothing of the child's lab is left: no namespace
// or directory under its name, no process in (or holding) any namespace
// it had, hence no veth, and no change to the root namespace's links.
func assertGone(t *testing.T, pid int, had Footprint, rootBefore []string) {
	t.Helper()
	if f := FootprintOf(pid); !f.Empty() {
		t.Errorf("left behind: namespaces %v, directories %v", f.Namespaces, f.Dirs)
	}
	if h := had.Holders(); len(h) > 0 {
		t.Errorf("processes still hold the lab's namespaces (and so its veths): %v", h)
	}
	if after := rootLinks(t); !slices.Equal(rootBefore, after) {
		t.Errorf("root namespace links changed: before %v after %v", rootBefore, after)
	}
}

// The demo, the tests and the benchmarks must not leave their lab behind
// when stopped by a signal or cut off from their output.
func TestTeardownOnSignal(t *testing.T) {
	Require(t)
	const labNamespaces = 6 // lan, nat, in1, in2, out, far
	for _, c := range []struct {
		name string
		sig  syscall.Signal
		// early: signal as soon as the first namespace exists, in the
		// middle of the build (the Ctrl-C "1.2 s in" of the report).
		early     bool
		closePipe bool
	}{
		{name: "SIGINT during build", sig: syscall.SIGINT, early: true},
		{name: "SIGINT", sig: syscall.SIGINT},
		{name: "SIGTERM", sig: syscall.SIGTERM},
		{name: "SIGHUP", sig: syscall.SIGHUP},
		{name: "closed stdout", sig: syscall.SIGPIPE, closePipe: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rootBefore := rootLinks(t)
			ch := startChild(t)
			pid := ch.Cmd.Process.Pid
			var had Footprint
			if c.early {
				had = WaitFootprint(t, pid, 1)
				ch.drain()
			} else {
				ready := ch.ready(t)
				had = WaitFootprint(t, pid, labNamespaces)
				if len(had.Dirs) == 0 {
					t.Fatal("the child's temporary directory is missing")
				}
				if _, ok := had.Holders()[ready]; !ok {
					t.Fatalf("stand-in natd %d is not in the lab: holders %v", ready, had.Holders())
				}
				if !c.closePipe {
					ch.drain()
				}
			}
			ch.Interrupt(t, c.sig, 2*time.Minute)
			// Namespaces made after the early footprint count too.
			had.Add(FootprintOf(pid))
			assertGone(t, pid, had, rootBefore)
		})
	}
}

// A lab whose creator was SIGKILLed (no handler runs) is removed by the
// next lab built on the machine: its namespaces, the processes still
// running in them and its temporary directory.
func TestNextLabSweepsLabOfKilledProcess(t *testing.T) {
	Require(t)
	rootBefore := rootLinks(t)
	ch := startChild(t)
	pid := ch.Cmd.Process.Pid
	ready := ch.ready(t)
	had := WaitFootprint(t, pid, 6)
	ch.drain()
	if err := ch.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	ch.Wait(t, 2*time.Minute)
	// The lab outlived its creator, natd stand-in included.
	if f := FootprintOf(pid); len(f.Namespaces) != len(had.Namespaces) || len(f.Dirs) == 0 {
		t.Fatalf("after SIGKILL the lab is %v %v, want it still there", f.Namespaces, f.Dirs)
	}
	if _, ok := had.Holders()[ready]; !ok {
		t.Fatalf("stand-in natd %d no longer in the lab after its creator died", ready)
	}

	n, err := NewNAT()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	assertGone(t, pid, had, rootBefore)
	if err := syscall.Kill(ready, 0); err == nil {
		// It may linger as a zombie until init reaps it, but it must
		// have left the namespace (Holders) and be dying.
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", ready)); !strings.Contains(string(st), ") Z ") && len(st) > 0 {
			t.Errorf("stand-in natd %d still running: %s", ready, st)
		}
	}
}

// Close is idempotent, also when called concurrently: every caller
// returns only when the lab is gone.
func TestCloseConcurrentAndIdempotent(t *testing.T) {
	Require(t)
	b, err := NewBench()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := b.TempDir("x")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			err := b.Close()
			if err == nil {
				if _, serr := os.Stat(filepath.Join(netnsDir, b.DUT)); serr == nil {
					err = fmt.Errorf("Close returned with %s left", b.DUT)
				} else if _, serr := os.Stat(dir); serr == nil {
					err = fmt.Errorf("Close returned with %s left", dir)
				}
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// A process started with SIGHUP ignored (nohup) keeps ignoring it, lab
// and all; it still tears down on SIGTERM.
func TestInheritedIgnoredSignalStaysIgnored(t *testing.T) {
	Require(t)
	rootBefore := rootLinks(t)
	ch := startChildArgs(t, "nohup", os.Args[0])
	pid := ch.Cmd.Process.Pid // nohup execs the test binary
	ch.ready(t)
	had := WaitFootprint(t, pid, 6)
	ch.drain()
	// Signals are handled in the order sent: had SIGHUP not been
	// ignored, it would have torn the lab down and killed the child.
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		if err := ch.Cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	ch.WantKilledBy(t, syscall.SIGTERM, 2*time.Minute)
	assertGone(t, pid, had, rootBefore)
}

// The kernel gives a destroyed namespace's nsfs inode number to the next
// namespace created. Another process that holds such a new namespace by an
// open file after deleting its name (deleteNamespace does so, in a test
// binary running beside this one) is not a holder of the destroyed one:
// CI once failed TestTeardownOnSignal on exactly that. Whether the kernel
// reuses a number within a test's time depends on what else creates
// namespaces, so the test stages the reuse: it records a's footprint as if
// a had got b's number.
func TestHoldersIgnoresReusedNamespaceIdentity(t *testing.T) {
	Require(t)
	l := newLab()
	defer l.Close()
	a, err := l.AddNamespace("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddNamespace("b")
	if err != nil {
		t.Fatal(err)
	}
	f := FootprintOf(os.Getpid())
	if f.ids[a] == (nsID{}) || f.cookies[a] == 0 || f.cookies[a] == f.cookies[b] {
		t.Fatalf("footprint lacks distinct cookies for %s and %s: %+v", a, b, f)
	}
	// holder starts a process that holds name's namespace by an open file.
	holder := func(name string) int {
		t.Helper()
		cmd := exec.Command("sh", "-c", "exec 3<"+filepath.Join(netnsDir, name)+"; exec sleep 60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		id := mustStatNS(t, name)
		wait.Until(t, fmt.Sprintf("sh %d to open %s", cmd.Process.Pid, name), time.Minute, func() bool {
			return strings.Contains(holders(map[nsID]string{id: name}, true)[cmd.Process.Pid], "an open file")
		})
		return cmd.Process.Pid
	}
	// A real holder of a is reported.
	had := Footprint{Namespaces: []string{a}, ids: map[string]nsID{a: f.ids[a]}, cookies: map[string]uint64{a: f.cookies[a]}}
	ha := holder(a)
	if _, ok := had.Holders()[ha]; !ok {
		t.Fatalf("holder %d of %s not reported: %v", ha, a, had.Holders())
	}
	// a "destroyed", its number given to b, whose name is then deleted
	// while another process holds it.
	reused := Footprint{Namespaces: []string{a}, ids: map[string]nsID{a: f.ids[b]}, cookies: map[string]uint64{a: f.cookies[a]}}
	hb := holder(b)
	if err := run("ip", "netns", "del", b); err != nil {
		t.Fatal(err)
	}
	if got := reused.Holders(); len(got) > 0 {
		t.Errorf("holders of the destroyed %s: %v; %d holds only %s, a namespace with its inode number", a, got, hb, b)
	}
}
func mustStatNS(t *testing.T, name string) nsID {
	t.Helper()
	id, err := statNS(filepath.Join(netnsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return id
}
