package lab

import (
	"fmt"
	"net/netip"
)

// Fixed addresses of the standard topologies. Inside hosts use 10.0.0.0/24,
// the outside segment 198.18.0.0/24 (RFC 2544's benchmarking range).
var (
	InsideGW  = netip.MustParsePrefix("10.0.0.1/24")   // NAT box, inside
	In1Addr   = netip.MustParsePrefix("10.0.0.2/24")   // inside host 1
	In2Addr   = netip.MustParsePrefix("10.0.0.3/24")   // inside host 2
	OutsideGW = netip.MustParsePrefix("198.18.0.1/24") // NAT box, outside
	OutAddr   = netip.MustParsePrefix("198.18.0.2/24") // outside server
	FarGW     = netip.MustParsePrefix("198.18.1.1/24") // outside server, as a router to the far host
	FarAddr   = netip.MustParsePrefix("198.18.1.2/24") // far host (WithFarHost)
)

// Interface names inside the lab namespaces. Names are per namespace, so
// they need not be unique across labs.
const (
	NATInside  = "nat-in"  // NAT box, inside veth (in the nat namespace)
	NATOutside = "nat-out" // NAT box, outside veth
	HostDev    = "eth0"    // the single interface of in1, in2, out, gen, sink
	Bridge     = "br0"     // the inside segment's bridge (lan namespace)
)

// Options configures the standard topologies. Use the With* functions.
type Options struct {
	ipForward   bool
	queues      int
	natExtra    []netip.Prefix
	serverExtra []netip.Prefix
	returnRoute bool
	keepIPv6    bool
	far         bool
}

// Option changes Options.
type Option func(*Options)

// WithIPForward enables net.ipv4.ip_forward in the nat namespace (for the
// nftables baseline). It is off by default, so nothing but our dataplane
// forwards.
func WithIPForward() Option { return func(o *Options) { o.ipForward = true } }

// WithQueues gives the NAT/DUT veths and their peers n RX and n TX queues.
func WithQueues(n int) Option { return func(o *Options) { o.queues = n } }

// WithNATAddrs adds extra addresses on the NAT box's outside interface.
// Pool addresses are natd's business and should not be added here.
func WithNATAddrs(p ...netip.Prefix) Option {
	return func(o *Options) { o.natExtra = append(o.natExtra, p...) }
}

// WithServerAddrs adds extra addresses to the outside server (or sink).
func WithServerAddrs(p ...netip.Prefix) Option {
	return func(o *Options) { o.serverExtra = append(o.serverExtra, p...) }
}

// WithReturnRoute gives the outside host a route to 10.0.0.0/8 via the NAT
// box's outside address, for forwarding without NAT (l2fwd, plain routing).
// Without it un-NATed traffic cannot get an answer.
func WithReturnRoute() Option { return func(o *Options) { o.returnRoute = true } }

// WithIPv6 keeps IPv6 enabled on lab interfaces. By default it is disabled
// so router solicitations, MLD and DAD do not add noise to tests and
// benchmarks.
func WithIPv6() Option { return func(o *Options) { o.keepIPv6 = true } }

// WithFarHost adds a host one router hop beyond the outside server: the
// out namespace forwards between 198.18.0.0/24 and 198.18.1.0/24, where
// the far host sits (FarAddr), and the NAT box routes 198.18.1.0/24 via
// the server. A probe whose TTL runs out at that router gets an ICMP Time
// Exceeded from 198.18.0.2, which is what traceroute through a NAT needs.
func WithFarHost() Option { return func(o *Options) { o.far = true } }

func buildOptions(opts []Option) Options {
	o := Options{queues: 1}
	for _, f := range opts {
		f(&o)
	}
	if o.queues < 1 {
		o.queues = 1
	}
	return o
}

// NAT is the standard NAT topology:
//
//	in1 (10.0.0.2) ─┐
//	                ├─ br0 [lan] ─── nat-in 10.0.0.1 [nat] nat-out 198.18.0.1 ─── eth0 198.18.0.2 [out]
//	in2 (10.0.0.3) ─┘
//
// The inside hosts reach the NAT box through a bridge in its own namespace,
// so the NAT's inside interface is a plain veth on which native XDP works.
type NAT struct {
	*Lab
	In1, In2, LAN, Box, Out string // namespace names
	Far                     string // with WithFarHost
	Queues                  int
}

