// Command l2fwd is the I/O ceiling of the pipeline: an AF_XDP forwarder on
// the same port layer as natd (dataplane/afxdp) and the same XDP program
// (dataplane/xdpprog), doing no NAT. Frames received on one side are sent
// out of the other with their MACs rewritten (dst = the configured or
// learned peer MAC, src = the egress interface's MAC): as they are when the
// pair's two sockets share one UMEM (the default, -shared-umem), else
// copied into a frame of the other side's UMEM. One goroutine per (inside queue, outside queue) pair, locked to its
// OS thread and pinned to a CPU, busy-polls bursts of 64.
//
// Run it inside the forwarding namespace:
//
//	ip netns exec NS l2fwd -in nat-in -out nat-out -queues 1 \
//	    -inside 10.0.0.0/24 -local 10.0.0.1,198.18.0.1 -public 10.0.0.2,10.0.0.3
//
// It prints a JSON summary on exit (SIGINT/SIGTERM or -duration).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/dataplane/afxdp"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/xdpprog"
)

type config struct {
	in, out         string
	queues          int
	batch           int
	backend         afxdp.Backend
	inPeer, outPeer net.HardwareAddr
	inside          []netip.Prefix
	local, public   []netip.Addr
	cpus            []int
	duration        time.Duration
	opts            afxdp.Options
	sharedUMEM      bool
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "l2fwd:", err)
		os.Exit(2)
	}
	sum, err := run(cfg)
	if sum != nil {
		_ = json.NewEncoder(os.Stdout).Encode(sum)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "l2fwd:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("l2fwd", flag.ContinueOnError)
	c := &config{}
	var backend, inPeer, outPeer, inside, local, public, cpus string
	fs.StringVar(&c.in, "in", "", "inside interface")
	fs.StringVar(&c.out, "out", "", "outside interface")
	fs.IntVar(&c.queues, "queues", 1, "queue pairs: (in q, out q) for q in [0, queues)")
	fs.IntVar(&c.batch, "batch", 64, "burst size")
	fs.StringVar(&backend, "backend", "native", "ring backend: native or asavie")
	fs.StringVar(&inPeer, "in-peer", "", "dst MAC for frames sent on the inside (default: learned)")
	fs.StringVar(&outPeer, "out-peer", "", "dst MAC for frames sent on the outside (default: learned)")
	fs.StringVar(&inside, "inside", "10.0.0.0/8", "inside prefixes (comma-separated) redirected on the inside")
	fs.StringVar(&local, "local", "", "the box's own addresses, left to the kernel")
	fs.StringVar(&public, "public", "", "destinations redirected on the outside")
	fs.StringVar(&cpus, "cpus", "", "CPU per queue pair (comma-separated; default: pair i on CPU i mod NumCPU)")
	fs.DurationVar(&c.duration, "duration", 0, "stop after this long (0: until SIGINT/SIGTERM)")
	fs.IntVar(&c.opts.NumFrames, "frames", 0, "UMEM frames per socket (default 4096)")
	fs.IntVar(&c.opts.RxRingSize, "ring", 0, "size of each of the four rings (default 2048)")
	fs.BoolVar(&c.sharedUMEM, "shared-umem", true, "a queue pair's two sockets share one UMEM, so frames cross without a copy (native backend; false: copy, to compare)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.in == "" || c.out == "" {
		return nil, errors.New("-in and -out are required")
	}
	if c.queues < 1 || c.queues > xdpprog.MaxQueues {
		return nil, fmt.Errorf("-queues %d out of range", c.queues)
	}
	if c.batch < 1 || c.batch > 256 {
		return nil, fmt.Errorf("-batch %d out of range [1,256]", c.batch)
	}
	if err := c.backend.UnmarshalText([]byte(backend)); err != nil {
		return nil, fmt.Errorf("-backend: %w", err)
	}
	c.sharedUMEM = c.sharedUMEM && c.backend.SharesUMEM()
	r := c.opts.RxRingSize
	c.opts = afxdp.Options{NumFrames: c.opts.NumFrames, RxRingSize: r, TxRingSize: r, FillRingSize: r,
		CompletionRingSize: r, BatchSize: c.batch, Backend: c.backend}
	var err error
	for _, m := range []struct {
		s   string
		dst *net.HardwareAddr
	}{{inPeer, &c.inPeer}, {outPeer, &c.outPeer}} {
		if m.s != "" {
			if *m.dst, err = net.ParseMAC(m.s); err != nil {
				return nil, err
			}
		}
	}
	if c.inside, err = parseList(inside, netip.ParsePrefix); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		s   string
		dst *[]netip.Addr
	}{{local, &c.local}, {public, &c.public}} {
		if *l.dst, err = parseList(l.s, netip.ParseAddr); err != nil {
			return nil, err
		}
	}
	if c.cpus, err = parseList(cpus, strconv.Atoi); err != nil {
		return nil, err
	}
	return c, nil
}

