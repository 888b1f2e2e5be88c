// Command trafficgen is xnat's AF_XDP traffic generator, the load side of
// the benchmarks: it sends IPv4 UDP or TCP frames from AF_XDP sockets on
// one interface, through the device under test, to a sink or reflector on
// another (usually each in its own network namespace, both served by this
// one process, so TX and RX timestamps share CLOCK_MONOTONIC), and prints
// a JSON result. The engine is bench/gen; this command maps flags onto
// gen.Config.
//
// One-way, 1 Mi flows of 64-byte UDP at the maximum rate for 10 s, from
// the bench lab's gen namespace to its sink namespace:
//
//	trafficgen -tx-netns GEN -tx-dev eth0 -rx-netns SINK -rx-dev eth0 \
//	    -src 10.1.0.0/16 -src-ports 1024-1039 -dst 198.19.0.1 -flows 1048576 \
//	    -size 64 -duration 10s
//
// Bidirectional through a NAT (the reflector answers each frame; the
// result has round-trip latency and the NAT's learned mappings), IMIX at
// 100 kpps:
//
//	trafficgen -mode bidir ... -size imix -rate 100k
//
// Connection rate (every frame a new flow; TCP flows complete their
// handshake through the reflector):
//
//	trafficgen -mode connrate-bidir -proto tcp -flows 16777216 ...
//
// A progress line goes to stderr every -progress; the result goes to
// stdout, or to -json FILE. Exit status: 0 done, 1 run failed, 2 bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xnat/xnat/bench/gen"
)

