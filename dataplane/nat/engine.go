package nat

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/flowtable"
)

// Clock is the engine's time source. Tests use a fake one.
type Clock interface{ Now() time.Time }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Options are fixed for the life of an Engine.
type Options struct {
	// Workers is the number of workers that will translate packets; the
	// external port space of every address is dealt out among them.
	Workers int
	// Clock defaults to the wall clock.
	Clock Clock
	// EventRing is the capacity of each producer's event ring (a power of
	// two); default 4096.
	EventRing int
}

// Engine is the NAT state shared by all workers: tables, external ports and
// the configuration snapshot. Workers use it without locks; configuration
// changes, expiry and operator deletes are serialised by an internal mutex
// that the packet path never takes.
type Engine struct {
	snap atomic.Pointer[Snapshot]
	vis  atomic.Pointer[visConfig] // running capture and trace (vis.go)

	sessions *flowtable.Table
	bindings *bindTable                 // endpoint-independent mappings
	subs     *flowtable.Table           // subscribers (inside addresses)
	perms    atomic.Pointer[countTable] // address-dependent filter permissions, once needed (counttables.go)
	rules    atomic.Pointer[countTable] // per-rule session counts, once needed (counttables.go)
	portTab  *portTable                 // ports in use on every external address

	clock    Clock
	epoch    time.Time
	nworkers int
	seed     maphash.Seed

	// ctl serialises everything that is not the packet path.
	ctl       sync.Mutex
	slots     []atomic.Pointer[addrState] // the address registry (registry.go), fixed size
	freeSlots []uint32                    // recycled slots
	nextSlot  uint32                      // slots from here on were never used
	addrIndex map[[4]byte]uint32
	held      []heldPort // hold-down FIFO, ordered by until
	heldHead  int
	holds     holdBudget // ports in hold-down against the port table's room (holddown.go)
	ctlEvents *eventRing
	workers   []*Worker
	fwdClaims map[fwdKey]bool          // forward ports claimed in their portSet
	expired   [NumProtos]atomic.Uint64 // idle expiries
	deleted   [NumProtos]atomic.Uint64 // every deletion, idle or operator
	deletedOp atomic.Uint64
	evDropped atomic.Uint64 // control-plane events dropped
	evCap     int
	// memAvailable reports the system's available memory, checked before
	// a count table is allocated at run time (counttables.go); tests
	// replace it.
	memAvailable func() (int64, bool)

	// inbound counts live sessions opened from outside (stInbound), for
	// Limits.InboundSessions: workers add, cleanup subtracts.
	inbound atomic.Int64
	reclaim reclaimState // early drop of embryonic inbound sessions (reclaim.go)
	cgn     cgnState     // port blocks (cgn_block.go)
}

type heldPort struct {
	until uint32
	port  uint16
	proto Proto // heldBlock: port is a block number (cgn_block.go)
	addr  *addrState
	sub   [4]byte // the block's subscriber
}

// New creates an engine with the given configuration. Table capacities come
// from cfg.Limits and are fixed for the engine's life.
func New(cfg Config, opts Options) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Workers < 1 || opts.Workers > 255 {
		return nil, fmt.Errorf("nat: %d workers, want 1..255", opts.Workers)
	}
	if opts.Clock == nil {
		opts.Clock = wallClock{}
	}
	if opts.EventRing == 0 {
		opts.EventRing = 4096
	}
	e := &Engine{
		clock:     opts.Clock,
		nworkers:  opts.Workers,
		seed:      maphash.MakeSeed(),
		slots:     make([]atomic.Pointer[addrState], maxAddrSlots),
		addrIndex: map[[4]byte]uint32{},
		fwdClaims: map[fwdKey]bool{},
		evCap:     opts.EventRing,

		memAvailable: memAvailable,
	}
	e.epoch = e.clock.Now()
	var err error
	l := cfg.Limits
	if e.sessions, err = flowtable.New(l.MaxSessions); err != nil {
		return nil, err
	}
	// Each session has at most one binding. It needs no flowtable's
	// record: a binding is two endpoints, a user word and a count
	// (bindtable.go). The filter permissions and rule counts come with
	// the configuration that needs them (apply, counttables.go).
	// Subscribers have one key: their table needs half the index.
	e.bindings = newBindTable(l.MaxSessions, e.slots)
	if e.subs, err = flowtable.NewSingleKey(l.MaxSubscribers); err != nil {
		return nil, err
	}
	if e.portTab, err = newPortTable(l); err != nil {
		return nil, err
	}
	if err := e.initCGN(&cfg); err != nil {
		return nil, err
	}
	e.ctlEvents = newEventRing(opts.EventRing)
	if err := e.apply(cfg, [NumSides]Link{}); err != nil {
		return nil, err
	}
	return e, nil
}

