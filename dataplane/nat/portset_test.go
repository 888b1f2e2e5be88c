package nat

import (
	"math/rand/v2"
	"testing"
)

// refShare lists the ports of [lo, hi] in worker's share, the slow way.
func refShare(lo, hi uint16, worker, workers int) map[uint16]bool {
	n := int(hi) - int(lo) + 1
	chunks := (n + chunkPorts - 1) / chunkPorts
	if chunks < workers {
		worker, workers = 0, 1
	}
	out := map[uint16]bool{}
	for p := int(lo); p <= int(hi); p++ {
		if ((p-int(lo))/chunkPorts)%workers == worker {
			out[uint16(p)] = true
		}
	}
	return out
}

// TestClaimRandomCoversExactlyTheShare claims every port a worker may take,
// for random ranges and worker counts, and compares with the reference.
func TestClaimRandomCoversExactlyTheShare(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	s := testPortSet(t, 1<<16)
	// Every claim is a port-table insert now: 40 ranges, not 200, keep
	// the test to a second or two of CPU.
	for iter := 0; iter < 40; iter++ {
		lo := uint16(1 + r.IntN(60000))
		hi := lo + uint16(r.IntN(int(65535-lo)+1))
		if iter%4 == 0 {
			hi = lo + uint16(r.IntN(200)) // short ranges, partial chunks
			if hi < lo {
				hi = 65535
			}
		}
		workers := 1 + r.IntN(4)
		worker := r.IntN(workers)
		want := refShare(lo, hi, worker, workers)
		got := map[uint16]bool{}
		for {
			p, ok := s.claimRandom(lo, hi, worker, workers, r.Uint64(), nil)
			if !ok {
				break
			}
			if got[p] {
				t.Fatalf("port %d claimed twice", p)
			}
			got[p] = true
		}
		if len(got) != len(want) {
			t.Fatalf("range %d-%d worker %d/%d: claimed %d ports, share has %d", lo, hi, worker, workers, len(got), len(want))
		}
		for p := range got {
			if !want[p] {
				t.Fatalf("range %d-%d worker %d/%d: claimed %d outside the share", lo, hi, worker, workers, p)
			}
			s.release(p, false, nil)
		}
		if n := s.inUse.Load(); n != 0 || s.pt.Len() != 0 {
			t.Fatalf("%d ports in use, %d records after releasing all", n, s.pt.Len())
		}
	}
}

func TestPortStateTransitions(t *testing.T) {
	s := testPortSet(t, 1024)
	if s.taken(100) || !s.claimFree(100, nil) || s.claimFree(100, nil) || !s.taken(100) || s.taken(101) {
		t.Fatal("claimFree")
	}
	if !s.share(100) {
		t.Fatal("share of an owned port")
	}
	if s.release(100, true, nil) {
		t.Fatal("release of one of two owners reported last")
	}
	if !s.release(100, true, nil) {
		t.Fatal("last release not reported")
	}
	if o, held := s.state(100); o != 0 || !held {
		t.Fatalf("after last release: owners %d held %v", o, held)
	}
	if s.claimFree(100, nil) || s.share(100) {
		t.Fatal("port in hold-down was claimed")
	}
	if s.inUse.Load() != 1 {
		t.Fatalf("inUse %d during hold-down", s.inUse.Load())
	}
	s.unhold(100)
	if s.inUse.Load() != 0 || !s.claimFree(100, nil) {
		t.Fatal("port not free after unhold")
	}
	// The neighbouring port in the same word is independent.
	if !s.claimFree(101, nil) {
		t.Fatal("neighbour port")
	}
	s.release(101, false, nil)
	if o, held := s.state(101); o != 0 || held {
		t.Fatal("release without hold-down must free at once")
	}
}

