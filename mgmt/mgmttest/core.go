// Package mgmttest provides Core, an implementation of mgmt.Core backed by
// a real nat.Engine with one worker over in-memory ports, for tests of the
// management plane (gRPC API, natctl, metrics, events). Validation,
// atomicity and session state come from the real engine and the real
// mgmt.ConfigStore; only the appliance around them (interfaces, CPUs,
// AF_XDP queues) is canned. It is also the model of natd's Core: natd wires
// the same pieces (ConfigStore over Engine.ApplyConfig, events.Exporter
// over Engine.DrainEvents) around its real workers.
package mgmttest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/port/memport"
	"github.com/xnat/xnat/internal/testclock"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/events"
)

// Fixed identities of the test appliance.
var (
	StartTime  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	macNATIn   = [6]byte{0x02, 0, 0, 0, 1, 0x01}
	macNATOut  = [6]byte{0x02, 0, 0, 0, 1, 0x02}
	macHost    = [6]byte{0x02, 0, 0, 0, 0, 0x10}
	macGateway = [6]byte{0x02, 0, 0, 0, 0, 0xfe}
)

// TestConfig is the configuration Core starts with by default: inside
// 10.0.0.0/8, pool "main" = 198.18.0.100/32, small tables.
func TestConfig() nat.Config {
	c := nat.DefaultConfig()
	c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c.Pools = []nat.Pool{{Name: "main", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}}}
	c.Limits.MaxSessions = 4096
	c.Limits.MaxSubscribers = 1024
	return c
}

// Options configure a test Core.
type Options struct {
	// Config defaults to TestConfig().
	Config nat.Config
	// EventWriter receives the exporter's JSON lines (default: none).
	EventWriter io.Writer
	// Logger defaults to a logger that discards.
	Logger *slog.Logger
	// EventRing is the engine's per-producer event ring capacity (a power
	// of two; default the engine's).
	EventRing int
}

// Clock is the settable clock the Core gives its engine.
type Clock = testclock.Clock

// Core implements mgmt.Core over a real engine: mgmt.EngineCore, as in
// natd, answers sessions, configuration and events; Core adds a canned
// Status, Stats from the one worker and its in-memory ports, and a Reload
// of what SetReload gave it.
type Core struct {
	mgmt.EngineCore
	Clock *Clock

	// wmu serialises use of the worker, which belongs to one goroutine
	// at a time.
	wmu    sync.Mutex
	worker *nat.Worker
	ports  [nat.NumSides]*memport.Port

	mu        sync.Mutex
	reloadCfg *nat.Config
	reloadErr error

	cancel context.CancelFunc
	done   chan struct{}

	scaleout scaleoutState // drain flag (scaleout.go)
}

type neighbors struct{}

func (neighbors) Resolve(side nat.Side, _ [4]byte) ([6]byte, nat.Resolution) {
	if side == nat.Inside {
		return macHost, nat.Resolved
	}
	return macGateway, nat.Resolved
}

// New starts a test core: engine, one worker and the event exporter.
// Close stops it.
func New(opts Options) (*Core, error) {
	cfg := opts.Config
	if cfg.InsidePrefixes == nil {
		cfg = TestConfig()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Core{Clock: testclock.New(StartTime.Add(time.Hour)), done: make(chan struct{})}
	var err error
	c.Engine, err = nat.New(cfg, nat.Options{Workers: 1, Clock: c.Clock, EventRing: opts.EventRing})
	if err != nil {
		return nil, err
	}
	if err := c.Engine.SetLinks([nat.NumSides]nat.Link{
		{Addr: netip.MustParseAddr("10.0.0.1"), MTU: 1500},
		{Addr: netip.MustParseAddr("198.18.0.1"), MTU: 1500},
	}); err != nil {
		return nil, err
	}
	for s := range c.ports {
		if c.ports[s], err = memport.New(memport.Config{Frames: 256}); err != nil {
			return nil, err
		}
	}
	c.worker, err = c.Engine.NewWorker(0, nat.WorkerConfig{
		Ports:     [nat.NumSides]port.Port{c.ports[nat.Inside], c.ports[nat.Outside]},
		MACs:      [nat.NumSides][6]byte{macNATIn, macNATOut},
		Neighbors: neighbors{},
	})
	if err != nil {
		return nil, err
	}
	c.Store = mgmt.NewConfigStore(cfg, c.Engine.ApplyConfig)
	c.Events, err = events.New(events.Options{
		Drain:    c.Engine.DrainEvents,
		Interval: 5 * time.Millisecond,
		Writer:   opts.EventWriter,
		Logger:   opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.done)
		c.Events.Run(ctx)
	}()
	return c, nil
}

// Close stops the event exporter.
func (c *Core) Close() {
	c.cancel()
	<-c.done
}

// ---- traffic ----

// Frame builds an Ethernet/IPv4 TCP (SYN) or UDP frame from src to dst,
// addressed to the NAT's MAC on side.
func Frame(side nat.Side, proto nat.Proto, src, dst netip.AddrPort) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macHost[:]), DstMAC: net.HardwareAddr(macNATIn[:]), EthernetType: layers.EthernetTypeIPv4}
	if side == nat.Outside {
		eth.SrcMAC, eth.DstMAC = net.HardwareAddr(macGateway[:]), net.HardwareAddr(macNATOut[:])
	}
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: net.IP(s4[:]), DstIP: net.IP(d4[:])}
	var l4 gopacket.SerializableLayer
	switch proto {
	case nat.TCP:
		ip.Protocol = layers.IPProtocolTCP
		t := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), SYN: true, Seq: 1, Window: 65535}
		t.SetNetworkLayerForChecksum(ip)
		l4 = t
	default:
		ip.Protocol = layers.IPProtocolUDP
		u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
		u.SetNetworkLayerForChecksum(ip)
		l4 = u
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, l4, gopacket.Payload([]byte("xnat"))); err != nil {
		panic(err) // fixed layers always serialise
	}
	return buf.Bytes()
}