// Snapshot returns the configuration in force.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// Tick converts a time to the session table's millisecond tick: the time
// since the engine's epoch modulo 2^32, so it wraps every 49.7 days. The
// tables keep 32-bit ticks to fit a session in a cache line; everything
// that compares two ticks does it modulo 2^32 (int32(a-b)), which is right
// while they are less than 2^31 ms (24.8 days) apart. Validate keeps every
// timeout under maxTimeout (24 h) for that reason.
func (e *Engine) Tick(t time.Time) uint32 { return uint32(t.Sub(e.epoch) / time.Millisecond) }

// tickTime converts a tick back to wall time. A tick does not say which
// 49.7-day lap of the 32-bit clock it belongs to, so it is placed in the
// lap nearest to now: now's full (64-bit) millisecond count, moved by the
// signed 32-bit distance from now's tick to t. Every tick the engine
// converts is a session's last-seen time or the clock of an event being
// queued: at most a timeout (under 24 h) plus one expiry sweep before now,
// or a few milliseconds after it (a worker that read the clock after us),
// well inside the ±24.8 days that the distance can span. The RFC 6888
// REQ-12 logs are dated from here, so this must hold at any uptime.
func (e *Engine) tickTime(t uint32) time.Time {
	now := int64(e.clock.Now().Sub(e.epoch) / time.Millisecond)
	ms := now + int64(int32(t-uint32(now)))
	return e.epoch.Add(time.Duration(ms) * time.Millisecond)
}

// ApplyConfig validates cfg and publishes it atomically. On error nothing
// changes. Established sessions survive: they carry their own translation;
// addresses removed from the pools stop taking new subscribers but keep
// serving the mappings they hold.
func (e *Engine) ApplyConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	e.ctl.Lock()
	defer e.ctl.Unlock()
	old := e.snap.Load()
	if cfg.Limits.MaxSessions != old.Config.Limits.MaxSessions ||
		cfg.Limits.MaxSubscribers != old.Config.Limits.MaxSubscribers {
		return &FieldError{Field: "limits.max_sessions", Reason: "table sizes cannot change at run time; restart to resize"}
	}
	return e.apply(cfg, old.Links)
}

// SetLinks publishes the appliance's own interface addresses and MTUs.
func (e *Engine) SetLinks(links [NumSides]Link) error {
	for s, l := range links {
		if l.Addr.IsValid() && !l.Addr.Is4() {
			return fmt.Errorf("nat: %s link address %s is not IPv4", Side(s), l.Addr)
		}
		if l.MTU != 0 && (l.MTU < 576 || l.MTU > 9216) {
			return fmt.Errorf("nat: %s link MTU %d out of range 576..9216", Side(s), l.MTU)
		}
	}
	e.ctl.Lock()
	defer e.ctl.Unlock()
	return e.apply(e.snap.Load().Config, links)
}

