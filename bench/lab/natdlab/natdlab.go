// Package natdlab runs natd in the standard namespace lab and drives real
// kernel clients and servers through it. It is shared by natd's end-to-end
// tests, by `make demo` (cmd/xnatlab) and by the benchmarks: each step here
// is something an operator would do by hand with ping, a TCP client or
// natctl, done from Go so that results can be checked exactly.
//
// Sockets are opened inside a lab namespace with lab.Do, so they live in
// that namespace even though the test or demo process itself stays in the
// root namespace; natd runs as its own process in the nat namespace.
package natdlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"gopkg.in/yaml.v3"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/mgmt/client"
	"github.com/xnat/xnat/mgmt/metrics"
)

// Lab addresses natd's lab configuration uses.
var (
	PoolAddr    = netip.MustParseAddr("198.18.0.100")
	Server      = lab.OutAddr.Addr()
	In1         = lab.In1Addr.Addr()
	In2         = lab.In2Addr.Addr()
	Far         = lab.FarAddr.Addr()
	ForwardPort = uint16(8080) // PoolAddr:8080 -> In2:80
)

// Options configure an Env.
type Options struct {
	// Natd is the natd binary.
	Natd string
	// ConfigFile is used when set (make demo: deploy/examples/lab.yaml),
	// with its management sockets moved into the lab's directory;
	// otherwise Config is written to a temporary file.
	ConfigFile string
	Config     ConfigParams
	// Queues gives the NAT's veths this many queues (and natd as many
	// workers).
	Queues int
	// Log receives natd's log (default: kept in memory, see Env.Log).
	Log io.Writer
	// ExtraLabOptions are passed to lab.NewNAT.
	ExtraLabOptions []lab.Option
}

// ConfigParams fill the generated natd configuration.
type ConfigParams struct {
	Pool        string // default "198.18.0.100/32"
	PortsUDP    string // e.g. "40000-40003" (default: the NAT's default)
	PortsTCP    string
	PollMode    string // default adaptive
	CPUs        []int  // per worker; default 1 (or i%2)
	Extra       string // appended verbatim to the nat section
	TopLevel    string // appended verbatim at the end (e.g. a bgp section)
	EventsFile  string // default "" (no file)
	MetricsAddr string // default 127.0.0.1:9469 (inside the nat namespace)
	ICMPPerSec  int
	MaxSessions int
	UDPTimeout  string
	LogLevel    string
}

// Env is a running lab with natd.
type Env struct {
	*lab.NAT
	Opts       Options
	Dir        string // temporary directory: config, sockets, logs
	ConfigPath string
	Socket     string // admin socket
	ROSocket   string // read-only socket
	Metrics    string

	natd lab.Daemon
	log  *lab.LogBuffer
}

// stopDeadline is how long Close lets natd stop on SIGTERM (detaching its
// XDP programs, removing its sockets) before it is SIGKILLed.
const stopDeadline = 5 * time.Second

