package neigh

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/dataplane/fwd"
)

// Link names one of the NAT's interfaces in the Table's network namespace:
// by Name (followed across re-creation: a new interface with the same name
// is picked up) or, when Name is empty, by a fixed Index.
type Link struct {
	Name  string
	Index int
}

func (l Link) String() string {
	if l.Name != "" {
		return fmt.Sprintf("%q", l.Name)
	}
	return fmt.Sprintf("ifindex %d", l.Index)
}

// Config configures a Table.
type Config struct {
	// Inside and Outside are the NAT's interfaces. Only routes whose
	// output interface is a side's interface serve that side, and next
	// hops are resolved on it. They may be the same interface.
	Inside, Outside Link
	// RouteTable is the routing table next hops come from; 0 means the
	// main table (254).
	RouteTable int
	// PendingTimeout bounds how long a resolution the Table requested may
	// stay Pending without word from the kernel before it counts as
	// Failed. Default 5 s: the kernel itself gives up after mcast_solicit
	// × retrans_time, 3 × 1 s by default.
	PendingTimeout time.Duration
	// RetryFailed is how long a neighbour stays Failed before the next
	// packet to it makes the kernel probe again. Default 1 s.
	RetryFailed time.Duration
	// RefreshInterval is how often the neighbours the dataplane used are
	// swept, and those the kernel holds as STALE re-confirmed (see the
	// package doc). Default 10 s: a used neighbour then spends at most that
	// long in STALE, far less than the kernel's 60 s gc_stale_time.
	// Negative disables the refresh.
	RefreshInterval time.Duration
	// ReceiveBuffer is the receive buffer of each netlink subscription
	// socket, in bytes. Default 4 MiB. With CAP_NET_ADMIN it may exceed
	// net.core.rmem_max. A smaller buffer overflows sooner; overflow costs a
	// full re-list, not correctness.
	ReceiveBuffer int
}

const mainTable = 254

func (c *Config) setDefaults() error {
	for _, l := range []struct {
		name string
		l    Link
	}{{"inside", c.Inside}, {"outside", c.Outside}} {
		if l.l.Name == "" && l.l.Index <= 0 {
			return fmt.Errorf("neigh: %s interface not set", l.name)
		}
	}
	if c.RouteTable == 0 {
		c.RouteTable = mainTable
	}
	if c.RouteTable < 0 {
		return fmt.Errorf("neigh: bad route table %d", c.RouteTable)
	}
	if c.PendingTimeout <= 0 {
		c.PendingTimeout = 5 * time.Second
	}
	if c.RetryFailed <= 0 {
		c.RetryFailed = time.Second
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 10 * time.Second
	}
	if c.ReceiveBuffer <= 0 {
		c.ReceiveBuffer = 4 << 20
	}
	return nil
}

// sideSnap is what Resolve knows about one side.
type sideSnap struct {
	ifindex int
	up      bool
	routes  routeTable
	neigh   ntable
}

// snapshot is one immutable generation of the Table (only the used marks
// of its neighbour slots change after publication). Workers load it once
// per Resolve; the control goroutine replaces it as a whole.
type snapshot struct {
	sides [fwd.NumSides]sideSnap
}

// linkState is the control goroutine's view of a side's interface.
type linkState struct {
	index int // 0: the interface does not exist
	up    bool
}

// buildSnapshot assembles the successor of prev (nil for the first). A
// side whose neighbours did not change keeps prev's table, marks
// included; route tables are immutable and shared, so publishing after a
// neighbour change never rebuilds a fib. It consumes the neighbour state's
// dirty marks.
func buildSnapshot(prev *snapshot, links [fwd.NumSides]linkState, routes [fwd.NumSides]routeTable, ns *neighState) *snapshot {
	s := &snapshot{}
	for side := range s.sides {
		var old *ntable
		if prev != nil {
			old = &prev.sides[side].neigh
		}
		ss := &s.sides[side]
		ss.ifindex, ss.up, ss.routes = links[side].index, links[side].up, routes[side]
		if old != nil && old.slots != nil && !ns.dirty[side] {
			ss.neigh = *old
		} else {
			ss.neigh = ns.fill(fwd.Side(side), old)
		}
		ns.dirty[side] = false
	}
	return s
}

