package lab

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// ScaleOut is the scale-out topology (docs/scaleout.md): subscribers on
// inside hosts behind an inside router, several NAT appliances in
// parallel, an outside router and a server.
//
//	h0 (10.1.0.0/22) ─┐            ┌─ ap0 ─ [a0] ─ ap0 ─┐
//	                  ├─ [rin] ────┼─ ap1 ─ [a1] ─ ap1 ─┼─ [rout] ─ srv0 ── [srv] 198.19.0.0/24
//	h1 (10.2.0.0/22) ─┘            └─ ap2 ─ [a2] ─ ap2 ─┘
//
// Appliance i has in0 10.255.i.2/24 (rin: 10.255.i.1) and out0
// 198.18.i.2/24 (rout: 198.18.i.1), a default route via rout and
// 10.0.0.0/8 via rin. Nothing routes between the routers except through
// the appliances: the routers learn their routes from the appliances over
// BGP (package scaleoutlab runs BIRD in rin and rout).
//
// rin hashes ECMP on the source address alone
// (fib_multipath_hash_policy 3, fib_multipath_hash_fields 0x0001), so a
// subscriber's flows all take one appliance.
type ScaleOut struct {
	*Lab
	Hosts      []string // inside host namespaces
	Appliances []string // appliance namespaces
	InRouter   string
	OutRouter  string
	Server     string
	// Subscribers are the addresses on the inside hosts, by host.
	Subscribers [][]netip.Addr
	// Destinations are the server's addresses.
	Destinations []netip.Addr
}

// Scale-out topology addresses and interface names.
const (
	ScaleOutApplianceInside  = "in0"
	ScaleOutApplianceOutside = "out0"
)

// ScaleOutApplianceAddrs returns appliance i's inside and outside link
// addresses and the routers' addresses facing it.
func ScaleOutApplianceAddrs(i int) (in, out, rin, rout netip.Prefix) {
	return netip.MustParsePrefix(fmt.Sprintf("10.255.%d.2/24", i)), netip.MustParsePrefix(fmt.Sprintf("198.18.%d.2/24", i)),
		netip.MustParsePrefix(fmt.Sprintf("10.255.%d.1/24", i)), netip.MustParsePrefix(fmt.Sprintf("198.18.%d.1/24", i))
}