// New builds the lab (with the far host) and writes natd's configuration,
// but does not start natd. Close (or a signal, see package lab) stops natd
// and removes the lab with its temporary directory.
func New(opts Options) (_ *Env, err error) {
	if opts.Queues < 1 {
		opts.Queues = 1
	}
	e := &Env{Opts: opts, natd: lab.Daemon{Name: "natdlab: natd"}, log: &lab.LogBuffer{W: opts.Log}}
	lopts := append([]lab.Option{lab.WithQueues(opts.Queues), lab.WithFarHost()}, opts.ExtraLabOptions...)
	e.NAT, err = lab.NewNAT(lopts...)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	e.NAT.OnClose(func() error {
		if e.Running() {
			// natd's exit status after SIGTERM is its own business;
			// Stop fails only if natd had to be SIGKILLed.
			if err := e.Stop(syscall.SIGTERM, stopDeadline); err != nil && !isExit(err) {
				return err
			}
		}
		return nil
	})
	if e.Dir, err = e.NAT.TempDir("natdlab"); err != nil {
		return nil, err
	}
	e.Metrics = opts.Config.MetricsAddr
	if e.Metrics == "" {
		e.Metrics = "127.0.0.1:9469"
	}
	e.Socket = filepath.Join(e.Dir, "natd.sock")
	e.ROSocket = filepath.Join(e.Dir, "natd-ro.sock")
	e.ConfigPath = filepath.Join(e.Dir, "natd.yaml")
	cfg := []byte(e.renderConfig())
	if opts.ConfigFile != "" {
		if cfg, err = e.labCopy(opts.ConfigFile); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(e.ConfigPath, cfg, 0o644); err != nil {
		return nil, err
	}
	return e, nil
}

// labCopy returns the configuration file with its management sockets
// moved into the lab's directory: natd runs in a namespace, but the file
// system is the machine's, and the sockets of a file meant for the lab
// (/run/xnat/natd.sock in deploy/examples/lab.yaml) would take the place
// of a real natd's and be left behind if natd were killed.
func (e *Env) labCopy(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m, _ := doc["management"].(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	m["socket"], m["readonly_socket"] = e.Socket, e.ROSocket
	doc["management"] = m
	return yaml.Marshal(doc)
}

func isExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}

func (e *Env) renderConfig() string {
	p := e.Opts.Config
	if p.Pool == "" {
		p.Pool = PoolAddr.String() + "/32"
	}
	if p.PollMode == "" {
		p.PollMode = "adaptive"
	}
	var b strings.Builder
	b.WriteString(e.InterfacesYAML(p.CPUs))
	fmt.Fprintf(&b, "poll_mode: %s\n", p.PollMode)
	b.WriteString("nat:\n  inside_prefixes: [10.0.0.0/24]\n")
	fmt.Fprintf(&b, "  pools:\n    - name: lab\n      addresses: [%s]\n", p.Pool)
	fmt.Fprintf(&b, "  port_forwards:\n    - {proto: tcp, outside: \"%s:%d\", inside: \"%s:80\"}\n", PoolAddr, ForwardPort, In2)
	if p.PortsUDP != "" || p.PortsTCP != "" {
		b.WriteString("  ports:\n")
		if p.PortsUDP != "" {
			fmt.Fprintf(&b, "    udp: %s\n", p.PortsUDP)
		}
		if p.PortsTCP != "" {
			fmt.Fprintf(&b, "    tcp: %s\n", p.PortsTCP)
		}
	}
	if p.UDPTimeout != "" {
		fmt.Fprintf(&b, "  timeouts:\n    udp: %s\n", p.UDPTimeout)
	}
	b.WriteString("  limits:\n")
	if p.MaxSessions == 0 {
		p.MaxSessions = 65536
	}
	fmt.Fprintf(&b, "    max_sessions: %d\n    max_subscribers: 1024\n", p.MaxSessions)
	if p.ICMPPerSec != 0 {
		fmt.Fprintf(&b, "    icmp_errors_per_second: %d\n", p.ICMPPerSec)
	}
	b.WriteString(p.Extra)
	b.WriteString(e.ManagementYAML())
	if p.EventsFile != "" {
		fmt.Fprintf(&b, "events:\n  file: %s\n", p.EventsFile)
	}
	if p.LogLevel != "" {
		fmt.Fprintf(&b, "log:\n  level: %s\n", p.LogLevel)
	}
	b.WriteString(p.TopLevel)
	return b.String()
}

// InterfacesYAML renders the interfaces and workers sections of natd's
// configuration for the lab: Opts.Queues queues on each side, one worker
// per queue pinned to cpus[i], or by default alternately to CPUs 1 and 0.
// Tests that write their own configuration start from it.
func (e *Env) InterfacesYAML(cpus []int) string {
	var b strings.Builder
	queues := make([]string, e.Opts.Queues)
	for i := range queues {
		queues[i] = fmt.Sprint(i)
	}
	fmt.Fprintf(&b, "interfaces:\n  inside: {name: %s, queues: [%s]}\n  outside: {name: %s, queues: [%s]}\n",
		lab.NATInside, strings.Join(queues, ", "), lab.NATOutside, strings.Join(queues, ", "))
	b.WriteString("workers:\n")
	for i := range queues {
		cpu := 1 - i%2
		if i < len(cpus) {
			cpu = cpus[i]
		}
		fmt.Fprintf(&b, "  - cpu: %d\n", cpu)
	}
	return b.String()
}

// ManagementYAML renders the management and metrics sections: the lab's
// sockets and metrics address, where the tests reach natd.
func (e *Env) ManagementYAML() string {
	return fmt.Sprintf("management:\n  socket: %s\n  readonly_socket: %s\nmetrics:\n  listen: %s\n", e.Socket, e.ROSocket, e.Metrics)
}

// Start runs natd in the nat namespace and waits until it is ready.
func (e *Env) Start(ctx context.Context) error {
	if err := e.natd.Start(e.Box, e.log, e.Opts.Natd, "--config", e.ConfigPath); err != nil {
		if errors.Is(err, lab.ErrDaemonRunning) {
			return err
		}
		return fmt.Errorf("start natd: %w", err)
	}
	return e.WaitReady(ctx)
}

// WaitReady polls natd's /readyz until it answers 200.
func (e *Env) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	exited := e.natd.Exited()
	for {
		select {
		case <-exited:
			return fmt.Errorf("natd exited during start-up (%v); log:\n%s", e.natd.ExitErr(), e.Log())
		case <-ctx.Done():
			return fmt.Errorf("natd not ready: %w; log:\n%s", ctx.Err(), e.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if code, _, err := e.HTTPGet("/readyz"); err == nil && code == http.StatusOK {
			return nil
		}
	}
}

// Running reports whether natd has not exited.
func (e *Env) Running() bool { return e.natd.Running() }

// Signal sends sig to natd.
func (e *Env) Signal(sig syscall.Signal) error { return e.natd.Signal(sig) }

// Stop sends sig and waits for natd to exit; it returns natd's exit error.
// A natd still running after timeout is SIGKILLed, and Stop says so.
func (e *Env) Stop(sig syscall.Signal, timeout time.Duration) error {
	killed, err := e.natd.Stop(sig, timeout)
	if err != nil {
		return err
	}
	if killed {
		return fmt.Errorf("natd did not exit within %v after %v; log:\n%s", timeout, sig, e.Log())
	}
	return e.natd.ExitErr()
}

// Log returns natd's log so far.
func (e *Env) Log() string { return e.log.String() }

// Close stops natd (SIGTERM, then SIGKILL after stopDeadline) and removes
// the lab and its directory. It is safe to call more than once and
// concurrently with a teardown on a signal.
func (e *Env) Close() error {
	if e.NAT == nil {
		return nil
	}
	return e.NAT.Close()
}

// Client dials natd's admin (or read-only) socket.
func (e *Env) Client(readOnly bool) (*client.Client, error) {
	s := e.Socket
	if readOnly {
		s = e.ROSocket
	}
	return client.Dial(client.Options{Socket: s})
}

// ---- sockets in namespaces ----

// DialTCP connects from namespace ns to addr.
func DialTCP(ns string, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := lab.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	return c, err
}

// ListenTCP listens in namespace ns.
func ListenTCP(ns string, addr netip.AddrPort) (net.Listener, error) {
	var ln net.Listener
	err := lab.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	return ln, err
}

// ListenUDP opens a UDP socket in namespace ns. Its receive buffer is
// forced to 4 MiB (the lab runs as root), so that a test's burst of
// replies is not lost in the kernel's socket queue, where it would look
// like loss in the NAT.
func ListenUDP(ns string, addr netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := lab.Do(ns, func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, err
	}
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 4<<20)
		})
	}
	return c, nil
}

