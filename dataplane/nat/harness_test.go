package nat

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/port/memport"
	"github.com/xnat/xnat/internal/testclock"
)

// The test harness runs the real worker over two in-memory ports: frames
// built with gopacket are injected on the inside or outside port, one Poll
// runs, and whatever the worker transmitted is collected, decoded with
// gopacket, and has every checksum verified by an independent, naive
// RFC 1071 implementation.

var (
	macInsideHost = [6]byte{0x02, 0, 0, 0, 0, 0x10}
	macNATIn      = [6]byte{0x02, 0, 0, 0, 1, 0x01}
	macNATOut     = [6]byte{0x02, 0, 0, 0, 1, 0x02}
	macGateway    = [6]byte{0x02, 0, 0, 0, 0, 0xfe}
)

// fakeClock is the tests' settable clock, the one mgmttest's Core uses too.
type fakeClock = testclock.Clock

// staticNeighbors resolves everything inside to a per-address MAC and
// everything outside to one gateway.
type staticNeighbors struct {
	mu      sync.Mutex
	pending map[[4]byte]bool
}

func insideMAC(a [4]byte) [6]byte { return [6]byte{0x02, 0, 0, a[1], a[2], a[3]} }

func (n *staticNeighbors) Resolve(side Side, dst [4]byte) ([6]byte, Resolution) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending[dst] {
		return [6]byte{}, Pending
	}
	if side == Inside {
		return insideMAC(dst), Resolved
	}
	return macGateway, Resolved
}

func (n *staticNeighbors) setPending(a [4]byte, p bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending == nil {
		n.pending = map[[4]byte]bool{}
	}
	n.pending[a] = p
}

type harness struct {
	t       testing.TB
	clock   *fakeClock
	eng     *Engine
	ports   [NumSides]*memport.Port
	w       *Worker
	workers []*Worker
	wports  [][NumSides]*memport.Port
	neigh   *staticNeighbors
}

// testConfig is the lab configuration used by most tests: inside 10.0.0.0/8,
// one pool address 198.18.0.100, NAT links 10.0.0.1 and 198.18.0.1.
func testConfig() Config {
	c := DefaultConfig()
	c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c.Pools = []Pool{{Name: "main", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}}}
	c.Limits.MaxSessions = 4096
	c.Limits.MaxSubscribers = 1024
	withTestAllocation(&c)
	return c
}

func newHarness(t testing.TB, cfg Config) *harness { return newHarnessN(t, cfg, 1) }

func newHarnessN(t testing.TB, cfg Config, workers int) *harness {
	t.Helper()
	return newHarnessPorts(t, cfg, workers, false)
}

// newHarnessPorts is newHarnessN whose workers' two ports have a pool of
// frames each (copyPorts: frames are copied between them) rather than one
// shared pool, as natd's AF_XDP sockets have on one UMEM (zerocopy.go).
func newHarnessPorts(t testing.TB, cfg Config, workers int, copyPorts bool) *harness {
	t.Helper()
	return newHarnessSpec(t, cfg, harnessSpec{workers: workers, copyPorts: copyPorts})
}

// harnessSpec is what a harness is built of besides its configuration.
type harnessSpec struct {
	workers   int
	copyPorts bool      // a pool of frames per port, not one per worker
	frames    int       // per pool (0: 1024)
	eventRing int       // (0: the engine's default)
	neigh     Neighbors // (nil: staticNeighbors, also in h.neigh)
}

