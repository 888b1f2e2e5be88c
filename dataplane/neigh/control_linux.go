package neigh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/dataplane/fwd"
)

// New starts a Table for the network namespace of the calling OS thread
// (natd calls it from inside its namespace; tests from inside lab.Do). The
// netlink sockets are bound to that namespace for the Table's whole life,
// whichever thread its control goroutine later runs on. Both interfaces
// must exist at start; later they may disappear and come back.
//
// The Table needs CAP_NET_ADMIN in that namespace: it asks the kernel to
// resolve neighbours (RTM_NEWNEIGH) and raises its sockets' receive
// buffers beyond rmem_max.
//
// The control goroutine runs until ctx is done or Close is called.
func New(ctx context.Context, cfg Config) (*Table, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("neigh: current network namespace: %w", err)
	}
	// When every thread of the process is in the namespace (natd: the
	// whole process runs in the appliance's namespace), the sockets need
	// no setns(2) — which would need CAP_SYS_ADMIN even into one's own
	// namespace. Only a caller that entered a namespace on one thread
	// (tests) needs the library to switch threads into it: the control
	// goroutine re-subscribes after an overflow from whichever thread it
	// runs on.
	var nsp *netns.NsHandle
	var h *netlink.Handle
	if everyThreadIn(ns) {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		nsp = &ns
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("neigh: netlink handle: %w", err)
	}
	t := newTable(cfg)
	c := &control{t: t, cfg: &t.cfg, ns: ns, nsp: nsp, h: h, start: time.Now()}
	c.neigh = newNeighState(int64(cfg.PendingTimeout), int64(cfg.RetryFailed), c.probe, &t.stats)
	c.subs = &subscription{}
	if err := c.subscribe(); err != nil {
		c.close()
		return nil, err
	}
	if err := c.resync(true); err != nil {
		c.close()
		return nil, err
	}
	c.nextTick = c.neigh.tick(c.now())
	c.publish()
	ctx, cancel := context.WithCancel(ctx)
	t.cancel = cancel
	go c.run(ctx)
	return t, nil
}

// subscription is one generation of the three netlink subscriptions. When
// any of them dies (the library closes its channel: ENOBUFS, a socket
// error) all three are torn down and replaced, followed by a full re-list.
type subscription struct {
	done   chan struct{}
	routes chan netlink.RouteUpdate
	neighs chan netlink.NeighUpdate
	links  chan netlink.LinkUpdate
}

// control is the Table's control goroutine: the only user of the netlink
// handle, the subscriptions and every field below.
type control struct {
	t     *Table
	cfg   *Config
	ns    netns.NsHandle
	nsp   *netns.NsHandle // nil when every thread is in ns (no setns needed)
	h     *netlink.Handle
	start time.Time

	subs  *subscription
	neigh *neighState
	links [fwd.NumSides]linkState
	// routes are immutable once published; listRoutes builds new ones.
	routes [fwd.NumSides]routeTable

	dirty      bool      // links or routes changed since the last snapshot
	needLinks  bool      // a link event concerned one of our interfaces
	needRoutes bool      // a route event concerned our table
	needSubs   bool      // a subscription died: re-subscribe, then re-list everything
	needList   bool      // re-list links, routes and neighbours
	retryAt    time.Time // after a failed re-subscribe or re-list, when to try again
	nextTick   int64     // when neigh.tick next has work (0: nothing scheduled)
}

// retryDelay spaces out attempts to re-subscribe or re-list after a
// netlink failure.
const retryDelay = 250 * time.Millisecond

func (c *control) now() int64 { return int64(time.Since(c.start)) }

