package main

import (
	"strings"
	"testing"

	"github.com/xnat/xnat/dataplane/afxdp"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/poller"
)

// TestConfigErrorsNameFileLineAndField: settings that the enums' own
// UnmarshalText refuses, misspelt keys at any depth and wrong types are
// reported with the file, the line and (where the decoder knows it) the
// field.
func TestConfigErrorsNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct {
		name, add, want string
	}{
		{"mapping", "  mapping: symmetric\n", `natd.yaml:9: nat.mapping: "symmetric" is not endpoint-independent or address-and-port-dependent`},
		{"filtering value", "  filtering: {udp: open}\n", `natd.yaml:9: nat.filtering.udp: "open" is not endpoint-independent, address-dependent or address-and-port-dependent`},
		{"filtering protocol", "  filtering: {sctp: address-dependent}\n", `natd.yaml:9: nat.filtering.sctp: unknown protocol: "sctp" is not tcp, udp or icmp`},
		{"ports protocol", "  ports: {gre: 1024-65535}\n", `natd.yaml:9: nat.ports.gre: unknown protocol: "gre" is not tcp, udp or icmp`},
		{"exhaustion reply", "  on_exhaustion: reset\n", `natd.yaml:9: nat.on_exhaustion: "reset" is not none, host-unreachable or admin-prohibited`},
		{"forward protocol", "  port_forwards:\n    - {proto: sctp, outside: 198.18.0.100:80, inside: 10.0.0.5:80}\n", `natd.yaml:10: nat.port_forwards[0].proto: "sctp" is not tcp, udp or icmp`},
		{"poll mode", "poll_mode: spin\n", `natd.yaml:9: poll_mode: "spin" is not adaptive or busy`},
		{"backend", "xdp: {backend: libxdp}\n", `natd.yaml:9: xdp.backend: "libxdp" is not native or asavie`},
		{"unknown top-level key", "pollmode: busy\n", `natd.yaml:9: pollmode: unknown field`},
		{"unknown nested key", "  pools2: []\n", `natd.yaml:9: nat.pools2: unknown field`},
		{"unknown key in a list", "  static_mappings:\n    - {inside: 10.0.0.5, outsde: 198.18.1.1}\n", `natd.yaml:10: nat.static_mappings[0].outsde: unknown field`},
		{"unknown timeout", "  timeouts: {tcp_establshed: 3h}\n", `natd.yaml:9: nat.timeouts.tcp_establshed: unknown timeout (want one of fragment, icmp, port_hold_down, tcp_established, tcp_transitory, udp)`},
		{"bad duration", "  timeouts: {udp: 5 minutes}\n", `natd.yaml:9: nat.timeouts.udp: "5 minutes" is not a duration like 5m or 2h4m`},
		{"unknown limit", "  limits: {sessions: 10}\n", `natd.yaml:9: nat.limits.sessions: unknown limit (want one of held_fragment_bytes,`},
		{"wrong type", "batch_size: many\n", "natd.yaml: line 9: cannot unmarshal !!str `many` into int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("natd.yaml", []byte(baseYAML+tc.add))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

// TestConfigEnumsFromFile: the file's words reach the typed settings.
func TestConfigEnumsFromFile(t *testing.T) {
	c, err := ParseConfig("natd.yaml", []byte(baseYAML+`  filtering: {udp: address-dependent}
  on_exhaustion: admin-prohibited
poll_mode: busy
xdp: {backend: asavie}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.NAT.Mapping != nat.EndpointIndependent || c.NAT.Filtering[nat.UDP] != nat.FilterAddressDependent ||
		c.NAT.Filtering[nat.TCP] != nat.FilterEndpointIndependent || c.NAT.OnExhaustion != nat.ReplyAdminProhibited ||
		c.PollMode != poller.Busy || c.Port.Backend != afxdp.Asavie {
		t.Errorf("got mapping %v, filtering %v, on_exhaustion %v, poll_mode %v, backend %v",
			c.NAT.Mapping, c.NAT.Filtering, c.NAT.OnExhaustion, c.PollMode, c.Port.Backend)
	}
	c, err = ParseConfig("natd.yaml", []byte(baseYAML+"  mapping: address-and-port-dependent\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.NAT.Mapping != nat.AddressAndPortDependent || c.NAT.Filtering != [nat.NumProtos]nat.Filtering{2, 2, 2} {
		t.Errorf("address-and-port-dependent mapping: got %v, filtering %v", c.NAT.Mapping, c.NAT.Filtering)
	}
}
