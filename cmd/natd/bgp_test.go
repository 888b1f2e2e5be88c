package main

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/xnat/xnat/mgmt/bgp"
)

const bgpBaseYAML = `interfaces:
  inside: {name: in0}
  outside: {name: out0}
nat:
  inside_prefixes: [10.0.0.0/8]
  pools:
    - name: main
      addresses: [198.18.0.0/28, 198.18.1.7]
  static_mappings:
    - {inside: 10.0.0.5, outside: 198.18.2.5}
  port_forwards:
    - {proto: tcp, outside: "198.18.0.3:8080", inside: "10.0.0.9:80"}
    - {proto: tcp, outside: "198.18.3.1:8080", inside: "10.0.0.10:80"}
`

// TestBGPSection: the outside announcements are derived from pools,
// static mappings and port forwards (a forward on a pool address is
// covered by the pool's route); MED and communities apply per side or
// per prefix; the inside gets the default route.
func TestBGPSection(t *testing.T) {
	c, err := ParseConfig("natd.yaml", []byte(bgpBaseYAML+`bgp:
  local_as: 65010
  router_id: 198.18.9.1
  hold_time: 9s
  neighbors:
    - {address: 10.255.0.1, as: 65001, side: inside, hold_time: 3s}
    - {address: 198.18.9.2, as: 65002, side: outside, password: secret}
  outside:
    med: 10
    communities: ["65010:1"]
    prefixes:
      - {prefix: 198.18.8.0/24, med: 20, communities: ["65010:2", "65010:3"]}
  inside:
    default_route: true
`))
	if err != nil {
		t.Fatal(err)
	}
	b := c.BGP
	if b == nil || b.LocalAS != 65010 || b.RouterID != netip.MustParseAddr("198.18.9.1") {
		t.Fatalf("bgp %+v", b)
	}
	if b.Neighbors[0].HoldTime.Seconds() != 3 || b.Neighbors[1].HoldTime.Seconds() != 9 || b.Neighbors[1].Password != "secret" ||
		b.Neighbors[0].Side != bgp.Inside || b.Neighbors[1].Side != bgp.Outside {
		t.Errorf("neighbours %+v", b.Neighbors)
	}
	var got []string
	for _, a := range b.Announcements {
		got = append(got, a.Side.String()+" "+a.Prefix.String()+" med="+medStr(a)+" "+commStr(a.Communities))
	}
	want := []string{
		"outside 198.18.0.0/28 med=10 65010:1",
		"outside 198.18.1.7/32 med=10 65010:1",
		"outside 198.18.2.5/32 med=10 65010:1",
		"outside 198.18.3.1/32 med=10 65010:1",
		"inside 0.0.0.0/0 med=- ",
		"outside 198.18.8.0/24 med=20 65010:2,65010:3",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("announcements:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s := bgpCheckSummary(b); !strings.Contains(s, "inside announces 0.0.0.0/0") {
		t.Errorf("check summary %q", s)
	}
	// No bgp section: no BGP.
	if c, err := ParseConfig("natd.yaml", []byte(bgpBaseYAML)); err != nil || c.BGP != nil {
		t.Errorf("without a bgp section: %v %+v", err, c.BGP)
	}
}

func medStr(a bgp.Announcement) string {
	if !a.HasMED {
		return "-"
	}
	return strconv.FormatUint(uint64(a.MED), 10)
}

func commStr(cs []bgp.Community) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.String())
	}
	return strings.Join(s, ",")
}

// TestBGPSectionErrors: every mistake is reported with its field and line,
// the validation being bgp.Config.Validate's.
func TestBGPSectionErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no AS", "bgp:\n  router_id: 198.18.9.1\n  neighbors: [{address: 198.18.9.2, as: 65002, side: outside}]\n",
			"natd.yaml:14: bgp.local_as: an AS number"},
		{"bad side", "bgp:\n  local_as: 65010\n  router_id: 198.18.9.1\n  neighbors: [{address: 198.18.9.2, as: 65002, side: upside}]\n",
			`"upside" is not inside or outside`},
		{"bad community", "bgp:\n  local_as: 65010\n  router_id: 198.18.9.1\n  neighbors: [{address: 198.18.9.2, as: 65002, side: outside}]\n  outside: {communities: [\"65010\"]}\n",
			`"65010" is not a community like 65010:100`},
		{"short hold time", "bgp:\n  local_as: 65010\n  router_id: 198.18.9.1\n  neighbors:\n    - {address: 198.18.9.2, as: 65002, side: outside, hold_time: 1s}\n",
			"natd.yaml:18: bgp.neighbors[0].hold_time: 1s: whole seconds from 3s to 65535s"},
		{"default route outside", "bgp:\n  local_as: 65010\n  router_id: 198.18.9.1\n  neighbors: [{address: 198.18.9.2, as: 65002, side: outside}]\n  outside: {default_route: true}\n",
			"bgp.outside.default_route: natd announces a default route only to the inside routers"},
		{"inside route, no inside neighbour", "bgp:\n  local_as: 65010\n  router_id: 198.18.9.1\n  neighbors: [{address: 198.18.9.2, as: 65002, side: outside}]\n  inside: {default_route: true}\n",
			"no inside neighbour to announce 0.0.0.0/0 to"},
		{"unknown announce", "bgp:\n  local_as: 65010\n  router_id: 198.18.9.1\n  neighbors: [{address: 198.18.9.2, as: 65002, side: outside}]\n  outside: {announce: [pool]}\n",
			`bgp.outside.announce[0]: "pool" is not pools, static_mappings or port_forwards`},
		{"bad prefix", "bgp:\n  local_as: 65010\n  router_id: 198.18.9.1\n  neighbors: [{address: 198.18.9.2, as: 65002, side: outside}]\n  outside: {prefixes: [{prefix: 198.18.8.1/24}]}\n",
			"198.18.8.1/24 has host bits set"},
	} {
		_, err := ParseConfig("natd.yaml", []byte(bgpBaseYAML+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// An interface pool is the box's own address (masquerade.go), already
// routed to the box by its link: natd announces neither it nor the port
// forwards on it, only what the operator lists.
func TestBGPSkipsInterfacePool(t *testing.T) {
	c, err := ParseConfig("natd.yaml", []byte(strings.Replace(masqYAML, "%s", "off", 1)+`bgp:
  local_as: 65010
  router_id: 198.18.9.1
  neighbors:
    - {address: 198.18.9.2, as: 65002, side: outside}
  outside:
    prefixes:
      - {prefix: 198.18.8.0/24}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range c.BGP.Announcements {
		got = append(got, a.Side.String()+" "+a.Prefix.String())
	}
	if want := "outside 198.18.8.0/24"; strings.Join(got, ",") != want {
		t.Errorf("announcements %q, want %q", got, want)
	}
}