// newHarnessSpec builds the engine for cfg on the test links and spec's
// workers, each on two memports; worker 0 is h.w.
func newHarnessSpec(t testing.TB, cfg Config, spec harnessSpec) *harness {
	t.Helper()
	h := &harness{t: t, clock: testclock.New(time.Unix(1_800_000_000, 0))}
	if spec.neigh == nil {
		h.neigh = &staticNeighbors{}
		spec.neigh = h.neigh
	}
	if spec.frames == 0 {
		spec.frames = 1024
	}
	fitTestAllocation(&cfg)
	h.eng = newTestEngine(t, cfg, Options{Workers: spec.workers, Clock: h.clock, EventRing: spec.eventRing})
	for i := 0; i < spec.workers; i++ {
		ps := newWorkerPorts(t, memport.Config{Frames: spec.frames}, spec.copyPorts)
		w, err := h.eng.NewWorker(i, WorkerConfig{
			Ports:     [NumSides]port.Port{ps[Inside], ps[Outside]},
			MACs:      [NumSides][6]byte{macNATIn, macNATOut},
			Neighbors: spec.neigh,
		})
		if err != nil {
			t.Fatal(err)
		}
		h.workers = append(h.workers, w)
		h.wports = append(h.wports, ps)
	}
	h.w, h.ports = h.workers[0], h.wports[0]
	return h
}

// inject queues frames on side and runs one poll of worker 0.
func (h *harness) inject(side Side, frames ...[]byte) {
	h.t.Helper()
	for _, f := range frames {
		if !h.ports[side].Inject(f) {
			h.t.Fatal("inject failed: RX ring full")
		}
	}
	h.w.Poll()
}

// collect returns the frames transmitted on side, each verified.
func (h *harness) collect(side Side) []gopacket.Packet {
	h.t.Helper()
	var out []gopacket.Packet
	for _, f := range h.ports[side].Drain() {
		out = append(out, verifyFrame(h.t, f))
	}
	return out
}

// send injects one frame on side and returns the frames that came out of
// the other side and of the same side.
func (h *harness) send(side Side, frame []byte) (other, same []gopacket.Packet) {
	h.t.Helper()
	h.inject(side, frame)
	return h.collect(1 - side), h.collect(side)
}

// one expects exactly one frame out on side and returns it.
func (h *harness) one(side Side, frame []byte, want Side) gopacket.Packet {
	h.t.Helper()
	h.inject(side, frame)
	got := h.collect(want)
	rest := h.collect(1 - want)
	if len(got) != 1 || len(rest) != 0 {
		h.t.Fatalf("want one frame out on %v, got %d there and %d on %v (drops %v)", want, len(got), len(rest), 1-want, h.drops())
	}
	return got[0]
}

// none expects the frame to be dropped for reason r.
func (h *harness) none(side Side, frame []byte, r drop.Reason) {
	h.t.Helper()
	before := h.counters().Drops(r)
	h.inject(side, frame)
	if n := len(h.collect(Inside)) + len(h.collect(Outside)); n != 0 {
		h.t.Fatalf("want the frame dropped (%v), but %d frames came out", r, n)
	}
	if got := h.counters().Drops(r); got != before+1 {
		h.t.Fatalf("drop counter %v went %d -> %d, want +1 (drops %v)", r, before, got, h.drops())
	}
}

func (h *harness) counters() Counters {
	var c, sum Counters
	for _, w := range h.workers {
		w.Counters(&c)
		sum.Add(&c)
	}
	return sum
}

func (h *harness) drops() map[string]uint64 {
	c := h.counters()
	m := map[string]uint64{}
	for r := drop.Reason(1); r < drop.NumReasons; r++ {
		if v := c.Drops(r); v != 0 {
			m[r.String()] = v
		}
	}
	return m
}

// checkNoLeaks asserts that every frame is back in its pool.
func (h *harness) checkNoLeaks() {
	h.t.Helper()
	for _, w := range h.workers {
		w.releaseSpares()
	}
	for _, ps := range h.wports {
		for s, p := range ps {
			p.Drain()
			if n := p.InUse(); n != 0 {
				h.t.Errorf("%v port: %d frames leaked", Side(s), n)
			}
		}
	}
}

// housekeep runs the expirer over the whole table.
func (h *harness) housekeep() int { return h.eng.Housekeep(h.eng.sessions.Cap()) }

