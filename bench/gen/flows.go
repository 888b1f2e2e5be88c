package gen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxFlows bounds FlowSpec.Count: 16 Mi flows, the upper bound.
// Flow indexes and the Mark's flow field are 32-bit.
const MaxFlows = 1 << 24

// AddrRange is Count consecutive IPv4 addresses from First.
type AddrRange struct {
	First [4]byte
	Count uint32
}

// PortRange is Count consecutive ports from First (Count <= 65536).
type PortRange struct {
	First uint16
	Count uint32
}

// ParseAddrRange parses "A" (one address), "A-B" (inclusive) or a prefix
// "A/n" (every address of the prefix, network and broadcast included: the
// generator's addresses are not hosts on a link).
func ParseAddrRange(s string) (AddrRange, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if !p.Addr().Is4() {
			return AddrRange{}, fmt.Errorf("address range %q: not IPv4", s)
		}
		p = p.Masked()
		n := uint64(1) << (32 - p.Bits())
		if n > 1<<31 {
			return AddrRange{}, fmt.Errorf("address range %q: too large", s)
		}
		return AddrRange{First: p.Addr().As4(), Count: uint32(n)}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := netip.ParseAddr(strings.TrimSpace(lo))
	if err != nil || !a.Is4() {
		return AddrRange{}, fmt.Errorf("address range %q: bad IPv4 address %q", s, lo)
	}
	b := a
	if isRange {
		if b, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil || !b.Is4() {
			return AddrRange{}, fmt.Errorf("address range %q: bad IPv4 address %q", s, hi)
		}
	}
	x, y := be32(a.As4()), be32(b.As4())
	if y < x {
		return AddrRange{}, fmt.Errorf("address range %q: last address before first", s)
	}
	if y-x >= 1<<31 {
		return AddrRange{}, fmt.Errorf("address range %q: too large", s)
	}
	return AddrRange{First: a.As4(), Count: y - x + 1}, nil
}

// ParsePortRange parses "P" or "P-Q" (inclusive).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil {
			return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
		}
	}
	if b < a {
		return PortRange{}, fmt.Errorf("port range %q: last port before first", s)
	}
	return PortRange{First: uint16(a), Count: uint32(b - a + 1)}, nil
}

// Addr returns the i-th address of the range (i < Count).
func (r AddrRange) Addr(i uint32) [4]byte { return put32(be32(r.First) + i) }

// Last returns the range's last address.
func (r AddrRange) Last() [4]byte { return r.Addr(r.Count - 1) }

// Contains reports whether a is in the range.
func (r AddrRange) Contains(a [4]byte) bool { return be32(a)-be32(r.First) < r.Count }

// String formats the range as "A-B" (or "A" for one address).
func (r AddrRange) String() string {
	a := netip.AddrFrom4(r.First)
	if r.Count <= 1 {
		return a.String()
	}
	return a.String() + "-" + netip.AddrFrom4(r.Last()).String()
}

// Prefixes returns the shortest list of CIDR prefixes covering the range
// exactly (for the XDP program's LPM map).
func (r AddrRange) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	lo := uint64(be32(r.First))
	end := lo + uint64(r.Count)
	for lo < end {
		// The largest aligned block starting at lo that fits before end.
		size := uint64(1)
		for size < 1<<32 && lo%(size*2) == 0 && lo+size*2 <= end {
			size *= 2
		}
		bits := 32
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(put32(uint32(lo))), bits))
		lo += size
	}
	return out
}

// Addrs lists every address of the range (at most max, else an error), for
// the XDP program's exact-match map.
func (r AddrRange) Addrs(max int) ([]netip.Addr, error) {
	if uint64(r.Count) > uint64(max) {
		return nil, fmt.Errorf("address range %s has %d addresses; at most %d supported here", r, r.Count, max)
	}
	out := make([]netip.Addr, r.Count)
	for i := range out {
		out[i] = netip.AddrFrom4(r.Addr(uint32(i)))
	}
	return out, nil
}

// String formats the range as "P-Q" (or "P").
func (r PortRange) String() string {
	if r.Count <= 1 {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, uint32(r.First)+r.Count-1)
}

// Tuple is a flow's addresses and ports as the generator sends them. It is
// 12 bytes, pointer-free and without padding (checked by a test), so it
// can be a map key or an array element.
type Tuple struct {
	Src, Dst         [4]byte
	SrcPort, DstPort uint16
}

// FlowSpec maps flow indexes [0, Count) to distinct tuples. The source
// address varies fastest, then the source port, the destination address,
// the destination port (an odometer): with Count <= Src.Count every flow
// comes from its own subscriber, which is how a NAT meets many users.
// Tuples are computed, never stored: 16 Mi flows cost no memory.
type FlowSpec struct {
	Src, Dst           AddrRange
	SrcPorts, DstPorts PortRange
	Count              uint32
}

// Capacity is the number of distinct tuples the ranges allow.
func (s *FlowSpec) Capacity() uint64 {
	return uint64(s.Src.Count) * uint64(s.SrcPorts.Count) * uint64(s.Dst.Count) * uint64(s.DstPorts.Count)
}

