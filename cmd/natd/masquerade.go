package main

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/xdpprog"
)

// Masquerade: the NAT on the box's own address.
//
// Two things make it work.
//
//  1. Any public address that is also one of the box's own addresses (the
//     outside interface's, or any other natd did not add) is a masquerade
//     address: the XDP program hands natd only the ports the NAT owns there
//     (its dynamic ranges, which natd reserves from the kernel's local
//     ports, and its port forwards) and gives the rest to the kernel, so
//     SSH, BGP and the box's own DNS, NTP and package manager keep working.
//
//  2. A pool written `interface: wan0` is whatever IPv4 address wan0 has
//     now. In the NAT configuration that address is the placeholder
//     0.0.0.0 (in pools and in port forwards' outside addresses, as for a
//     socket bound to "any" address): the configuration store keeps the
//     placeholder, and natd substitutes the interface's current address
//     each time it hands a configuration to the engine. natd follows the
//     address over netlink; when a different address replaces it, sessions
//     on the old one are flushed (with their events), as Linux's masquerade
//     does, and new flows use the new one. natd never adds or removes that
//     address: the interface (DHCP, PPPoE) owns it.

// masqAny is the placeholder for the outside interface's address.
var masqAny = netip.IPv4Unspecified()

// minKernelPorts is the fewest ephemeral ports natd leaves the kernel when
// it reserves its own ranges from them.
const minKernelPorts = 1024

// masqPoolFromFile fills an `interface:` pool: the placeholder address,
// which Validate accepts as any single address.
func masqPoolFromFile(field string, pc poolConfig, pool *nat.Pool, ce *configErrors) {
	if pc.Interface == "" {
		return
	}
	if len(pc.Addresses) > 0 {
		ce.add(field+".interface", "a pool takes either addresses or an interface, not both")
		return
	}
	pool.Addresses = append(pool.Addresses, netip.PrefixFrom(masqAny, 32))
}

// checkMasqConfig checks that `interface:` pools name the outside interface
// (natd's only interface with public addresses).
func checkMasqConfig(fc *fileConfig, ce *configErrors) {
	for i, pc := range fc.NAT.Pools {
		if pc.Interface != "" && pc.Interface != fc.Interfaces.Outside.Name {
			ce.add(fmt.Sprintf("nat.pools[%d].interface", i), "%q is not the outside interface %q", pc.Interface, fc.Interfaces.Outside.Name)
		}
	}
}

// usesMasqAny reports whether c has an `interface:` pool or a port forward
// on the interface's address.
func usesMasqAny(c *nat.Config) bool {
	for _, p := range c.Pools {
		if slices.Contains(p.Addresses, netip.PrefixFrom(masqAny, 32)) {
			return true
		}
	}
	for _, f := range c.PortForwards {
		if f.Outside.Addr() == masqAny {
			return true
		}
	}
	return false
}

// masq is natd's state for the outside interface's address.
// Its methods may be called from any goroutine.
type masq struct {
	mu   sync.Mutex
	cur  netip.Addr          // the address substituted for masqAny
	seen map[netip.Addr]bool // every address cur has been: natd never adds them

	// reservedOrig is ip_local_reserved_ports as natd found it, restored
	// at Close; reserved is what natd wrote (empty: nothing written).
	reservedOrig, reserved string

	stop chan struct{}
	done chan struct{}
}

func (m *masq) addr() netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// resolve returns c with the placeholder replaced by the interface's
// current address. c's slices are shared with the configuration store, so
// changed ones are copied, never written in place.
func (m *masq) resolve(c nat.Config) nat.Config {
	a := m.addr()
	if !a.IsValid() {
		return c
	}
	any32 := netip.PrefixFrom(masqAny, 32)
	pools := slices.Clone(c.Pools)
	for i := range pools {
		if slices.Contains(pools[i].Addresses, any32) {
			addrs := slices.Clone(pools[i].Addresses)
			for j := range addrs {
				if addrs[j] == any32 {
					addrs[j] = netip.PrefixFrom(a, 32)
				}
			}
			pools[i].Addresses = addrs
		}
	}
	c.Pools = pools
	fwds := slices.Clone(c.PortForwards)
	for i := range fwds {
		if fwds[i].Outside.Addr() == masqAny {
			fwds[i].Outside = netip.AddrPortFrom(a, fwds[i].Outside.Port())
		}
	}
	c.PortForwards = fwds
	return c
}