// testLinks are the NAT's own addresses in the tests, 10.0.0.1 inside and
// 198.18.0.1 outside, with an MTU of 1500 inside and outMTU outside.
func testLinks(outMTU int) [NumSides]Link {
	return [NumSides]Link{
		{Addr: netip.MustParseAddr("10.0.0.1"), MTU: 1500},
		{Addr: netip.MustParseAddr("198.18.0.1"), MTU: outMTU},
	}
}

// newTestEngine is New(cfg, opts) on the tests' links.
func newTestEngine(tb testing.TB, cfg Config, opts Options) *Engine {
	tb.Helper()
	e, err := New(cfg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.SetLinks(testLinks(1500)); err != nil {
		tb.Fatal(err)
	}
	return e
}

// goRand runs f on n goroutines at once, each with its own generator
// seeded by its number and seed (so a failing run replays), and waits for
// them all: the body of the concurrent churn tests of the engine's tables.
func goRand(n int, seed uint64, f func(g int, r *rand.Rand)) {
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() { f(g, rand.New(rand.NewPCG(uint64(g), seed))) })
	}
	wg.Wait()
}

// expireAll lets every session expire and then every port's hold-down end
// (an hour each, on the fake clock), and checks that the engine holds
// nothing: no session, binding, subscriber, permission or rule count, no
// session from outside counted, and no port (but those port forwards
// claim) or subscriber pairing on any registered address, and no frame
// leaked.
func (h *harness) expireAll() {
	h.t.Helper()
	for range 2 {
		h.clock.Advance(time.Hour)
		h.housekeep()
	}
	if n := h.eng.sessions.Len() + h.eng.bindings.Len() + h.eng.subs.Len() + h.eng.permRecords() + h.eng.ruleRecords(); n != 0 {
		h.t.Fatalf("%d entries left after everything expired", n)
	}
	if n := h.eng.InboundSessions(); n != 0 {
		h.t.Fatalf("%d sessions from outside counted after everything expired", n)
	}
	for _, a := range h.eng.registered() {
		for p := range a.ports {
			claimed := int32(0)
			for k := range h.eng.fwdClaims {
				if k.addr == a.addr && k.proto == uint8(p) {
					claimed++
				}
			}
			if n := a.ports[p].inUse.Load(); n != claimed {
				h.t.Errorf("%v: %d %v ports in use after everything expired, want the %d port forwards claim", a.addr, n, Proto(p), claimed)
			}
		}
		if n := a.subs.Load(); n != 0 {
			h.t.Errorf("%v: %d subscribers paired after everything expired", a.addr, n)
		}
	}
	h.checkNoLeaks()
}

// ---- frame building (gopacket) ----

func ip4(s string) net.IP { return net.ParseIP(s).To4() }

type l4spec struct {
	proto            layers.IPProtocol
	sport, dport     uint16
	tcpFlags         string // "S", "SA", "A", "F", "R", "FA"
	icmpType         uint8
	icmpCode         uint8
	icmpID           uint16
	payload          []byte
	ttl              uint8
	df               bool
	ipID             uint16
	noUDPChecksum    bool
	inner            []byte // for ICMP errors: the quoted IP packet
	fragOff          uint16 // bytes
	mf               bool
	rawL4            []byte // pre-built transport bytes for fragments
	srcMAC, dstMAC   [6]byte
	breakIPChecksum  bool
	breakICMPChecksm bool
}