// Validate checks the ranges and that Count flows fit in them.
func (s *FlowSpec) Validate() error {
	switch {
	case s.Src.Count == 0 || s.Dst.Count == 0:
		return fmt.Errorf("flows: empty address range")
	case s.SrcPorts.Count == 0 || s.DstPorts.Count == 0:
		return fmt.Errorf("flows: empty port range")
	case s.SrcPorts.Count > 65536 || s.DstPorts.Count > 65536 ||
		uint32(s.SrcPorts.First)+s.SrcPorts.Count > 65536 || uint32(s.DstPorts.First)+s.DstPorts.Count > 65536:
		return fmt.Errorf("flows: port range beyond 65535")
	case uint64(be32(s.Src.First))+uint64(s.Src.Count) > 1<<32 || uint64(be32(s.Dst.First))+uint64(s.Dst.Count) > 1<<32:
		return fmt.Errorf("flows: address range beyond 255.255.255.255")
	case s.Count == 0 || s.Count > MaxFlows:
		return fmt.Errorf("flows: count %d not in [1, %d]", s.Count, MaxFlows)
	case uint64(s.Count) > s.Capacity():
		return fmt.Errorf("flows: %d flows but the ranges give only %d distinct tuples (src %s ports %s, dst %s ports %s)",
			s.Count, s.Capacity(), s.Src, s.SrcPorts, s.Dst, s.DstPorts)
	}
	return nil
}

// Tuple computes flow i's tuple with divisions: the reference for Cursor
// and the slow path (tests, reply checks). i must be < Count.
func (s *FlowSpec) Tuple(i uint32) Tuple {
	sa := i % s.Src.Count
	q := i / s.Src.Count
	sp := q % s.SrcPorts.Count
	q /= s.SrcPorts.Count
	da := q % s.Dst.Count
	q /= s.Dst.Count
	dp := q % s.DstPorts.Count
	return Tuple{
		Src: s.Src.Addr(sa), Dst: s.Dst.Addr(da),
		SrcPort: s.SrcPorts.First + uint16(sp), DstPort: s.DstPorts.First + uint16(dp),
	}
}

// Index is the inverse of Tuple: the flow index of t, and whether t is a
// tuple of this spec. It costs a few multiplications, no division, so the
// generator can match every reply to its flow.
func (s *FlowSpec) Index(t Tuple) (uint32, bool) {
	sa := be32(t.Src) - be32(s.Src.First)
	da := be32(t.Dst) - be32(s.Dst.First)
	sp := uint32(t.SrcPort - s.SrcPorts.First)
	dp := uint32(t.DstPort - s.DstPorts.First)
	if sa >= s.Src.Count || da >= s.Dst.Count || sp >= s.SrcPorts.Count || dp >= s.DstPorts.Count ||
		t.SrcPort < s.SrcPorts.First || t.DstPort < s.DstPorts.First {
		return 0, false
	}
	i := ((uint64(dp)*uint64(s.Dst.Count)+uint64(da))*uint64(s.SrcPorts.Count)+uint64(sp))*uint64(s.Src.Count) + uint64(sa)
	if i >= uint64(s.Count) {
		return 0, false
	}
	return uint32(i), true
}

// Cursor walks flow indexes first, first+step, first+2*step, ... of a
// FlowSpec and keeps the tuple's odometer digits, so advancing costs adds
// and compares: a division happens only when a digit wraps by more than
// its range in one step. A TX worker w of W walks with first = w and step =
// W. Owned by one worker goroutine.
type Cursor struct {
	spec  *FlowSpec
	step  uint32
	Index uint32 // current flow index
	Round uint32 // completed passes over the worker's flows
	first uint32
	d     [4]uint32 // src addr, src port, dst addr, dst port digits
	n     [4]uint32 // digit ranges
	t     Tuple
	// d0 and t0 are the digits and tuple of first: a wrap restores them
	// instead of dividing again (with few flows, every step wraps).
	d0 [4]uint32
	t0 Tuple
}

// NewCursor returns a cursor at flow first (< spec.Count) stepping by step
// (>= 1).
func NewCursor(spec *FlowSpec, first, step uint32) *Cursor {
	c := &Cursor{spec: spec, step: step, first: first,
		n: [4]uint32{spec.Src.Count, spec.SrcPorts.Count, spec.Dst.Count, spec.DstPorts.Count}}
	c.seek(first)
	c.d0, c.t0 = c.d, c.t
	return c
}

func (c *Cursor) seek(i uint32) {
	c.Index = i
	q := i
	for k := range c.d {
		c.d[k] = q % c.n[k]
		q /= c.n[k]
	}
	c.fill()
}

func (c *Cursor) fill() {
	s := c.spec
	c.t = Tuple{
		Src: put32(be32(s.Src.First) + c.d[0]), Dst: put32(be32(s.Dst.First) + c.d[2]),
		SrcPort: s.SrcPorts.First + uint16(c.d[1]), DstPort: s.DstPorts.First + uint16(c.d[3]),
	}
}

// Tuple is the current flow's tuple.
func (c *Cursor) Tuple() *Tuple { return &c.t }

// Next advances to the next flow of this cursor. When it passes Count it
// starts the next round at first and reports true.
func (c *Cursor) Next() (wrapped bool) {
	next := uint64(c.Index) + uint64(c.step)
	if next >= uint64(c.spec.Count) {
		c.Round++
		c.Index, c.d, c.t = c.first, c.d0, c.t0
		return true
	}
	c.Index = uint32(next)
	carry := c.step
	for k := 0; k < 4 && carry != 0; k++ {
		v := c.d[k] + carry
		n := c.n[k]
		switch {
		case v < n:
			carry = 0
		case v-n < n:
			v -= n
			carry = 1
		default:
			carry = v / n
			v -= carry * n
		}
		c.d[k] = v
	}
	c.fill()
	return false
}

func be32(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }

func put32(v uint32) [4]byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], v)
	return a
}