// apply compiles and publishes a snapshot. Called with ctl held (or before
// the engine is shared).
func (e *Engine) apply(cfg Config, links [NumSides]Link) error {
	s := &Snapshot{
		Config:    cfg,
		Links:     links,
		poolIndex: map[[4]byte]uint32{},
		staticIn:  map[[4]byte][4]byte{},
		staticOut: map[[4]byte][4]byte{},
		fwdIn:     map[fwdKey]fwdRule{},
		fwdOut:    map[fwdKey]fwdRule{},
		public:    map[[4]byte]*addrState{},
		ruleAddr:  map[[4]byte]*addrState{},
		ports:     cfg.Ports,
	}
	if old := e.snap.Load(); old != nil {
		s.Generation = old.Generation + 1
	} else {
		s.Generation = 1
	}
	if err := e.countTables(&cfg, s); err != nil {
		return err
	}
	if err := e.applyCGN(s, e.snap.Load()); err != nil {
		return err
	}
	for _, p := range cfg.InsidePrefixes {
		mask := ^uint32(0) << (32 - p.Bits())
		if p.Bits() == 0 {
			mask = 0
		}
		s.inside = append(s.inside, prefix4{be32(p.Addr().As4()) & mask, mask})
	}
	// Every external address of the new configuration, with its flags.
	flags := map[[4]byte]uint64{}
	for _, pool := range cfg.Pools {
		for _, p := range pool.Addresses {
			for a := range prefixAddrs(p.Masked()) {
				flags[a.As4()] |= addrInPool
			}
		}
	}
	for _, m := range cfg.StaticMappings {
		flags[m.Outside.As4()] |= addrInRules
	}
	for _, f := range cfg.PortForwards {
		flags[f.Outside.Addr().As4()] |= addrInRules
	}
	if err := e.checkRegistry(flags); err != nil {
		return err
	}
	for _, pool := range cfg.Pools {
		for _, p := range pool.Addresses {
			for a := range prefixAddrs(p.Masked()) {
				b := a.As4()
				st := e.register(b)
				s.pool = append(s.pool, st)
				s.poolIndex[b] = st.idx
				s.public[b] = st
			}
		}
	}
	for _, m := range cfg.StaticMappings {
		in, out := m.Inside.As4(), m.Outside.As4()
		s.staticIn[in] = out
		s.staticOut[out] = in
		s.ruleAddr[out] = e.register(out)
		s.public[out] = s.ruleAddr[out]
	}
	for _, f := range cfg.PortForwards {
		r := fwdRule{
			inAddr: f.Inside.Addr().As4(), outAddr: f.Outside.Addr().As4(),
			inPort: f.Inside.Port(), outPort: f.Outside.Port(), proto: f.Proto,
		}
		s.fwdIn[fwdKey{addr: r.inAddr, port: r.inPort, proto: uint8(r.proto)}] = r
		s.fwdOut[fwdKey{addr: r.outAddr, port: r.outPort, proto: uint8(r.proto)}] = r
		s.ruleAddr[r.outAddr] = e.register(r.outAddr)
		s.public[r.outAddr] = s.ruleAddr[r.outAddr]
	}
	s.rulesOut = len(s.fwdIn) != 0 || len(s.staticIn) != 0
	for p := range s.lowPorts {
		s.lowPorts[p] = cfg.Ports[p].Min < 1024
	}
	t := cfg.Timeouts
	s.tcpEst, s.tcpTrans, s.udp, s.icmp = ms(t.TCPEstablished), ms(t.TCPTransitory), ms(t.UDP), ms(t.ICMP)
	s.hold, s.frag = ms(t.PortHoldDown), ms(t.Fragment)
	for i, l := range links {
		if l.Addr.IsValid() {
			s.linkAddr[i] = l.Addr.As4()
		}
		s.mtu[i] = l.MTU
		if s.mtu[i] == 0 {
			s.mtu[i] = 1500
		}
	}
	// Flags change before the snapshot is published: a worker still on
	// the old one can no longer pair a subscriber with a removed address,
	// nor open a session on a removed rule (acquire fails).
	for a, idx := range e.addrIndex {
		e.addr(idx).setFlags(flags[a])
	}
	e.claimForwards(s)
	// Addresses that left the configuration keep serving the sessions and
	// mappings they hold until those end: they stay public (answered for,
	// redirected by XDP) while anything still uses them. Those that have
	// drained give their registry slot back. Housekeep republishes the
	// snapshot once the draining ones have drained.
	for a, idx := range e.addrIndex {
		if flags[a] != 0 {
			continue
		}
		st := e.addr(idx)
		if e.retire(st) {
			continue
		}
		s.draining = append(s.draining, st)
		s.public[a] = st
	}
	slices.SortFunc(s.draining, func(x, y *addrState) int { return int(x.idx) - int(y.idx) })
	e.snap.Store(s)
	return nil
}

