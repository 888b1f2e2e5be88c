// Package lab builds throw-away network labs out of network namespaces and
// veth pairs, for the dataplane's privileged tests, the demo and the
// benchmarks.
//
// It sits outside the packet pipeline: it gives the pipeline's pieces (the
// AF_XDP ports, the XDP program, l2fwd, natd) real Linux interfaces to run on
// without touching the machine's own networking. Every host of a lab, the NAT
// box included, lives in a namespace the lab created and deletes; veth pairs
// are created directly inside their namespaces (`ip -n NS link add ... peer
// ... netns OTHER`), so nothing is ever configured in the root namespace.
//
// Addresses are confined to 10.0.0.0/8 (inside) and 198.18.0.0/15 (outside,
// the RFC 2544 benchmarking range), so lab traffic can never reach a real
// network.
//
// Namespace names embed the creating process id ("xn<pid>x<seq>-<role>"), so
// several test binaries can run labs in parallel, and a lab left behind by a
// killed process is swept by the next lab created once that pid is gone.
// A lab is torn down by Close, and also when its process gets SIGINT,
// SIGTERM, SIGHUP or loses its stdout or stderr (see teardown.go).
//
// A Lab is safe for use by one goroutine at a time; its helpers (Exec,
// Command, Do, Link) may be called from any goroutine.
package lab

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/xnat/xnat/internal/nsenter"
)

// netnsDir is where `ip netns` keeps its bind mounts of named namespaces.
const netnsDir = "/run/netns"

var (
	labSeq atomic.Uint32
	// nameRE matches namespaces made by this package; group 1 is the
	// creator's pid.
	nameRE = regexp.MustCompile(`^xn([0-9]+)x[0-9]+-`)
)

// Lab is a set of namespaces created together and removed together by Close.
type Lab struct {
	// Prefix is shared by every namespace of this lab, e.g. "xn4242x1-".
	Prefix string

	mu         sync.Mutex
	namespaces []string       // creation order
	onClose    []func() error // run by Close, last added first
	dirs       []string       // removed by Close

	closeOnce sync.Once
	closeErr  error
}

// newLab reserves a unique prefix, sweeps stale labs of dead processes and
// registers the lab for teardown on a signal.
func newLab() *Lab {
	_ = SweepStale()
	n := labSeq.Add(1)
	l := &Lab{Prefix: fmt.Sprintf("xn%dx%d-", os.Getpid(), n)}
	register(l)
	return l
}

// NS returns the full namespace name for a role of this lab.
func (l *Lab) NS(role string) string { return l.Prefix + role }

// Namespaces lists the namespaces this lab created, in creation order.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.namespaces...)
}

// AddNamespace creates a namespace for role, brings its loopback up and
// records it for Close. It returns the full name.
func (l *Lab) AddNamespace(role string) (string, error) {
	name := l.NS(role)
	creating.RLock()
	if tearingDown.Load() {
		creating.RUnlock()
		return "", errTearingDown
	}
	err := run("ip", "netns", "add", name)
	if err == nil {
		l.mu.Lock()
		l.namespaces = append(l.namespaces, name)
		l.mu.Unlock()
	}
	creating.RUnlock()
	if err != nil {
		return "", err
	}
	if err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return name, err
	}
	return name, nil
}

// OnClose registers f to run at Close (and so at a teardown on a signal)
// before the namespaces are deleted, the last registered first: a process
// that deserves a clean stop (natd detaching its XDP programs) gets it
// there, with a deadline of its own. Close kills whatever is still running
// in the namespaces afterwards.
func (l *Lab) OnClose(f func() error) {
	l.mu.Lock()
	l.onClose = append(l.onClose, f)
	l.mu.Unlock()
}

// TempDir creates a temporary directory named after the lab
// ($TMPDIR/<prefix><name>-*), removed by Close, or by the sweep of the
// next lab if this process is killed.
func (l *Lab) TempDir(name string) (string, error) {
	dir, err := os.MkdirTemp("", l.Prefix+name+"-")
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	l.dirs = append(l.dirs, dir)
	l.mu.Unlock()
	return dir, nil
}

// Veth describes one veth pair to create between two lab namespaces.
type Veth struct {
	NS, Name         string // one end
	PeerNS, PeerName string // the other end
	// Queues is the number of RX and TX queues of each end (0 means 1).
	Queues int
	// PeerQueues is the peer's queue count (0 means the same as Queues).
	PeerQueues int
}

