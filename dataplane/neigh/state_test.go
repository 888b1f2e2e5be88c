package neigh

import (
	"errors"
	"testing"

	"github.com/xnat/xnat/dataplane/fwd"
)

const ms = int64(1e6)

type probeLog struct {
	calls []nkey
	err   error
}

func (p *probeLog) probe(side fwd.Side, ip uint32) error {
	p.calls = append(p.calls, nkey{side, ip})
	return p.err
}

func newTestState() (*neighState, *probeLog, *counters) {
	p := &probeLog{}
	c := &counters{}
	return newNeighState(5000*ms, 1000*ms, p.probe, c), p, c
}

var macA = [6]byte{2, 0, 0, 0, 0, 0xa}
var macB = [6]byte{2, 0, 0, 0, 0, 0xb}

func expect(t *testing.T, s *neighState, k nkey, res fwd.Resolution, mac [6]byte, retry bool) {
	t.Helper()
	e := s.m[k]
	if e == nil {
		t.Fatalf("%+v: no entry, want %v", k, res)
	}
	if e.res != res || e.mac != mac || e.retry != retry {
		t.Fatalf("%+v: got res=%v mac=%x retry=%v, want res=%v mac=%x retry=%v", k, e.res, e.mac, e.retry, res, mac, retry)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		state uint16
		mac   [6]byte
		res   fwd.Resolution
		ok    bool
	}{
		{nudReachable, macA, fwd.Resolved, true},
		{nudStale, macA, fwd.Resolved, true},
		{nudDelay, macA, fwd.Resolved, true},
		{nudProbe, macA, fwd.Resolved, true},
		{nudPermanent, macA, fwd.Resolved, true},
		{nudReachable, [6]byte{}, 0, false}, // no usable address
		{nudIncomplete, [6]byte{}, fwd.Pending, true},
		{nudFailed, [6]byte{}, fwd.Failed, true},
		{0, macA, 0, false}, // NUD_NONE
	} {
		res, ok := classify(c.state, c.mac)
		if ok != c.ok || (ok && res != c.res) {
			t.Errorf("classify(%#x, %x) = %v, %v; want %v, %v", c.state, c.mac, res, ok, c.res, c.ok)
		}
	}
}

func TestStateMissResolves(t *testing.T) {
	s, p, c := newTestState()
	k := nkey{fwd.Outside, 0xc6120002}
	s.request(k, 0)
	if len(p.calls) != 1 || p.calls[0] != k {
		t.Fatalf("probes %v", p.calls)
	}
	expect(t, s, k, fwd.Pending, [6]byte{}, false)
	if !dirty(s) {
		t.Fatal("new pending entry not marked dirty")
	}
	// A repeated post while pending does not probe again.
	s.request(k, 10*ms)
	if len(p.calls) != 1 {
		t.Fatalf("duplicate request probed again: %v", p.calls)
	}
	// The kernel's INCOMPLETE (if it reports one) keeps it pending.
	s.kernel(k, nudIncomplete, [6]byte{}, 20*ms)
	expect(t, s, k, fwd.Pending, [6]byte{}, false)
	s.kernel(k, nudReachable, macA, 30*ms)
	expect(t, s, k, fwd.Resolved, macA, false)
	if c.requested.Load() != 1 || c.completed.Load() != 1 || c.failed.Load() != 0 {
		t.Fatalf("counters requested=%d completed=%d failed=%d", c.requested.Load(), c.completed.Load(), c.failed.Load())
	}
	// Only visible changes make a new snapshot.
	s.dirty = [fwd.NumSides]bool{}
	s.kernel(k, nudStale, macA, 40*ms)
	if dirty(s) {
		t.Fatal("REACHABLE->STALE with the same MAC marked dirty")
	}
	s.kernel(k, nudReachable, macB, 50*ms)
	if !dirty(s) {
		t.Fatal("MAC change not marked dirty")
	}
	expect(t, s, k, fwd.Resolved, macB, false)
	// A request for a resolved neighbour is stale.
	s.request(k, 60*ms)
	if len(p.calls) != 1 {
		t.Fatal("stale request probed")
	}
	if s.tick(70*ms) != 0 {
		t.Fatal("resolved entry left a timer")
	}
}

