package neigh

import (
	"sync/atomic"

	"github.com/xnat/xnat/dataplane/fwd"
)

// Kernel neighbour states (NUD_*, include/uapi/linux/neighbour.h). They are
// kernel ABI, spelled out here so the state machine below builds and tests
// without the Linux-only packages.
const (
	nudIncomplete = 0x01
	nudReachable  = 0x02
	nudStale      = 0x04
	nudDelay      = 0x08
	nudProbe      = 0x10
	nudFailed     = 0x20
	nudNoARP      = 0x40
	nudPermanent  = 0x80

	// nudValid are the states whose lladdr may be used to send: the kernel
	// itself transmits in all of them (STALE/DELAY/PROBE while it
	// re-confirms the address, RFC 1122 section 2.3.2.1).
	nudValid = nudReachable | nudStale | nudDelay | nudProbe | nudPermanent | nudNoARP
)

// classify maps a kernel neighbour entry to what Resolve reports, and
// reports false for entries that carry no information (NUD_NONE, or a
// valid state without a usable Ethernet address).
func classify(state uint16, mac [6]byte) (fwd.Resolution, bool) {
	switch {
	case state&nudValid != 0:
		if mac == ([6]byte{}) {
			return 0, false
		}
		return fwd.Resolved, true
	case state&nudIncomplete != 0:
		return fwd.Pending, true
	case state&nudFailed != 0:
		return fwd.Failed, true
	}
	return 0, false
}

// counters are the Table's statistics. The control goroutine writes them;
// Stats reads them from any goroutine.
type counters struct {
	requested atomic.Uint64
	completed atomic.Uint64
	failed    atomic.Uint64
	refreshed atomic.Uint64
	resyncs   atomic.Uint64
	snapshots atomic.Uint64
	nlErrors  atomic.Uint64
}

// nkey names a neighbour of one side of the NAT.
type nkey struct {
	side fwd.Side
	ip   uint32
}

// nstate is the control goroutine's view of one neighbour: the kernel's
// entry, if any, plus the request the Table has outstanding for it.
type nstate struct {
	mac      [6]byte
	res      fwd.Resolution // what the snapshot says
	retry    bool           // Failed and allowed to be probed again (flagRetry)
	known    bool           // the kernel has a (non-NONE) entry
	kstate   uint16         // the kernel's NUD state, when known
	waiting  bool           // we asked the kernel and wait for an outcome
	reqAt    int64          // when we asked, if waiting
	failedAt int64          // when res became Failed
	seen     uint32         // resync generation that last listed it
}

// neighState is the neighbour half of the control goroutine's state: it
// folds kernel notifications, worker requests and the passage of time into
// the Resolution every neighbour shows, and sends the probes. It is owned by
// the control goroutine; nothing in it is safe for concurrent use. Times are
// monotonic nanoseconds from the control goroutine's clock.
type neighState struct {
	m       map[nkey]*nstate
	pending int64 // how long a request may wait for the kernel's answer
	retry   int64 // how long a Failed neighbour stays Failed before a new probe is allowed
	// probe asks the kernel to resolve (or refresh) a neighbour.
	probe func(side fwd.Side, ip uint32) error
	stats *counters
	// dirty: per side, something Resolve can observe changed since the
	// last snapshot.
	dirty [fwd.NumSides]bool
	// timers: an entry started waiting or failed since the last tick, so
	// tick has new deadlines to find.
	timers bool
	gen    uint32
}

func newNeighState(pending, retry int64, probe func(fwd.Side, uint32) error, stats *counters) *neighState {
	return &neighState{m: make(map[nkey]*nstate), pending: pending, retry: retry, probe: probe, stats: stats}
}

// setVisible changes what the snapshot shows for e and notes whether that
// is a change.
func (s *neighState) setVisible(k nkey, e *nstate, res fwd.Resolution, mac [6]byte, retry bool) {
	if e.res != res || e.mac != mac || e.retry != retry {
		s.dirty[k.side] = true
	}
	if res == fwd.Failed && !retry {
		s.timers = true
	}
	e.res, e.mac, e.retry = res, mac, retry
}

// kernel applies a kernel neighbour entry (from a notification or a dump).
func (s *neighState) kernel(k nkey, state uint16, mac [6]byte, now int64) {
	res, ok := classify(state, mac)
	if !ok {
		s.kernelGone(k)
		return
	}
	e := s.m[k]
	if e == nil {
		e = &nstate{res: res}
		s.m[k] = e
		s.dirty[k.side] = true
	}
	e.known, e.kstate, e.seen = true, state, s.gen
	switch res {
	case fwd.Resolved:
		if e.waiting {
			s.stats.completed.Add(1)
			e.waiting = false
		}
		s.setVisible(k, e, fwd.Resolved, mac, false)
	case fwd.Pending:
		// The kernel is probing (for us, or for its own traffic); it will
		// report REACHABLE or FAILED.
		s.setVisible(k, e, fwd.Pending, [6]byte{}, false)
	case fwd.Failed:
		if e.waiting {
			s.stats.failed.Add(1)
			e.waiting = false
		}
		if e.res != fwd.Failed {
			e.failedAt = now
		}
		s.setVisible(k, e, fwd.Failed, [6]byte{}, e.retry && e.res == fwd.Failed)
	}
}

