package lab

// Teardown: every lab a process builds is removed when the process is told
// to stop (SIGINT, SIGTERM, SIGHUP) or loses its output (a write to a closed
// stdout or stderr, SIGPIPE), and a lab whose process was killed outright
// (SIGKILL, a crash: no handler runs) is swept by the next lab built on the
// machine. What a lab owns, and so what both paths remove:
//
//   - its namespaces (/run/netns/<prefix><role>), and with them every veth,
//     bridge, address and attached XDP program inside them: lab devices
//     live only in lab namespaces, so they go when the namespace does;
//   - every process inside them (natd, l2fwd, servers): a process keeps its
//     namespace, and so the veths, alive after the name is deleted, so it
//     is killed first;
//   - its temporary directories (/tmp/<prefix><name>-*: configurations,
//     natd's sockets, logs), see Lab.TempDir.
//
// No lab pins BPF objects or writes elsewhere under /run; natd's sockets
// for the lab go to the lab's temporary directory (natdlab).

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Deadlines of a teardown. A namespace's processes get killDeadline to die
// after SIGKILL (a process in uninterruptible sleep may take a moment);
// a teardown on a signal gives up after signalDeadline in all, so that a
// stuck kernel call cannot hang the process: the next run sweeps what is
// left.
const (
	killDeadline   = 5 * time.Second
	signalDeadline = 30 * time.Second
)

var (
	// liveMu guards live, the labs of this process not yet closed.
	liveMu sync.Mutex
	live   = map[*Lab]struct{}{}

	// creating is read-locked while a namespace is being created and
	// recorded; a teardown on a signal write-locks it once, after setting
	// tearingDown, so that it sees every namespace whose creation began
	// and no new one can begin.
	creating    sync.RWMutex
	tearingDown atomic.Bool

	handlerOnce sync.Once
	// interruptMu guards onInterrupt and grace (see OnInterrupt).
	interruptMu sync.Mutex
	onInterrupt func()
	grace       time.Duration

	// interrupted is closed when a signal's teardown begins.
	interrupted = make(chan struct{})
)

var errTearingDown = errors.New("lab: the process is tearing its labs down")

func register(l *Lab) {
	handlerOnce.Do(installHandler)
	liveMu.Lock()
	live[l] = struct{}{}
	liveMu.Unlock()
}

func unregister(l *Lab) {
	liveMu.Lock()
	delete(live, l)
	liveMu.Unlock()
}

func liveLabs() []*Lab {
	liveMu.Lock()
	defer liveMu.Unlock()
	ls := make([]*Lab, 0, len(live))
	for l := range live {
		ls = append(ls, l)
	}
	return ls
}

// OnInterrupt lets a program that stops cleanly on its own (the benchmark
// writes its partial results) keep control for a while after a signal: on
// the first SIGINT, SIGTERM, SIGHUP or closed output, f is called (on the
// signal goroutine; it must not block), and the program has grace to
// close its labs itself. Labs still open after grace, or at a second
// signal, are torn down and the process exits by the signal. Without
// OnInterrupt, labs are torn down at once and the process exits.
func OnInterrupt(f func(), g time.Duration) {
	handlerOnce.Do(installHandler)
	interruptMu.Lock()
	onInterrupt, grace = f, g
	interruptMu.Unlock()
}

// WaitIfInterrupted blocks forever if a signal is tearing this process's
// labs down, so that the signal handler, not a failure the teardown
// caused in the program, decides how the process exits. A program calls
// it before reporting an error and exiting.
func WaitIfInterrupted() {
	select {
	case <-interrupted:
		select {}
	default:
	}
}

func installHandler() {
	ch := make(chan os.Signal, 8)
	// With SIGPIPE notified, a write to a closed stdout or stderr fails
	// with EPIPE instead of killing the process silently; the handler
	// tears the labs down and then dies by SIGPIPE itself.
	//
	// A signal the process inherited as ignored stays ignored (Notify
	// would enable it): `nohup make bench &` must survive the logout's
	// SIGHUP, and a background job of a script the terminal's SIGINT.
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE} {
		if !signal.Ignored(sig) {
			signal.Notify(ch, sig)
		}
	}
	go handleSignals(ch)
}