func TestStateFailedAndRetry(t *testing.T) {
	s, p, c := newTestState()
	k := nkey{fwd.Inside, 0x0a000063}
	s.request(k, 0)
	s.kernel(k, nudFailed, [6]byte{}, 3000*ms)
	expect(t, s, k, fwd.Failed, [6]byte{}, false)
	if c.failed.Load() != 1 {
		t.Fatalf("failed = %d", c.failed.Load())
	}
	// Too early for a retry: posts are ignored.
	s.request(k, 3500*ms)
	if len(p.calls) != 1 {
		t.Fatalf("retried before the delay: %v", p.calls)
	}
	if next := s.tick(3500 * ms); next != 4000*ms {
		t.Fatalf("next tick %d ms, want 4000", next/ms)
	}
	// After the delay the entry is armed, so Resolve will post.
	s.dirty = [fwd.NumSides]bool{}
	s.tick(4000 * ms)
	expect(t, s, k, fwd.Failed, [6]byte{}, true)
	if !dirty(s) {
		t.Fatal("arming not published")
	}
	s.request(k, 4100*ms)
	if len(p.calls) != 2 {
		t.Fatalf("armed retry not probed: %v", p.calls)
	}
	expect(t, s, k, fwd.Pending, [6]byte{}, false)
	// The host came up.
	s.kernel(k, nudReachable, macA, 4200*ms)
	expect(t, s, k, fwd.Resolved, macA, false)
	if c.requested.Load() != 2 || c.completed.Load() != 1 || c.failed.Load() != 1 {
		t.Fatalf("counters requested=%d completed=%d failed=%d", c.requested.Load(), c.completed.Load(), c.failed.Load())
	}
}

func TestStatePendingTimeout(t *testing.T) {
	s, p, c := newTestState()
	k := nkey{fwd.Outside, 0xc6120009}
	s.request(k, 0)
	if next := s.tick(1000 * ms); next != 5000*ms {
		t.Fatalf("next tick %d ms, want 5000", next/ms)
	}
	expect(t, s, k, fwd.Pending, [6]byte{}, false)
	s.tick(5000 * ms)
	expect(t, s, k, fwd.Failed, [6]byte{}, false)
	if c.failed.Load() != 1 {
		t.Fatalf("failed = %d", c.failed.Load())
	}
	// The kernel never had an entry: after the retry delay the neighbour
	// is forgotten, so the next packet misses and posts again.
	s.tick(6000 * ms)
	if s.m[k] != nil {
		t.Fatal("failed entry without a kernel entry kept after the retry delay")
	}
	s.request(k, 6100*ms)
	if len(p.calls) != 2 {
		t.Fatalf("probes %v", p.calls)
	}
}

func TestStateProbeError(t *testing.T) {
	s, p, c := newTestState()
	p.err = errors.New("ENETDOWN")
	k := nkey{fwd.Outside, 0xc6120002}
	s.request(k, 0)
	expect(t, s, k, fwd.Failed, [6]byte{}, false)
	if c.failed.Load() != 1 || c.nlErrors.Load() != 1 {
		t.Fatalf("failed=%d errors=%d", c.failed.Load(), c.nlErrors.Load())
	}
	if s.m[k].waiting {
		t.Fatal("failed probe left a request outstanding")
	}
}

func TestStateKernelGone(t *testing.T) {
	s, _, _ := newTestState()
	a, b := nkey{fwd.Inside, 1}, nkey{fwd.Inside, 2}
	s.kernel(a, nudReachable, macA, 0)
	s.request(b, 0)
	s.kernel(b, nudIncomplete, [6]byte{}, 0)
	s.kernelGone(a)
	s.kernelGone(b)
	if s.m[a] != nil {
		t.Fatal("deleted neighbour still present")
	}
	// b is still being resolved for us.
	expect(t, s, b, fwd.Pending, [6]byte{}, false)
	// NUD_NONE counts as gone.
	s.kernel(a, nudReachable, macA, 0)
	s.kernel(a, 0, [6]byte{}, 0)
	if s.m[a] != nil {
		t.Fatal("NUD_NONE entry kept")
	}
}

