// Package xdpprog loads and manages xnat's XDP program, the first stage of
// the pipeline: in the NIC driver, before the kernel allocates an skb, it
// steers NAT traffic into the AF_XDP socket of the frame's RX queue and
// passes everything else (ARP, IPv6, VLAN-tagged frames, traffic to the box
// itself) to the kernel stack.
//
// The C source is xnat.c; `go generate` compiles it with bpf2go and the
// generated xnat_bpfel.go/.o are committed, so a plain `go build` needs no
// clang.
//
// Roles. The same object serves the outside interface (redirect IPv4 whose
// destination is a public address) and the inside interface (redirect IPv4
// whose source is in an inside prefix and whose destination is not one of
// the box's own addresses). The role is a `volatile const` set at load time
// and each attached interface gets its own collection: no per-packet role
// lookup, an XSKMAP per interface indexed by rx_queue_index, and counters
// per interface. The three address maps are created once per Program and
// shared by all its collections, so a config reload writes them once.
//
// Concurrency. Program and Attachment methods are for the control plane
// (natd's setup and reload goroutines); they are serialised by a mutex and
// never called per packet. Attach talks netlink in the calling thread's
// network namespace and remembers it; Detach and Close switch back to that
// namespace, so they may be called from any goroutine.
package xdpprog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/xnat/xnat/internal/enumtext"
	"github.com/xnat/xnat/internal/nsenter"
	"golang.org/x/sys/unix"
)

// Role selects what an interface's program redirects.
type Role uint32

// Roles, mirrored from ROLE_* in xnat.c.
const (
	RoleOutside Role = 1
	RoleInside  Role = 2
)

var roleNames = []string{RoleOutside: "outside", RoleInside: "inside"}

func (r Role) String() string { return enumtext.String(roleNames, "role", r) }

// MaxQueues is the size of each interface's XSKMAP: queues numbered
// MaxQueues or more cannot have a socket.
const MaxQueues = 64

// progName is the program's kernel name; a program with this name found on
// an interface is a stale xnat program left by a killed process.
const progName = "xnat_xdp"

// Counter indexes, mirrored from CNT_* in xnat.c.
const (
	counterRedirected = iota
	counterPassed
	counterRedirectFailed
	counterMasqLocal
	numCounters
)

// ErrForeignProgram is returned by Attach when the interface already runs an
// XDP program that is not xnat's; we refuse to replace somebody else's.
var ErrForeignProgram = errors.New("xdpprog: interface already has a foreign XDP program")

// Program holds the parsed object and the shared address maps. Create it
// once per process with Load; Close detaches every interface it attached.
type Program struct {
	mu       sync.Mutex
	spec     *ebpf.CollectionSpec
	public   *ebpf.Map
	local    *ebpf.Map
	inside   *ebpf.Map
	masq     *ebpf.Map // masquerade.go
	owned    *ebpf.Map
	frags    *ebpf.Map
	attached map[int]*Attachment
}

// Load parses the embedded object and creates the shared address maps.
func Load() (*Program, error) {
	spec, err := loadXnat()
	if err != nil {
		return nil, err
	}
	p := &Program{spec: spec, attached: map[int]*Attachment{}}
	for _, m := range []struct {
		dst  **ebpf.Map
		name string
	}{{&p.public, xnatMapPublicAddrs}, {&p.local, xnatMapLocalAddrs}, {&p.inside, xnatMapInsidePrefixes},
		{&p.masq, xnatMapMasqAddrs}, {&p.owned, xnatMapOwnedPorts}, {&p.frags, xnatMapMasqFrags}} {
		if *m.dst, err = ebpf.NewMap(spec.Maps[m.name]); err != nil {
			p.closeMaps()
			return nil, fmt.Errorf("xdpprog: create map %s: %w", m.name, err)
		}
	}
	return p, nil
}

func (p *Program) closeMaps() {
	for _, m := range []*ebpf.Map{p.public, p.local, p.inside, p.masq, p.owned, p.frags} {
		if m != nil {
			m.Close()
		}
	}
}

// Attachment is the program loaded for one interface and attached to it in
// native (driver) mode.
type Attachment struct {
	p       *Program
	ifindex int
	role    Role
	coll    *ebpf.Collection
	prog    *ebpf.Program
	xsks    *ebpf.Map
	cnt     *ebpf.Map
	progID  uint32
	// ns is the network namespace Attach ran in; Detach switches to it, so
	// it can never detach a same-numbered interface of another namespace.
	ns netns.NsHandle
}

