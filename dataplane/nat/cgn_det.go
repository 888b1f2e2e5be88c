package nat

import (
	"fmt"
	"net/netip"
)

// Deterministic NAT (RFC 7422): the inside prefixes and the pool addresses
// define a fixed function from subscriber address to (public address, port
// range), so that sessions need no log; the configuration is the log.
//
// The function, documented in docs/cgn.md:
//
//   - Subscribers are numbered n = 0, 1, ... in the order of
//     inside_prefixes as configured, addresses ascending within a prefix
//     (network and broadcast addresses included).
//   - Pool addresses are numbered j = 0, 1, ... in the order of pools, then
//     of each pool's addresses, ascending within a prefix.
//   - Every address lends ports 1024-65535, 64512 ports (RFC 7422 section
//     2 leaves the well-known ports out), in K = floor(64512 / P) ranges of
//     P = ports_per_subscriber ports.
//   - Subscriber n gets address j = floor(n / K) and range s = n mod K:
//     ports 1024 + s*P to 1024 + s*P + P - 1.
//
// Its inverse: public address A (number j) and port q >= 1024 give
// s = floor((q - 1024) / P); if s < K and n = j*K + s is below the number
// of subscribers, the subscriber is the n-th; otherwise nobody.

// DetMap is the deterministic function of one configuration. It is
// immutable; any goroutine may use it. Forward allocates nothing (the
// packet path calls it for a subscriber's first mapping).
type DetMap struct {
	prefixes []detPrefix
	addrs    [][4]byte
	addrIdx  map[[4]byte]int
	p, k     uint32
	subs     uint64
}

type detPrefix struct {
	base, mask uint32
	first      uint64 // number of the prefix's first subscriber
	size       uint64
}

// NewDetMap builds the function of c's inside prefixes, pools and
// CGN.PortsPerSubscriber. It refuses, with the numbers, a pool that cannot
// cover the inside prefixes.
func NewDetMap(c *Config) (*DetMap, error) {
	p := c.CGN.PortsPerSubscriber
	if p < 1 || p > DetPortsPerAddress {
		return nil, fieldErr("ports_per_subscriber", "%d is out of range 1..%d", p, DetPortsPerAddress)
	}
	m := &DetMap{p: uint32(p), k: uint32(DetPortsPerAddress / p), addrIdx: map[[4]byte]int{}}
	for i, q := range c.InsidePrefixes {
		if !q.IsValid() || !q.Addr().Is4() {
			return nil, fieldErr(fmt.Sprintf("inside_prefixes[%d]", i), "not an IPv4 prefix")
		}
		for _, o := range c.InsidePrefixes[:i] {
			if o.Overlaps(q) {
				return nil, fieldErr(fmt.Sprintf("inside_prefixes[%d]", i), "%s overlaps %s: deterministic allocation numbers each subscriber once", q, o)
			}
		}
		size := uint64(1) << (32 - q.Bits())
		mask := uint32(0)
		if q.Bits() > 0 {
			mask = ^uint32(0) << (32 - q.Bits())
		}
		m.prefixes = append(m.prefixes, detPrefix{base: be32(q.Masked().Addr().As4()), mask: mask, first: m.subs, size: size})
		m.subs += size
	}
	for _, pool := range c.Pools {
		for _, q := range pool.Addresses {
			if !q.IsValid() || !q.Addr().Is4() || q.Bits() < 16 {
				return nil, fieldErr("pools", "%v is not an IPv4 prefix of at most 65536 addresses", q)
			}
			for a := range prefixAddrs(q.Masked()) {
				b := a.As4()
				if _, dup := m.addrIdx[b]; !dup {
					m.addrIdx[b] = len(m.addrs)
					m.addrs = append(m.addrs, b)
				}
			}
		}
	}
	if capacity := uint64(len(m.addrs)) * uint64(m.k); capacity < m.subs {
		need := (m.subs + uint64(m.k) - 1) / uint64(m.k)
		most := uint64(len(m.addrs)) * DetPortsPerAddress / m.subs
		hint := fmt.Sprintf("at most %d ports per subscriber would fit", most)
		if most == 0 {
			hint = "no number of ports per subscriber fits"
		}
		return nil, fieldErr("ports_per_subscriber",
			"the pools cannot cover the inside prefixes: %d subscribers need %d addresses at %d ports each (%d subscribers per address = 64512/%d), but the pools have %d addresses (%d subscribers); add %d addresses, or %s",
			m.subs, need, p, m.k, p, len(m.addrs), capacity, need-uint64(len(m.addrs)), hint)
	}
	return m, nil
}