// NewScaleOut builds the topology with n appliances, hosts inside hosts
// carrying subs subscriber addresses in all, and dests server addresses.
func NewScaleOut(n, hosts, subs, dests int) (_ *ScaleOut, err error) {
	if n < 1 || n > 16 || hosts < 1 || hosts > 8 || subs < hosts || subs > 1000*hosts || dests < 1 || dests > 200 {
		return nil, fmt.Errorf("lab: scale-out size out of range")
	}
	l := newLab()
	s := &ScaleOut{Lab: l}
	defer l.closeOnError(&err)
	add := func(role string) (string, error) { return l.addQuietNamespace(role, false) }
	if s.InRouter, err = add("rin"); err != nil {
		return nil, err
	}
	if s.OutRouter, err = add("rout"); err != nil {
		return nil, err
	}
	if s.Server, err = add("srv"); err != nil {
		return nil, err
	}
	for _, r := range []string{s.InRouter, s.OutRouter} {
		for _, kv := range [][2]string{
			{"net.ipv4.ip_forward", "1"},
			// Return traffic of a drained appliance's remaining flows
			// arrives from an appliance that is no longer a next hop.
			{"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.default.rp_filter", "0"},
		} {
			if err = sysctl(r, kv[0], kv[1]); err != nil {
				return nil, err
			}
		}
	}
	// Subscriber-stable steering: hash on the source address alone
	// (policy 3 = custom fields; field bit 0 = source IP).
	if err = sysctl(s.InRouter, "net.ipv4.fib_multipath_hash_fields", "0x0001"); err != nil {
		return nil, err
	}
	if err = sysctl(s.InRouter, "net.ipv4.fib_multipath_hash_policy", "3"); err != nil {
		return nil, err
	}
	for h := 0; h < hosts; h++ {
		ns, err := add("h" + strconv.Itoa(h))
		if err != nil {
			return nil, err
		}
		s.Hosts = append(s.Hosts, ns)
		dev := "h" + strconv.Itoa(h)
		if err = l.AddVeth(Veth{NS: s.InRouter, Name: dev, PeerNS: ns, PeerName: HostDev}); err != nil {
			return nil, err
		}
		gw := netip.MustParsePrefix(fmt.Sprintf("10.%d.0.1/22", h+1))
		if err = addAddr(s.InRouter, dev, gw); err != nil {
			return nil, err
		}
		var addrs []netip.Addr
		var batch bytes.Buffer
		for k := 0; k < subs/hosts+boolInt(h < subs%hosts); k++ {
			a := netip.AddrFrom4([4]byte{10, byte(h + 1), byte(1 + k/250), byte(1 + k%250)})
			addrs = append(addrs, a)
			fmt.Fprintf(&batch, "addr add %s/22 dev %s\n", a, HostDev)
		}
		fmt.Fprintf(&batch, "route add default via %s\n", gw.Addr())
		if err = ipBatch(ns, &batch); err != nil {
			return nil, err
		}
		s.Subscribers = append(s.Subscribers, addrs)
	}
	for i := 0; i < n; i++ {
		ns, err := add("a" + strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		s.Appliances = append(s.Appliances, ns)
		in, out, rin, rout := ScaleOutApplianceAddrs(i)
		dev := "ap" + strconv.Itoa(i)
		if err = l.AddVeth(Veth{NS: ns, Name: ScaleOutApplianceInside, PeerNS: s.InRouter, PeerName: dev}); err != nil {
			return nil, err
		}
		if err = l.AddVeth(Veth{NS: ns, Name: ScaleOutApplianceOutside, PeerNS: s.OutRouter, PeerName: dev}); err != nil {
			return nil, err
		}
		for _, a := range []struct {
			ns, dev string
			p       netip.Prefix
		}{{ns, ScaleOutApplianceInside, in}, {ns, ScaleOutApplianceOutside, out}, {s.InRouter, dev, rin}, {s.OutRouter, dev, rout}} {
			if err = addAddr(a.ns, a.dev, a.p); err != nil {
				return nil, err
			}
		}
		if err = run("ip", "-n", ns, "route", "add", "default", "via", rout.Addr().String()); err != nil {
			return nil, err
		}
		if err = run("ip", "-n", ns, "route", "add", "10.0.0.0/8", "via", rin.Addr().String()); err != nil {
			return nil, err
		}
	}
	if err = l.AddVeth(Veth{NS: s.OutRouter, Name: "srv0", PeerNS: s.Server, PeerName: HostDev}); err != nil {
		return nil, err
	}
	if err = addAddr(s.OutRouter, "srv0", netip.MustParsePrefix("198.19.0.1/24")); err != nil {
		return nil, err
	}
	var batch bytes.Buffer
	for k := 0; k < dests; k++ {
		a := netip.AddrFrom4([4]byte{198, 19, 0, byte(2 + k)})
		s.Destinations = append(s.Destinations, a)
		fmt.Fprintf(&batch, "addr add %s/24 dev %s\n", a, HostDev)
	}
	batch.WriteString("route add default via 198.19.0.1\n")
	if err = ipBatch(s.Server, &batch); err != nil {
		return nil, err
	}
	return s, nil
}

// VerifySourceHash reads back the inside router's multipath hash settings:
// kernels before 6.1 lack fib_multipath_hash_fields (policy 3).
func (s *ScaleOut) VerifySourceHash() error {
	out, err := Exec(s.InRouter, "sysctl", "-n", "net.ipv4.fib_multipath_hash_policy", "net.ipv4.fib_multipath_hash_fields")
	if err != nil {
		return err
	}
	if f := strings.Fields(out); len(f) != 2 || f[0] != "3" || (f[1] != "1" && f[1] != "0x0001" && f[1] != "0x1") {
		return fmt.Errorf("lab: inside router hashes with policy/fields %q, want 3 and 0x0001", out)
	}
	return nil
}

func ipBatch(ns string, batch *bytes.Buffer) error {
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = batch
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s -batch: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