// subscribe opens a new generation of subscriptions in the Table's
// namespace. The caller lists after subscribing, so no change can fall
// between the list and the first notification: notifications queued while
// the list ran are applied after it, in order, and the state converges on
// the kernel's. Some of them are older than what the list showed (the
// dump reads each entry at its own moment), but an older notification is
// never the last word: if an entry changed after the subscription, its
// last notification, queued after any older one, carries the kernel's
// final state; if it did not, the list shows that state and no
// notification follows it (TestStateResyncInterleavings). So no
// filtering of "older" news is needed, nor a second list.
func (c *control) subscribe() error {
	s := &subscription{
		done:   make(chan struct{}),
		routes: make(chan netlink.RouteUpdate, 256),
		neighs: make(chan netlink.NeighUpdate, 1024),
		links:  make(chan netlink.LinkUpdate, 64),
	}
	done := s.done // stop clears s.done; the callback runs on the library's goroutines
	cb := func(err error) {
		select {
		case <-done: // our own teardown
		default:
			c.t.setError(fmt.Errorf("neigh: netlink subscription: %w", err))
		}
	}
	err := netlink.RouteSubscribeWithOptions(s.routes, s.done, netlink.RouteSubscribeOptions{
		Namespace: c.nsp, ErrorCallback: cb,
		ReceiveBufferSize: c.cfg.ReceiveBuffer, ReceiveBufferForceSize: true,
	})
	if err == nil {
		err = netlink.NeighSubscribeWithOptions(s.neighs, s.done, netlink.NeighSubscribeOptions{
			Namespace: c.nsp, ErrorCallback: cb,
			ReceiveBufferSize: c.cfg.ReceiveBuffer, ReceiveBufferForceSize: true,
		})
	}
	if err == nil {
		err = netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{
			Namespace: c.nsp, ErrorCallback: cb,
			ReceiveBufferSize: c.cfg.ReceiveBuffer, ReceiveBufferForceSize: true,
		})
	}
	if err != nil {
		s.stop()
		return fmt.Errorf("neigh: netlink subscribe: %w", err)
	}
	c.subs = s
	return nil
}

// stop tears a subscription generation down. The library's reader
// goroutines may be blocked sending to their channels; draining them until
// the library closes them lets those goroutines exit.
func (s *subscription) stop() {
	if s.done == nil {
		return
	}
	close(s.done)
	if s.routes != nil {
		go func(ch chan netlink.RouteUpdate) {
			for range ch {
			}
		}(s.routes)
	}
	if s.neighs != nil {
		go func(ch chan netlink.NeighUpdate) {
			for range ch {
			}
		}(s.neighs)
	}
	if s.links != nil {
		go func(ch chan netlink.LinkUpdate) {
			for range ch {
			}
		}(s.links)
	}
	s.done = nil
}

func (c *control) close() {
	if c.subs != nil {
		c.subs.stop()
	}
	c.h.Close()
	c.ns.Close()
}

// run is the control goroutine.
func (c *control) run(ctx context.Context) {
	defer close(c.t.done)
	defer c.close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var refresh <-chan time.Time
	if c.cfg.RefreshInterval > 0 {
		tk := time.NewTicker(c.cfg.RefreshInterval)
		defer tk.Stop()
		refresh = tk.C
	}
	for {
		c.armTimer(timer)
		if !c.handleNext(ctx.Done(), timer.C, refresh) {
			return
		}
		c.drainReady()
		c.catchUp()
		// tick walks every neighbour, so only when a deadline is due or a
		// new one may have appeared.
		if now := c.now(); c.neigh.timers || (c.nextTick != 0 && now >= c.nextTick) {
			c.nextTick = c.neigh.tick(now)
		}
		if c.dirty || c.neigh.dirty[fwd.Inside] || c.neigh.dirty[fwd.Outside] {
			c.publish()
		}
	}
}

// armTimer sets timer to the next neighbour timeout or netlink retry,
// whichever comes first, or stops it when there is none.
func (c *control) armTimer(timer *time.Timer) {
	var wait time.Duration
	have := false
	if c.nextTick != 0 {
		wait, have = time.Duration(c.nextTick-c.now()), true
	}
	if c.needSubs || c.needList {
		if d := time.Until(c.retryAt); !have || d < wait {
			wait, have = d, true
		}
	}
	timer.Stop()
	if have {
		timer.Reset(max(wait, time.Millisecond))
	}
}