// claimForwards keeps the external ports of port-forward rules on pool
// addresses out of dynamic allocation: the rule itself owns the port. Ports
// of removed rules are released (with hold-down).
func (e *Engine) claimForwards(s *Snapshot) {
	want := map[fwdKey]bool{}
	for k := range s.fwdOut {
		if _, ok := s.poolIndex[k.addr]; ok {
			want[k] = true
		}
	}
	for k := range e.fwdClaims {
		if !want[k] {
			st := e.addr(e.addrIndex[k.addr])
			if st.ports[k.proto].release(k.port, true, nil) {
				e.hold(st, Proto(k.proto), k.port, e.Tick(e.clock.Now()), s.hold)
			}
			delete(e.fwdClaims, k)
		}
	}
	for k := range want {
		if e.fwdClaims[k] {
			continue
		}
		ps := &e.addr(e.addrIndex[k.addr]).ports[k.proto]
		// If a dynamic mapping holds the port, share it: the rule wins for
		// new inbound flows, and the port returns to the pool only when
		// both the mapping and the rule are gone. A port in hold-down
		// leaves it. A port whose last owner is freeing it this instant
		// fits none of these: try again. A full port table refuses the
		// claim; the next configuration change tries again.
		for try := 0; try < 1000; try++ {
			if ps.claimFree(k.port, nil) || ps.share(k.port) || ps.forceOwner(k.port) {
				e.fwdClaims[k] = true
				break
			}
			runtime.Gosched()
		}
	}
	e.shortenHolds() // more claims leave less room for holds
}

// hold queues port p of address st for release after the hold-down time
// (RFC 6888 REQ-8). Called with ctl held.
func (e *Engine) hold(st *addrState, proto Proto, p uint16, now, holdMs uint32) {
	if holdMs == 0 {
		st.ports[proto].unhold(p)
		return
	}
	e.held = append(e.held, heldPort{until: now + holdMs, addr: st, port: p, proto: proto})
	e.holds.queued++
	e.shortenHolds()
}

// releaseHeld ends the hold-down of ports whose time has come. Called with
// ctl held.
func (e *Engine) releaseHeld(now uint32) int {
	n := 0
	for e.heldHead < len(e.held) {
		h := e.held[e.heldHead]
		if int32(now-h.until) < 0 {
			break
		}
		if h.proto == heldBlock {
			if h.addr != nil { // nil: shortened already (holddown.go)
				e.releaseHeldBlock(&h, now)
			}
			e.heldHead++
			n++
			continue
		}
		if h.addr != nil { // nil: shortened already (holddown.go)
			endHold(&h)
			e.holds.queued--
		}
		e.heldHead++
		n++
	}
	e.compactHeld()
	return n
}

// Housekeep runs one round of background maintenance at the current time:
// it expires idle sessions, visiting budget records of the session table,
// and ends the hold-down of freed ports whose time has come. natd calls it
// from one goroutine every 100 ms or so; tests call it with a fake clock.
func (e *Engine) Housekeep(budget int) (expired int) {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	now := e.Tick(e.clock.Now())
	s := e.snap.Load()
	_, expired = e.sessions.Expire(now, budget,
		func(x *flowtable.Entry) uint32 { return s.timeout(x.Keys[0].Proto, x.State) },
		func(x *flowtable.Entry) { e.cleanup(x, DeletedIdle, now, s) })
	e.releaseHeld(now)
	e.shortenBlockHolds(now)
	e.reclaimEmbryonic(now, s)
	for _, st := range s.draining {
		if !st.busy() {
			// A removed address has drained: stop answering for it.
			_ = e.apply(s.Config, s.Links)
			break
		}
	}
	return expired
}

// HousekeepBudget is the number of session records Housekeep should visit
// per call so that a call every interval sweeps the whole table in about
// sweep.
func (e *Engine) HousekeepBudget(interval, sweep time.Duration) int {
	n := int(int64(e.sessions.Cap()) * int64(interval) / int64(sweep))
	if n < 1024 {
		n = 1024
	}
	return n
}

