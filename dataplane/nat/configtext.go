package nat

import "github.com/xnat/xnat/internal/enumtext"

// The text forms of the configuration enums, as natd.yaml and natctl write
// them (docs/natd.md). Each type's names are indexed by its values.
var (
	mappingNames    = []string{EndpointIndependent: "endpoint-independent", AddressAndPortDependent: "address-and-port-dependent"}
	filteringNames  = []string{FilterEndpointIndependent: "endpoint-independent", FilterAddressDependent: "address-dependent", FilterAddressAndPortDependent: "address-and-port-dependent"}
	exhaustionNames = []string{ReplyNone: "none", ReplyHostUnreachable: "host-unreachable", ReplyAdminProhibited: "admin-prohibited"}
	protoNames      = []string{TCP: "tcp", UDP: "udp", ICMP: "icmp"}
)

func (m Mapping) String() string                { return enumtext.String(mappingNames, "mapping", m) }
func (m Mapping) MarshalText() ([]byte, error)  { return enumtext.Marshal(mappingNames, "mapping", m) }
func (m *Mapping) UnmarshalText(b []byte) error { return enumtext.Unmarshal(mappingNames, b, m) }

func (f Filtering) String() string { return enumtext.String(filteringNames, "filtering", f) }
func (f Filtering) MarshalText() ([]byte, error) {
	return enumtext.Marshal(filteringNames, "filtering", f)
}
func (f *Filtering) UnmarshalText(b []byte) error { return enumtext.Unmarshal(filteringNames, b, f) }

func (r ExhaustionReply) String() string { return enumtext.String(exhaustionNames, "reply", r) }
func (r ExhaustionReply) MarshalText() ([]byte, error) {
	return enumtext.Marshal(exhaustionNames, "reply", r)
}
func (r *ExhaustionReply) UnmarshalText(b []byte) error {
	return enumtext.Unmarshal(exhaustionNames, b, r)
}

func (p Proto) String() string                { return enumtext.String(protoNames, "proto", p) }
func (p Proto) MarshalText() ([]byte, error)  { return enumtext.Marshal(protoNames, "proto", p) }
func (p *Proto) UnmarshalText(b []byte) error { return enumtext.Unmarshal(protoNames, b, p) }
