package gen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/xnat/xnat/dataplane/afxdp"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/xdpprog"
)

// Mode is the kind of test Run performs.
type Mode uint8

const (
	// OneWay sends into a counting sink on the RX interface (or, with no
	// RX interface, only transmits).
	OneWay Mode = iota
	// Bidir turns every frame around at a reflector on the RX interface;
	// the generator receives the replies on its TX interface and records
	// round-trip latency and return loss, and the reflector records the
	// translated source of each flow (the NAT's mappings).
	Bidir
	// ConnRate sends every flow exactly once (a SYN, or the first UDP
	// datagram of a never-used tuple): frames reaching the sink are new
	// sessions the DUT set up. The run ends at Duration or when every flow
	// has been used.
	ConnRate
	// ConnRateBidir is ConnRate through a reflector: a session counts as
	// established when its reply (SYN-ACK, or the UDP echo) comes back; for
	// TCP the generator then completes the handshake with an ACK.
	ConnRateBidir
)

var modeNames = [...]string{OneWay: "oneway", Bidir: "bidir", ConnRate: "connrate", ConnRateBidir: "connrate-bidir"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode parses a Mode's name.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if s == n {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q (want %s)", s, strings.Join(modeNames[:], ", "))
}

// Reflects reports whether the mode turns frames around at the far side.
func (m Mode) Reflects() bool { return m == Bidir || m == ConnRateBidir }

// NewFlows reports whether every frame opens a new flow.
func (m Mode) NewFlows() bool { return m == ConnRate || m == ConnRateBidir }

// ParseProto parses "udp" or "tcp" into an IP protocol number.
func ParseProto(s string) (uint8, error) {
	switch strings.ToLower(s) {
	case "udp":
		return header.ProtocolUDP, nil
	case "tcp":
		return header.ProtocolTCP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want udp or tcp)", s)
}

func protoName(p uint8) string {
	if p == header.ProtocolTCP {
		return "tcp"
	}
	return "udp"
}