// Run calls Housekeep every interval until stop is closed.
func (e *Engine) Run(stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	budget := e.HousekeepBudget(interval, 2*time.Second)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			e.Housekeep(budget)
		}
	}
}

// Reference-counted entries (bindings, subscribers, permissions) keep their
// count in User[1]. refDead marks an entry whose count reached zero and that
// its last owner is deleting; nobody may take a reference to it any more.
const refDead = 1 << 63

// acquireRef adds delta to the count of entry x, as looked up, unless it is
// dying or gone or check refuses the new count. It reports ok, and dying
// when x is dying or gone (the caller may look it up again).
//
// The record may have been freed and given to another entry since the
// lookup. The count is therefore changed only by CompareAndSwapUser at
// x.Gen, which checks the generation and swaps in one atomic step, so a
// reference is never counted on another entry's record, not even for an
// instant. (Counting it and undoing it afterwards is not safe: if the other
// entry's owner released its last reference in between, the undo would be
// the last release, and the entry would be deleted without anyone freeing
// its port or address pairing.) A value that check refuses is confirmed to
// be x's own before the refusal counts as a quota: generations only rise,
// so x still at x.Gen after the load means it was at x.Gen during it.
//
// The first try swaps from the count the lookup read (x.User[1]), which is
// usually still the count: one call through refTable instead of two. A
// stale count fails the swap (or, dead, sends the caller to look x up
// again, as it was dying when read); a count that check refuses is loaded
// again before it is refused.
func acquireRef(t refTable, x *flowtable.Entry, delta uint64, check func(old uint64) bool) (ok, dying bool) {
	v, loaded := x.User[1], false
	for {
		if v&refDead != 0 {
			return false, true
		}
		if check != nil && !check(v) {
			if !loaded {
				v, loaded = t.LoadUser(x.ID, 1), true
				continue
			}
			return false, !t.Alive(x.ID, x.Gen)
		}
		swapped, live := t.CompareAndSwapUser(x.ID, x.Gen, 1, v, v+delta)
		if swapped {
			return true, false
		}
		if !live {
			return false, true
		}
		v, loaded = t.LoadUser(x.ID, 1), true
	}
}

// releaseRef subtracts delta from entry id's count. When the count reaches
// zero it marks the entry dead, deletes it from the table and returns its
// last copy with last = true; the caller releases what it owned. The
// caller holds at least delta of the count, so the entry stays at one
// generation until this returns.
func releaseRef(t refTable, id uint32, delta uint64) (x flowtable.Entry, last bool) {
	if !t.Get(id, &x) {
		panic("nat: referenced entry vanished")
	}
	for {
		v := t.LoadUser(id, 1)
		if v&refDead != 0 || v < delta {
			panic("nat: reference count underflow")
		}
		nv := v - delta
		if nv == 0 {
			nv = refDead
		}
		swapped, live := t.CompareAndSwapUser(id, x.Gen, 1, v, nv)
		if !live {
			panic("nat: referenced entry vanished")
		}
		if swapped {
			if nv != refDead {
				return flowtable.Entry{}, false
			}
			break
		}
	}
	if !t.Get(id, &x) || !t.Delete(id, x.Gen) {
		panic("nat: dead entry vanished before its owner deleted it")
	}
	return x, true
}