// Attach loads a collection with the given role and attaches it to ifindex
// in native mode. A stale xnat program (left by a killed process) is
// replaced; any other program is refused with ErrForeignProgram.
func (p *Program) Attach(ifindex int, role Role) (*Attachment, error) {
	if role != RoleOutside && role != RoleInside {
		return nil, fmt.Errorf("xdpprog: invalid role %d", role)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.attached[ifindex]; ok {
		return nil, fmt.Errorf("xdpprog: ifindex %d already attached by this process", ifindex)
	}
	link, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("xdpprog: link %d: %w", ifindex, err)
	}
	if err := removeStale(link); err != nil {
		return nil, err
	}

	spec := p.spec.Copy()
	if err := spec.Variables[xnatVarRole].Set(uint32(role)); err != nil {
		return nil, fmt.Errorf("xdpprog: set role: %w", err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			xnatMapPublicAddrs:    p.public,
			xnatMapLocalAddrs:     p.local,
			xnatMapInsidePrefixes: p.inside,
			xnatMapMasqAddrs:      p.masq,
			xnatMapOwnedPorts:     p.owned,
			xnatMapMasqFrags:      p.frags,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("xdpprog: load for %s: %w", role, err)
	}
	a := &Attachment{
		p: p, ifindex: ifindex, role: role, coll: coll,
		prog: coll.Programs[xnatProgXnatXdp], xsks: coll.Maps[xnatMapXsks], cnt: coll.Maps[xnatMapCounters],
	}
	info, err := a.prog.Info()
	if err == nil {
		if id, ok := info.ID(); ok {
			a.progID = uint32(id)
		}
	}
	// XDP_FLAGS_DRV_MODE: native mode only. We never fall back to generic
	// (skb) mode silently: it is a different performance class, and a
	// driver without native XDP should be a visible error.
	if err := netlink.LinkSetXdpFdWithFlags(link, a.prog.FD(), unix.XDP_FLAGS_DRV_MODE); err != nil {
		coll.Close()
		return nil, fmt.Errorf("xdpprog: attach to %s (ifindex %d) in native mode: %w", link.Attrs().Name, ifindex, err)
	}
	if a.ns, err = netns.Get(); err != nil {
		_ = netlink.LinkSetXdpFdWithFlags(link, -1, unix.XDP_FLAGS_DRV_MODE)
		coll.Close()
		return nil, fmt.Errorf("xdpprog: current netns: %w", err)
	}
	p.attached[ifindex] = a
	return a, nil
}

// removeStale checks the program currently on link: none is fine, a stale
// xnat program is detached, anything else is ErrForeignProgram.
func removeStale(link netlink.Link) error {
	x := link.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return nil
	}
	old, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
	if err != nil {
		return fmt.Errorf("xdpprog: inspect program %d on %s: %w", x.ProgId, link.Attrs().Name, err)
	}
	info, err := old.Info()
	old.Close()
	if err != nil {
		return fmt.Errorf("xdpprog: inspect program %d on %s: %w", x.ProgId, link.Attrs().Name, err)
	}
	if info.Name != progName {
		return fmt.Errorf("%w: %q (id %d) on %s", ErrForeignProgram, info.Name, x.ProgId, link.Attrs().Name)
	}
	flags := unix.XDP_FLAGS_DRV_MODE
	if x.AttachMode == xdpAttachedSKB {
		flags = unix.XDP_FLAGS_SKB_MODE
	}
	if err := netlink.LinkSetXdpFdWithFlags(link, -1, flags); err != nil {
		return fmt.Errorf("xdpprog: remove stale xnat program %d from %s: %w", x.ProgId, link.Attrs().Name, err)
	}
	return nil
}

// xdpAttachedSKB is IFLA_XDP_ATTACHED's value for generic mode
// (XDP_ATTACHED_SKB in linux/if_link.h).
const xdpAttachedSKB = 2

// Ifindex is the interface this attachment runs on.
func (a *Attachment) Ifindex() int { return a.ifindex }

// Role is the attachment's role.
func (a *Attachment) Role() Role { return a.role }

// Register makes queue's frames go to the AF_XDP socket fd.
func (a *Attachment) Register(queue, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("xdpprog: queue %d out of range [0,%d)", queue, MaxQueues)
	}
	if err := a.xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("xdpprog: register xsk fd %d for queue %d: %w", fd, queue, err)
	}
	return nil
}

// Unregister removes queue's socket; its frames go to the kernel again.
// Closing the socket has the same effect (the kernel removes a released
// XSK from every map).
func (a *Attachment) Unregister(queue int) error {
	if err := a.xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("xdpprog: unregister queue %d: %w", queue, err)
	}
	return nil
}

// Counters are the program's decisions on one interface, summed over CPUs.
type Counters struct {
	Redirected     uint64 // handed to an XSK by bpf_redirect_map
	Passed         uint64 // not NAT traffic: given to the kernel
	RedirectFailed uint64 // NAT traffic but no socket on its queue: passed
	// MasqLocal counts frames to a masquerade address that were not the
	// NAT's (the box's own traffic); they are in Passed too.
	MasqLocal uint64
}