// Config is a generator run. Addresses are plain values here, at the
// configuration boundary; the workers use FlowSpec's [4]byte forms.
type Config struct {
	Mode  Mode
	Proto uint8 // header.ProtocolUDP or header.ProtocolTCP

	// TxNetns and RxNetns name the network namespaces (as `ip netns`
	// knows them) of the TX and RX interfaces; empty means the calling
	// thread's. RxDev empty means no receiver: TX only (OneWay and
	// ConnRate).
	TxNetns, TxDev string
	RxNetns, RxDev string

	// SrcMAC defaults to TxDev's address. DstMAC is the DUT's MAC; nil
	// means learn it: the kernel neighbour entry of the next hop towards
	// the first destination address in TxNetns (resolved with a probe
	// datagram if needed).
	SrcMAC, DstMAC net.HardwareAddr

	Flows FlowSpec
	Sizes Sizes

	// Rate is the total target in frames per second, split evenly over
	// the TX queues; 0 means as fast as possible.
	Rate float64
	// Duration is how long the senders send, counted from the moment
	// every TX worker has sent its first burst (so a worker started late
	// on a loaded machine still gets the whole duration).
	Duration time.Duration
	// Drain is how long the receivers keep counting after the last frame
	// is sent (default 300ms).
	Drain time.Duration

	// TxQueues and RxQueues are the queues (one worker and one AF_XDP
	// socket each) used on TxDev and RxDev (default 1 each).
	TxQueues, RxQueues int
	// TxCPUs and RxCPUs pin the workers (worker i on CPUs[i]); nil means
	// TX worker i on CPU i and RX worker i on CPU TxQueues+i (modulo the
	// CPU count). NoPin leaves all workers unpinned (still on locked
	// threads).
	TxCPUs, RxCPUs []int
	NoPin          bool
	// RTPriority > 0 runs every worker thread under SCHED_FIFO at that
	// priority (1-99), so a receiver on a CPU shared with other work is
	// not descheduled for the tens of milliseconds that overflow its
	// rings. Off by default: a busy-polling FIFO thread leaves the CPU's
	// other tasks only the kernel's RT-throttling share (5%).
	RTPriority int
	// Batch is the burst size (default 64).
	Batch int
	// Streams is the number of measurement streams (default min(Flows,
	// 64), rounded up to a multiple of TxQueues); flow f belongs to
	// stream f mod Streams.
	Streams int
	// BusyPoll makes idle receivers spin instead of sleeping in poll(2)
	// after a few empty bursts: lower latency at low rates, a full core
	// per receiver.
	BusyPoll bool
	// LearnMax caps the flows whose mapping the reflector records (8
	// bytes each; default 4 Mi).
	LearnMax int
	// PerStreamMax: streams are listed in the Result when there are at
	// most this many (default 64).
	PerStreamMax int
	// TTL of the generated packets (default 64).
	TTL uint8

	// Port tunes the AF_XDP sockets (frames, ring sizes, backend).
	// BatchSize and Register are set by Run.
	Port afxdp.Options

	// Progress receives a line per ProgressEvery (default 1s); nil for
	// none.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// maxPublicAddrs is the XDP program's public_addrs capacity (xnat.c): the
// receiver's program matches destinations exactly.
const maxPublicAddrs = 16384

// withDefaults returns c with defaults applied, or an error for an
// inconsistent configuration.
func (c Config) withDefaults() (Config, error) {
	if c.Proto == 0 {
		c.Proto = header.ProtocolUDP
	}
	if c.Proto != header.ProtocolUDP && c.Proto != header.ProtocolTCP {
		return c, fmt.Errorf("protocol %d: want UDP or TCP", c.Proto)
	}
	if int(c.Mode) >= len(modeNames) {
		return c, fmt.Errorf("unknown mode %d", c.Mode)
	}
	if c.TxDev == "" {
		return c, errors.New("no TX interface")
	}
	if c.Mode.Reflects() && c.RxDev == "" {
		return c, fmt.Errorf("mode %s needs an RX interface (the reflector)", c.Mode)
	}
	if c.RxDev != "" && c.RxDev == c.TxDev && c.RxNetns == c.TxNetns {
		return c, errors.New("TX and RX interfaces are the same")
	}
	if len(c.Sizes.slots) == 0 {
		c.Sizes = FixedSize(MinFrame)
	}
	if err := c.Flows.Validate(); err != nil {
		return c, err
	}
	if c.Duration <= 0 {
		return c, errors.New("duration must be positive")
	}
	if c.Rate < 0 {
		return c, errors.New("negative rate")
	}
	if c.Drain == 0 {
		c.Drain = 300 * time.Millisecond
	}
	if c.TxQueues == 0 {
		c.TxQueues = 1
	}
	if c.RxQueues == 0 {
		c.RxQueues = 1
	}
	if c.TxQueues < 1 || c.TxQueues > xdpprog.MaxQueues || c.RxQueues < 1 || c.RxQueues > xdpprog.MaxQueues {
		return c, fmt.Errorf("queues must be in [1, %d]", xdpprog.MaxQueues)
	}
	if uint32(c.TxQueues) > c.Flows.Count {
		return c, fmt.Errorf("%d TX queues but only %d flows", c.TxQueues, c.Flows.Count)
	}
	if c.Batch == 0 {
		c.Batch = 64
	}
	if c.Batch < 1 || c.Batch > 256 {
		return c, fmt.Errorf("batch %d not in [1, 256]", c.Batch)
	}
	if c.Streams == 0 {
		c.Streams = int(min(c.Flows.Count, 64))
	}
	// Stream s must belong to one TX worker (its sequence numbers are that
	// worker's counter): flow f goes to worker f mod TxQueues and to
	// stream f mod Streams, which agree when TxQueues divides Streams.
	c.Streams = (c.Streams + c.TxQueues - 1) / c.TxQueues * c.TxQueues
	if c.Streams > 1<<16 {
		return c, fmt.Errorf("streams %d > 65536 (the Mark's stream id is 16 bits)", c.Streams)
	}
	if c.LearnMax == 0 {
		c.LearnMax = 4 << 20
	}
	if c.PerStreamMax == 0 {
		c.PerStreamMax = 64
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = time.Second
	}
	if c.SrcMAC != nil && len(c.SrcMAC) != 6 || c.DstMAC != nil && len(c.DstMAC) != 6 {
		return c, errors.New("MAC addresses must be 6 bytes")
	}
	if c.RTPriority < 0 || c.RTPriority > 99 {
		return c, fmt.Errorf("RT priority %d not in [0, 99]", c.RTPriority)
	}
	for _, l := range [][]int{c.TxCPUs, c.RxCPUs} {
		for _, cpu := range l {
			if cpu < 0 {
				return c, fmt.Errorf("CPU %d out of range", cpu)
			}
		}
	}
	if c.RxDev != "" && c.Flows.Dst.Count > maxPublicAddrs {
		return c, fmt.Errorf("destination range %s has %d addresses; the receiver's XDP program matches at most %d",
			c.Flows.Dst, c.Flows.Dst.Count, maxPublicAddrs)
	}
	return c, nil
}