// TestPortBinding: a port claimed for a binding names it (bind, boundTo)
// and counts one owner; a bind on a port that is not one owner's changes
// nothing; a share (a forward's, or address-and-port-dependent mapping's)
// counts two owners and drops the name; the last release holds the port
// without a name, and a port claimed again names nothing until bound.
// Binding numbers up to maxBindings fit, whatever the port's key.
func TestPortBinding(t *testing.T) {
	s := testPortSet(t, 1024)
	for _, id := range []uint32{0, 1, 12345, maxBindings - 1} {
		for _, p := range []uint16{0, 100, 65535} {
			if !s.claimFree(p, nil) {
				t.Fatalf("claim of port %d", p)
			}
			if _, ok := s.boundTo(p); ok {
				t.Fatalf("port %d names a binding before bind", p)
			}
			s.bind(p, id)
			if got, ok := s.boundTo(p); !ok || got != id {
				t.Fatalf("port %d bound to %d names %d (%v)", p, id, got, ok)
			}
			if o, held := s.state(p); o != 1 || held || !s.taken(p) {
				t.Fatalf("bound port %d: owners %d held %v", p, o, held)
			}
			if !s.release(p, true, nil) {
				t.Fatalf("release of bound port %d not last", p)
			}
			if _, ok := s.boundTo(p); ok {
				t.Fatalf("port %d names a binding in hold-down", p)
			}
			if o, held := s.state(p); o != 0 || !held {
				t.Fatalf("bound port %d after release: owners %d held %v", p, o, held)
			}
			s.unhold(p)
		}
	}
	if !s.claimFree(7, nil) || !s.share(7) {
		t.Fatal("claim and share of port 7")
	}
	s.bind(7, 5) // two owners: not a binding's port
	if _, ok := s.boundTo(7); ok {
		t.Fatal("a shared port was bound")
	}
	s.release(7, false, nil)
	s.release(7, false, nil)
	if !s.claimFree(8, nil) {
		t.Fatal("claim of port 8")
	}
	s.bind(8, 9)
	if !s.share(8) {
		t.Fatal("share of a bound port")
	}
	if _, ok := s.boundTo(8); ok {
		t.Fatal("a bound port still names its binding when shared")
	}
	if o, _ := s.state(8); o != 2 {
		t.Fatalf("bound port shared: %d owners, want 2", o)
	}
	if s.release(8, true, nil) || !s.release(8, true, nil) {
		t.Fatal("releases of a shared bound port")
	}
	s.unhold(8)
	if n := s.inUse.Load(); n != 0 || s.pt.Len() != 0 {
		t.Fatalf("%d ports in use, %d words left", n, s.pt.Len())
	}
}

// testPortSet returns the UDP port set of 198.18.0.100 over a port table
// sized for n sessions.
func testPortSet(t testing.TB, n int) *portSet {
	t.Helper()
	pt, err := newPortTable(Limits{MaxSessions: n})
	if err != nil {
		t.Fatal(err)
	}
	s := &portSet{}
	s.init(pt, [4]byte{198, 18, 0, 100}, 0, UDP)
	return s
}

// TestPortSetConcurrentChurn has goroutines claim, share and release the
// same few ports at once, so slots are freed and reused for other ports
// while others still hold copies of them: a compare-and-swap must never
// land on a slot reused for another port (the key is in the word), no
// owner may be lost or counted twice, and everything returns to zero.
func TestPortSetConcurrentChurn(t *testing.T) {
	s := testPortSet(t, 1024)
	const workers, rounds = 4, 20000
	goRand(workers, 7, func(_ int, r *rand.Rand) {
		var owned []uint16
		for i := 0; i < rounds; i++ {
			p := uint16(1000 + r.IntN(16))
			switch {
			case len(owned) > 8 || (len(owned) > 0 && r.IntN(2) == 0):
				j := r.IntN(len(owned))
				s.release(owned[j], false, nil)
				owned[j] = owned[len(owned)-1]
				owned = owned[:len(owned)-1]
			case s.claimFree(p, nil) || s.share(p):
				owned = append(owned, p)
			}
		}
		for _, p := range owned {
			s.release(p, false, nil)
		}
	})
	if n := s.inUse.Load(); n != 0 || s.pt.Len() != 0 {
		t.Fatalf("%d ports in use, %d records after every owner left", n, s.pt.Len())
	}
}

// TestPortUpdateNeverLandsOnReusedRecord replays, step by step, the race
// that keeping the key in the port's word closes: a share finds port 100's
// slot, the port is freed and its slot taken by port q (a port with the
// same home bucket, so it takes the first empty slot there: the same one),
// then the share's compare-and-swap runs. It must fail, leaving q with its
// one owner.
func TestPortUpdateNeverLandsOnReusedRecord(t *testing.T) {
	s := testPortSet(t, 1024)
	q := uint16(0)
	for p := uint16(101); p != 0; p++ {
		if s.pt.home(s.pt.hash(s.key(p))) == s.pt.home(s.pt.hash(s.key(100))) {
			q = p
			break
		}
	}
	if q == 0 {
		t.Fatal("no port shares port 100's home bucket")
	}
	if !s.claimFree(100, nil) {
		t.Fatal("claim 100")
	}
	var stale portRef
	if _, ok := s.pt.find(s.key(100), &stale); !ok {
		t.Fatal("lookup 100")
	}
	s.release(100, false, nil)
	if !s.claimFree(q, nil) {
		t.Fatalf("claim %d", q)
	}
	var now portRef
	if _, ok := s.pt.find(s.key(q), &now); !ok || now.slot != stale.slot {
		t.Fatalf("port %d did not take port 100's slot", q)
	}
	_, _, found, ok := s.pt.update(s.key(100), &stale, func(st uint64) (uint64, bool) { return st + 1, st != 0 }, nil)
	if found || ok {
		t.Fatal("a compare-and-swap from a stale copy landed on a reused slot")
	}
	if o, _ := s.state(q); o != 1 {
		t.Fatalf("port %d has %d owners, want 1", q, o)
	}
}