// cleanup releases what a deleted session held: its binding (and with the
// last session of a binding, the external port, into hold-down), its own
// port, its subscriber's counts and its filter permission. Called with ctl
// held, after the session was deleted from the table.
func (e *Engine) cleanup(x *flowtable.Entry, why DeleteReason, now uint32, s *Snapshot) {
	proto, _ := ProtoOfNumber(x.Keys[0].Proto)
	u := sessionOf(x)
	portsFreed := uint64(0)
	if binding, ok := u.binding(); ok {
		if b, last := releaseRef(e.bindings, binding, 1); last {
			st := e.addr(bindingOf(&b).addr())
			if st.ports[proto].release(b.Keys[1].DstPort, true, nil) {
				e.hold(st, proto, b.Keys[1].DstPort, now, s.hold)
			}
			e.ctlPortFreed(b.Keys[0].Src, st, b.Keys[1].DstPort, now, s)
			portsFreed++
		}
	}
	if ownAddr, ok := u.ownAddr(); ok {
		st := e.addr(ownAddr)
		if st.ports[proto].release(x.Keys[1].DstPort, true, nil) {
			e.hold(st, proto, x.Keys[1].DstPort, now, s.hold)
		}
		if x.State&stKindMask == 0 { // a forward's port is the rule's, not a block's
			e.ctlPortFreed(x.Keys[0].Src, st, x.Keys[1].DstPort, now, s)
		}
		portsFreed++
	}
	if k := (x.State & stKindMask) >> stKindShift; k == kindStatic || k == kindForward {
		// The rule's address stays answered for until its last session
		// ends, even after the rule is removed (see holdRuleAddr).
		if idx, ok := e.addrIndex[x.Keys[1].Dst]; ok {
			st := e.addr(idx)
			st.rules.Add(-1)
			st.release(1)
		}
	}
	if sub, ok := u.subscriber(); ok {
		e.releaseSub(sub, subRefs(1, portsFreed), now)
	}
	if perm, ok := u.perm(); ok {
		releaseRef(e.countTableOf(x.State), perm, 1)
	}
	if x.State&stInbound != 0 {
		e.inbound.Add(-1) // Limits.InboundSessions (inbound.go)
	}
	if why == DeletedIdle {
		e.expired[proto].Add(1)
	}
	e.deleted[proto].Add(1)
	e.ctlEvent(Event{
		Type: SessionDeleted, Proto: proto, Reason: uint8(why),
		UnixNano: e.tickTime(now).UnixNano(),
	}, x, s)
}

// releaseSub drops counts from subscriber sub and, with the last one,
// releases its address pairing (control plane, ctl held).
func (e *Engine) releaseSub(sub uint32, delta uint64, now uint32) {
	if x, last := releaseRef(e.subs, sub, delta); last {
		st := e.addr(subAddr(x.User[0]))
		st.subs.Add(-1)
		st.release(1) // the pairing's reference
		ev := Event{Type: AddressReleased, UnixNano: e.tickTime(now).UnixNano(), InsideAddr: x.Keys[0].Src, OutsideAddr: st.addr}
		e.pushCtl(ev)
	}
}

// ctlEvent fills the endpoints of a session event and queues it.
func (e *Engine) ctlEvent(ev Event, x *flowtable.Entry, s *Snapshot) {
	fillEndpoints(&ev, x, s.Config.LogDestinations)
	e.pushCtl(ev)
}

func (e *Engine) pushCtl(ev Event) {
	if e.snap.Load().muted(ev.Type) {
		return
	}
	if !e.ctlEvents.q.Enqueue(ev) {
		e.evDropped.Add(1)
	}
}

// fillEndpoints copies a session's inside, outside and (if logged) remote
// endpoints into an event.
func fillEndpoints(ev *Event, x *flowtable.Entry, logRemote bool) {
	in, out := &x.Keys[0], &x.Keys[1]
	ev.InsideAddr, ev.InsidePort = in.Src, in.SrcPort
	ev.OutsideAddr, ev.OutsidePort = out.Dst, out.DstPort
	if logRemote {
		ev.RemoteAddr, ev.RemotePort = in.Dst, in.DstPort
	}
}

// ErrNotFound is returned for a session that does not exist.
var ErrNotFound = errors.New("not found")

// SessionFilter selects sessions for listing and flushing. Zero fields match
// everything.
type SessionFilter struct {
	Proto       *Proto
	InsideAddr  netip.Addr
	InsidePort  uint16
	OutsideAddr netip.Addr
	OutsidePort uint16
	RemoteAddr  netip.Addr
}

func (f *SessionFilter) match(x *flowtable.Entry) bool {
	in, out := &x.Keys[0], &x.Keys[1]
	if f.Proto != nil && f.Proto.Number() != in.Proto {
		return false
	}
	if f.InsideAddr.IsValid() && f.InsideAddr.As4() != in.Src {
		return false
	}
	if f.InsidePort != 0 && f.InsidePort != in.SrcPort {
		return false
	}
	if f.OutsideAddr.IsValid() && f.OutsideAddr.As4() != out.Dst {
		return false
	}
	if f.OutsidePort != 0 && f.OutsidePort != out.DstPort {
		return false
	}
	if f.RemoteAddr.IsValid() && f.RemoteAddr.As4() != in.Dst {
		return false
	}
	return true
}