// handleSignals is the one goroutine that acts on the signals.
func handleSignals(ch <-chan os.Signal) {
	next := func() os.Signal {
		for sig := range ch {
			// A SIGPIPE also comes from a write to a socket whose peer
			// closed it (the caller sees EPIPE and handles it): only
			// a closed stdout or stderr means the program lost its
			// output.
			if sig == syscall.SIGPIPE && !outputClosed() {
				continue
			}
			return sig
		}
		return nil
	}
	called := false
	for {
		sig := next()
		interruptMu.Lock()
		f, g := onInterrupt, grace
		interruptMu.Unlock()
		if f == nil || called {
			teardownAndExit(sig)
		}
		called = true
		f()
		if !waitClosed(g, ch, &sig) {
			teardownAndExit(sig)
		}
		// The program closed its labs in time; it exits on its own.
	}
}

// waitClosed waits up to g for every lab to be closed. It returns false,
// and the signal in *sig, if a further signal came first, or on timeout.
func waitClosed(g time.Duration, ch <-chan os.Signal, sig *os.Signal) bool {
	deadline := time.After(g)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(liveLabs()) > 0 {
		select {
		case s := <-ch:
			if s == syscall.SIGPIPE && !outputClosed() {
				continue
			}
			*sig = s
			return false
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
	return true
}

// outputClosed reports whether stdout or stderr is a pipe or socket whose
// reader has gone: poll reports POLLERR on a pipe's write end without
// readers, POLLHUP or POLLERR on a socket shut down by its peer.
func outputClosed() bool {
	fds := []unix.PollFd{{Fd: 1}, {Fd: 2}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return false
	}
	for _, p := range fds {
		if p.Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			return true
		}
	}
	return false
}

// teardownAndExit closes every lab of the process (bounded by
// signalDeadline) and exits by sig.
func teardownAndExit(sig os.Signal) {
	close(interrupted)
	tearingDown.Store(true)
	creating.Lock() // wait for namespaces being created; none begins now
	//lint:ignore SA2001 the empty section waits for the creators that hold the lock
	creating.Unlock()
	labs := liveLabs()
	// stderr may be the closed pipe: the write then fails, harmlessly.
	fmt.Fprintf(os.Stderr, "lab: %v: tearing down %d lab(s)\n", sig, len(labs))
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, l := range labs {
			wg.Go(func() {
				if err := l.Close(); err != nil {
					fmt.Fprintf(os.Stderr, "lab: teardown of %s: %v\n", l.Prefix, err)
				}
			})
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(signalDeadline):
		fmt.Fprintf(os.Stderr, "lab: teardown still running after %v; the next lab will sweep what is left\n", signalDeadline)
	}
	exitBySignal(sig)
}

// exitBySignal ends the process as sig would have without a handler, so
// that a shell or make sees "killed by SIGINT" and stops too.
func exitBySignal(sig os.Signal) {
	s, _ := sig.(syscall.Signal)
	signal.Reset(sig)
	if s == syscall.SIGPIPE {
		// Go kills a process by SIGPIPE on a failed write to stdout or
		// stderr when SIGPIPE is not notified (any more).
		os.Stdout.Write([]byte{'\n'})
		os.Stderr.Write([]byte{'\n'})
	} else if s != 0 {
		syscall.Kill(os.Getpid(), s)
	}
	time.Sleep(time.Second)
	os.Exit(128 + int(s))
}

// nsID identifies a network namespace by the device and inode of its nsfs
// file.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{uint64(st.Dev), st.Ino}, nil
}

// holders lists the processes (other than this one) that hold a
// namespace of want as their network namespace or, with files, through an
// open file, with how.
func holders(want map[nsID]string, files bool) map[int]string {
	return holdersVerified(want, files, nil)
}

// holdersVerified is holders, where same, if not nil, must also confirm
// each match by the path (/proc/PID/ns/net or /proc/PID/fd/N) that
// matched.
func holdersVerified(want map[nsID]string, files bool, same func(path string, id nsID) bool) map[int]string {
	held := map[int]string{}
	match := func(path string) (nsID, bool) {
		id, err := statNS(path)
		if err != nil || want[id] == "" {
			return id, false
		}
		return id, same == nil || same(path, id)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return held
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		if id, ok := match(filepath.Join(dir, "ns", "net")); ok {
			held[pid] = want[id] + " (its network namespace)"
			continue
		}
		if !files {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			if id, ok := match(filepath.Join(dir, "fd", fd.Name())); ok {
				held[pid] = want[id] + " (an open file)"
				break
			}
		}
	}
	return held
}

