package nat

import (
	"sync/atomic"

	"github.com/xnat/xnat/flowtable"
)

// portSet tracks the external ports (or ICMP identifiers) of one protocol on
// one external address.
//
// A port that has an owner or is in hold-down has a word in the engine's
// port table (portTable, porttable.go), keyed by address, protocol and
// port; a free port has none. Memory is therefore proportional to the
// ports in use, not to the addresses configured: an idle address costs its
// registry entry only (issue 11: a dense per-address array cost 384 KiB
// per address, 24 GiB for a /16). The port table is preallocated from the
// limits, so claiming a port allocates nothing.
//
// A port's state is the low 29 bits of its word (porttable.go): the owner
// count (an endpoint-independent binding is one owner; with address-and-
// port-dependent mapping every session is an owner, and so is every
// session of a port forward, besides the rule), a flag for a port in
// hold-down (RFC 6888 REQ-8) after its last owner left, and a flag for a
// port whose one owner is a binding, whose record number then stands in
// place of the count (bind, boundTo). Every transition is one compare-and-
// swap of the port's word, so workers claim and release ports without a
// lock, and a released port cannot be claimed between losing its last
// owner and entering hold-down. The transition that makes the state zero
// frees the word in the same step.
//
// Claims for random ports search only the calling worker's share of the
// range (64-port chunks dealt round-robin to workers), so workers rarely
// contend for the same port. A claim for one specific port (port
// preservation) may take any port.
type portSet struct {
	pt    *portTable
	base  uint64 // portKey of the address and protocol, port 0
	addr  [4]byte
	proto uint8        // IP protocol number
	inUse atomic.Int32 // ports with at least one owner or in hold-down
	// walked is set by a walk of claimRandom that found no free port and
	// cleared when a port is freed: until then another walk of that range
	// would find none either (see claimRandom). It holds inUse+1 as of
	// the walk, so that a claim of a port elsewhere (another range, port
	// preservation) does not make it stale in the other direction.
	walked atomic.Int32
}

// init makes s the port set of protocol proto on address a, in registry
// slot idx.
func (s *portSet) init(pt *portTable, a [4]byte, idx uint32, proto Proto) {
	s.pt, s.addr, s.proto = pt, a, proto.Number()
	s.base = portKey(idx, proto, 0)
}

const (
	portMaxOwner = 1<<27 - 1
	portBound    = 1 << 27
	portHeld     = 1 << 28
	portState    = 1<<29 - 1
	chunkPorts   = 64
	// maxBindings bounds the binding table: a bound port names binding
	// id+1 in 27 bits. The table holds min(max_sessions, maxBindings).
	maxBindings = portMaxOwner - 1
)

// portOwners is the number of owners of a port in state st.
func portOwners(st uint64) uint64 {
	if st&portBound != 0 {
		return 1
	}
	return st & portMaxOwner
}

// key is port p's key in the port table.
func (s *portSet) key(p uint16) uint64 { return s.base | uint64(p)<<portKeyShift }

// taken reports whether port p has an owner or is held.
func (s *portSet) taken(p uint16) bool {
	var pr portProbe
	s.probe(p, &pr)
	return s.takenAt(&pr)
}

// probe prepares port p's key into pr, hashed once for the new-session
// pipeline's prefetch (prefetch), look (takenAt) and claim
// (claimFreshFree).
func (s *portSet) probe(p uint16, pr *portProbe) { s.pt.Prepare(s.key(p), pr) }

// takenAt is taken for the port of probe pr.
func (s *portSet) takenAt(pr *portProbe) bool { return s.pt.LookupProbe(pr) }

// prefetch notes the port table's bucket of probe pr in l (see
// portTable.Prefetch).
func (s *portSet) prefetch(pr *portProbe, l *flowtable.Lines) { s.pt.Prefetch(pr, l) }

