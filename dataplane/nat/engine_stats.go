package nat

import (
	"net/netip"
)

// Read-only views of the engine for the management plane. None of them
// touches a worker's cache lines beyond loading counters the workers
// publish once per burst.

// SessionCounts are session totals by protocol.
type SessionCounts struct {
	// Live sessions now.
	Live [NumProtos]uint64
	// Expired by idle timeout since start.
	Expired [NumProtos]uint64
	// DeletedByOperator since start, all protocols.
	DeletedByOperator uint64
	// ReclaimedPressure: embryonic sessions opened from outside that were
	// reclaimed early under pressure since start (reclaim.go).
	ReclaimedPressure uint64
}

// SessionCounts sums the workers' creations against the engine's
// deletions.
func (e *Engine) SessionCounts() SessionCounts {
	var sc SessionCounts
	var c Counters
	e.ctl.Lock()
	workers := append([]*Worker(nil), e.workers...)
	e.ctl.Unlock()
	var created [NumProtos]uint64
	for _, w := range workers {
		if w == nil {
			continue
		}
		w.Counters(&c)
		for p := range created {
			created[p] += c[SessionsCreated+Counter(p)]
		}
	}
	for p := range sc.Live {
		// Deletions are counted after the workers' creations they undo
		// were published, except for sessions created in the current
		// burst; never report a negative count.
		if d := e.deleted[p].Load(); created[p] > d {
			sc.Live[p] = created[p] - d
		}
		sc.Expired[p] = e.expired[p].Load()
	}
	sc.DeletedByOperator = e.deletedOp.Load()
	sc.ReclaimedPressure = e.ReclaimedSessions()
	return sc
}

// TableUsage returns the session table's occupancy and capacity.
func (e *Engine) TableUsage() (live, capacity int) {
	return e.sessions.Len(), e.sessions.Cap()
}

// AddressUsage is the utilisation of one external address.
type AddressUsage struct {
	Addr        netip.Addr
	Pool        string // empty for a draining address no pool lists any more
	Subscribers int
	// RuleSessions counts the sessions of static mappings and port
	// forwards on the address.
	RuleSessions int
	InUse        [NumProtos]int // ports owned or in hold-down
	Total        [NumProtos]int // ports in the configured range
	// Draining: the address left the configuration and still holds the
	// subscribers, sessions and ports counted here; it is released when
	// they reach zero.
	Draining bool
}

// PoolUsage reports every pool address, and every removed one (pool,
// static-mapping or port-forward address) that still drains, in
// configuration order.
func (e *Engine) PoolUsage() []AddressUsage {
	s := e.snap.Load()
	var out []AddressUsage
	add := func(a *addrState, pool string, draining bool) {
		u := AddressUsage{Addr: netip.AddrFrom4(a.addr), Pool: pool, Subscribers: int(a.subs.Load()),
			RuleSessions: int(a.rules.Load()), Draining: draining}
		for p := range u.InUse {
			u.InUse[p] = int(a.ports[p].inUse.Load())
			u.Total[p] = s.ports[p].Size()
		}
		out = append(out, u)
	}
	i := 0
	for _, pool := range s.Config.Pools {
		for _, pf := range pool.Addresses {
			for range prefixAddrs(pf.Masked()) {
				add(s.pool[i], pool.Name, false)
				i++
			}
		}
	}
	for _, st := range s.draining {
		add(st, "", true)
	}
	return out
}