// TestClaimRandomExhaustedIsCheap checks the walk hint: once a walk of a
// full share found nothing, further claims fail without walking again (a
// walk is a table lookup per port, and new flows on an exhausted address
// stalled the workers for seconds), and the first port freed makes the
// share searchable again, so that no free port is missed.
func TestClaimRandomExhaustedIsCheap(t *testing.T) {
	s := testPortSet(t, 1<<16)
	const lo, hi = 1024, 1024 + 4*chunkPorts - 1
	var taken []uint16
	for {
		p, ok := s.claimRandom(lo, hi, 0, 1, uint64(len(taken))*0x9e3779b97f4a7c15, nil)
		if !ok {
			break
		}
		taken = append(taken, p)
	}
	if len(taken) != hi-lo+1 {
		t.Fatalf("claimed %d ports of %d", len(taken), hi-lo+1)
	}
	if s.walked.Load() == 0 {
		t.Fatal("a walk that found nothing left no hint")
	}
	before := s.pt.Len()
	if _, ok := s.claimRandom(lo, hi, 0, 1, 7, nil); ok {
		t.Fatal("claimed a port of a full share")
	}
	if n := s.pt.Len(); n != before {
		t.Fatalf("records %d -> %d", before, n)
	}
	freed := taken[len(taken)/2]
	s.release(freed, false, nil)
	if s.walked.Load() != 0 {
		t.Fatal("freeing a port left the hint")
	}
	// The random probes may miss the one free port; the walk must not.
	if p, ok := s.claimRandom(lo, hi, 0, 1, 7, nil); !ok || p != freed {
		t.Fatalf("after freeing %d: claimed %d, %v", freed, p, ok)
	}
}

// TestPortPairs checks the pairs behind claimBeside: both ports of a pair
// have one home bucket, spareOf stays in the range and in the pair, and a
// partner claimed through the failed candidate's probe is a port like any
// other: found, counted, released.
func TestPortPairs(t *testing.T) {
	s := testPortSet(t, 1<<12)
	for p := uint16(0); p < 65534; p += 2 {
		if s.pt.home(s.pt.hash(s.key(p))) != s.pt.home(s.pt.hash(s.key(p+1))) {
			t.Fatalf("ports %d and %d have different home buckets", p, p+1)
		}
	}
	for _, c := range []struct {
		c, lo, hi, want uint16
		ok              bool
	}{
		{1024, 1024, 65535, 1025, true},
		{1025, 1024, 65535, 1024, true},
		{1025, 1025, 65535, 0, false}, // 1024 is below the range
		{1026, 1025, 65535, 1027, true},
		{1087, 1025, 65535, 1086, true},
		{1088, 1025, 65535, 0, false}, // 1089 is the next chunk's
		{1089, 1025, 65535, 0, false},
		{65535, 1, 65535, 65534, true},
		{2000, 1024, 2000, 0, false}, // 2001 is beyond the range
		{1024, 1024, 1024, 0, false},
	} {
		got, ok := spareOf(c.c, c.lo, c.hi)
		if ok != c.ok || ok && got != c.want {
			t.Errorf("spareOf(%d, %d, %d) = %d, %v; want %d, %v", c.c, c.lo, c.hi, got, ok, c.want, c.ok)
		}
	}
	const lo, hi = 1024, 65535
	var pr portProbe
	s.probe(5000, &pr)
	if !s.claimFree(5000, nil) {
		t.Fatal("claim 5000")
	}
	q, slot := s.claimBeside(5000, lo, hi, &pr, nil)
	if slot == nil || q != 5001 {
		t.Fatalf("claimBeside(5000) = %d, %v; want 5001", q, slot)
	}
	if !s.taken(5001) || s.inUse.Load() != 2 || s.pt.Len() != 2 {
		t.Fatalf("5001 taken %v, in use %d, table %d; want true, 2, 2", s.taken(5001), s.inUse.Load(), s.pt.Len())
	}
	if _, slot := s.claimBeside(5000, lo, hi, &pr, nil); slot != nil {
		t.Fatal("claimBeside claimed 5001 twice")
	}
	// A probe of another port: the pair's home is found again.
	if q, slot := s.claimBeside(7001, lo, hi, &pr, nil); slot == nil || q != 7000 || !s.taken(7000) {
		t.Fatalf("claimBeside(7001) with 5000's probe = %d, %v", q, slot)
	}
	// No pair beyond the range.
	if q, slot := s.claimBeside(hi-1, lo, hi-1, &pr, nil); slot != nil {
		t.Fatalf("claimBeside claimed %d, beyond the range", q)
	}
	for _, p := range []uint16{5000, 5001, 7000} {
		if !s.release(p, false, nil) {
			t.Fatalf("release %d: not the last owner", p)
		}
	}
	if s.inUse.Load() != 0 || s.pt.Len() != 0 {
		t.Fatalf("%d in use, %d in the table after the releases", s.inUse.Load(), s.pt.Len())
	}
}
