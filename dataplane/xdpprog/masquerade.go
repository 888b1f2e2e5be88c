package xdpprog

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Masquerade. A pool address that is also one of the box's own addresses
// (the outside interface's, as with Linux's masquerade) carries two kinds
// of traffic: the NAT's and the box's (SSH, BGP, the box's DNS and NTP
// clients). For such an address the program redirects only what the NAT
// owns, by destination port: TCP and UDP ports in the owned set, ICMP echo
// replies whose identifier is owned, ICMP errors quoting an owned source
// port, and the later fragments of a redirected first fragment. Everything
// else to that address goes to the kernel.

// Owned-port protocols, mirrored from OWN_* in xnat.c.
const (
	OwnTCP = iota
	OwnUDP
	OwnICMP
	numOwn
)

// PortBits is a set of ports (or ICMP identifiers), one bit each, laid out
// as xnat.c's struct port_bits.
type PortBits [1024]uint64

// Add puts ports lo..hi (inclusive) in the set.
func (b *PortBits) Add(lo, hi uint16) {
	for p := uint32(lo); p <= uint32(hi); p++ {
		b[p>>6] |= 1 << (p & 63)
	}
}

// Has reports whether port is in the set.
func (b *PortBits) Has(port uint16) bool { return b[port>>6]&(1<<(port&63)) != 0 }

// SetMasqAddrs replaces the set of masquerade addresses: public addresses
// that are also the box's own. Each must also be in the public set.
func (p *Program) SetMasqAddrs(addrs []netip.Addr) error {
	return p.replaceAddrs(p.masq, addrs)
}

// MasqAddrs returns the current masquerade address set.
func (p *Program) MasqAddrs() ([]netip.Addr, error) { return p.dump(p.masq) }

// SetOwnedPorts replaces the ports the NAT owns on masquerade addresses,
// indexed by OwnTCP, OwnUDP and OwnICMP. Each protocol's set is written in
// one map update, so a packet sees the old set or the new one.
func (p *Program) SetOwnedPorts(sets *[numOwn]PortBits) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range sets {
		v := xnatPortBits{W: sets[i]}
		if err := p.owned.Update(uint32(i), &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("xdpprog: owned ports %d: %w", i, err)
		}
	}
	return nil
}

// OwnedPorts reads the owned-port sets back (for tests).
func (p *Program) OwnedPorts() (*[numOwn]PortBits, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [numOwn]PortBits
	for i := range out {
		var v xnatPortBits
		if err := p.owned.Lookup(uint32(i), &v); err != nil {
			return nil, fmt.Errorf("xdpprog: owned ports %d: %w", i, err)
		}
		out[i] = v.W
	}
	return &out, nil
}