// handleNext waits for the next notification, request wake-up, timer or
// refresh tick and handles it. It reports false when done is closed.
func (c *control) handleNext(done <-chan struct{}, timer, refresh <-chan time.Time) bool {
	s := c.subs
	select {
	case <-done:
		return false
	case u, ok := <-s.routes:
		c.onRoute(u, ok)
	case u, ok := <-s.neighs:
		c.onNeigh(u, ok)
	case u, ok := <-s.links:
		c.onLink(u, ok)
	case <-c.t.req.wake:
		c.drainRequests()
	case <-timer:
	case <-refresh:
		c.neigh.refresh(c.t.snap.Load())
	}
	return true
}

// drainReady handles whatever else is already queued, so a burst of
// notifications becomes one snapshot, not one per message. Only this
// goroutine receives from the channels, so handleNext (with no timers)
// does not block while one of them holds something. A subscription
// closed meanwhile shows no length; the next handleNext of run finds it.
func (c *control) drainReady() {
	for range 4096 {
		s := c.subs
		if len(s.routes)+len(s.neighs)+len(s.links)+len(c.t.req.wake) == 0 {
			return
		}
		c.handleNext(nil, nil, nil)
	}
}

func (c *control) drainRequests() {
	now := c.now()
	c.t.req.drain(func(side fwd.Side, ip uint32) {
		if c.links[side].index == 0 {
			return
		}
		c.neigh.request(nkey{side, ip}, now)
	})
}

// lost handles a subscription whose channel the library closed: every
// notification since the overflow is gone, so all three subscriptions are
// replaced and everything is listed again.
func (c *control) lost() {
	if c.needSubs {
		return
	}
	c.subs.stop()
	c.subs = &subscription{}
	c.needSubs = true
	c.retryAt = time.Time{}
}

// catchUp performs the re-subscriptions and re-lists the handled events
// asked for. A failure is recorded and retried after retryDelay with a
// full re-list, so no change is lost to a transient netlink error.
func (c *control) catchUp() {
	if (c.needSubs || c.needList) && time.Now().Before(c.retryAt) {
		return
	}
	if c.needSubs {
		if err := c.subscribe(); err != nil {
			c.retry(err)
			return
		}
		c.needSubs, c.needList = false, true
		c.t.stats.resyncs.Add(1)
	}
	if c.needList {
		if err := c.resync(false); err != nil {
			c.retry(err)
			return
		}
		c.needList, c.needLinks, c.needRoutes = false, false, false
		return
	}
	if c.needLinks {
		changed, err := c.listLinks(false)
		if err != nil {
			c.retry(err)
			return
		}
		c.needLinks = false
		if changed {
			if err := c.listNeighs(); err != nil {
				c.retry(err)
				return
			}
		}
	}
	if c.needRoutes {
		if err := c.listRoutes(); err != nil {
			c.retry(err)
			return
		}
	}
}

func (c *control) retry(err error) {
	c.t.setError(err)
	c.needList = true
	c.retryAt = time.Now().Add(retryDelay)
}

func (c *control) onRoute(u netlink.RouteUpdate, ok bool) {
	if !ok {
		c.lost()
		return
	}
	if u.Family == unix.AF_INET && u.Table == c.cfg.RouteTable {
		c.needRoutes = true
	}
}

func (c *control) onLink(u netlink.LinkUpdate, ok bool) {
	if !ok {
		c.lost()
		return
	}
	a := u.Attrs()
	for side, l := range []Link{c.cfg.Inside, c.cfg.Outside} {
		if (l.Name != "" && a.Name == l.Name) || (l.Name == "" && a.Index == l.Index) || a.Index == c.links[side].index {
			c.needLinks = true
		}
	}
}

func (c *control) onNeigh(u netlink.NeighUpdate, ok bool) {
	if !ok {
		c.lost()
		return
	}
	c.applyNeigh(&u.Neigh, u.Type == unix.RTM_DELNEIGH, c.now())
}

func (c *control) applyNeigh(n *netlink.Neigh, deleted bool, now int64) {
	ip := n.IP.To4()
	if n.Family != unix.AF_INET || ip == nil || n.Flags&netlink.NTF_PROXY != 0 || n.LinkIndex == 0 {
		return
	}
	var mac [6]byte
	if len(n.HardwareAddr) == 6 {
		mac = [6]byte(n.HardwareAddr)
	}
	key := be32(ip)
	for side := range c.links {
		if c.links[side].index != n.LinkIndex {
			continue
		}
		k := nkey{fwd.Side(side), key}
		if deleted {
			c.neigh.kernelGone(k)
		} else {
			c.neigh.kernel(k, uint16(n.State), mac, now)
		}
	}
}

