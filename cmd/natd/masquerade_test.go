package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/xdpprog"
)

const masqYAML = `interfaces:
  inside: {name: lan0}
  outside: {name: wan0}
nat:
  inside_prefixes: [192.168.1.0/24]
  pools: [{name: wan, interface: wan0}]
  ports: {tcp: 61000-65535, udp: 61000-65535, icmp: 61000-65535}
  port_forwards:
    - {proto: tcp, outside: "0.0.0.0:443", inside: "192.168.1.10:443"}
    - {proto: udp, outside: "0.0.0.0:51820", inside: "192.168.1.2:51820"}
  mss_clamp: %s
`

func TestMasqueradeConfig(t *testing.T) {
	c, err := ParseConfig("natd.yaml", []byte(strings.Replace(masqYAML, "%s", "auto", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if !usesMasqAny(&c.NAT) || c.NAT.MSSClamp != nat.MSSClampAuto {
		t.Fatalf("interface pool or mss_clamp lost: %+v", c.NAT)
	}
	if c, err := ParseConfig("natd.yaml", []byte(strings.Replace(masqYAML, "%s", "1452", 1))); err != nil || c.NAT.MSSClamp != 1452 {
		t.Fatalf("mss_clamp 1452: %v", err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{strings.Replace(masqYAML, "%s", "100", 1), "nat.mss_clamp: mss_clamp 100 is out of range"},
		{strings.Replace(strings.Replace(masqYAML, "%s", "off", 1), "interface: wan0", "interface: eth9", 1), `nat.pools[0].interface: "eth9" is not the outside interface "wan0"`},
		{strings.Replace(strings.Replace(masqYAML, "%s", "off", 1), "interface: wan0", "interface: wan0, addresses: [198.18.0.1]", 1), "nat.pools[0].interface: a pool takes either addresses or an interface"},
	} {
		_, err := ParseConfig("natd.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

func TestMasqueradeResolve(t *testing.T) {
	c, err := ParseConfig("natd.yaml", []byte(strings.Replace(masqYAML, "%s", "off", 1)))
	if err != nil {
		t.Fatal(err)
	}
	orig := c.NAT
	m := &masq{cur: netip.MustParseAddr("198.18.0.1"), seen: map[netip.Addr]bool{}}
	r := m.resolve(orig)
	if got := r.Pools[0].Addresses[0]; got != netip.MustParsePrefix("198.18.0.1/32") {
		t.Fatalf("pool resolved to %v", got)
	}
	if got := r.PortForwards[1].Outside; got != netip.MustParseAddrPort("198.18.0.1:51820") {
		t.Fatalf("forward resolved to %v", got)
	}
	// The store's copy keeps the placeholder.
	if orig.Pools[0].Addresses[0].Addr() != masqAny || orig.PortForwards[0].Outside.Addr() != masqAny {
		t.Fatalf("resolve wrote into the store's configuration: %+v", orig)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if !m.neverAdd(masqAny) || m.neverAdd(netip.MustParseAddr("198.18.0.1")) {
		t.Fatal("neverAdd")
	}

	own := ownedPorts(&r)
	for _, tc := range []struct {
		set  int
		port uint16
		want bool
	}{
		{xdpprog.OwnTCP, 443, true}, {xdpprog.OwnTCP, 22, false}, {xdpprog.OwnTCP, 61000, true}, {xdpprog.OwnTCP, 65535, true},
		{xdpprog.OwnTCP, 60999, false}, {xdpprog.OwnUDP, 51820, true}, {xdpprog.OwnUDP, 443, false}, {xdpprog.OwnUDP, 53, false},
		{xdpprog.OwnICMP, 61000, true}, {xdpprog.OwnICMP, 4242, false},
	} {
		if got := own[tc.set].Has(tc.port); got != tc.want {
			t.Errorf("owned set %d port %d: %v, want %v", tc.set, tc.port, got, tc.want)
		}
	}

	d := &daemon{}
	d.links[nat.Outside].addrs = []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}
	if got := d.masqAddrs(r); len(got) != 1 || got[0] != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("masquerade addresses %v", got)
	}
	r.StaticMappings = []nat.StaticMapping{{Inside: netip.MustParseAddr("192.168.1.9"), Outside: netip.MustParseAddr("198.18.0.1")}}
	if got := d.masqAddrs(r); len(got) != 0 {
		t.Fatalf("a static mapping's address is all the NAT's, got masquerade %v", got)
	}
}

// TestKernelPortsLeft: a NAT range that would take the kernel's ephemeral
// ports on a masquerade address is refused, with the way out in the error.
func TestKernelPortsLeft(t *testing.T) {
	c := nat.DefaultConfig()
	for p := range c.Ports {
		c.Ports[p] = nat.PortRange{Min: 1, Max: 65535}
	}
	if _, err := kernelPortsLeft(c); err == nil || !strings.Contains(err.Error(), "ip_local_port_range") {
		t.Fatalf("every port for the NAT: %v", err)
	}
	c.Ports[nat.TCP], c.Ports[nat.UDP] = nat.PortRange{Min: 1, Max: 1}, nat.PortRange{Min: 1, Max: 1}
	if left, err := kernelPortsLeft(c); err != nil || left < minKernelPorts {
		t.Fatalf("port 1 for the NAT: %d left, %v", left, err)
	}
}