// pkt builds an Ethernet+IPv4 frame.
func pkt(src, dst string, l l4spec) []byte {
	if l.ttl == 0 {
		l.ttl = 64
	}
	if l.dstMAC == ([6]byte{}) {
		l.dstMAC = macNATIn
	}
	if l.srcMAC == ([6]byte{}) {
		l.srcMAC = macInsideHost
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(l.srcMAC[:]), DstMAC: net.HardwareAddr(l.dstMAC[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: l.ttl, Protocol: l.proto, SrcIP: ip4(src), DstIP: ip4(dst), Id: l.ipID}
	if l.df {
		ip.Flags |= layers.IPv4DontFragment
	}
	if l.mf {
		ip.Flags |= layers.IPv4MoreFragments
	}
	ip.FragOffset = l.fragOff / 8
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	buf := gopacket.NewSerializeBuffer()
	var err error
	switch {
	case l.rawL4 != nil:
		err = gopacket.SerializeLayers(buf, opts, eth, ip, gopacket.Payload(l.rawL4))
	case l.proto == layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(l.sport), DstPort: layers.UDPPort(l.dport)}
		u.SetNetworkLayerForChecksum(ip)
		err = gopacket.SerializeLayers(buf, opts, eth, ip, u, gopacket.Payload(l.payload))
	case l.proto == layers.IPProtocolTCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(l.sport), DstPort: layers.TCPPort(l.dport), Seq: 1000, Window: 65535}
		for _, c := range l.tcpFlags {
			switch c {
			case 'S':
				t.SYN = true
			case 'A':
				t.ACK = true
			case 'F':
				t.FIN = true
			case 'R':
				t.RST = true
			}
		}
		if t.ACK {
			t.Ack = 5000
		}
		t.SetNetworkLayerForChecksum(ip)
		err = gopacket.SerializeLayers(buf, opts, eth, ip, t, gopacket.Payload(l.payload))
	case l.proto == layers.IPProtocolICMPv4:
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(l.icmpType, l.icmpCode), Id: l.icmpID, Seq: 1}
		pl := l.payload
		if l.inner != nil {
			pl = l.inner
		}
		err = gopacket.SerializeLayers(buf, opts, eth, ip, ic, gopacket.Payload(pl))
	default:
		panic("pkt: unsupported protocol")
	}
	if err != nil {
		panic(err)
	}
	f := append([]byte(nil), buf.Bytes()...)
	if l.noUDPChecksum {
		binary.BigEndian.PutUint16(f[14+20+6:], 0)
	}
	if l.breakIPChecksum {
		f[14+10] ^= 0xff
	}
	if l.breakICMPChecksm {
		f[14+20+2] ^= 0xff
	}
	return f
}

func udp(src string, sport uint16, dst string, dport uint16) []byte {
	return pkt(src, dst, l4spec{proto: layers.IPProtocolUDP, sport: sport, dport: dport, payload: []byte("hello world!")})
}

func tcp(src string, sport uint16, dst string, dport uint16, flags string) []byte {
	return pkt(src, dst, l4spec{proto: layers.IPProtocolTCP, sport: sport, dport: dport, tcpFlags: flags})
}

func echo(src, dst string, id uint16, reply bool) []byte {
	t := uint8(layers.ICMPv4TypeEchoRequest)
	if reply {
		t = layers.ICMPv4TypeEchoReply
	}
	return pkt(src, dst, l4spec{proto: layers.IPProtocolICMPv4, icmpType: t, icmpID: id, payload: []byte("ping")})
}

// ipPacket strips the Ethernet header: the bytes an ICMP error quotes.
// Ethernet padding after the IPv4 total length is not part of the packet.
func ipPacket(frame []byte) []byte {
	return frame[14 : 14+int(binary.BigEndian.Uint16(frame[16:]))]
}

// icmpError builds an ICMP error from src to dst quoting the IP packet of
// frame (first 28 bytes, as many routers do).
func icmpError(src, dst string, typ, code uint8, quoted []byte, full bool) []byte {
	q := ipPacket(quoted)
	if !full && len(q) > 28 {
		q = q[:28]
	}
	return pkt(src, dst, l4spec{proto: layers.IPProtocolICMPv4, icmpType: typ, icmpCode: code, inner: q})
}

// ---- decoding and verification ----