// neverAdd reports whether natd must leave a alone on the outside link:
// the interface's address, now or before (it may still drain).
func (m *masq) neverAdd(a netip.Addr) bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return a == masqAny || m.seen[a]
}

// startMasq sets up masquerade before the engine starts. It returns the
// configuration for the engine.
func (d *daemon) startMasq(c nat.Config) (nat.Config, error) {
	d.masq = &masq{seen: map[netip.Addr]bool{}}
	return d.resolveNAT(c)
}

// resolveNAT is applyNAT's first step: the placeholder becomes the
// interface's address, and the kernel's local ports are checked against the
// NAT's ranges. The first configuration that uses the placeholder (at
// start, or a pool added later) needs the outside interface to have an
// IPv4 address; from then on the watcher moves it.
func (d *daemon) resolveNAT(c nat.Config) (nat.Config, error) {
	m := d.masq
	if usesMasqAny(&c) && !m.addr().IsValid() {
		d.addrMu.Lock()
		out := d.links[nat.Outside]
		d.addrMu.Unlock()
		if len(out.addrs) == 0 {
			return c, fmt.Errorf("%w: outside interface %s has no IPv4 address for the interface pool (0.0.0.0)", nat.ErrInvalidConfig, out.name)
		}
		a := out.addrs[0].Addr()
		m.mu.Lock()
		m.cur = a
		m.seen[a] = true
		m.mu.Unlock()
		d.log.Info("masquerade: the pool follows the outside interface's address", "interface", out.name, "addr", a)
	}
	c = m.resolve(c)
	if len(d.masqAddrs(c)) > 0 {
		if _, err := kernelPortsLeft(c); err != nil {
			return c, fmt.Errorf("%w: %v", nat.ErrInvalidConfig, err)
		}
	}
	return c, nil
}