func TestStateResyncAndDropSide(t *testing.T) {
	s, _, _ := newTestState()
	keep, gone, asked := nkey{fwd.Inside, 1}, nkey{fwd.Inside, 2}, nkey{fwd.Outside, 3}
	s.kernel(keep, nudReachable, macA, 0)
	s.kernel(gone, nudStale, macB, 0)
	s.request(asked, 0)
	s.beginResync()
	s.kernel(keep, nudReachable, macA, 0)
	s.endResync()
	if s.m[gone] != nil {
		t.Fatal("entry missing from the re-list survived")
	}
	expect(t, s, keep, fwd.Resolved, macA, false)
	expect(t, s, asked, fwd.Pending, [6]byte{}, false)
	s.dropSide(fwd.Inside)
	if s.m[keep] != nil || s.m[asked] == nil {
		t.Fatal("dropSide removed the wrong side")
	}
}

func TestStateRefresh(t *testing.T) {
	s, p, c := newTestState()
	stale := []nkey{{fwd.Inside, 1}, {fwd.Outside, 3}}
	fresh := []nkey{{fwd.Inside, 2}, {fwd.Outside, 6}} // REACHABLE, DELAY: the kernel's timers run
	perm := nkey{fwd.Outside, 4}
	idle := nkey{fwd.Inside, 5} // STALE but not used
	s.kernel(stale[0], nudStale, macA, 0)
	s.kernel(stale[1], nudStale, macB, 0)
	s.kernel(fresh[0], nudReachable, macA, 0)
	s.kernel(fresh[1], nudDelay, macA, 0)
	s.kernel(perm, nudPermanent, macB, 0)
	s.kernel(idle, nudStale, macA, 0)
	snap := buildSnapshot(nil, [fwd.NumSides]linkState{{1, true}, {2, true}}, [fwd.NumSides]routeTable{}, s)
	used := append(append(append([]nkey{}, stale...), fresh...), perm)
	for _, k := range used {
		snap.sides[k.side].neigh.find(k.ip).markUsed()
	}
	s.refresh(snap)
	got := map[nkey]bool{}
	for _, k := range p.calls {
		got[k] = true
	}
	if len(p.calls) != 2 || !got[stale[0]] || !got[stale[1]] {
		t.Fatalf("refreshed %v, want %v", p.calls, stale)
	}
	if c.refreshed.Load() != 2 {
		t.Fatalf("refreshed counter %d", c.refreshed.Load())
	}
	for _, k := range used {
		if snap.sides[k.side].neigh.find(k.ip).used.Load() != 0 {
			t.Fatalf("%+v still marked after the sweep", k)
		}
	}
	// Nothing used since: nothing refreshed.
	s.refresh(snap)
	if len(p.calls) != 2 {
		t.Fatalf("second sweep refreshed %v", p.calls[2:])
	}
}