// updatePort applies f to the state of port p until the compare-and-swap
// succeeds or f refuses. ok is false when p has no word or f refused. A
// new state of zero frees the port, and its credit goes to cr (the
// caller's worker's pool, nil for the table's count: portCredits).
func (s *portSet) updatePort(p uint16, f func(st uint64) (nst uint64, ok bool), cr *portCredits) (st, nst uint64, ok bool) {
	k := s.key(p)
	var r portRef
	if _, found := s.pt.find(k, &r); !found {
		return 0, 0, false
	}
	st, nst, found, ok := s.pt.update(k, &r, f, cr)
	if !found || !ok {
		return st, nst, false
	}
	if nst == 0 {
		s.inUse.Add(-1)
		if s.walked.Load() != 0 {
			s.walked.Store(0) // a port is free: the next walk may find it
		}
	}
	return st, nst, true
}

// claimFree takes port p if it has no owner and is not held, with a
// credit of cr (the caller's worker's pool, nil for the table's count:
// portCredits). It looks before it inserts, so a taken port costs no
// bucket lock.
func (s *portSet) claimFree(p uint16, cr *portCredits) bool {
	if !s.pt.insert(s.key(p), 1, cr) {
		return false // taken, or the port table is full
	}
	s.inUse.Add(1)
	return true
}

// claimFreshFree is claimFree for a port that the new-session pipeline
// found free, or drew at random, a moment ago: the port is most likely
// still free, so the look before the lock would only repeat the look
// under it. pr is the pipeline's probe of the port (probe), whose home
// bucket is taken if it holds p's key: a stale one costs the hash, never
// a wrong bucket. It returns the slot of the port's word
// (portTable.insertAt), for bindAt; nil if the claim failed. The credit
// is cr's, as in claimFree.
func (s *portSet) claimFreshFree(p uint16, pr *portProbe, cr *portCredits) *atomic.Uint64 {
	k := s.key(p)
	b := pr.home
	if pr.key != k {
		b = s.pt.home(s.pt.hash(k))
	}
	slot := s.pt.insertAt(k, 1, b, cr)
	if slot == nil {
		return nil // taken meanwhile, or the port table is full
	}
	s.inUse.Add(1)
	return slot
}

// claimBeside claims the other port of p's pair (spareOf),
// as claimFreshFree does, where pr is p's probe: the pair's home bucket
// is p's (portTable.hash), so after a failed claim of p it is the line
// just read. It returns the port and its slot, nil if it is taken or
// outside the range. The credit is cr's, as in claimFree.
func (s *portSet) claimBeside(p, lo, hi uint16, pr *portProbe, cr *portCredits) (uint16, *atomic.Uint64) {
	q, ok := spareOf(p, lo, hi)
	if !ok {
		return 0, nil
	}
	k := s.key(q)
	b := pr.home
	if pr.key != s.key(p) {
		b = s.pt.home(s.pt.hash(k))
	}
	slot := s.pt.insertAt(k, 1, b, cr)
	if slot == nil {
		return 0, nil
	}
	s.inUse.Add(1)
	return q, slot
}

// spareOf returns the other port of c's pair (ports 2k and 2k+1, which
// share a home bucket: portTable.hash), if it is in [lo, hi] and in c's
// 64-port chunk of the range, so in the share of the worker that drew c.
func spareOf(c, lo, hi uint16) (uint16, bool) {
	q := c ^ 1
	return q, q >= lo && q <= hi && (q-lo)/chunkPorts == (c-lo)/chunkPorts
}

// share adds an owner to port p if it already has one and is not held:
// port overlap under address-and-port-dependent mapping.
//
// A port that a binding owns is shared too (a port forward added on it,
// or a session of address-and-port-dependent mapping after the mapping
// behaviour changed): it then counts two owners and names no binding any
// more, so that the binding is no longer found from outside (boundTo).
// Both sharers take that port's inbound packets first (a forward's rule
// is looked up before any binding; without endpoint-independent mapping
// no binding is looked up), so the binding loses nothing while they
// share. If the sharer leaves first, the binding is not named again:
// until it ends, a host it has not yet talked to cannot reach it (its
// sessions are unaffected). Naming it again would need the binding's
// number beside the owner count, which the word has no room for.
func (s *portSet) share(p uint16) bool {
	_, _, ok := s.updatePort(p, func(st uint64) (uint64, bool) {
		n := portOwners(st)
		return n + 1, n != 0 && st&portHeld == 0 && n != portMaxOwner
	}, nil) // frees nothing
	return ok
}