// masqAddrs returns the public addresses of c that are also the box's own:
// pool and port-forward addresses among the interfaces' addresses natd did
// not add. Static mappings' outside addresses own every port and are left
// out (all their traffic is the NAT's). Called with addrMu held or before
// the workers start.
func (d *daemon) masqAddrs(c nat.Config) []netip.Addr {
	local := map[netip.Addr]bool{}
	for _, li := range d.links {
		for _, p := range li.addrs {
			local[p.Addr()] = true
		}
	}
	for _, m := range c.StaticMappings {
		delete(local, m.Outside)
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if local[a] && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, p := range c.Pools {
		for _, pf := range p.Addresses {
			if pf.Bits() == 32 {
				add(pf.Addr())
				continue
			}
			for a := range local {
				if pf.Contains(a) {
					add(a)
				}
			}
		}
	}
	for _, f := range c.PortForwards {
		add(f.Outside.Addr())
	}
	return out
}

// ownedPorts is what the NAT owns on masquerade addresses: the dynamic
// ranges and every port forward's outside port.
func ownedPorts(c *nat.Config) *[3]xdpprog.PortBits {
	var sets [3]xdpprog.PortBits
	for p, i := range map[nat.Proto]int{nat.TCP: xdpprog.OwnTCP, nat.UDP: xdpprog.OwnUDP, nat.ICMP: xdpprog.OwnICMP} {
		sets[i].Add(c.Ports[p].Min, c.Ports[p].Max)
	}
	for _, f := range c.PortForwards {
		i := xdpprog.OwnTCP
		if f.Proto == nat.UDP {
			i = xdpprog.OwnUDP
		}
		sets[i].Add(f.Outside.Port(), f.Outside.Port())
	}
	return &sets
}

// syncMasq writes the masquerade addresses and owned ports to the XDP
// program, and reserves the NAT's ranges from the kernel, before syncPublic
// publishes the public set: an address must never be public without its
// port filter, or the box's own traffic to it would reach natd. Called
// with addrMu held.
func (d *daemon) syncMasq(c nat.Config) error {
	addrs := d.masqAddrs(c)
	if len(addrs) > 0 {
		if err := d.reservePorts(c); err != nil {
			return err
		}
	}
	if err := d.prog.SetOwnedPorts(ownedPorts(&c)); err != nil {
		return fmt.Errorf("XDP owned ports: %w", err)
	}
	if err := d.prog.SetMasqAddrs(addrs); err != nil {
		return fmt.Errorf("XDP masquerade addresses: %w", err)
	}
	return nil
}

const (
	sysReserved  = "/proc/sys/net/ipv4/ip_local_reserved_ports"
	sysLocalPort = "/proc/sys/net/ipv4/ip_local_port_range"
)

// natPortRanges are the TCP and UDP dynamic ranges (the kernel reserves
// local ports for both at once).
func natPortRanges(c *nat.Config) []nat.PortRange {
	return []nat.PortRange{c.Ports[nat.TCP], c.Ports[nat.UDP]}
}

// kernelPortsLeft counts the ephemeral ports the kernel keeps once the
// NAT's ranges are reserved from its ip_local_port_range (in natd's
// network namespace), and refuses fewer than minKernelPorts.
func kernelPortsLeft(c nat.Config) (int, error) {
	b, err := os.ReadFile(sysLocalPort)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, fmt.Errorf("%s: unexpected %q", sysLocalPort, b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: unexpected %q", sysLocalPort, b)
	}
	left := 0
	for p := lo; p <= hi; p++ {
		taken := false
		for _, r := range natPortRanges(&c) {
			if p >= int(r.Min) && p <= int(r.Max) {
				taken = true
			}
		}
		if !taken {
			left++
		}
	}
	if left < minKernelPorts {
		return left, fmt.Errorf("ports: the NAT's ranges (tcp %d-%d, udp %d-%d) are on the box's own address, and "+
			"reserving them from the kernel's local ports %d-%d (net.ipv4.ip_local_port_range) would leave it %d; "+
			"give the NAT ranges outside them (for example 61000-65535, or 1024-32767) or narrow ip_local_port_range",
			c.Ports[nat.TCP].Min, c.Ports[nat.TCP].Max, c.Ports[nat.UDP].Min, c.Ports[nat.UDP].Max, lo, hi, left)
	}
	return left, nil
}

// reservePorts writes the NAT's ranges to ip_local_reserved_ports, on top
// of what was there when natd started, so that the kernel never picks a
// NAT port as the source of the box's own connections. Called with addrMu
// held.
func (d *daemon) reservePorts(c nat.Config) error {
	m := d.masq
	if m.reserved == "" {
		b, err := os.ReadFile(sysReserved)
		if err != nil {
			return fmt.Errorf("reserve the NAT's ports from the kernel: %w", err)
		}
		m.reservedOrig = strings.TrimSpace(string(b))
	}
	parts := []string{}
	if m.reservedOrig != "" {
		parts = append(parts, m.reservedOrig)
	}
	for _, r := range natPortRanges(&c) {
		parts = append(parts, fmt.Sprintf("%d-%d", r.Min, r.Max))
	}
	want := strings.Join(parts, ",")
	if want == m.reserved {
		return nil
	}
	if err := os.WriteFile(sysReserved, []byte(want), 0o644); err != nil {
		return fmt.Errorf("reserve the NAT's ports from the kernel (%s = %s): %w", sysReserved, want, err)
	}
	if m.reserved == "" {
		d.log.Info("masquerade: the NAT's ports are reserved from the kernel's local ports", "ip_local_reserved_ports", want)
	}
	m.reserved = want
	return nil
}

// closeMasq stops the address watcher and gives the kernel its local ports
// back.
func (d *daemon) closeMasq() {
	m := d.masq
	if m == nil {
		return
	}
	if m.stop != nil {
		close(m.stop)
		<-m.done
	}
	if m.reserved != "" {
		// A newline: a write of no bytes would leave the value as it is.
		if err := os.WriteFile(sysReserved, []byte(m.reservedOrig+"\n"), 0o644); err != nil {
			d.log.Warn("restore ip_local_reserved_ports", "err", err)
		}
	}
}

// watchAddrs follows the outside interface's IPv4 addresses over netlink.
// It always runs (an address added by hand may make a pool address local),
// and for an interface pool it moves the pool to the interface's new
// address.
func (d *daemon) watchAddrs() error {
	m := d.masq
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	ch := make(chan netlink.AddrUpdate, 64)
	subDone := make(chan struct{})
	errs := make(chan error, 1)
	err := netlink.AddrSubscribeWithOptions(ch, subDone, netlink.AddrSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	})
	if err != nil {
		close(m.done)
		return fmt.Errorf("follow the outside interface's addresses: %w", err)
	}
	go func() {
		defer close(m.done)
		defer close(subDone)
		// A netlink socket can overflow (ENOBUFS) and lose events: look
		// at the interface again every few seconds whatever happens.
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case u, ok := <-ch:
				if !ok {
					return
				}
				_ = u
				// Several updates often come at once (delete, then add):
				// take them all before looking.
				for drained := false; !drained; {
					select {
					case <-ch:
					default:
						drained = true
					}
				}
			case err := <-errs:
				d.log.Warn("masquerade: netlink address subscription", "err", err)
			case <-t.C:
			}
			d.followAddrs()
		}
	}()
	return nil
}