func be32(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

func ipOf(a uint32) net.IP { return net.IPv4(byte(a>>24), byte(a>>16), byte(a>>8), byte(a)) }

// probe asks the kernel to resolve a neighbour: RTM_NEWNEIGH with NTF_USE
// runs the kernel's neigh_event_send() on the entry (creating it if
// needed), exactly what the kernel does before transmitting a packet: an
// unknown or FAILED neighbour becomes INCOMPLETE and gets broadcast ARP
// requests, a STALE one goes through DELAY/PROBE and a unicast request, a
// REACHABLE one is only marked used. The state is left at NUD_NONE so the
// entry stays subject to the kernel's garbage collector (iproute2's
// default, NUD_PERMANENT, would exempt it).
func (c *control) probe(side fwd.Side, ip uint32) error {
	idx := c.links[side].index
	if idx == 0 {
		return fmt.Errorf("neigh: %s interface is gone", side)
	}
	err := c.h.NeighSet(&netlink.Neigh{
		LinkIndex: idx,
		Family:    unix.AF_INET,
		State:     netlink.NUD_NONE,
		Flags:     netlink.NTF_USE,
		IP:        ipOf(ip),
	})
	if err != nil {
		err = fmt.Errorf("neigh: resolve %s on %s: %w", ipOf(ip), side, err)
		c.t.setError(err)
	}
	return err
}

// resync re-lists links, routes and neighbours. strict (at start) makes a
// missing interface an error.
func (c *control) resync(strict bool) error {
	if _, err := c.listLinks(strict); err != nil {
		return err
	}
	if err := c.listRoutes(); err != nil {
		return err
	}
	return c.listNeighs()
}

// dumpRetries bounds re-tries of a dump the kernel reports as interrupted
// (NLM_F_DUMP_INTR: the table changed during the dump).
const dumpRetries = 8

// listLinks looks the two interfaces up again and reports whether one of
// them now has another index (deleted, or re-created): that side's
// neighbours are dropped, and the caller must list them again.
func (c *control) listLinks(strict bool) (changed bool, err error) {
	for side, l := range []Link{c.cfg.Inside, c.cfg.Outside} {
		var lk netlink.Link
		var err error
		if l.Name != "" {
			lk, err = c.h.LinkByName(l.Name)
		} else {
			lk, err = c.h.LinkByIndex(l.Index)
		}
		var st linkState
		switch {
		case err == nil:
			a := lk.Attrs()
			st = linkState{index: a.Index, up: a.Flags&net.FlagUp != 0}
		case strict:
			return false, fmt.Errorf("neigh: %s interface %s: %w", fwd.Side(side), l, err)
		default:
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				return false, fmt.Errorf("neigh: %s interface %s: %w", fwd.Side(side), l, err)
			}
		}
		if st.index != c.links[side].index {
			c.neigh.dropSide(fwd.Side(side))
			changed = true
		}
		if st != c.links[side] {
			c.links[side] = st
			c.dirty = true
		}
	}
	// Taking an interface down flushes its IPv4 routes without
	// RTM_DELROUTE notifications, so any link change means a route re-list.
	c.needRoutes = true
	return changed, nil
}

func (c *control) listRoutes() error {
	var rs []netlink.Route
	var err error
	for range dumpRetries {
		rs, err = c.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: c.cfg.RouteTable}, netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("neigh: list routes: %w", err)
	}
	c.needRoutes = false
	var idx [fwd.NumSides]int
	for side := range c.links {
		idx[side] = c.links[side].index
	}
	for side, r := range convertRoutes(rs, idx, c.cfg.RouteTable) {
		if !slices.Equal(r, c.routes[side].list) {
			// A full table takes a fraction of a second to compile;
			// workers meanwhile use the published one.
			c.routes[side] = newRouteTable(r)
			c.dirty = true
		}
	}
	return nil
}

