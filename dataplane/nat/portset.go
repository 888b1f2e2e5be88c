package nat

import (
	"sync/atomic"
)

// portSet tracks the external ports (or ICMP identifiers) of one protocol on
// one external address.
//
// Each port has a 16-bit state packed two to a 32-bit word: bits 0..14 count
// the owners of the port (an endpoint-independent binding is one owner; with
// address-and-port-dependent mapping every session is an owner), and bit 15
// marks a port in hold-down (RFC 6888 REQ-8) after its last owner left. Every
// transition is one compare-and-swap on the word, so workers claim and
// release ports without a lock, and a released port cannot be claimed
// between losing its last owner and entering hold-down.
//
// Claims for random ports search only the calling worker's share of the
// range (64-port chunks dealt round-robin to workers), so workers never
// contend for the same words in the common case. A claim for one specific
// port (port preservation) may take any port.
//
// Memory: 128 KiB per protocol per address.
type portSet struct {
	words [32768]atomic.Uint32
	inUse atomic.Int32 // ports with at least one owner or in hold-down
}

const (
	portHeld     = 1 << 15
	portMaxOwner = portHeld - 1
	chunkPorts   = 64
)

func (s *portSet) load(p uint16) (word *atomic.Uint32, shift uint) {
	return &s.words[p>>1], uint(p&1) * 16
}

// claimFree takes port p if it has no owner and is not held.
func (s *portSet) claimFree(p uint16) bool {
	w, sh := s.load(p)
	for {
		v := w.Load()
		if (v>>sh)&0xffff != 0 {
			return false
		}
		if w.CompareAndSwap(v, v|1<<sh) {
			s.inUse.Add(1)
			return true
		}
	}
}

// share adds an owner to port p if it already has one and is not held:
// port overlap under address-and-port-dependent mapping.
func (s *portSet) share(p uint16) bool {
	w, sh := s.load(p)
	for {
		v := w.Load()
		st := (v >> sh) & 0xffff
		if st == 0 || st&portHeld != 0 || st == portMaxOwner {
			return false
		}
		if w.CompareAndSwap(v, v+1<<sh) {
			return true
		}
	}
}

// release drops one owner of port p. It returns true when that was the last
// owner: the port is then in hold-down and the caller must queue it for
// unhold. If hold is false the port becomes free at once (used to undo a
// claim that was never used on the wire).
func (s *portSet) release(p uint16, hold bool) (last bool) {
	w, sh := s.load(p)
	for {
		v := w.Load()
		st := (v >> sh) & 0xffff
		if st&portMaxOwner == 0 {
			panic("nat: release of a port with no owner")
		}
		nst := st - 1
		if nst == 0 && hold {
			nst = portHeld
		}
		if w.CompareAndSwap(v, v&^(0xffff<<sh)|nst<<sh) {
			if nst == 0 {
				s.inUse.Add(-1)
			}
			return st == 1
		}
	}
}

// unhold ends the hold-down of port p.
func (s *portSet) unhold(p uint16) {
	w, sh := s.load(p)
	for {
		v := w.Load()
		st := (v >> sh) & 0xffff
		if st != portHeld {
			panic("nat: unhold of a port not in hold-down")
		}
		if w.CompareAndSwap(v, v&^(0xffff<<sh)) {
			s.inUse.Add(-1)
			return
		}
	}
}

// owners returns the owner count and the held flag of port p.
func (s *portSet) state(p uint16) (owners int, held bool) {
	w, sh := s.load(p)
	st := (w.Load() >> sh) & 0xffff
	return int(st & portMaxOwner), st&portHeld != 0
}

// claimRandom claims a free port in [lo, hi] from the worker's share,
// starting at a random point (RFC 6056 algorithm 1, "simple port
// randomization", restricted to the share): it returns false only when the
// whole share has no free port. r is a random 64-bit value.
func (s *portSet) claimRandom(lo, hi uint16, worker, workers int, r uint64) (uint16, bool) {
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
	if total == 0 {
		return 0, false
	}
	start := int(r % uint64(total))
	for i := 0; i < total; i++ {
		j := start + i
		if j >= total {
			j -= total
		}
		c, off := j/chunkPorts, j%chunkPorts // mine are full chunks except maybe the last
		p := uint16(int(lo) + (worker+c*workers)*chunkPorts + off)
		if s.claimFree(p) {
			return p, true
		}
	}
	return 0, false
}

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
