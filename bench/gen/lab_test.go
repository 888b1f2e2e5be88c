package gen

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/header"
)

// routedBench is lab.NewBench with the DUT routing the generator's source
// range 10.1.0.0/16 to the gen host and the destination range
// 198.19.0.0/16 to the sink host, so the DUT resolves one neighbour per
// side however many addresses the flows use. Neighbours are resolved
// before the test sends anything.
func routedBench(t *testing.T, opts ...lab.Option) *lab.Bench {
	t.Helper()
	b := lab.RequireBench(t, opts...)
	for _, argv := range [][]string{
		{"ip", "route", "add", "10.1.0.0/16", "via", "10.0.0.2"},
		{"ip", "route", "add", "198.19.0.0/16", "via", "198.18.0.2"},
		{"ping", "-c", "1", "-W", "2", "10.0.0.2"},
		{"ping", "-c", "1", "-W", "2", "198.18.0.2"},
	} {
		if err := lab.Run(b.DUT, argv...); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func labConfig(b *lab.Bench, mode Mode, proto uint8, flows uint32) Config {
	return Config{
		Mode: mode, Proto: proto,
		TxNetns: b.Gen, TxDev: lab.HostDev, RxNetns: b.Sink, RxDev: lab.HostDev,
		Flows: FlowSpec{
			Src: AddrRange{First: [4]byte{10, 1, 0, 0}, Count: 64}, SrcPorts: PortRange{First: 1024, Count: 1000},
			Dst: AddrRange{First: [4]byte{198, 19, 0, 1}, Count: 4}, DstPorts: PortRange{First: 9, Count: 1},
			Count: flows,
		},
		Sizes:    FixedSize(64),
		Rate:     2000,
		Duration: time.Second,
		Drain:    300 * time.Millisecond,
		Streams:  8,
	}
}

// runLogged runs cfg, fails t if the run fails, and logs the result as
// JSON, the record a reader compares with the assertions that follow.
func runLogged(t *testing.T, cfg Config) *Result {
	t.Helper()
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(r, "", "  ")
	t.Logf("%s", js)
	return r
}

// TestOneWayThroughKernelForwarder: a short paced run gen -> DUT (plain
// kernel forwarding) -> sink delivers every frame, in order, with latency
// samples for each, for UDP and TCP and every size.
func TestOneWayThroughKernelForwarder(t *testing.T) {
	b := routedBench(t, lab.WithIPForward())
	for _, c := range []struct {
		proto uint8
		size  string
	}{{header.ProtocolUDP, "64"}, {header.ProtocolUDP, "imix"}, {header.ProtocolTCP, "1518"}} {
		t.Run(protoName(c.proto)+"-"+c.size, func(t *testing.T) {
			cfg := labConfig(b, OneWay, c.proto, 1000)
			cfg.Sizes, _ = ParseSizes(c.size)
			var prog strings.Builder
			cfg.Progress = &prog
			cfg.ProgressEvery = 250 * time.Millisecond
			r := runLogged(t, cfg)
			// The pacer's rate is checked with a fake clock
			// (TestPacerRate); here only that the first burst, which
			// the pacer allows at once, went out.
			if r.TX.Packets < 64 {
				t.Fatalf("sent %d frames", r.TX.Packets)
			}
			if r.RX == nil || r.RX.Packets != r.TX.Packets || r.Lost != 0 || r.Reordered != 0 {
				t.Fatalf("tx %d rx %+v lost %d reordered %d", r.TX.Packets, r.RX, r.Lost, r.Reordered)
			}
			if r.Latency == nil || r.Latency.Samples != int64(r.RX.Packets) || r.Latency.P50 <= 0 {
				t.Fatalf("latency %+v", r.Latency)
			}
			if r.Diag.Foreign != 0 || r.Diag.BadStream != 0 || r.Diag.ClockSkew != 0 {
				t.Fatalf("diagnostics %+v", r.Diag)
			}
			var sum uint64
			for _, s := range r.Streams {
				sum += s.RX
				if s.Lost != 0 || s.TX == 0 {
					t.Fatalf("stream %+v", s)
				}
			}
			if len(r.Streams) != 8 || sum != r.RX.Packets {
				t.Fatalf("%d streams, %d frames", len(r.Streams), sum)
			}
			if !strings.Contains(prog.String(), "kpps") && !strings.Contains(prog.String(), "pps") {
				t.Fatalf("no progress lines: %q", prog.String())
			}
		})
	}
}

// natBench is routedBench with the DUT masquerading everything that
// leaves dut-out (nftables, conntrack): the reflector then sees every
// flow from 198.18.0.1 on a port the kernel chose.
func natBench(t *testing.T) *lab.Bench {
	t.Helper()
	b := routedBench(t, lab.WithIPForward())
	rules := filepath.Join(t.TempDir(), "nat.nft")
	const ruleset = `table ip gennat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "dut-out" masquerade random
	}
}
`
	if err := os.WriteFile(rules, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := lab.Run(b.DUT, "nft", "-f", rules); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBidirThroughNATLearnsMappings runs the reflecting mode through a
// masquerading DUT: every reply comes back to the flow it belongs to, and
// the reflector learns one translated mapping per flow, all on the DUT's
// outside address.
func TestBidirThroughNATLearnsMappings(t *testing.T) {
	b := natBench(t)
	for _, proto := range []uint8{header.ProtocolUDP, header.ProtocolTCP} {
		t.Run(protoName(proto), func(t *testing.T) {
			// Fewer flows than the first burst, which goes out at
			// once: every flow is sent whatever the machine's load.
			const flows = 60
			cfg := labConfig(b, Bidir, proto, flows)
			// Distinct source ports per protocol run, so conntrack
			// entries of the UDP run do not meet the TCP run.
			if proto == header.ProtocolTCP {
				cfg.Flows.SrcPorts.First = 3000
			}
			r := runLogged(t, cfg)
			ret := r.Return
			if ret == nil || r.Mappings == nil || r.RX == nil {
				t.Fatal("no return or mapping results")
			}
			if r.TX.Packets < flows || r.RX.Packets != r.TX.Packets || ret.RX.Packets != r.TX.Packets || ret.Reflected != r.TX.Packets {
				t.Fatalf("tx %d, at reflector %d, reflected %d, returned %d", r.TX.Packets, r.RX.Packets, ret.Reflected, ret.RX.Packets)
			}
			if ret.Mismatched != 0 || ret.Latency.Samples != int64(ret.RX.Packets) || ret.Latency.P50 <= 0 {
				t.Fatalf("mismatched %d, rtt %+v", ret.Mismatched, ret.Latency)
			}
			m := r.Mappings
			if m.Learned != flows || m.Changed != 0 || m.Translated != flows || m.ExternalAddrs != 1 ||
				!strings.Contains(m.Examples[0], "198.18.0.1:") {
				t.Fatalf("mappings %+v", m)
			}
		})
	}
}

// TestConnRate: every frame is a new flow. One-way through the kernel
// forwarder, each one reaches the sink; through the NAT with the
// reflector, each TCP flow completes its handshake.
func TestConnRate(t *testing.T) {
	t.Run("oneway-udp", func(t *testing.T) {
		b := routedBench(t, lab.WithIPForward())
		cfg := labConfig(b, ConnRate, header.ProtocolUDP, 64000)
		cfg.Rate = 3000
		r := runLogged(t, cfg)
		s := r.Sessions
		if s == nil || s.NewFlows != r.TX.Packets || s.Through != r.TX.Packets || s.Exhausted || s.ThroughPerSecond <= 0 {
			t.Fatalf("sessions %+v, tx %d", s, r.TX.Packets)
		}
	})
	t.Run("bidir-tcp-nat", func(t *testing.T) {
		b := natBench(t)
		const flows = 1500
		cfg := labConfig(b, ConnRateBidir, header.ProtocolTCP, flows)
		cfg.Rate = 0 // as fast as possible: the flows run out long before the duration
		cfg.Duration = 2 * time.Second
		r := runLogged(t, cfg)
		s := r.Sessions
		if s == nil || !s.Exhausted || s.NewFlows != flows || s.Through != flows || s.Established != flows ||
			s.HandshakeAcks != flows || s.HandshakesDone != flows {
			t.Fatalf("sessions %+v", s)
		}
		if r.Mappings == nil || r.Mappings.Learned != flows || r.Return.Mismatched != 0 {
			t.Fatalf("mappings %+v, return %+v", r.Mappings, r.Return)
		}
	})
}

// TestTwoQueues splits the flows over two TX workers and two receivers on
// 2-queue veths: every frame is still accounted for, per stream.
func TestTwoQueues(t *testing.T) {
	b := routedBench(t, lab.WithIPForward(), lab.WithQueues(2))
	cfg := labConfig(b, OneWay, header.ProtocolUDP, 1000)
	cfg.TxQueues, cfg.RxQueues = 2, 2
	cfg.Streams = 7 // rounded up to 8, a multiple of the TX queues
	r := runLogged(t, cfg)
	if r.Config.Streams != 8 || len(r.Config.TxCPUs) != 2 || len(r.Config.RxCPUs) != 2 {
		t.Fatalf("config %+v", r.Config)
	}
	if r.TX.Packets < 128 || r.RX == nil || r.RX.Packets != r.TX.Packets || r.Lost != 0 {
		t.Fatalf("tx %d rx %+v lost %d", r.TX.Packets, r.RX, r.Lost)
	}
	for _, s := range r.Streams {
		if s.TX == 0 || s.Lost != 0 {
			t.Fatalf("stream %+v", s)
		}
	}
}