// parseList parses a comma-separated flag value ("" is none) with parse.
func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	if s == "" {
		return nil, nil
	}
	var out []T
	for _, f := range strings.Split(s, ",") {
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// side is one interface of the forwarder.
type side struct {
	name    string
	ifindex int
	mac     [6]byte
	// peer is the dst MAC for frames sent on this side: configured, or
	// learned from the src MAC of frames received here (48 bits in a
	// uint64; zero = unknown). Shared by the workers: one atomic load per
	// burst.
	peer    atomic.Uint64
	learned bool
	att     *xdpprog.Attachment
}

func macToU64(m []byte) uint64 {
	var v uint64
	for _, b := range m[:6] {
		v = v<<8 | uint64(b)
	}
	return v
}

func u64ToMAC(v uint64, dst []byte) {
	for i := 5; i >= 0; i-- {
		dst[i] = byte(v)
		v >>= 8
	}
}

// counters of one worker; written once per burst by its worker only.
type counters struct {
	fwdIn2Out, fwdOut2In atomic.Uint64
	noFrame, txFull      atomic.Uint64
	_                    [32]byte // keep workers' counters on separate lines
}

// Summary is printed as JSON on exit.
type Summary struct {
	Backend      string  `json:"backend"`
	SharedUMEM   bool    `json:"shared_umem"`
	Queues       int     `json:"queues"`
	Seconds      float64 `json:"seconds"`
	In2Out       uint64  `json:"in_to_out_packets"`
	Out2In       uint64  `json:"out_to_in_packets"`
	NoFrame      uint64  `json:"no_frame_drops"`
	TxFull       uint64  `json:"tx_full_drops"`
	PPS          float64 `json:"forwarded_pps"`
	WorkerErrors []string
}

func run(c *config) (*Summary, error) {
	in, out, err := lookupSides(c)
	if err != nil {
		return nil, err
	}
	prog, err := attachProgram(c, in, out)
	if prog != nil {
		defer prog.Close()
	}
	if err != nil {
		return nil, err
	}
	pairs, err := openPorts(c, in, out)
	defer func() {
		for _, p := range pairs {
			if p.in != nil {
				p.in.Close()
			}
			if p.out != nil {
				p.out.Close()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	return forwardAll(c, pairs, in, out, stopSignal(c.duration)), nil
}

// lookupSides finds both interfaces and sets their peers' MACs.
func lookupSides(c *config) (in, out *side, err error) {
	in, out = &side{name: c.in}, &side{name: c.out}
	for _, s := range []*side{in, out} {
		ifi, err := net.InterfaceByName(s.name)
		if err != nil {
			return nil, nil, err
		}
		s.ifindex = ifi.Index
		copy(s.mac[:], ifi.HardwareAddr)
	}
	// Until a peer is learned, frames go to the broadcast MAC: the peer's
	// stack still accepts them, and its first reply teaches us its MAC.
	const broadcast = 0xffff_ffff_ffff
	for _, x := range []struct {
		s   *side
		mac net.HardwareAddr
	}{{in, c.inPeer}, {out, c.outPeer}} {
		if x.mac != nil {
			x.s.peer.Store(macToU64(x.mac))
		} else {
			x.s.peer.Store(broadcast)
			x.s.learned = true
		}
	}
	return in, out, nil
}

// attachProgram loads natd's XDP program with c's addresses and attaches
// it to both sides. The program is returned for closing even on error.
func attachProgram(c *config, in, out *side) (*xdpprog.Program, error) {
	prog, err := xdpprog.Load()
	if err != nil {
		return nil, err
	}
	if err := prog.SetInsidePrefixes(c.inside); err != nil {
		return prog, err
	}
	if err := prog.SetLocalAddrs(c.local); err != nil {
		return prog, err
	}
	if err := prog.SetPublicAddrs(c.public); err != nil {
		return prog, err
	}
	if in.att, err = prog.Attach(in.ifindex, xdpprog.RoleInside); err != nil {
		return prog, err
	}
	if out.att, err = prog.Attach(out.ifindex, xdpprog.RoleOutside); err != nil {
		return prog, err
	}
	return prog, nil
}

// pair is one queue's two ports.
type pair struct{ in, out *afxdp.Port }

// openPorts opens an AF_XDP socket on every queue of both sides. What it
// opened is returned for closing even on error.
func openPorts(c *config, in, out *side) ([]pair, error) {
	pairs := make([]pair, c.queues)
	for q := range c.queues {
		if err := openPair(c, in, out, q, &pairs[q]); err != nil {
			return pairs, err
		}
	}
	return pairs, nil
}

// openPair opens queue q's two sockets into p, on one UMEM when
// -shared-umem; what it opened is in p for closing even on error.
func openPair(c *config, in, out *side, q int, p *pair) error {
	o := c.opts
	if c.sharedUMEM {
		u, err := afxdp.NewUMEM(&o, 2)
		if err != nil {
			return err
		}
		defer u.Close() // the pair's ports keep it mapped
		o.UMEM = u
	}
	var err error
	o.Register = func(_, queue, fd int) error { return in.att.Register(queue, fd) }
	if p.in, err = afxdp.New(in.ifindex, q, &o); err != nil {
		return err
	}
	o.Register = func(_, queue, fd int) error { return out.att.Register(queue, fd) }
	p.out, err = afxdp.New(out.ifindex, q, &o)
	return err
}

// stopSignal is closed on SIGINT or SIGTERM, or after d when d > 0.
func stopSignal(d time.Duration) <-chan struct{} {
	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		if d > 0 {
			select {
			case <-sig:
			case <-time.After(d):
			}
		} else {
			<-sig
		}
		close(stop)
	}()
	return stop
}

// forwardAll runs one worker per queue pair until stop and sums their
// counters.
func forwardAll(c *config, pairs []pair, in, out *side, stop <-chan struct{}) *Summary {
	cnt := make([]counters, c.queues)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var werrs []string
	start := time.Now()
	for q := range c.queues {
		cpu := q % runtime.NumCPU()
		if q < len(c.cpus) {
			cpu = c.cpus[q]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := worker(pairs[q].in, pairs[q].out, in, out, c.batch, cpu, &cnt[q], stop); err != nil {
				errMu.Lock()
				werrs = append(werrs, err.Error())
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	sum := &Summary{Backend: c.backend.String(), SharedUMEM: c.sharedUMEM, Queues: c.queues, Seconds: el.Seconds(), WorkerErrors: werrs}
	for i := range cnt {
		sum.In2Out += cnt[i].fwdIn2Out.Load()
		sum.Out2In += cnt[i].fwdOut2In.Load()
		sum.NoFrame += cnt[i].noFrame.Load()
		sum.TxFull += cnt[i].txFull.Load()
	}
	sum.PPS = float64(sum.In2Out+sum.Out2In) / el.Seconds()
	return sum
}

// worker owns one queue pair's two ports. It locks its goroutine to an OS
// thread pinned to cpu and busy-polls both directions.
func worker(pin, pout *afxdp.Port, in, out *side, batch, cpu int, cnt *counters, stop <-chan struct{}) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	rx := make([]port.Buf, batch)
	tx := make([]port.Buf, batch)
	var lastErr error
	for i := uint32(0); ; i++ {
		// Check for stop every 1024 iterations: a channel receive per
		// burst would cost more than the idle burst itself.
		if i&1023 == 0 {
			select {
			case <-stop:
				return lastErr
			default:
			}
		}
		n1, e1 := forward(pin, pout, in, out, rx, tx, &cnt.fwdIn2Out, cnt)
		n2, e2 := forward(pout, pin, out, in, rx, tx, &cnt.fwdOut2In, cnt)
		if e1 != nil {
			lastErr = e1
		}
		if e2 != nil {
			lastErr = e2
		}
		_, _ = n1, n2
	}
}

// forward moves one burst from src to dst: receive, copy into dst frames
// unless the two share a UMEM, rewrite MACs, transmit, flush. Drops are
// counted, never silent.
func forward(src, dst *afxdp.Port, from, to *side, rx, tx []port.Buf, fwd *atomic.Uint64, cnt *counters) (int, error) {
	n := src.RxBurst(rx)
	if n > 0 {
		if from.learned {
			// The last sender on this side is where its replies go.
			if m := macToU64(rx[n-1].Data[6:12]); m != from.peer.Load() {
				from.peer.Store(m)
			}
		}
		peer := to.peer.Load()
		if port.SamePool(src, dst) {
			return n, forwardShared(dst, to, rx[:n], peer, fwd, cnt)
		}
		k := dst.Alloc(tx[:n])
		for i := range k {
			afxdp.CopyFrame(&tx[i], rx[i].Data)
			f := tx[i].Data
			u64ToMAC(peer, f[0:6])
			copy(f[6:12], to.mac[:])
		}
		src.Free(rx[:n])
		sent := dst.TxBurst(tx[:k])
		dst.Free(tx[sent:k])
		fwd.Add(uint64(sent))
		if k < n {
			cnt.noFrame.Add(uint64(n - k))
		}
		if sent < k {
			cnt.txFull.Add(uint64(k - sent))
		}
	}
	return n, dst.Flush()
}

// forwardShared sends the frames src received out of dst as they are: the
// two sockets share a UMEM, so the frames are already dst's to send.
func forwardShared(dst *afxdp.Port, to *side, rx []port.Buf, peer uint64, fwd *atomic.Uint64, cnt *counters) error {
	for i := range rx {
		f := rx[i].Data
		u64ToMAC(peer, f[0:6])
		copy(f[6:12], to.mac[:])
	}
	sent := dst.TxBurst(rx)
	dst.Free(rx[sent:])
	fwd.Add(uint64(sent))
	if sent < len(rx) {
		cnt.txFull.Add(uint64(len(rx) - sent))
	}
	return dst.Flush()
}
