package harness

import (
	"fmt"

	"github.com/xnat/xnat/bench/gen"
)

// Flow layout. Every flow count uses a prefix of one odometer (source
// address fastest, then source port, then destination address; see
// gen.FlowSpec), so the flows of a smaller scenario are the first flows
// of every larger one and the state a DUT built for them is reused:
//
//	source      10.1.0.0 - 10.1.3.255 (1024 subscribers)
//	src ports   1024 - 1055           (32 per subscriber)
//	destination 198.19.0.1 - .32      (32 servers), UDP port 9
//
// 1M flows are 1024 x 32 x 31 (and a bit): each destination sees at most
// 32768 flows, so nftables' masquerade (one external address, about 64k
// ports per destination) can map them all, while natd maps each inside
// endpoint once (endpoint-independent mapping) and keeps a session per
// flow.
const (
	layoutSubscribers = 1024
	layoutPorts       = 32
	layoutServers     = 32
)

// TrafficFlows returns the flow spec of n flows (n <= 1024*32*32).
func TrafficFlows(n int) (gen.FlowSpec, error) {
	s := gen.FlowSpec{
		Src:      gen.AddrRange{First: [4]byte{10, 1, 0, 0}, Count: layoutSubscribers},
		SrcPorts: gen.PortRange{First: 1024, Count: layoutPorts},
		Dst:      gen.AddrRange{First: [4]byte{198, 19, 0, 1}, Count: layoutServers},
		DstPorts: gen.PortRange{First: 9, Count: 1},
		Count:    uint32(n),
	}
	if n < 1 || uint64(n) > s.Capacity() {
		return s, fmt.Errorf("flows: %d not in [1, %d]", n, s.Capacity())
	}
	return s, s.Validate()
}

// SessionFlows are never-used flows for the k-th connection-rate trial
// (k < 64): 10.2.(4k).0/22 x ports 1024-1055 x 198.19.(k+1).0-.127, 4 Mi
// tuples. Each trial gets its own block of sources and of destinations:
// no flow is ever sent twice, and masquerade, which needs an external port
// per flow and destination, never meets more than 32768 flows per
// destination however many trials ran before (its mappings outlive the
// trial).
func SessionFlows(k int) gen.FlowSpec {
	k %= 64
	return gen.FlowSpec{
		Src:      gen.AddrRange{First: [4]byte{10, 2, byte(4 * k), 0}, Count: 1024},
		SrcPorts: gen.PortRange{First: 1024, Count: 32},
		Dst:      gen.AddrRange{First: [4]byte{198, 19, byte(k + 1), 0}, Count: 128},
		DstPorts: gen.PortRange{First: 9, Count: 1},
		Count:    4 << 20,
	}
}

// CapacityFlows are n never-used flows for the capacity trial, each from
// its own inside endpoint (10.3.0.0/16 x 64 ports, one server): every
// flow needs a session and a mapping.
func CapacityFlows(n int) gen.FlowSpec {
	return gen.FlowSpec{
		Src:      gen.AddrRange{First: [4]byte{10, 3, 0, 0}, Count: 65536},
		SrcPorts: gen.PortRange{First: 1024, Count: 64},
		Dst:      gen.AddrRange{First: [4]byte{198, 19, 0, 1}, Count: 1},
		DstPorts: gen.PortRange{First: 9, Count: 1},
		Count:    uint32(n),
	}
}

// DescribeFlows is a one-line description of a spec.
func DescribeFlows(s gen.FlowSpec) string {
	return fmt.Sprintf("%d flows: src %s ports %s -> dst %s port %s (UDP)", s.Count, s.Src, s.SrcPorts, s.Dst, s.DstPorts)
}