func TestSnapshotCarriesUsedMarks(t *testing.T) {
	s, _, _ := newTestState()
	a, b := nkey{fwd.Inside, 1}, nkey{fwd.Outside, 2}
	s.kernel(a, nudStale, macA, 0)
	s.kernel(b, nudStale, macB, 0)
	links := [fwd.NumSides]linkState{{1, true}, {2, true}}
	s1 := buildSnapshot(nil, links, [fwd.NumSides]routeTable{}, s)
	s1.sides[a.side].neigh.find(a.ip).markUsed()
	s1.sides[b.side].neigh.find(b.ip).markUsed()
	// Only the inside changes: the outside table is reused as is, the
	// inside one rebuilt with its marks carried over.
	s.kernel(nkey{fwd.Inside, 9}, nudReachable, macA, 0)
	s2 := buildSnapshot(s1, links, [fwd.NumSides]routeTable{}, s)
	if &s2.sides[fwd.Outside].neigh.slots[0] != &s1.sides[fwd.Outside].neigh.slots[0] {
		t.Fatal("unchanged side rebuilt")
	}
	if &s2.sides[fwd.Inside].neigh.slots[0] == &s1.sides[fwd.Inside].neigh.slots[0] {
		t.Fatal("changed side not rebuilt")
	}
	if s2.sides[a.side].neigh.find(a.ip).used.Load() == 0 || s2.sides[b.side].neigh.find(b.ip).used.Load() == 0 {
		t.Fatal("used mark lost across a rebuild")
	}
	if s2.sides[fwd.Inside].neigh.find(9).used.Load() != 0 {
		t.Fatal("new entry born marked")
	}
}

func dirty(s *neighState) bool { return s.dirty[fwd.Inside] || s.dirty[fwd.Outside] }

// TestStateResyncInterleavings replays, against a model kernel, every way a
// re-list can interleave with the notifications of the subscription opened
// before it: the subscription starts at some change, the dump reads each
// entry at its own moment after that (a dump spans several reads), and the
// queued notifications are applied after the dump, as the control
// goroutine does. Notifications older than what the dump showed are
// applied after it, but the last notification of an entry always carries
// the kernel's final state, and an entry without one after the
// subscription is listed as it is: the Table must end equal to the kernel.
func TestStateResyncInterleavings(t *testing.T) {
	type change struct {
		ip  uint32
		mac [6]byte // zero: deleted
	}
	rng := uint64(1)
	next := func(n int) int { // xorshift: deterministic, no timing
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	for trial := range 2000 {
		var changes []change
		for range 1 + next(12) {
			c := change{ip: uint32(1 + next(4))}
			if next(5) != 0 {
				c.mac = [6]byte{2, 0, 0, byte(next(250)), 0, byte(c.ip)}
			}
			changes = append(changes, c)
		}
		kernelAt := func(n int) map[uint32][6]byte { // the kernel after n changes
			m := map[uint32][6]byte{}
			for _, c := range changes[:n] {
				if c.mac == ([6]byte{}) {
					delete(m, c.ip)
				} else {
					m[c.ip] = c.mac
				}
			}
			return m
		}
		s, _, _ := newTestState()
		// Before the overflow the Table knew some earlier state.
		sub := next(len(changes) + 1)
		for ip, mac := range kernelAt(next(sub + 1)) {
			s.kernel(nkey{fwd.Inside, ip}, nudStale, mac, 0)
		}
		// The dump reads entry ip after readAt[ip] changes, in address
		// order, never before the subscription.
		s.beginResync()
		at := sub
		for ip := uint32(1); ip <= 4; ip++ {
			at += next(len(changes) - at + 1)
			if mac, ok := kernelAt(at)[ip]; ok {
				s.kernel(nkey{fwd.Inside, ip}, nudStale, mac, 0)
			}
		}
		s.endResync()
		for _, c := range changes[sub:] {
			if c.mac == ([6]byte{}) {
				s.kernelGone(nkey{fwd.Inside, c.ip})
			} else {
				s.kernel(nkey{fwd.Inside, c.ip}, nudStale, c.mac, 0)
			}
		}
		final := kernelAt(len(changes))
		for ip := uint32(1); ip <= 4; ip++ {
			e, want := s.m[nkey{fwd.Inside, ip}], final[ip]
			switch {
			case want == ([6]byte{}) && e != nil:
				t.Fatalf("trial %d: %d is gone in the kernel, the Table has %x (changes %v, subscribed at %d)", trial, ip, e.mac, changes, sub)
			case want != ([6]byte{}) && (e == nil || e.mac != want):
				t.Fatalf("trial %d: %d is %x in the kernel, the Table has %+v (changes %v, subscribed at %d)", trial, ip, want, e, changes, sub)
			}
		}
	}
}