// HTTPGet fetches path from natd's metrics endpoint inside the nat
// namespace. The connection is dialled in the namespace and then handed to
// the HTTP client, whose own goroutines could run on any thread.
func (e *Env) HTTPGet(path string) (int, []byte, error) {
	return lab.HTTPGet(e.Box, e.Metrics, path, string(expfmt.NewFormat(expfmt.TypeTextPlain)))
}

// Scrape fetches and parses /metrics.
func (e *Env) Scrape() (map[string]*dto.MetricFamily, error) {
	code, body, err := e.HTTPGet("/metrics")
	if err != nil {
		return nil, err
	}
	return metrics.Parse("/metrics", code, body)
}

// ---- scenario steps ----

// TCPHello runs a TCP server on the outside host that greets each client
// with "hello world!" and the address it saw, connects to it from inside
// host ns, and returns what the client read and the source address the
// server saw.
func TCPHello(clientNS, serverNS string, server netip.AddrPort) (greeting string, seen netip.AddrPort, err error) {
	return TCPHelloVia(clientNS, serverNS, server, server)
}

// UDPExchange sends n datagrams from n different source ports of clientNS
// to an echo server in serverNS and returns how many were answered and the
// distinct source endpoints the server saw. Source ports are firstPort,
// firstPort+1, ..., or ephemeral ones (which the kernel may reuse between
// waves of sockets) when firstPort is 0.
func UDPExchange(clientNS, serverNS string, server netip.AddrPort, clientAddr netip.Addr, n int, firstPort ...uint16) (answered int, seen map[netip.AddrPort]bool, err error) {
	srv, err := ListenUDP(serverNS, server)
	if err != nil {
		return 0, nil, err
	}
	defer srv.Close()
	var senders Senders
	go senders.Echo(srv)
	// Many sockets at once would exhaust file descriptors; send in waves.
	const wave = 250
	for base := 0; base < n; base += wave {
		k := min(wave, n-base)
		conns := make([]*net.UDPConn, 0, k)
		for i := 0; i < k; i++ {
			port := uint16(0)
			if len(firstPort) > 0 && firstPort[0] != 0 {
				port = firstPort[0] + uint16(base+i)
			}
			c, err := ListenUDP(clientNS, netip.AddrPortFrom(clientAddr, port))
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return answered, senders.Seen(), err
			}
			conns = append(conns, c)
		}
		for i, c := range conns {
			msg := fmt.Sprintf("flow %d", base+i)
			c.WriteToUDPAddrPort([]byte(msg), server)
		}
		deadline := time.Now().Add(3 * time.Second)
		buf := make([]byte, 64)
		for i, c := range conns {
			want := fmt.Sprintf("flow %d", base+i)
			for {
				c.SetReadDeadline(deadline)
				k, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				if string(buf[:k]) == want {
					answered++
					break
				}
			}
			c.Close()
		}
	}
	return answered, senders.Seen(), nil
}