// sum16 is a naive RFC 1071 one's-complement sum, independent of the
// checksum package.
func sum16(b []byte, init uint32) uint32 {
	s := init
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

func pseudo(src, dst []byte, proto uint8, n int) uint32 {
	return sum16(src, 0) + sum16(dst, 0) + uint32(proto) + uint32(n)
}

// verifyFrame decodes an emitted frame with gopacket and checks every
// checksum in it: IPv4, TCP/UDP (with the pseudo-header), ICMP, and the
// header checksum of the IPv4 packet embedded in an ICMP error.
func verifyFrame(t testing.TB, f []byte) gopacket.Packet {
	t.Helper()
	pk := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil && pk.ApplicationLayer() == nil && pk.Layer(layers.LayerTypeIPv4) == nil {
		t.Fatalf("emitted frame does not decode: %v\n%x", el.Error(), f)
	}
	ipl, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ipl == nil {
		t.Fatalf("emitted frame has no IPv4 layer: %x", f)
	}
	hdr := ipl.Contents
	if sum16(hdr, 0) != 0xffff {
		t.Fatalf("bad IPv4 header checksum in %x", f)
	}
	if ipl.Flags&layers.IPv4MoreFragments != 0 || ipl.FragOffset != 0 {
		return pk // transport checksums span fragments
	}
	l4 := ipl.Payload
	switch ipl.Protocol {
	case layers.IPProtocolTCP:
		if sum16(l4, pseudo(ipl.SrcIP, ipl.DstIP, 6, len(l4))) != 0xffff {
			t.Fatalf("bad TCP checksum in %x", f)
		}
	case layers.IPProtocolUDP:
		if binary.BigEndian.Uint16(l4[6:]) != 0 && sum16(l4, pseudo(ipl.SrcIP, ipl.DstIP, 17, len(l4))) != 0xffff {
			t.Fatalf("bad UDP checksum in %x", f)
		}
	case layers.IPProtocolICMPv4:
		if sum16(l4, 0) != 0xffff {
			t.Fatalf("bad ICMP checksum in %x", f)
		}
		typ := l4[0]
		if typ == 3 || typ == 11 || typ == 12 {
			inner := l4[8:]
			ihl := int(inner[0]&0x0f) * 4
			if sum16(inner[:ihl], 0) != 0xffff {
				t.Fatalf("bad embedded IPv4 header checksum in %x", f)
			}
		}
	}
	return pk
}

// ---- accessors on decoded packets ----

type endpoints struct {
	src, dst         string
	sport, dport     uint16
	ttl              uint8
	icmpType, icmpID uint16
}

func (e endpoints) String() string {
	return fmt.Sprintf("%s:%d -> %s:%d", e.src, e.sport, e.dst, e.dport)
}

func eps(pk gopacket.Packet) endpoints {
	ipl := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	e := endpoints{src: ipl.SrcIP.String(), dst: ipl.DstIP.String(), ttl: ipl.TTL}
	if l, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		e.sport, e.dport = uint16(l.SrcPort), uint16(l.DstPort)
	}
	if l, ok := pk.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		e.sport, e.dport = uint16(l.SrcPort), uint16(l.DstPort)
	}
	if l, ok := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
		e.icmpType = uint16(l.TypeCode.Type())
		e.icmpID = l.Id
		e.sport, e.dport = l.Id, l.Id
	}
	return e
}

func ethOf(pk gopacket.Packet) *layers.Ethernet {
	return pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
}

// innerOf decodes the packet quoted by an ICMP error.
func innerOf(t testing.TB, pk gopacket.Packet) endpoints {
	t.Helper()
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	q := ic.Payload
	ihl := int(q[0]&0x0f) * 4
	var e endpoints
	e.src = net.IP(q[12:16]).String()
	e.dst = net.IP(q[16:20]).String()
	l4 := q[ihl:]
	switch q[9] {
	case 6, 17:
		e.sport = binary.BigEndian.Uint16(l4[0:])
		e.dport = binary.BigEndian.Uint16(l4[2:])
	case 1:
		e.icmpType = uint16(l4[0])
		e.icmpID = binary.BigEndian.Uint16(l4[4:])
		e.sport, e.dport = e.icmpID, e.icmpID
	}
	return e
}