func emptySnapshot() *snapshot {
	s := &snapshot{}
	for i := range s.sides {
		s.sides[i].neigh = newNTable(0)
	}
	return s
}

// Table resolves next hops for the NAT workers from the kernel's routing
// and neighbour tables. It implements fwd.Neighbors.
//
// Resolve, Stats and Snapshot may be called from any goroutine,
// concurrently; Close from any goroutine. The Table's control goroutine
// owns everything else.
type Table struct {
	// snap is read by every Resolve; the padding keeps the counters the
	// control goroutine writes off its cache line.
	snap atomic.Pointer[snapshot]
	req  *requests
	_    [48]byte

	stats counters
	cfg   Config

	errMu   sync.Mutex
	lastErr error

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var _ fwd.Neighbors = (*Table)(nil)

// newTable returns a Table with an empty snapshot and no control
// goroutine; New starts one, tests drive it by hand.
func newTable(cfg Config) *Table {
	t := &Table{req: newRequests(), cfg: cfg, done: make(chan struct{})}
	t.snap.Store(emptySnapshot())
	return t
}

// Resolve returns the Ethernet address of dst's next hop on side: it picks
// the longest-prefix route of that side's interface, takes the gateway or,
// for a connected route, dst itself, and looks that address up in the
// neighbour table. A next hop missing from the table is posted for the
// control goroutine to resolve and reported Pending, as is a Failed one
// whose retry delay has passed; a neighbour the kernel gave up on is Failed;
// no route (or a reject route, or the side's interface down or gone) is
// Unreachable.
//
// Resolve is called per packet by every worker, concurrently. It takes no
// lock, allocates nothing and never blocks.
func (t *Table) Resolve(side fwd.Side, dst [4]byte) (mac [6]byte, r fwd.Resolution) {
	if side >= fwd.NumSides {
		return mac, fwd.Unreachable
	}
	ss := &t.snap.Load().sides[side]
	if !ss.up {
		return mac, fwd.Unreachable
	}
	d := binary.BigEndian.Uint32(dst[:])
	hops := ss.routes.fib.lookup(d)
	if hops == nil {
		return mac, fwd.Unreachable
	}
	nh := hops.nextHop(d)
	if nh == 0 {
		// 0.0.0.0 is never a neighbour (RFC 1122 section 3.2.1.3 (a)).
		return mac, fwd.Unreachable
	}
	sl := ss.neigh.find(nh)
	if sl == nil {
		t.req.post(side, nh)
		return mac, fwd.Pending
	}
	switch sl.res {
	case fwd.Resolved:
		sl.markUsed()
		return sl.mac, fwd.Resolved
	case fwd.Failed:
		if sl.flags&flagRetry != 0 {
			t.req.post(side, nh)
			return mac, fwd.Pending
		}
	}
	return mac, sl.res
}

// Stats are the Table's counters, for the management plane.
type Stats struct {
	// Requested counts resolutions the Table asked the kernel for (a miss,
	// or a retry of a Failed neighbour).
	Requested uint64
	// Completed and Failed count how those requests ended. A request
	// still Pending is in neither.
	Completed, Failed uint64
	// Refreshed counts used STALE neighbours handed to the kernel for
	// re-confirmation.
	Refreshed uint64
	// RequestOverflow counts misses that found no free request slot; the
	// next packet to the same neighbour posts again.
	RequestOverflow uint64
	// Resyncs counts full re-lists of links, routes and neighbours after a
	// subscription overflowed or an interface changed index.
	Resyncs uint64
	// Snapshots counts published snapshots.
	Snapshots uint64
	// NetlinkErrors counts failed netlink requests and subscription
	// errors; LastError is the latest one.
	NetlinkErrors uint64
	LastError     string
	// Entries counts neighbours per side in the current snapshot, in any
	// state; Routes counts the side's routes.
	Entries [fwd.NumSides]int
	Routes  [fwd.NumSides]int
}

// Stats returns the counters. Any goroutine may call it.
func (t *Table) Stats() Stats {
	s := t.snap.Load()
	st := Stats{
		Requested:       t.stats.requested.Load(),
		Completed:       t.stats.completed.Load(),
		Failed:          t.stats.failed.Load(),
		Refreshed:       t.stats.refreshed.Load(),
		RequestOverflow: t.req.overflow.Load(),
		Resyncs:         t.stats.resyncs.Load(),
		Snapshots:       t.stats.snapshots.Load(),
		NetlinkErrors:   t.stats.nlErrors.Load(),
	}
	if err := t.lastError(); err != nil {
		st.LastError = err.Error()
	}
	for i := range s.sides {
		st.Entries[i] = s.sides[i].neigh.n
		st.Routes[i] = len(s.sides[i].routes.list)
	}
	return st
}

// LinkState is a side's interface as the current snapshot sees it.
type LinkState struct {
	Index int // 0 when the interface does not exist
	Up    bool
}

// RouteEntry is a route as one side sees it.
type RouteEntry struct {
	Side   fwd.Side
	Prefix netip.Prefix
	// NextHops are the gateways; an invalid Addr means on-link (the
	// destination itself is the next hop).
	NextHops []netip.Addr
	Reject   bool
	Metric   uint32
}

// NeighborEntry is a neighbour as one side sees it.
type NeighborEntry struct {
	Side  fwd.Side
	Addr  netip.Addr
	MAC   [6]byte // valid when State is Resolved
	State fwd.Resolution
}

// Snapshot is a copy of what Resolve currently sees, for the management
// plane.
type Snapshot struct {
	Links     [fwd.NumSides]LinkState
	Routes    []RouteEntry    // per side, in lookup order
	Neighbors []NeighborEntry // per side, unordered
	Stats     Stats
}

// Snapshot copies the current snapshot into management-plane types. Any
// goroutine may call it; it allocates.
func (t *Table) Snapshot() Snapshot {
	s := t.snap.Load()
	out := Snapshot{Stats: t.Stats()}
	for i := range s.sides {
		ss := &s.sides[i]
		side := fwd.Side(i)
		out.Links[i] = LinkState{Index: ss.ifindex, Up: ss.up}
		for _, r := range ss.routes.list {
			e := RouteEntry{
				Side:   side,
				Prefix: netip.PrefixFrom(addrOf(r.prefix), int(r.plen)),
				Reject: r.kind == kindReject,
				Metric: r.metric,
			}
			for _, gw := range r.gw[:r.nhops] {
				if gw == 0 {
					e.NextHops = append(e.NextHops, netip.Addr{})
				} else {
					e.NextHops = append(e.NextHops, addrOf(gw))
				}
			}
			out.Routes = append(out.Routes, e)
		}
		for j := range ss.neigh.slots {
			sl := &ss.neigh.slots[j]
			if sl.ip == 0 {
				continue
			}
			out.Neighbors = append(out.Neighbors, NeighborEntry{Side: side, Addr: addrOf(sl.ip), MAC: sl.mac, State: sl.res})
		}
	}
	return out
}

func addrOf(ip uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], ip)
	return netip.AddrFrom4(b)
}

func (t *Table) setError(err error) {
	t.stats.nlErrors.Add(1)
	t.errMu.Lock()
	t.lastErr = err
	t.errMu.Unlock()
}

func (t *Table) lastError() error {
	t.errMu.Lock()
	defer t.errMu.Unlock()
	return t.lastErr
}

// Close stops the control goroutine and releases its netlink sockets and
// namespace handle. Resolve keeps answering from the last snapshot, but
// nothing changes any more. Close may be called from any goroutine, more
// than once; it returns once the control goroutine has exited.
func (t *Table) Close() {
	t.closeOnce.Do(func() {
		if t.cancel != nil {
			t.cancel()
			<-t.done
		}
	})
}