// AddVeth creates the pair directly in its two namespaces, brings both ends
// up and applies the lab's offload policy (see DisableOffloads).
func (l *Lab) AddVeth(v Veth) error {
	q, pq := v.Queues, v.PeerQueues
	if q <= 0 {
		q = 1
	}
	if pq <= 0 {
		pq = q
	}
	err := run("ip", "-n", v.NS, "link", "add", "name", v.Name,
		"numtxqueues", strconv.Itoa(q), "numrxqueues", strconv.Itoa(q),
		"type", "veth", "peer", "name", v.PeerName,
		"numtxqueues", strconv.Itoa(pq), "numrxqueues", strconv.Itoa(pq),
		"netns", v.PeerNS)
	if err != nil {
		return err
	}
	for _, end := range [][2]string{{v.NS, v.Name}, {v.PeerNS, v.PeerName}} {
		if err := DisableOffloads(end[0], end[1]); err != nil {
			return err
		}
		if err := run("ip", "-n", end[0], "link", "set", end[1], "up"); err != nil {
			return err
		}
	}
	return nil
}

// DisableOffloads turns off TX checksum offload, TSO, GSO and GRO on dev.
//
// Why each one:
//   - tx: a namespace's own stack otherwise hands veth CHECKSUM_PARTIAL
//     frames; an XDP program or AF_XDP socket on the peer then sees a
//     frame whose L4 checksum is only the pseudo-header sum, and the NAT
//     would "verify" and forward garbage.
//   - tso/gso: a 64 KiB super-frame would reach the XDP program as one
//     multi-buffer frame instead of MTU-sized packets.
//   - gro: the NAT box must see the packets as sent; GRO would merge the
//     XDP_PASS ones and skew the nftables baseline.
func DisableOffloads(ns, dev string) error {
	return run("ip", "netns", "exec", ns, "ethtool", "-K", dev,
		"tx", "off", "tso", "off", "gso", "off", "gro", "off")
}

// Close runs the OnClose functions, kills every process still running in
// the lab's namespaces, deletes the namespaces (which deletes their veths,
// bridges and XDP programs) and removes the lab's temporary directories. It
// is safe to call more than once, concurrently (every caller returns when
// the teardown is complete, with its result) and after a failed
// construction. It takes bounded time: each namespace's processes get
// killDeadline to die.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.teardown() })
	return l.closeErr
}