// Session is the management view of one session.
type Session struct {
	ID       uint32
	Gen      uint64
	Proto    Proto
	Inside   netip.AddrPort
	Outside  netip.AddrPort
	Remote   netip.AddrPort
	State    string
	Kind     string
	Hairpin  bool
	Inbound  bool
	LastSeen time.Time
	Timeout  time.Duration
}

func (e *Engine) view(x *flowtable.Entry, s *Snapshot) Session {
	in, out := &x.Keys[0], &x.Keys[1]
	proto, _ := ProtoOfNumber(in.Proto)
	v := Session{
		ID:       x.ID,
		Gen:      x.Gen,
		Proto:    proto,
		Inside:   netip.AddrPortFrom(netip.AddrFrom4(in.Src), in.SrcPort),
		Outside:  netip.AddrPortFrom(netip.AddrFrom4(out.Dst), out.DstPort),
		Remote:   netip.AddrPortFrom(netip.AddrFrom4(in.Dst), in.DstPort),
		Hairpin:  x.State&stHairpin != 0,
		Inbound:  x.State&stInbound != 0,
		LastSeen: e.tickTime(x.Seen),
		Timeout:  time.Duration(s.timeout(in.Proto, x.State)) * time.Millisecond,
	}
	if proto == ICMP {
		v.Remote = netip.AddrPortFrom(v.Remote.Addr(), 0)
	}
	switch (x.State & stKindMask) >> stKindShift {
	case kindStatic:
		v.Kind = "static"
	case kindForward:
		v.Kind = "forward"
	default:
		v.Kind = "dynamic"
	}
	v.State = sessionState(proto, x.State)
	return v
}

func sessionState(p Proto, st uint32) string {
	if p != TCP {
		return "active"
	}
	switch {
	case st&stRst != 0:
		return "reset"
	case st&(stFinIn|stFinOut) == stFinIn|stFinOut:
		return "closed"
	case st&(stFinIn|stFinOut) != 0:
		return "closing"
	case tcpEstablished(st):
		return "established"
	case embryonic(st): // opened from outside, not yet acknowledged
		return "syn_received"
	case st&stSynIn != 0:
		return "syn_sent"
	case st&stSynOut != 0:
		return "syn_received"
	}
	return "active"
}

// Sessions lists up to limit sessions matching f, starting at cursor (0 for
// the first page). It returns the cursor of the next page, or 0 when the
// listing is complete. It never blocks workers.
func (e *Engine) Sessions(f SessionFilter, cursor uint32, limit int) ([]Session, uint32) {
	s := e.snap.Load()
	var out []Session
	next := e.sessions.Range(cursor, func(x *flowtable.Entry) bool {
		if f.match(x) {
			out = append(out, e.view(x, s))
		}
		return len(out) < limit
	})
	if int(next) >= e.sessions.Cap() {
		next = 0
	}
	return out, next
}

// DeleteSession deletes session id at generation gen (as listed).
func (e *Engine) DeleteSession(id uint32, gen uint64) error {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	var x flowtable.Entry
	if !e.sessions.Get(id, &x) || x.Gen != gen || !e.sessions.Delete(id, gen) {
		return fmt.Errorf("session %d/%d: %w", id, gen, ErrNotFound)
	}
	e.deletedOp.Add(1)
	e.cleanup(&x, DeletedByOperator, e.Tick(e.clock.Now()), e.snap.Load())
	return nil
}

// FlushSessions deletes every session matching f and returns how many.
func (e *Engine) FlushSessions(f SessionFilter) int {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	s := e.snap.Load()
	now := e.Tick(e.clock.Now())
	n := 0
	e.sessions.Range(0, func(x *flowtable.Entry) bool {
		if f.match(x) && e.sessions.Delete(x.ID, x.Gen) {
			e.deletedOp.Add(1)
			e.cleanup(x, DeletedByOperator, now, s)
			n++
		}
		return true
	})
	return n
}