// Ping pings dst from ns count times; it returns ping's output.
func Ping(ns string, dst netip.Addr, count int, extra ...string) (string, error) {
	args := append([]string{"ping", "-n", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2"}, extra...)
	return lab.Exec(ns, append(args, dst.String())...)
}

// TTLProbe sends one echo with TTL 2 from ns to the far host: the NAT
// forwards it (TTL 1), the router on the outside expires it, and its Time
// Exceeded must come back through the NAT to ns. It returns ping's output.
func TTLProbe(ns string) (string, error) {
	out, err := lab.Exec(ns, "ping", "-n", "-c", "1", "-t", "2", "-W", "3", Far.String())
	if strings.Contains(out, "Time to live exceeded") {
		return out, nil // ping exits non-zero when no reply came, as here
	}
	if err == nil {
		err = errors.New("no Time Exceeded in ping's output")
	}
	return out, err
}

// Nstat returns the named kernel SNMP counters of namespace ns (nstat -az).
func Nstat(ns string, names ...string) (map[string]uint64, error) {
	out, err := lab.Exec(ns, "nstat", "-az", "--json")
	if err != nil {
		// Older nstat has no --json: parse the table.
		out, err = lab.Exec(ns, "nstat", "-az")
		if err != nil {
			return nil, err
		}
	}
	res := map[string]uint64{}
	for _, n := range names {
		idx := strings.Index(out, "\""+n+"\"")
		if idx >= 0 {
			var v uint64
			fmt.Sscanf(out[idx+len(n)+3:], "%d", &v)
			res[n] = v
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == n {
				var v uint64
				fmt.Sscanf(f[1], "%d", &v)
				res[n] = v
			}
		}
	}
	return res, nil
}