// NewNAT builds the standard NAT topology. On error everything already
// created is removed.
func NewNAT(opts ...Option) (_ *NAT, err error) {
	o := buildOptions(opts)
	l := newLab()
	n := &NAT{Lab: l, Queues: o.queues}
	defer l.closeOnError(&err)
	if err = o.addNamespaces(l, []nsRole{{&n.LAN, "lan"}, {&n.Box, "nat"}, {&n.In1, "in1"}, {&n.In2, "in2"}, {&n.Out, "out"}}, &n.Box); err != nil {
		return nil, err
	}
	// Inside segment: bridge in lan, one port per host plus the NAT box.
	if err = run("ip", "-n", n.LAN, "link", "add", Bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	if err = run("ip", "-n", n.LAN, "link", "set", Bridge, "up"); err != nil {
		return nil, err
	}
	ports := []struct{ port, ns, dev string }{
		{"p-nat", n.Box, NATInside}, {"p-in1", n.In1, HostDev}, {"p-in2", n.In2, HostDev},
	}
	for _, p := range ports {
		q := 1
		if p.ns == n.Box {
			q = o.queues
		}
		if err = l.AddVeth(Veth{NS: p.ns, Name: p.dev, PeerNS: n.LAN, PeerName: p.port, Queues: q}); err != nil {
			return nil, err
		}
		if err = run("ip", "-n", n.LAN, "link", "set", p.port, "master", Bridge); err != nil {
			return nil, err
		}
	}
	// Outside segment: a plain veth pair NAT box <-> server.
	if err = l.AddVeth(Veth{NS: n.Box, Name: NATOutside, PeerNS: n.Out, PeerName: HostDev, Queues: o.queues}); err != nil {
		return nil, err
	}
	err = o.addressEnds([]nsAddr{
		{n.Box, NATInside, InsideGW}, {n.Box, NATOutside, OutsideGW},
		{n.In1, HostDev, In1Addr}, {n.In2, HostDev, In2Addr}, {n.Out, HostDev, OutAddr},
	}, nsAddr{n.Box, NATOutside, OutsideGW}, nsAddr{n.Out, HostDev, OutAddr}, n.In1, n.In2)
	if err != nil {
		return nil, err
	}
	if o.far {
		if n.Far, err = l.addQuietNamespace("far", o.keepIPv6); err != nil {
			return nil, err
		}
		if err = l.AddVeth(Veth{NS: n.Out, Name: "eth1", PeerNS: n.Far, PeerName: HostDev, Queues: 1}); err != nil {
			return nil, err
		}
		if err = addAddr(n.Out, "eth1", FarGW); err != nil {
			return nil, err
		}
		if err = addAddr(n.Far, HostDev, FarAddr); err != nil {
			return nil, err
		}
		if err = sysctl(n.Out, "net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
		if err = run("ip", "-n", n.Far, "route", "add", "default", "via", FarGW.Addr().String()); err != nil {
			return nil, err
		}
		if err = run("ip", "-n", n.Box, "route", "add", FarAddr.Masked().String(), "via", OutAddr.Addr().String()); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Bench is the traffic-generator topology:
//
//	gen eth0 10.0.0.2 ─── dut-in 10.0.0.1 [dut] dut-out 198.18.0.1 ─── eth0 198.18.0.2 [sink]
//
// All links are plain veths; the DUT's veths and their peers get the
// requested number of queues.
type Bench struct {
	*Lab
	Gen, DUT, Sink string // namespace names
	Queues         int
}

// Interface names of the bench topology's device under test.
const (
	DUTInside  = "dut-in"
	DUTOutside = "dut-out"
)

// NewBench builds the bench topology. The sink has no route back unless
// WithReturnRoute is given; it counts what it receives in its eth0 RX
// counter (see LinkStats).
func NewBench(opts ...Option) (_ *Bench, err error) {
	o := buildOptions(opts)
	l := newLab()
	b := &Bench{Lab: l, Queues: o.queues}
	defer l.closeOnError(&err)
	if err = o.addNamespaces(l, []nsRole{{&b.Gen, "gen"}, {&b.DUT, "dut"}, {&b.Sink, "sink"}}, &b.DUT); err != nil {
		return nil, err
	}
	if err = l.AddVeth(Veth{NS: b.DUT, Name: DUTInside, PeerNS: b.Gen, PeerName: HostDev, Queues: o.queues}); err != nil {
		return nil, err
	}
	if err = l.AddVeth(Veth{NS: b.DUT, Name: DUTOutside, PeerNS: b.Sink, PeerName: HostDev, Queues: o.queues}); err != nil {
		return nil, err
	}
	err = o.addressEnds([]nsAddr{
		{b.DUT, DUTInside, InsideGW}, {b.DUT, DUTOutside, OutsideGW},
		{b.Gen, HostDev, In1Addr}, {b.Sink, HostDev, OutAddr},
	}, nsAddr{b.DUT, DUTOutside, OutsideGW}, nsAddr{b.Sink, HostDev, OutAddr}, b.Gen)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// nsAddr is an address of a device in a namespace.
type nsAddr struct {
	ns, dev string
	p       netip.Prefix
}

// addressEnds does what both topologies do once their links exist: it
// adds addrs, the extra addresses the options ask for on the NAT's outside
// device natOut and on the server's device, a default route from each
// inside host to the NAT, and, if asked, the server's route back to the
// inside range through natOut's address.
func (o Options) addressEnds(addrs []nsAddr, natOut, server nsAddr, inside ...string) error {
	for _, p := range o.natExtra {
		addrs = append(addrs, nsAddr{natOut.ns, natOut.dev, p})
	}
	for _, p := range o.serverExtra {
		addrs = append(addrs, nsAddr{server.ns, server.dev, p})
	}
	for _, a := range addrs {
		if err := addAddr(a.ns, a.dev, a.p); err != nil {
			return err
		}
	}
	for _, ns := range inside {
		if err := run("ip", "-n", ns, "route", "add", "default", "via", InsideGW.Addr().String()); err != nil {
			return err
		}
	}
	if o.returnRoute {
		return run("ip", "-n", server.ns, "route", "add", insideRange.String(), "via", natOut.p.Addr().String())
	}
	return nil
}

func addAddr(ns, dev string, p netip.Prefix) error {
	if !labAddr(p.Addr()) {
		return fmt.Errorf("lab: address %s is outside 10.0.0.0/8 and 198.18.0.0/15", p)
	}
	return run("ip", "-n", ns, "addr", "add", p.String(), "dev", dev)
}

var (
	insideRange  = netip.MustParsePrefix("10.0.0.0/8")
	outsideRange = netip.MustParsePrefix("198.18.0.0/15")
)

// labAddr reports whether a is in one of the two ranges a lab may use.
func labAddr(a netip.Addr) bool { return insideRange.Contains(a) || outsideRange.Contains(a) }

// addQuietNamespace is AddNamespace with IPv6 disabled unless keepIPv6
// (see WithIPv6).
func (l *Lab) addQuietNamespace(role string, keepIPv6 bool) (string, error) {
	ns, err := l.AddNamespace(role)
	if err != nil || keepIPv6 {
		return ns, err
	}
	return ns, disableIPv6(ns)
}

// nsRole names a namespace to create and where its full name goes.
type nsRole struct {
	dst  *string
	role string
}

// closeOnError removes the lab if *err is set: deferred by every topology
// constructor, so that a failed one leaves nothing behind.
func (l *Lab) closeOnError(err *error) {
	if *err != nil {
		_ = l.Close()
	}
}

// addNamespaces creates a topology's namespaces, one for each role, in
// order, and sets IP forwarding in router (one of them, the device under
// test) as the options ask.
func (o Options) addNamespaces(l *Lab, roles []nsRole, router *string) error {
	if err := l.addQuietNamespaces(o.keepIPv6, roles); err != nil {
		return err
	}
	return sysctl(*router, "net.ipv4.ip_forward", boolStr(o.ipForward))
}

// addQuietNamespaces creates a quiet namespace for each role, in order.
func (l *Lab) addQuietNamespaces(keepIPv6 bool, roles []nsRole) error {
	for _, r := range roles {
		ns, err := l.addQuietNamespace(r.role, keepIPv6)
		if err != nil {
			return err
		}
		*r.dst = ns
	}
	return nil
}

func disableIPv6(ns string) error {
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := sysctl(ns, k, "1"); err != nil {
			return err
		}
	}
	return nil
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
