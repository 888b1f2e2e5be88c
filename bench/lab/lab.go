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
//
// A Lab is safe for use by one goroutine at a time; its helpers (Exec,
// Command, Do, Link) may be called from any goroutine.
package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where `ip netns` keeps its bind mounts of named namespaces.
const netnsDir = "/run/netns"

var (
	labSeq    atomic.Uint32
	sweepOnce sync.Once
	// nameRE matches namespaces made by this package; group 1 is the
	// creator's pid.
	nameRE = regexp.MustCompile(`^xn([0-9]+)x[0-9]+-`)
)

// Lab is a set of namespaces created together and removed together by Close.
type Lab struct {
	// Prefix is shared by every namespace of this lab, e.g. "xn4242x1-".
	Prefix string

	mu         sync.Mutex
	namespaces []string // creation order
	closed     bool
}

// newLab reserves a unique prefix and sweeps stale labs of dead processes.
func newLab() *Lab {
	sweepOnce.Do(func() { _ = SweepStale() })
	n := labSeq.Add(1)
	return &Lab{Prefix: fmt.Sprintf("xn%dx%d-", os.Getpid(), n)}
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
	if err := run("ip", "netns", "add", name); err != nil {
		return "", err
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, name)
	l.mu.Unlock()
	if err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return name, err
	}
	return name, nil
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

// Close kills every process still running in the lab's namespaces and
// deletes the namespaces (which deletes their veths and bridges). It is safe
// to call more than once and after a failed construction.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	names := l.namespaces
	l.mu.Unlock()
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		if err := deleteNamespace(names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteNamespace kills the processes in ns (they would otherwise keep the
// namespace and its veths alive after the name is gone) and deletes it.
func deleteNamespace(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		self := os.Getpid()
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == self {
				continue
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var err error
	for range 20 {
		if err = run("ip", "netns", "del", name); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// SweepStale deletes namespaces made by this package whose creating process
// no longer exists. It is best effort: called once per process before its
// first lab, and exported for cleanup tools.
func SweepStale() error {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range entries {
		m := nameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pidAlive(pid) {
			continue
		}
		if err := deleteNamespace(e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
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
func Exec(ns string, argv ...string) (string, error) {
	out, err := Command(ns, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip netns exec %s %s: %w: %s", ns, strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Do runs f on the calling goroutine's OS thread switched into namespace ns,
// and switches back afterwards. Sockets that f opens stay in ns for their
// whole life. If the thread cannot be switched back it is left locked, so
// the Go runtime destroys it when the goroutine exits instead of reusing a
// thread in the wrong namespace.
func Do(ns string, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: enter netns %s: %w", ns, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(ferr, fmt.Errorf("lab: restore netns: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
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