// bind names binding id in port p, which the caller has just claimed for
// it (claimFree, claimFreshFree: one owner): the port table is then the
// binding's index by external endpoint (boundTo). If the port was shared
// meanwhile (share), it stays unnamed.
func (s *portSet) bind(p uint16, id uint32) {
	k := s.key(p)
	s.pt.swap(k|1, k|portBound|uint64(id+1))
}

// bindAt is bind for a port whose slot the caller's claim returned
// (claimFreshFree) and that the caller still owns alone or with sharers:
// the port's word stays in that slot until the port is freed
// (portTable.insertAt), which our ownership forbids, so one compare-and-
// swap there is swap's without its hash and walk (about 60 instructions
// a new mapping, bench-instr), with the same outcome.
func (s *portSet) bindAt(slot *atomic.Uint64, p uint16, id uint32) {
	k := s.key(p)
	slot.CompareAndSwap(k|1, k|portBound|uint64(id+1))
}

// boundTo returns the binding that port p names (bind): a hint, valid only
// if that binding's external endpoint is p's (bindingAt checks).
func (s *portSet) boundTo(p uint16) (id uint32, ok bool) {
	var r portRef
	v, found := s.pt.find(s.key(p), &r)
	if !found || v&portBound == 0 {
		return 0, false
	}
	return uint32(v&portMaxOwner) - 1, true
}

// forceOwner adds an owner to port p if it is in hold-down (the hold-down
// FIFO's unhold then finds it owned and skips it). Control plane only.
func (s *portSet) forceOwner(p uint16) bool {
	_, _, ok := s.updatePort(p, func(st uint64) (uint64, bool) {
		return portOwners(st) + 1, st&portHeld != 0
	}, nil) // frees nothing
	return ok
}

// release drops one owner of port p. It returns true when that was the last
// owner: the port is then in hold-down and the caller must queue it for
// unhold. If hold is false the port becomes free at once (used to undo a
// claim that was never used on the wire), and its credit goes to cr (the
// caller's worker's pool, nil for the table's count: portCredits); with
// hold, nothing is freed.
func (s *portSet) release(p uint16, hold bool, cr *portCredits) (last bool) {
	// The caller owns the port, so its word cannot be freed under it.
	st, _, ok := s.updatePort(p, func(st uint64) (uint64, bool) {
		n := portOwners(st)
		nst := n - 1
		if nst == 0 && hold {
			nst = portHeld
		}
		return nst, n != 0
	}, cr)
	if !ok {
		panic("nat: release of a port with no owner")
	}
	return portOwners(st) == 1
}

// unhold ends the hold-down of port p. Control plane only: the port's
// credit goes to the table's count.
func (s *portSet) unhold(p uint16) {
	_, _, ok := s.updatePort(p, func(st uint64) (uint64, bool) { return 0, st == portHeld }, nil)
	if !ok {
		panic("nat: unhold of a port not in hold-down")
	}
}

// state returns the owner count and the held flag of port p.
func (s *portSet) state(p uint16) (owners int, held bool) {
	var r portRef
	v, ok := s.pt.find(s.key(p), &r)
	if !ok {
		return 0, false
	}
	st := v & portState
	return int(portOwners(st)), st&portHeld != 0
}

