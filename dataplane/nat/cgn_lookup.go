package nat

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/xnat/xnat/flowtable"
)

// Subscriber lookup (docs/cgn.md): who held a public address and port, and
// what a subscriber holds, from live state or, in deterministic mode, from
// the function. Control plane; any goroutine; never blocks workers.

// Holder is one answer to "who held this public address and port".
type Holder struct {
	Subscriber netip.Addr
	// Inside is the mapping's inside endpoint when a live mapping or
	// session says it (invalid otherwise).
	Inside  netip.AddrPort
	Outside netip.Addr
	// Ports is the block or range that holds the port, or the port.
	Ports PortRange
	// Proto is the protocol of a live mapping; HasProto says whether it
	// applies (blocks and ranges hold the port in every protocol).
	Proto    Proto
	HasProto bool
	// Source says where the answer comes from: "deterministic" (the
	// function), "block" (a port block's claim), "mapping" (an
	// endpoint-independent mapping), "session", "static", "forward".
	Source string
	// Since is when the block was allocated (block mode); zero otherwise.
	Since time.Time
	// Held marks a block in hold-down: its subscriber's sessions have
	// ended; it was theirs until now.
	Held bool
}

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// Now is the engine's clock (the wall clock, or a test's).
func (e *Engine) Now() time.Time { return e.clock.Now() }

// LookupOutside returns who holds public address ext and port now (proto
// nil: any protocol).
func (e *Engine) LookupOutside(ext netip.Addr, port uint16, proto *Proto) []Holder {
	if !ext.Is4() {
		return nil
	}
	s := e.snap.Load()
	a := ext.As4()
	var out []Holder
	if in, ok := s.staticOut[a]; ok {
		out = append(out, Holder{Subscriber: netip.AddrFrom4(in), Inside: netip.AddrPortFrom(netip.AddrFrom4(in), port), Outside: ext, Ports: PortRange{port, port}, Source: "static"})
	}
	for p := TCP; p <= UDP; p++ {
		if proto != nil && *proto != p {
			continue
		}
		if r, ok := s.fwdOut[fwdKey{addr: a, port: port, proto: uint8(p)}]; ok {
			out = append(out, Holder{Subscriber: netip.AddrFrom4(r.inAddr), Inside: netip.AddrPortFrom(netip.AddrFrom4(r.inAddr), r.inPort),
				Outside: ext, Ports: PortRange{port, port}, Proto: p, HasProto: true, Source: "forward"})
		}
	}
	switch {
	case s.cgn.det != nil:
		if sub, r, ok := s.cgn.det.Inverse(ext, port); ok {
			out = append(out, Holder{Subscriber: sub, Outside: ext, Ports: r, Source: "deterministic"})
		}
	case e.cgn.blocks != nil && port >= s.cgn.blockLo && s.cgn.blockSize != 0:
		b := (uint32(port) - uint32(s.cgn.blockLo)) / s.cgn.blockSize
		k := blockAddrKey(a, b)
		var x flowtable.Entry
		if b < s.cgn.nBlocks && e.cgn.blocks.Lookup(&k, &x) {
			sub := blockClaimOf(&x).subscriber()
			lo, hi := s.cgn.blockRange(b)
			out = append(out, Holder{Subscriber: netip.AddrFrom4(sub), Outside: ext, Ports: PortRange{lo, hi}, Source: "block",
				Since: time.Unix(0, claimSince(&x)).UTC(), Held: blockClaimOf(&x).held()})
		}
	}
	// Live mappings and sessions give the inside endpoint.
	for p := TCP; p < NumProtos; p++ {
		if proto != nil && *proto != p {
			continue
		}
		var x flowtable.Entry
		if e.bindingAt(s, a, port, p, &x) {
			in := x.Keys[0]
			out = append(out, Holder{Subscriber: netip.AddrFrom4(in.Src), Inside: netip.AddrPortFrom(netip.AddrFrom4(in.Src), in.SrcPort),
				Outside: ext, Ports: PortRange{port, port}, Proto: p, HasProto: true, Source: "mapping"})
		}
	}
	if s.Config.Mapping == AddressAndPortDependent {
		f := SessionFilter{OutsideAddr: ext, OutsidePort: port, Proto: proto}
		seen := map[netip.AddrPort]bool{}
		for cur := uint32(0); ; {
			ss, next := e.Sessions(f, cur, 256)
			for _, x := range ss {
				if x.Kind == "dynamic" && !seen[x.Inside] {
					seen[x.Inside] = true
					out = append(out, Holder{Subscriber: x.Inside.Addr(), Inside: x.Inside, Outside: ext, Ports: PortRange{port, port}, Proto: x.Proto, HasProto: true, Source: "session"})
				}
			}
			if next == 0 {
				break
			}
			cur = next
		}
	}
	return out
}

// SubscriberView is what one subscriber holds.
type SubscriberView struct {
	Subscriber netip.Addr
	Mode       PortAllocation
	// Paired is the external address a live subscriber is paired with
	// (invalid when it holds nothing).
	Paired netip.Addr
	// Ranges are its blocks (block mode) or its range (deterministic).
	Ranges []Holder
	// Sessions and Ports are its live counts.
	Sessions, Ports int
}

// LookupInside returns what subscriber a holds: in deterministic mode its
// range whether or not it is active; in block mode its blocks.
func (e *Engine) LookupInside(a netip.Addr) (SubscriberView, bool) {
	v := SubscriberView{Subscriber: a}
	if !a.Is4() {
		return v, false
	}
	s := e.snap.Load()
	v.Mode = s.cgn.mode
	b := a.As4()
	found := false
	var x flowtable.Entry
	k := subscriberKey(b)
	if e.subs.Lookup(&k, &x) {
		if st := e.addr(subAddr(x.User[0])); st != nil {
			v.Paired = netip.AddrFrom4(st.addr)
		}
		refs := subCount(x.User[1])
		v.Sessions, v.Ports = int(refs.sessions()), int(refs.ports())
		found = true
	}
	if s.cgn.det != nil {
		if ext, r, ok := s.cgn.det.Forward(a); ok {
			v.Ranges = append(v.Ranges, Holder{Subscriber: a, Outside: ext, Ports: r, Source: "deterministic"})
			found = true
		}
	}
	if e.cgn.blocks != nil {
		for slot := 0; slot < int(e.cgn.slots.Load()); slot++ {
			sk := blockSubKey(b, slot)
			if !e.cgn.blocks.Lookup(&sk, &x) {
				continue
			}
			st := e.addr(blockSlotOf(&x).addr())
			if st == nil {
				continue
			}
			blk := blockSlotOf(&x).block()
			lo, hi := s.cgn.blockRange(blk)
			h := Holder{Subscriber: a, Outside: netip.AddrFrom4(st.addr), Ports: PortRange{lo, hi}, Source: "block"}
			ak := blockAddrKey(st.addr, blk)
			var y flowtable.Entry
			if e.cgn.blocks.Lookup(&ak, &y) {
				h.Since = time.Unix(0, claimSince(&y)).UTC()
			}
			v.Ranges = append(v.Ranges, h)
			found = true
		}
	}
	if in, ok := s.staticIn[b]; ok {
		v.Ranges = append(v.Ranges, Holder{Subscriber: a, Outside: netip.AddrFrom4(in), Ports: PortRange{1, 65535}, Source: "static"})
		found = true
	}
	return v, found
}
