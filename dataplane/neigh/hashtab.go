package neigh

import (
	"math/bits"
	"sync/atomic"

	"github.com/xnat/xnat/dataplane/fwd"
)

// Slot flags.
const (
	// flagRetry: a Failed entry whose retry delay has passed; Resolve posts
	// a request for it so the kernel probes again.
	flagRetry uint8 = 1 << iota
)

// nslot is one neighbour of one side. Everything but used is written before
// the table is published and never again; used is the only field workers
// write (see markUsed).
type nslot struct {
	ip    uint32        // next-hop IPv4 address, big-endian; 0 marks an empty slot
	used  atomic.Uint32 // set by Resolve when it returns this MAC, cleared by the refresh sweep
	mac   [6]byte
	res   fwd.Resolution
	flags uint8
}

// ntable is a pointer-free open-addressing hash table (linear probing,
// load ≤ 1/2) from next-hop address to neighbour. It is built once by the
// control goroutine and read concurrently by workers afterwards.
type ntable struct {
	slots []nslot
	mask  uint32
	shift uint8 // 32 - log2(len(slots))
	n     int
}

const minSlots = 8

// newNTable returns an empty table able to hold n entries.
func newNTable(n int) ntable {
	size := minSlots
	for size < 2*n {
		size <<= 1
	}
	return ntable{
		slots: make([]nslot, size),
		mask:  uint32(size - 1),
		shift: uint8(32 - bits.TrailingZeros(uint(size))),
	}
}

// home is the first slot probed for ip: spread(ip, len(slots)), with the
// power-of-two size's multiply folded into a shift.
func (t *ntable) home(ip uint32) uint32 { return (ip * fibMul) >> t.shift }

// fibMul is 2^32/φ. Fibonacci hashing multiplies by it, which spreads
// consecutive addresses (the usual neighbour set, or one subnet's
// destinations) evenly over the product's top bits.
const fibMul = 0x9E3779B1

// spread maps x to [0, n) for the package's hash tables and choices: the
// top bits of x·fibMul scaled by n (multiply-shift, not a modulo, which
// would read the low bits that only x's low bits reach).
func spread(x, n uint32) uint32 { return uint32(uint64(x*fibMul) * uint64(n) >> 32) }

// insert adds ip (non-zero, not yet present) and returns its slot for the
// caller to fill. Build time only; the table must have room.
func (t *ntable) insert(ip uint32) *nslot {
	for i := t.home(ip); ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.ip == 0 {
			s.ip = ip
			t.n++
			return s
		}
		if s.ip == ip {
			return s
		}
	}
}

// find returns ip's slot or nil. The load factor keeps empty slots common,
// so the probe always ends.
func (t *ntable) find(ip uint32) *nslot {
	for i := t.home(ip); ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.ip == ip {
			return s
		}
		if s.ip == 0 {
			return nil
		}
	}
}

// markUsed records that a worker sent to this neighbour. It writes only
// when the mark is clear, so in steady state the slot's cache line stays
// shared between the workers' cores instead of bouncing on every packet.
func (s *nslot) markUsed() {
	if s.used.Load() == 0 {
		s.used.Store(1)
	}
}