func (c *control) listNeighs() error {
	var ns []netlink.Neigh
	var err error
	for range dumpRetries {
		ns, err = c.h.NeighList(0, netlink.FAMILY_V4)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("neigh: list neighbours: %w", err)
	}
	now := c.now()
	c.neigh.beginResync()
	for i := range ns {
		c.applyNeigh(&ns[i], false, now)
	}
	c.neigh.endResync()
	return nil
}

// convertRoutes turns the kernel's routes of one table into each side's
// lookup array. A unicast route serves a side through its next hops on
// that side's interface (dead next hops skipped); reject routes
// (blackhole, unreachable, prohibit, throw) cover their prefix on both
// sides, as they would in the kernel's own lookup. Routes with a TOS
// selector are skipped: Resolve does not see the TOS.
func convertRoutes(rs []netlink.Route, ifindex [fwd.NumSides]int, table int) (out [fwd.NumSides][]route) {
	for i := range rs {
		r := &rs[i]
		if r.Table != table || r.Tos != 0 || r.Dst == nil {
			continue
		}
		dst := r.Dst.IP.To4()
		plen, bits := r.Dst.Mask.Size()
		if dst == nil || bits != 32 {
			continue
		}
		base := route{mask: prefixMask(plen), plen: uint8(plen), metric: uint32(r.Priority)}
		base.prefix = be32(dst) & base.mask
		switch r.Type {
		case unix.RTN_UNICAST:
			for side := range ifindex {
				if ifindex[side] == 0 {
					continue
				}
				rt := base
				add := func(link, flags int, gw net.IP) {
					if link != ifindex[side] || flags&unix.RTNH_F_DEAD != 0 || int(rt.nhops) == maxNextHops {
						return
					}
					if gw != nil {
						g := gw.To4()
						if g == nil { // an IPv6 gateway (RFC 5549) cannot be resolved over ARP
							return
						}
						rt.gw[rt.nhops] = be32(g)
					}
					rt.nhops++
				}
				if len(r.MultiPath) == 0 {
					add(r.LinkIndex, r.Flags, r.Gw)
				}
				for _, nh := range r.MultiPath {
					add(nh.LinkIndex, nh.Flags, nh.Gw)
				}
				if rt.nhops > 0 {
					out[side] = append(out[side], rt)
				}
			}
		case unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT, unix.RTN_THROW:
			rt := base
			rt.kind = kindReject
			for side := range ifindex {
				out[side] = append(out[side], rt)
			}
		}
	}
	for side := range out {
		sortRoutes(out[side])
	}
	return out
}

// publish builds a snapshot from the current state and makes it the one
// workers see.
func (c *control) publish() {
	c.t.snap.Store(buildSnapshot(c.t.snap.Load(), c.links, c.routes, c.neigh))
	c.t.stats.snapshots.Add(1)
	c.dirty = false
}

// everyThreadIn reports whether every thread of the process is in network
// namespace ns, so that sockets opened later from any thread land in ns.
//
// Asking only about the process's main thread (/proc/self/ns/net) is not
// enough: a test that enters a namespace on one thread (lab.Do) may be
// running on the main thread at that moment. The Table then believed no
// setns was needed, and its re-subscription after an overflow, made from
// the control goroutine on another thread, listened to the root
// namespace: every later change was lost without an error
// (TestLabOverflowResyncs kept first-round MACs after one resync).
// Threads are created by cloning existing ones, so when all of them are
// in ns, later ones are too, unless something moves a thread (natd never
// does).
func everyThreadIn(ns netns.NsHandle) bool {
	var want unix.Stat_t
	if err := unix.Fstat(int(ns), &want); err != nil {
		return false
	}
	threads, err := threadNamespaces()
	return err == nil && allIn(nsID{want.Dev, want.Ino}, threads)
}

// threadNamespaces returns the network namespace of every thread of the
// process. A thread that exits while they are listed is left out.
func threadNamespaces() ([]nsID, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var out []nsID
	for _, task := range tasks {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
				continue
			}
			return nil, err
		}
		out = append(out, nsID{st.Dev, st.Ino})
	}
	return out, nil
}