// options are the parsed command line.
type options struct {
	cfg        gen.Config
	jsonPath   string
	cpuProfile string
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "trafficgen:", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "trafficgen:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "trafficgen:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	res, err := gen.Run(ctx, o.cfg)
	if err == nil {
		err = writeResult(o.jsonPath, res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "trafficgen:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(os.Stderr, "trafficgen: warning:", w)
	}
}

func writeResult(path string, r *gen.Result) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	js = append(js, '\n')
	if path == "" || path == "-" {
		_, err = os.Stdout.Write(js)
		return err
	}
	return os.WriteFile(path, js, 0o644)
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("trafficgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	f := defineFlags(fs, o)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := &o.cfg
	if c.TxDev == "" {
		return nil, errors.New("-tx-dev is required")
	}
	for _, step := range []func(*gen.Config) error{f.traffic, f.flowSet, f.workers} {
		if err := step(c); err != nil {
			return nil, err
		}
	}
	if !f.quiet && c.ProgressEvery > 0 {
		c.Progress = stderr
	}
	return o, nil
}

// rawFlags are the flags that need parsing before they reach gen.Config.
type rawFlags struct {
	mode, proto, srcMAC, dstMAC, src, srcPorts, dst, dstPorts string
	size, rate, cpus, rxCPUs, backend                         string
	flows                                                     uint64
	ttl, ring                                                 int
	quiet                                                     bool
}

// defineFlags defines every flag on fs: straight into o's gen.Config where
// no parsing is needed, into the returned rawFlags otherwise.
func defineFlags(fs *flag.FlagSet, o *options) *rawFlags {
	c := &o.cfg
	f := &rawFlags{}
	fs.StringVar(&f.mode, "mode", "oneway", "oneway, bidir (reflector), connrate (every frame a new flow) or connrate-bidir")
	fs.StringVar(&f.proto, "proto", "udp", "udp or tcp (TCP flows are handshake-shaped: SYN, then ACK|PSH data)")
	fs.StringVar(&c.TxNetns, "tx-netns", "", "network namespace of -tx-dev (default: this process's)")
	fs.StringVar(&c.TxDev, "tx-dev", "", "interface to send on (required)")
	fs.StringVar(&c.RxNetns, "rx-netns", "", "network namespace of -rx-dev")
	fs.StringVar(&c.RxDev, "rx-dev", "", "interface of the sink/reflector (empty: transmit only)")
	fs.StringVar(&f.srcMAC, "src-mac", "", "source MAC (default: -tx-dev's)")
	fs.StringVar(&f.dstMAC, "dst-mac", "", "destination MAC, the DUT's (default: learned from the neighbour table in -tx-netns)")
	fs.StringVar(&f.src, "src", "10.0.0.2", "source addresses: A, A-B or A/n")
	fs.StringVar(&f.srcPorts, "src-ports", "1024-65535", "source ports: P or P-Q")
	fs.StringVar(&f.dst, "dst", "198.18.0.2", "destination addresses: A, A-B or A/n (at most 16384 with a receiver)")
	fs.StringVar(&f.dstPorts, "dst-ports", "9", "destination ports: P or P-Q")
	fs.Uint64Var(&f.flows, "flows", 1, "distinct flows, 1 to 16777216 (source address varies fastest, then source port, destination address, destination port)")
	fs.StringVar(&f.size, "size", "64", "frame size with FCS, 64 to 1518, or imix (7:4:1 of 64/576/1518)")
	fs.StringVar(&f.rate, "rate", "0", "target frames per second over all queues, with optional k/M suffix (0: maximum)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to send")
	fs.DurationVar(&c.Drain, "drain", 300*time.Millisecond, "how long receivers keep counting after the last frame")
	fs.IntVar(&c.TxQueues, "queues", 1, "TX queues (one worker and socket each)")
	fs.IntVar(&c.RxQueues, "rx-queues", 1, "RX queues of the sink/reflector")
	fs.StringVar(&f.cpus, "cpus", "", "CPU per TX worker, comma-separated (default: worker i on CPU i)")
	fs.StringVar(&f.rxCPUs, "rx-cpus", "", "CPU per RX worker (default: after the TX workers' CPUs)")
	fs.BoolVar(&c.NoPin, "no-pin", false, "do not pin workers to CPUs")
	fs.IntVar(&c.RTPriority, "rt-prio", 0, "run workers under SCHED_FIFO at this priority, 1-99 (0: normal scheduling); protects receivers on shared CPUs, starves other tasks there")
	fs.IntVar(&c.Batch, "batch", 64, "burst size, 1 to 256")
	fs.IntVar(&c.Streams, "streams", 0, "measurement streams (default min(flows, 64)); listed in the result when at most -per-stream")
	fs.IntVar(&c.PerStreamMax, "per-stream", 64, "list streams in the result when there are at most this many")
	fs.BoolVar(&c.BusyPoll, "busy-poll", false, "receivers spin instead of sleeping when idle (precise low-rate latency, a core each)")
	fs.IntVar(&c.LearnMax, "learn-max", 4<<20, "flows whose NAT mapping the reflector records (8 bytes each)")
	fs.IntVar(&f.ttl, "ttl", 64, "IPv4 TTL")
	fs.IntVar(&c.Port.NumFrames, "frames", 0, "UMEM frames per socket (default 4096)")
	fs.IntVar(&f.ring, "ring", 0, "size of each AF_XDP ring (default 2048)")
	fs.StringVar(&f.backend, "backend", "native", "AF_XDP ring backend: native or asavie")
	fs.StringVar(&o.jsonPath, "json", "", "write the JSON result to this file instead of stdout")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile (runtime/pprof) of the run to this file")
	fs.DurationVar(&c.ProgressEvery, "progress", time.Second, "progress line interval on stderr")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines")
	return f
}

// traffic parses the mode, the protocol and the MACs.
func (f *rawFlags) traffic(c *gen.Config) (err error) {
	if c.Mode, err = gen.ParseMode(f.mode); err != nil {
		return err
	}
	if c.Proto, err = gen.ParseProto(f.proto); err != nil {
		return err
	}
	for _, m := range []struct {
		s   string
		dst *net.HardwareAddr
	}{{f.srcMAC, &c.SrcMAC}, {f.dstMAC, &c.DstMAC}} {
		if m.s == "" {
			continue
		}
		if *m.dst, err = net.ParseMAC(m.s); err != nil || len(*m.dst) != 6 {
			return fmt.Errorf("bad MAC %q", m.s)
		}
	}
	return nil
}

// flowSet parses the addresses, ports, flow count, sizes, rate and TTL.
func (f *rawFlags) flowSet(c *gen.Config) (err error) {
	if c.Flows.Src, err = gen.ParseAddrRange(f.src); err != nil {
		return err
	}
	if c.Flows.Dst, err = gen.ParseAddrRange(f.dst); err != nil {
		return err
	}
	if c.Flows.SrcPorts, err = gen.ParsePortRange(f.srcPorts); err != nil {
		return err
	}
	if c.Flows.DstPorts, err = gen.ParsePortRange(f.dstPorts); err != nil {
		return err
	}
	if f.flows < 1 || f.flows > gen.MaxFlows {
		return fmt.Errorf("-flows %d not in [1, %d]", f.flows, gen.MaxFlows)
	}
	c.Flows.Count = uint32(f.flows)
	if err := c.Flows.Validate(); err != nil {
		return err
	}
	if c.Sizes, err = gen.ParseSizes(f.size); err != nil {
		return err
	}
	if c.Rate, err = parseRate(f.rate); err != nil {
		return err
	}
	if f.ttl < 1 || f.ttl > 255 {
		return fmt.Errorf("-ttl %d not in [1, 255]", f.ttl)
	}
	c.TTL = uint8(f.ttl)
	return nil
}

// workers parses the CPUs, the backend, the ring size and the duration.
func (f *rawFlags) workers(c *gen.Config) (err error) {
	if c.TxCPUs, err = parseCPUs(f.cpus); err != nil {
		return err
	}
	if c.RxCPUs, err = parseCPUs(f.rxCPUs); err != nil {
		return err
	}
	if err := c.Port.Backend.UnmarshalText([]byte(f.backend)); err != nil {
		return fmt.Errorf("-backend: %w", err)
	}
	if f.ring != 0 {
		c.Port.RxRingSize, c.Port.TxRingSize, c.Port.FillRingSize, c.Port.CompletionRingSize = f.ring, f.ring, f.ring, f.ring
	}
	if c.Duration <= 0 {
		return errors.New("-duration must be positive")
	}
	return nil
}

// parseRate parses a frame rate: a number with an optional k, M or G
// suffix ("250k", "1.5M").
func parseRate(s string) (float64, error) {
	mult := 1.0
	t := strings.TrimSpace(s)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult, t = 1e3, t[:len(t)-1]
		case 'm', 'M':
			mult, t = 1e6, t[:len(t)-1]
		case 'g', 'G':
			mult, t = 1e9, t[:len(t)-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v != v {
		return 0, fmt.Errorf("bad -rate %q", s)
	}
	return v * mult, nil
}

func parseCPUs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad CPU %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}
