package nat

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"time"
)

// Link describes the appliance's own interface on one side: the address it
// uses as the source of ICMP errors it originates, and the MTU that decides
// fragmentation (RFC 4787 REQ-13).
type Link struct {
	Addr netip.Addr
	MTU  int
}

type prefix4 struct{ net, mask uint32 }

type fwdKey struct {
	addr  [4]byte
	port  uint16
	proto uint8
	_     uint8
}

type fwdRule struct {
	inAddr, outAddr [4]byte
	inPort, outPort uint16
	proto           Proto
}

// Snapshot is the compiled, immutable configuration the workers read. A new
// one is published atomically on every change; workers load it once per
// burst. It holds no per-session state, so swapping it never affects
// established sessions.
type Snapshot struct {
	// Generation increases with every published snapshot.
	Generation uint64
	Config     Config
	Links      [NumSides]Link

	inside []prefix4
	// pool lists the active pool addresses in allocation order.
	pool []*addrState
	// poolIndex maps an active pool address to its registry index.
	poolIndex map[[4]byte]uint32
	// static 1:1 mappings, both ways.
	staticIn, staticOut map[[4]byte][4]byte
	// port forwards, by inside and by outside endpoint.
	fwdIn, fwdOut map[fwdKey]fwdRule
	// rulesOut is whether fwdIn or staticIn holds a rule: outboundRule's
	// first test, one byte, where the lengths of the two maps cost
	// about 17 instructions a new session more (bench-instr).
	rulesOut bool
	// public is every address answered for on the outside: pool, static
	// and forward addresses, and removed ones still draining, with its
	// registry state (every one of them is registered).
	public map[[4]byte]*addrState
	// ruleAddr maps the outside address of every static mapping and port
	// forward to its registry state.
	ruleAddr map[[4]byte]*addrState
	// draining lists the addresses that left the configuration and still
	// hold sessions or mappings, by registry index.
	draining []*addrState
	// perms and rules are the engine's count tables as this snapshot's
	// configuration needs them (nil before: counttables.go): workers read
	// them from the snapshot of their burst.
	perms, rules *countTable

	ports    [NumProtos]PortRange
	lowPorts [NumProtos]bool // a range below 1024 exists for well-known source ports (RFC 4787 REQ-3a)

	// Timeouts in milliseconds (the session table's tick).
	tcpEst, tcpTrans, udp, icmp, hold, frag uint32
	linkAddr                                [NumSides][4]byte
	mtu                                     [NumSides]int
	cgn                                     cgnSnap // port allocation (cgn_block.go)
}

func ms(d time.Duration) uint32 { return uint32(d / time.Millisecond) }

func be32(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }

// isInside reports whether a is in an inside prefix. Inside prefix lists are
// short (a few entries), so a linear scan beats anything cleverer.
func (s *Snapshot) isInside(a [4]byte) bool { return inPrefixes(s.inside, be32(a)) }

// inPrefixes reports whether v, an address as a big-endian integer, is in
// one of ps.
func inPrefixes(ps []prefix4, v uint32) bool {
	for _, p := range ps {
		if v&p.mask == p.net {
			return true
		}
	}
	return false
}

// isPublic reports whether a is an address the NAT answers for on the
// outside: a pool address, a static mapping or a port-forward address.
// Packets from inside to a public address are hairpinned.
func (s *Snapshot) isPublic(a [4]byte) bool {
	_, ok := s.public[a]
	return ok
}

// PublicAddrs returns every address the NAT answers for on the outside, for
// the XDP program's redirect map and for assigning to the outside link.
func (s *Snapshot) PublicAddrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(s.public))
	for a := range s.public {
		out = append(out, netip.AddrFrom4(a))
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// InsidePrefixes returns the inside prefixes.
func (s *Snapshot) InsidePrefixes() []netip.Prefix { return s.Config.InsidePrefixes }

// portRange returns the range from which to map inside source port sport:
// well-known ports map into the configured range's part below 1024 when it
// has one (RFC 4787 REQ-3a); otherwise every port maps into the part at or
// above 1024, or, if the range lies wholly below 1024, into the range.
func (s *Snapshot) portRange(p Proto, sport uint16) (lo, hi uint16) {
	r := s.ports[p]
	if p == ICMP {
		return r.Min, r.Max
	}
	if sport < 1024 && s.lowPorts[p] {
		hi := r.Max
		if hi > 1023 {
			hi = 1023
		}
		return r.Min, hi
	}
	if r.Max < 1024 {
		return r.Min, r.Max
	}
	lo = r.Min
	if lo < 1024 {
		lo = 1024
	}
	return lo, r.Max
}

// timeout returns the idle timeout of a session of protocol number proto in
// state st.
func (s *Snapshot) timeout(proto uint8, st uint32) uint32 {
	switch proto {
	case ipProtoTCP:
		if tcpEstablished(st) {
			return s.tcpEst
		}
		return s.tcpTrans
	case ipProtoUDP:
		return s.udp
	default:
		return s.icmp
	}
}