// Send injects frame on side, runs the worker once and returns the frames
// it sent out of the other side.
func (c *Core) Send(side nat.Side, frame []byte) int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.ports[side].Inject(frame) {
		return 0
	}
	c.worker.Poll()
	n := len(c.ports[1-side].Drain())
	c.ports[side].Drain()
	return n
}

// Open sends one outbound packet from inside to remote, creating a
// session; it fails if the NAT did not forward it.
func (c *Core) Open(proto nat.Proto, inside, remote netip.AddrPort) error {
	if c.Send(nat.Inside, Frame(nat.Inside, proto, inside, remote)) != 1 {
		return fmt.Errorf("mgmttest: %s %s -> %s was not translated", proto, inside, remote)
	}
	return nil
}

// Inbound sends one packet from remote to a public endpoint (a static
// mapping or a port forward); it fails if the NAT did not forward it.
func (c *Core) Inbound(proto nat.Proto, remote, public netip.AddrPort) error {
	if c.Send(nat.Outside, Frame(nat.Outside, proto, remote, public)) != 1 {
		return fmt.Errorf("mgmttest: %s %s -> %s was not translated", proto, remote, public)
	}
	return nil
}

// Housekeep runs the engine's expirer over the whole table.
func (c *Core) Housekeep() int { return c.Engine.Housekeep(1 << 30) }

// SetReload sets what Reload applies: the "file" configuration, or an
// error reading it.
func (c *Core) SetReload(cfg *nat.Config, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reloadCfg, c.reloadErr = cfg, err
}

// ---- mgmt.Core ----

var _ mgmt.Core = (*Core)(nil)

// Status describes the test appliance: two canned interfaces and one
// worker; table and pool figures from the engine.
func (c *Core) Status() mgmt.Status {
	snap := c.Engine.Snapshot()
	live, capacity := c.Engine.TableUsage()
	st := mgmt.Status{
		Version:          "test",
		StartTime:        StartTime,
		ConfigGeneration: snap.Generation,
		ConfigFile:       "/etc/xnat/natd.conf",
		Interfaces: []mgmt.InterfaceStatus{
			{Name: "veth-in", Side: nat.Inside, Ifindex: 4, MAC: macNATIn, Addr: netip.MustParseAddr("10.0.0.1"), MTU: 1500, Queues: []int{0}, XDPMode: "native", XSKMode: "copy", LinkUp: true},
			{Name: "veth-out", Side: nat.Outside, Ifindex: 5, MAC: macNATOut, Addr: netip.MustParseAddr("198.18.0.1"), MTU: 1500, Queues: []int{0}, XDPMode: "native", XSKMode: "copy", LinkUp: true},
		},
		Workers: []mgmt.WorkerStatus{
			{ID: 0, CPU: 1, PollMode: "busy-poll", Interfaces: [nat.NumSides]string{"veth-in", "veth-out"}, BusyRatio: 0.25},
		},
		SessionsInUse:    live,
		SessionsCapacity: capacity,
	}
	st.Pools = mgmt.PoolStatusOf(c.Engine.PoolUsage())
	return st
}

// Stats returns the worker's real counters, the engine's session counts
// and the ports' frame counts.
func (c *Core) Stats() mgmt.Stats {
	st := mgmt.Stats{Time: c.Clock.Now(), EventsDropped: c.Engine.EventsDropped(), PortHoldsShortened: c.Engine.PortHoldsShortened(), CGN: c.Engine.CGNStats()}
	sc := c.Engine.SessionCounts()
	st.Sessions, st.SessionsExpired, st.SessionsDeleted = sc.Live, sc.Expired, sc.DeletedByOperator
	var w mgmt.WorkerStats
	c.worker.Counters(&w.Counters)
	st.Workers = append(st.Workers, w)
	for s, name := range []string{"veth-in", "veth-out"} {
		ps := c.ports[s].Stats()
		wc := &w.Counters
		st.Interfaces = append(st.Interfaces, mgmt.InterfaceStats{
			Name:      name,
			RxPackets: ps.RxPackets,
			RxBytes:   wc[nat.RxBytes+nat.Counter(s)],
			TxPackets: ps.TxPackets,
			TxBytes:   wc[nat.TxBytes+nat.Counter(s)],
			Drops:     ps.RxDropped + ps.TxDropped,
		})
	}
	return st
}

// Reload applies the configuration set with SetReload.
func (c *Core) Reload() error {
	c.mu.Lock()
	cfg, err := c.reloadCfg, c.reloadErr
	c.mu.Unlock()
	switch {
	case err != nil:
		return err
	case cfg == nil:
		return mgmt.Errorf(mgmt.ErrUnavailable, "no configuration file to reload")
	}
	return c.Store.Replace(*cfg)
}