// Counters reads and sums the per-CPU counters. Frames redirected but then
// dropped by the socket (RX ring or fill ring full) count as Redirected
// here; see the socket's XDP_STATISTICS for those.
func (a *Attachment) Counters() (Counters, error) {
	var c Counters
	dst := [numCounters]*uint64{&c.Redirected, &c.Passed, &c.RedirectFailed, &c.MasqLocal}
	var per []uint64
	for i := range uint32(numCounters) {
		if err := a.cnt.Lookup(i, &per); err != nil {
			return Counters{}, fmt.Errorf("xdpprog: read counter %d: %w", i, err)
		}
		for _, v := range per {
			*dst[i] += v
		}
	}
	return c, nil
}

// Detach removes the program from the interface, if it is still ours, and
// frees the collection. Because Attach only ever replaces nothing or a
// stale xnat program, removing ours leaves the interface as it was before
// xnat touched it. Detach is idempotent.
func (a *Attachment) Detach() error {
	a.p.mu.Lock()
	defer a.p.mu.Unlock()
	return a.detachLocked()
}

func (a *Attachment) detachLocked() error {
	if a.coll == nil {
		return nil
	}
	var errs []error
	err := nsenter.Run(a.ns, func() error {
		link, err := netlink.LinkByIndex(a.ifindex)
		if err != nil {
			return nil // interface gone: nothing to detach from
		}
		if x := link.Attrs().Xdp; x != nil && x.ProgId == a.progID && a.progID != 0 {
			if err := netlink.LinkSetXdpFdWithFlags(link, -1, unix.XDP_FLAGS_DRV_MODE); err != nil {
				return fmt.Errorf("xdpprog: detach from ifindex %d: %w", a.ifindex, err)
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	a.ns.Close()
	a.coll.Close()
	a.coll = nil
	delete(a.p.attached, a.ifindex)
	return errors.Join(errs...)
}

// Close detaches every interface and frees the shared maps.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, a := range p.attached {
		errs = append(errs, a.detachLocked())
	}
	p.closeMaps()
	return errors.Join(errs...)
}

// SetPublicAddrs replaces the set of outside destination addresses that are
// NAT traffic (pool, static-mapping and port-forwarding addresses).
func (p *Program) SetPublicAddrs(addrs []netip.Addr) error {
	return p.replaceAddrs(p.public, addrs)
}

// SetLocalAddrs replaces the set of the appliance's own addresses; inside
// traffic to them goes to the kernel. Include the inside subnets' directed
// broadcast addresses here.
func (p *Program) SetLocalAddrs(addrs []netip.Addr) error {
	return p.replaceAddrs(p.local, addrs)
}

// SetInsidePrefixes replaces the set of inside prefixes whose sources are
// translated.
func (p *Program) SetInsidePrefixes(prefixes []netip.Prefix) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[xnatLpmV4]bool{}
	for _, pf := range prefixes {
		if !pf.Addr().Is4() {
			return fmt.Errorf("xdpprog: inside prefix %s is not IPv4", pf)
		}
		pf = pf.Masked()
		want[xnatLpmV4{Prefixlen: uint32(pf.Bits()), Addr: be32(pf.Addr())}] = true
	}
	return replace(p.inside, want)
}

func (p *Program) replaceAddrs(m *ebpf.Map, addrs []netip.Addr) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[uint32]bool{}
	for _, a := range addrs {
		if !a.Is4() {
			return fmt.Errorf("xdpprog: address %s is not IPv4", a)
		}
		want[be32(a)] = true
	}
	return replace(m, want)
}

// replace makes m's key set equal to want. New keys are written before
// stale ones are deleted, so during a reload an address present in both
// the old and the new configuration is never missing.
func replace[K comparable](m *ebpf.Map, want map[K]bool) error {
	one := uint8(1)
	for k := range want {
		if err := m.Update(k, one, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("xdpprog: update %s: %w", m, err)
		}
	}
	var stale []K
	var k K
	it := m.Iterate()
	var v uint8
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("xdpprog: iterate %s: %w", m, err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdpprog: delete from %s: %w", m, err)
		}
	}
	return nil
}

// be32 returns a as the uint32 whose in-memory bytes are a's network-order
// bytes, matching the C side's `__u32 daddr` read straight from the header.
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// PublicAddrs returns the current public address set (for tests and the
// management API).
func (p *Program) PublicAddrs() ([]netip.Addr, error) { return p.dump(p.public) }

// LocalAddrs returns the current local address set.
func (p *Program) LocalAddrs() ([]netip.Addr, error) { return p.dump(p.local) }

func (p *Program) dump(m *ebpf.Map) ([]netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.Addr
	var k uint32
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], k)
		out = append(out, netip.AddrFrom4(b))
	}
	return out, it.Err()
}