func (l *Lab) teardown() error {
	defer unregister(l)
	l.mu.Lock()
	hooks := append([]func() error(nil), l.onClose...)
	l.mu.Unlock()
	var errs []error
	for i := len(hooks) - 1; i >= 0; i-- {
		if err := hooks[i](); err != nil {
			errs = append(errs, err)
		}
	}
	l.mu.Lock()
	names, dirs := append([]string(nil), l.namespaces...), l.dirs
	l.mu.Unlock()
	// A namespace whose `ip netns add` was cut short (by the signal
	// that brought us here, say) may exist without being recorded.
	if entries, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), l.Prefix) && !slices.Contains(names, e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	for i := len(names) - 1; i >= 0; i-- {
		if err := deleteNamespace(names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteNamespace kills the processes in ns (they would otherwise keep the
// namespace and its veths alive after the name is gone), deletes it, and
// then kills any process that entered it meanwhile: `ip netns exec`
// opens the name, then enters, so one that opened it just before the
// deletion would run on in the nameless namespace. Each phase gets
// killDeadline. A namespace already gone is not an error.
//
// The namespace is held open throughout: once destroyed, its identity
// (the nsfs inode number) is given to the next namespace created on the
// machine, and the scan after the deletion would kill another lab's
// processes.
func deleteNamespace(name string) error {
	path := filepath.Join(netnsDir, name)
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	id, err := statNS(path)
	if err != nil {
		return nil
	}
	err = killMembers(id, name, 0)
	deadline := time.Now().Add(killDeadline)
	for {
		derr := run("ip", "netns", "del", name)
		if derr == nil {
			break
		}
		if _, serr := os.Stat(path); serr != nil {
			break // deleted meanwhile by someone else
		}
		if time.Now().After(deadline) {
			return errors.Join(err, derr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A process that opened the name before the deletion enters within
	// moments: watch a little longer than the scans take.
	return errors.Join(err, killMembers(id, name, 100*time.Millisecond))
}

// killMembers SIGKILLs the processes whose network namespace is id, in
// rounds (a process may fork between two scans), until the scans have
// found none for quiet, or killDeadline passes.
func killMembers(id nsID, name string, quiet time.Duration) error {
	want := map[nsID]string{id: name}
	deadline := time.Now().Add(killDeadline)
	var quietSince time.Time
	for {
		left := holders(want, false)
		if len(left) == 0 {
			if quietSince.IsZero() {
				quietSince = time.Now()
			}
			if time.Since(quietSince) >= quiet {
				return nil
			}
		} else {
			quietSince = time.Time{}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: processes %v still in %s after SIGKILL for %v", slices.Collect(maps.Keys(left)), name, killDeadline)
		}
		for pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SweepStale removes what labs of dead processes left behind: their
// namespaces, with every process still inside them killed first, and their
// temporary directories. A lab's names carry its creator's pid; once that
// pid is gone, nobody will close the lab. It runs before every new lab,
// and is exported for cleanup tools.
func SweepStale() error {
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var errs []error
	for _, e := range entries {
		if pid, ok := creatorPid(e.Name()); ok && !pidAlive(pid) {
			if err := deleteNamespace(e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, sweepTempDirs())
	return errors.Join(errs...)
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Command returns an *exec.Cmd that runs argv inside namespace ns (through
// `ip netns exec`). The caller starts and waits for it; a process still
// running at Close is killed.
func Command(ns string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// Exec runs argv inside namespace ns and returns its combined output; a
// non-zero exit is an error that quotes the output.
//
// During a teardown on a signal it runs nothing: the lab is going, and a
// process started now could enter a namespace after its processes were
// killed.
func Exec(ns string, argv ...string) (string, error) {
	if tearingDown.Load() {
		return "", errTearingDown
	}
	out, err := Command(ns, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip netns exec %s %s: %w: %s", ns, strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Do runs f on the calling goroutine's OS thread switched into namespace ns,
// and switches back afterwards (see internal/nsenter). Sockets that f opens
// stay in ns for their whole life.
func Do(ns string, f func() error) error {
	return doIn(filepath.Join(netnsDir, ns), f)
}

// doIn is Do for the namespace file at path (a /run/netns name or a
// /proc/PID/... link to a namespace).
func doIn(path string, f func() error) error {
	return nsenter.RunPath(path, f)
}

// LinkInfo identifies a lab interface.
type LinkInfo struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	MTU   int
}

// Link looks up interface dev in namespace ns.
func Link(ns, dev string) (LinkInfo, error) {
	h, err := handle(ns)
	if err != nil {
		return LinkInfo{}, err
	}
	defer h.Close()
	lk, err := h.LinkByName(dev)
	if err != nil {
		return LinkInfo{}, fmt.Errorf("lab: link %s in %s: %w", dev, ns, err)
	}
	a := lk.Attrs()
	return LinkInfo{Name: a.Name, Index: a.Index, MAC: a.HardwareAddr, MTU: a.MTU}, nil
}

// LinkStats returns the kernel's RX/TX packet counters of dev in ns.
func LinkStats(ns, dev string) (rxPackets, txPackets uint64, err error) {
	h, err := handle(ns)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	lk, err := h.LinkByName(dev)
	if err != nil {
		return 0, 0, fmt.Errorf("lab: link %s in %s: %w", dev, ns, err)
	}
	s := lk.Attrs().Statistics
	if s == nil {
		return 0, 0, fmt.Errorf("lab: no statistics for %s in %s", dev, ns)
	}
	return s.RxPackets, s.TxPackets, nil
}

// SetLink brings dev in ns up or down.
func SetLink(ns, dev string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return run("ip", "-n", ns, "link", "set", dev, state)
}

// handle opens a netlink handle bound to namespace ns.
func handle(ns string) (*netlink.Handle, error) {
	nh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return nil, fmt.Errorf("lab: netlink in %s: %w", ns, err)
	}
	return h, nil
}

// run executes a configuration command and folds its output into the error.
func run(argv ...string) error {
	if tearingDown.Load() && !(len(argv) > 2 && argv[1] == "netns" && argv[2] == "del") {
		return errTearingDown
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Run executes a configuration command inside ns, like Exec, discarding
// the output on success.
func Run(ns string, argv ...string) error {
	_, err := Exec(ns, argv...)
	return err
}

// sysctl sets key=value inside ns.
func sysctl(ns, key, value string) error {
	return run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", key+"="+value)
}