// sweepTempDirs removes the temporary directories of labs whose creator
// is gone.
func sweepTempDirs() error {
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if pid, ok := creatorPid(e.Name()); ok && !pidAlive(pid) {
			if err := os.RemoveAll(filepath.Join(os.TempDir(), e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// creatorPid returns the pid embedded in a lab resource name.
func creatorPid(name string) (int, bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	pid, err := strconv.Atoi(m[1])
	return pid, err == nil
}

// Footprint is what the labs of one process hold on this machine: their
// namespaces (by name and by identity, which outlives the name) and their
// temporary directories. Tests take one while a lab runs and check after
// its teardown that nothing of it is left (see Holders).
type Footprint struct {
	Namespaces []string
	Dirs       []string
	ids        map[string]nsID
	// cookies holds each namespace's netns cookie (SO_NETNS_COOKIE), which,
	// unlike the nsfs inode number, the kernel never gives to another
	// namespace.
	cookies map[string]uint64
}

// FootprintOf returns what the labs created by process pid hold now.
func FootprintOf(pid int) Footprint {
	f := Footprint{ids: map[string]nsID{}, cookies: map[string]uint64{}}
	mine := func(name string) bool { p, ok := creatorPid(name); return ok && p == pid }
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if !mine(e.Name()) {
				continue
			}
			path := filepath.Join(netnsDir, e.Name())
			id, err := statNS(path)
			if err != nil {
				continue
			}
			c, err := netnsCookie(path)
			if err != nil {
				continue // deleted meanwhile
			}
			f.Namespaces = append(f.Namespaces, e.Name())
			f.ids[e.Name()] = id
			f.cookies[e.Name()] = c
		}
	}
	if entries, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range entries {
			if mine(e.Name()) {
				f.Dirs = append(f.Dirs, filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
	return f
}

// Empty reports whether f holds nothing.
func (f Footprint) Empty() bool { return len(f.Namespaces) == 0 && len(f.Dirs) == 0 }

// Add records g's namespaces and directories in f too.
func (f *Footprint) Add(g Footprint) {
	if f.ids == nil {
		f.ids = map[string]nsID{}
	}
	if f.cookies == nil {
		f.cookies = map[string]uint64{}
	}
	for _, n := range g.Namespaces {
		if _, ok := f.ids[n]; !ok {
			f.Namespaces = append(f.Namespaces, n)
		}
		f.ids[n] = g.ids[n]
		f.cookies[n] = g.cookies[n]
	}
	for _, d := range g.Dirs {
		if !slices.Contains(f.Dirs, d) {
			f.Dirs = append(f.Dirs, d)
		}
	}
}

// Holders lists the processes (other than this one) that still hold one
// of f's namespaces, as their network namespace or through an open file,
// whether or not its name still exists. A held namespace keeps its veths,
// and whatever runs in it, alive; a namespace nobody holds is destroyed
// by the kernel with every device in it.
//
// The kernel gives a destroyed namespace's nsfs inode number to the next
// one created: a process in, or holding, a namespace that is now another
// lab's does not count. Each match is confirmed by the namespace's cookie,
// which is never reused; a namespace that another process (a concurrent
// test binary's lab, say) holds only by an open file, after deleting its
// name, is told apart that way.
func (f Footprint) Holders() map[int]string {
	want := map[nsID]string{}
	cookie := map[nsID]uint64{}
	for n, id := range f.ids {
		want[id] = n
		cookie[id] = f.cookies[n]
	}
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if _, mine := f.ids[e.Name()]; mine {
				continue
			}
			if id, err := statNS(filepath.Join(netnsDir, e.Name())); err == nil {
				delete(want, id)
			}
		}
	}
	return holdersVerified(want, true, func(path string, id nsID) bool {
		c, err := netnsCookie(path)
		// A holder that is gone by now holds nothing.
		return err == nil && c == cookie[id]
	})
}

// netnsCookie returns the cookie of the network namespace at path: the
// SO_NETNS_COOKIE of a socket made inside it.
func netnsCookie(path string) (uint64, error) {
	var c uint64
	err := doIn(path, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		c = v
		return err
	})
	return c, err
}