// kernelGone applies the deletion of a kernel entry. A neighbour we are
// still resolving stays Pending (the kernel may answer through a new
// entry); anything else disappears, so the next packet posts a request.
func (s *neighState) kernelGone(k nkey) {
	e := s.m[k]
	if e == nil {
		return
	}
	e.known, e.kstate = false, 0
	if e.waiting {
		s.setVisible(k, e, fwd.Pending, [6]byte{}, false)
		return
	}
	delete(s.m, k)
	s.dirty[k.side] = true
}

// request handles a worker's post: resolve a neighbour missing from the
// snapshot, or probe again a Failed one whose retry delay has passed. Posts
// for neighbours that have meanwhile become Pending or Resolved are stale
// and ignored.
func (s *neighState) request(k nkey, now int64) {
	if k.ip == 0 {
		return
	}
	e := s.m[k]
	switch {
	case e == nil:
		e = &nstate{}
		s.m[k] = e
		s.dirty[k.side] = true
	case e.res == fwd.Failed && now-e.failedAt >= s.retry:
	default:
		return
	}
	s.stats.requested.Add(1)
	if err := s.probe(k.side, k.ip); err != nil {
		s.stats.failed.Add(1)
		s.stats.nlErrors.Add(1)
		e.waiting = false
		e.failedAt = now
		s.setVisible(k, e, fwd.Failed, [6]byte{}, false)
		return
	}
	e.waiting, e.reqAt = true, now
	s.timers = true
	s.setVisible(k, e, fwd.Pending, [6]byte{}, false)
}

// tick applies timeouts: a request the kernel has not answered within the
// pending timeout fails, and a Failed neighbour becomes eligible for a new
// probe once the retry delay has passed (a neighbour the kernel has no
// entry for is simply forgotten, which has the same effect: the next
// packet misses and posts). It returns the next time tick has work, or 0.
func (s *neighState) tick(now int64) (next int64) {
	s.timers = false
	later := func(t int64) {
		if next == 0 || t < next {
			next = t
		}
	}
	for k, e := range s.m {
		if e.waiting {
			if now-e.reqAt < s.pending {
				later(e.reqAt + s.pending)
				continue
			}
			e.waiting = false
			e.failedAt = now
			s.stats.failed.Add(1)
			s.setVisible(k, e, fwd.Failed, [6]byte{}, false)
		}
		if e.res != fwd.Failed || e.retry {
			continue
		}
		if now-e.failedAt < s.retry {
			later(e.failedAt + s.retry)
			continue
		}
		if !e.known {
			delete(s.m, k)
			s.dirty[k.side] = true
			continue
		}
		s.setVisible(k, e, fwd.Failed, [6]byte{}, true)
	}
	return next
}

// beginResync starts a full re-list: kernel entries not listed again
// before endResync are gone.
func (s *neighState) beginResync() { s.gen++ }

// endResync forgets the entries the re-list did not return.
func (s *neighState) endResync() {
	for k, e := range s.m {
		if e.known && e.seen != s.gen {
			s.kernelGone(k)
		}
	}
}

// dropSide forgets every neighbour of a side, when its interface is gone
// or was replaced by another with a different index.
func (s *neighState) dropSide(side fwd.Side) {
	for k := range s.m {
		if k.side == side {
			delete(s.m, k)
			s.dirty[k.side] = true
		}
	}
}

// refresh sends NTF_USE for the neighbours Resolve handed out since the
// last sweep that the kernel holds as STALE, and clears the marks. STALE is
// the only valid state the kernel's garbage collector removes (entries in
// REACHABLE, DELAY and PROBE run a timer and are skipped), and the state in
// which the kernel waits for traffic before re-confirming the address: for
// a STALE entry neigh_event_send() starts DELAY, then a unicast probe
// (RFC 1122 section 2.3.2.1), then REACHABLE again. The kernel announces
// REACHABLE->STALE, so kstate is accurate for this test. snap is the
// snapshot currently published.
func (s *neighState) refresh(snap *snapshot) {
	for side := range snap.sides {
		t := &snap.sides[side].neigh
		for i := range t.slots {
			sl := &t.slots[i]
			if sl.ip == 0 || sl.used.Load() == 0 {
				continue
			}
			sl.used.Store(0)
			e := s.m[nkey{fwd.Side(side), sl.ip}]
			if e == nil || !e.known || e.kstate&nudStale == 0 {
				continue
			}
			if err := s.probe(fwd.Side(side), sl.ip); err != nil {
				s.stats.nlErrors.Add(1)
				continue
			}
			s.stats.refreshed.Add(1)
		}
	}
}

// fill builds the neighbour table of one side for a new snapshot. The
// used marks of prev (the side's table in the snapshot being replaced)
// carry over, so a rebuild between two refresh sweeps loses no use.
func (s *neighState) fill(side fwd.Side, prev *ntable) ntable {
	n := 0
	for k := range s.m {
		if k.side == side {
			n++
		}
	}
	t := newNTable(n)
	for k, e := range s.m {
		if k.side != side {
			continue
		}
		sl := t.insert(k.ip)
		sl.mac, sl.res = e.mac, e.res
		if e.retry {
			sl.flags |= flagRetry
		}
		if prev != nil && prev.slots != nil {
			if old := prev.find(k.ip); old != nil && old.used.Load() != 0 {
				sl.used.Store(1)
			}
		}
	}
	return t
}