// followAddrs re-reads the outside interface's addresses; called by the
// watcher goroutine only.
func (d *daemon) followAddrs() {
	start := time.Now()
	name := d.links[nat.Outside].name
	li, err := lookupAddrs(name)
	if err != nil {
		return // the interface is gone; ifwatch.go deals with its return
	}
	d.addrMu.Lock()
	changed := !slices.Equal(li, d.links[nat.Outside].addrs)
	if changed {
		d.links[nat.Outside].addrs = li
	}
	d.addrMu.Unlock()
	if !changed {
		return
	}
	if err := d.eng.SetLinks(d.natLinks()); err != nil {
		d.log.Warn("masquerade: engine links", "err", err)
	}
	m := d.masq
	m.mu.Lock()
	old := m.cur
	var next netip.Addr
	if old.IsValid() && len(li) > 0 && !slices.ContainsFunc(li, func(p netip.Prefix) bool { return p.Addr() == old }) {
		next = li[0].Addr()
		m.cur = next
		m.seen[next] = true
	}
	m.mu.Unlock()
	if !next.IsValid() {
		if old.IsValid() && len(li) == 0 {
			d.log.Warn("masquerade: the outside interface has no IPv4 address; keeping the last one until another appears", "interface", name, "addr", old)
		}
		// Addresses natd did not add changed: which public addresses are
		// local may have too.
		if err := d.syncPublic(); err != nil {
			d.log.Error("sync public addresses", "err", err)
		}
		return
	}
	// The engine takes the new address first (new flows use it), then the
	// sessions on the old one go, each with its event.
	if err := d.store.Republish(); err != nil {
		d.log.Error("masquerade: apply the new address", "err", err)
		return
	}
	n := d.eng.FlushSessions(nat.SessionFilter{OutsideAddr: old})
	d.log.Warn("masquerade: the outside interface's address changed; sessions on the old address flushed",
		"interface", name, "old", old, "new", next, "flushed", n, "took", time.Since(start))
}

// lookupAddrs lists an interface's IPv4 addresses that natd did not add,
// primary addresses first.
func lookupAddrs(name string) ([]netip.Prefix, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	return linkAddrs(l, name)
}

// linkAddrs lists l's IPv4 addresses that natd did not add (an earlier
// natd's, after a crash, carry xnatLabel).
func linkAddrs(l netlink.Link, name string) ([]netip.Prefix, error) {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, ad := range addrs {
		if ad.Label == xnatLabel(name) {
			continue
		}
		p, ok := netip.AddrFromSlice(ad.IP.To4())
		if !ok {
			continue
		}
		ones, _ := ad.Mask.Size()
		out = append(out, netip.PrefixFrom(p, ones))
	}
	return out, nil
}