// PortsPerSubscriber is P.
func (m *DetMap) PortsPerSubscriber() int { return int(m.p) }

// PerAddress is K, the subscribers one address serves.
func (m *DetMap) PerAddress() int { return int(m.k) }

// Subscribers is the number of inside addresses.
func (m *DetMap) Subscribers() uint64 { return m.subs }

// Addresses is the number of pool addresses.
func (m *DetMap) Addresses() int { return len(m.addrs) }

// number returns subscriber a's number n.
func (m *DetMap) number(a [4]byte) (uint64, bool) {
	v := be32(a)
	for i := range m.prefixes {
		q := &m.prefixes[i]
		if v&q.mask == q.base {
			return q.first + uint64(v-q.base), true
		}
	}
	return 0, false
}

// forward returns subscriber a's address number j and port range.
func (m *DetMap) forward(a [4]byte) (j int, lo, hi uint16, ok bool) {
	n, ok := m.number(a)
	if !ok {
		return 0, 0, 0, false
	}
	j = int(n / uint64(m.k))
	s := uint32(n % uint64(m.k))
	lo = uint16(detFirstPort + s*m.p)
	return j, lo, uint16(uint32(lo) + m.p - 1), true
}

// Forward returns subscriber a's public address and port range.
func (m *DetMap) Forward(a netip.Addr) (ext netip.Addr, r PortRange, ok bool) {
	if !a.Is4() {
		return netip.Addr{}, PortRange{}, false
	}
	j, lo, hi, ok := m.forward(a.As4())
	if !ok {
		return netip.Addr{}, PortRange{}, false
	}
	return netip.AddrFrom4(m.addrs[j]), PortRange{lo, hi}, true
}

// Inverse returns the subscriber that public address ext and port port
// belong to, with its range.
func (m *DetMap) Inverse(ext netip.Addr, port uint16) (sub netip.Addr, r PortRange, ok bool) {
	if !ext.Is4() || port < detFirstPort {
		return netip.Addr{}, PortRange{}, false
	}
	j, found := m.addrIdx[ext.As4()]
	if !found {
		return netip.Addr{}, PortRange{}, false
	}
	s := (uint32(port) - detFirstPort) / m.p
	if s >= m.k {
		return netip.Addr{}, PortRange{}, false // the unused tail of the address
	}
	n := uint64(j)*uint64(m.k) + uint64(s)
	a, ok := m.nth(n)
	if !ok {
		return netip.Addr{}, PortRange{}, false
	}
	lo := uint16(detFirstPort + s*m.p)
	return a, PortRange{lo, uint16(uint32(lo) + m.p - 1)}, true
}

// nth returns subscriber number n.
func (m *DetMap) nth(n uint64) (netip.Addr, bool) {
	for i := range m.prefixes {
		q := &m.prefixes[i]
		if n >= q.first && n < q.first+q.size {
			var b [4]byte
			v := q.base + uint32(n-q.first)
			b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
			return netip.AddrFrom4(b), true
		}
	}
	return netip.Addr{}, false
}

// DetEntry is one line of the deterministic table.
type DetEntry struct {
	Subscriber netip.Addr
	Outside    netip.Addr
	Ports      PortRange
}

// All yields the whole table in subscriber order.
func (m *DetMap) All() func(func(DetEntry) bool) {
	return func(yield func(DetEntry) bool) {
		for n := uint64(0); n < m.subs; n++ {
			a, _ := m.nth(n)
			j := int(n / uint64(m.k))
			s := uint32(n % uint64(m.k))
			lo := uint16(detFirstPort + s*m.p)
			if !yield(DetEntry{Subscriber: a, Outside: netip.AddrFrom4(m.addrs[j]), Ports: PortRange{lo, uint16(uint32(lo) + m.p - 1)}}) {
				return
			}
		}
	}
}

// DetMoves compares the functions of two configurations and returns how
// many subscribers got another address or range, and up to limit of them
// (for the reload warning: changing the function is an explicit act).
func DetMoves(old, cur *DetMap, limit int) (moved uint64, sample []DetEntry) {
	for e := range cur.All() {
		if oa, or, ok := old.Forward(e.Subscriber); ok && oa == e.Outside && or == e.Ports {
			continue
		}
		moved++
		if len(sample) < limit {
			sample = append(sample, e)
		}
	}
	return moved, sample
}