// claimRandom claims a free port in [lo, hi] from the worker's share,
// starting at a random point (RFC 6056 algorithm 1, "simple port
// randomization", restricted to the share): it returns false only when the
// whole share has no free port. r is a random 64-bit value. The credit is
// cr's, as in claimFree.
func (s *portSet) claimRandom(lo, hi uint16, worker, workers int, r uint64, cr *portCredits) (uint16, bool) {
	sh := shareOf(lo, hi, worker, workers)
	total, port := sh.total, sh.port
	if total == 0 {
		return 0, false
	}
	// Independent random probes first: a walk from one random point
	// grows runs of taken ports that later walks must cross (linear
	// probing's clustering), and each probe here is a table lookup, not a
	// bit test. A probe looks before it inserts, so a taken port costs no
	// bucket lock. A taken port's pair (spareOf) is tried next: its word
	// would be in the line the look has just read (portTable.hash), so on
	// a busy address each line read offers two ports.
	for i := 0; i < randomProbes; i++ {
		p := port(int(r % uint64(total)))
		r = r*6364136223846793005 + 1442695040888963407
		if s.claimFree(p, cr) {
			return p, true
		}
		if q, ok := spareOf(p, lo, hi); ok && s.claimFree(q, cr) {
			return q, true
		}
	}
	// Then the whole share from a random point, so that false means full
	// (or so nearly full that the probes missed, see walked). A walk is a
	// table lookup per port, thousands of them: on an address whose
	// shares are full, every new flow of its subscribers would pay one
	// (TestE2EReconfigUnderLoad: new subscribers on exhausted addresses
	// stalled the workers for seconds). So after a walk that found
	// nothing, the next ones are skipped until a port of the address is
	// freed; meanwhile a share with room left is still found by the
	// random probes, unless it is over about 90% taken.
	if w := s.walked.Load(); w != 0 && s.inUse.Load() >= w-1 {
		// Nothing was freed since a walk found nothing.
		return 0, false
	}
	start := int(r % uint64(total))
	for i := 0; i < total; i++ {
		j := start + i
		if j >= total {
			j -= total
		}
		if p := port(j); s.claimFree(p, cr) {
			return p, true
		}
	}
	s.walked.Store(s.inUse.Load() + 1)
	return 0, false
}

// portShare is a worker's share of a port range [lo, hi]: the range's
// 64-port chunks c with c ≡ worker (mod workers), total ports in all.
// Kept as the first port of its first chunk and the distance from one of
// its chunks to the next, which is what port computes with (about 6
// instructions a new session fewer than lo, worker and workers, 2,584
// to 2,578, bench-instr).
type portShare struct {
	base   uint // lo + worker*chunkPorts
	stride uint // workers*chunkPorts
	total  int
}

func shareOf(lo, hi uint16, worker, workers int) portShare {
	n := int(hi) - int(lo) + 1
	chunks := (n + chunkPorts - 1) / chunkPorts
	if workers < 1 || chunks < workers {
		// Too few chunks to deal out: everyone searches everything.
		worker, workers = 0, 1
	}
	mine := (chunks - worker + workers - 1) / workers // chunks c ≡ worker (mod workers)
	// Every chunk is full but the range's last, which is ours when its
	// index is ≡ worker.
	total := mine * chunkPorts
	if last := chunks - 1; last%workers == worker {
		total -= chunkPorts - chunkLen(n, last)
	}
	return portShare{base: uint(lo) + uint(worker)*chunkPorts, stride: uint(workers) * chunkPorts, total: total}
}

// port returns the j-th port of the share (j ≥ 0): its chunks are full
// but maybe the last. Unsigned: j's chunk and offset are then a shift and
// a mask, without a signed division's adjustment (about 7 instructions a
// new session, 2,623 to 2,616, bench-instr).
func (sh portShare) port(j int) uint16 {
	u := uint(j)
	return uint16(sh.base + u/chunkPorts*sh.stride + u%chunkPorts)
}

// random returns the port claimRandom, given r, tries first: the new
// session pipeline draws it ahead, to prefetch its record (newsession.go).
func (sh *portShare) random(r uint64) (uint16, bool) {
	if sh.total == 0 {
		return 0, false
	}
	return sh.port(int(r % uint64(sh.total))), true
}

// randomProbes is how many random ports claimRandom tries before it walks
// the share, each with its pair: with a fraction f of the share taken, all
// of them miss with probability about f^(2*randomProbes) (0.1% at f =
// 0.9).
const randomProbes = 32

// chunkLen is the number of ports in chunk c of a range of n ports.
func chunkLen(n, c int) int {
	l := n - c*chunkPorts
	if l > chunkPorts {
		l = chunkPorts
	}
	if l < 0 {
		l = 0
	}
	return l
}

// shareRandom adds an owner to a random in-use port in [lo, hi], trying at
// most tries ports. It is the overlap fallback of address-and-port-dependent
// mapping when the free ports run out.
func (s *portSet) shareRandom(lo, hi uint16, r uint64, tries int) (uint16, bool) {
	n := uint64(hi) - uint64(lo) + 1
	for i := 0; i < tries; i++ {
		p := uint16(uint64(lo) + r%n)
		if s.share(p) {
			return p, true
		}
		r = r*6364136223846793005 + 1442695040888963407
	}
	return 0, false
}
