package ring

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync/atomic"
)

// MaxCapacity is the largest capacity the constructors accept. It is a
// sanity bound, not an algorithmic one: a NIC queue holds a few thousand
// frames, and a ring of 16 Mi values of a 16-byte descriptor is already
// 256 MiB of preallocated memory.
const MaxCapacity = 1 << 24

// ErrCapacity is returned (wrapped) by the constructors for a capacity that
// is not a power of two between 1 and MaxCapacity.
var ErrCapacity = errors.New("ring: capacity must be a power of two between 1 and MaxCapacity")

// padBytes separates groups of fields written by different goroutines; see
// the package documentation for why it is 128 and not 64.
const padBytes = 128

type pad [padBytes]byte

// spinsBeforeYield bounds how many times a multi-producer (or -consumer)
// goroutine polls the tail waiting for an earlier reservation to be
// published before it calls runtime.Gosched. Publishing takes a copy of a
// burst, i.e. tens of nanoseconds, so a short spin usually suffices; the
// yield matters only when the earlier goroutine was descheduled.
const spinsBeforeYield = 64

func checkCapacity(capacity int) error {
	if capacity < 1 || capacity > MaxCapacity || capacity&(capacity-1) != 0 {
		return fmt.Errorf("%w: got %d", ErrCapacity, capacity)
	}
	return nil
}

// slots is the read-only part of a ring: the slot array and its geometry.
// It is written only by the constructor.
type slots[T any] struct {
	buf  []T
	mask uint64
	size uint64
	// clear is true when T contains pointers: dequeued slots are zeroed so
	// the ring does not keep dequeued values reachable.
	clear bool
}

func (s *slots[T]) init(capacity int) {
	s.buf = make([]T, capacity)
	s.size = uint64(capacity)
	s.mask = uint64(capacity - 1)
	s.clear = hasPointers(reflect.TypeFor[T]())
}

// put copies src into the slots starting at position pos. The caller has
// reserved exactly len(src) slots.
func (s *slots[T]) put(pos uint64, src []T) {
	i := pos & s.mask
	n := copy(s.buf[i:], src)
	if n < len(src) {
		copy(s.buf, src[n:])
	}
}

// take copies len(dst) values starting at position pos into dst. The caller
// has reserved exactly len(dst) slots.
func (s *slots[T]) take(pos uint64, dst []T) {
	i := pos & s.mask
	n := copy(dst, s.buf[i:])
	if s.clear {
		clear(s.buf[i : i+uint64(n)])
	}
	if n < len(dst) {
		m := copy(dst[n:], s.buf)
		if s.clear {
			clear(s.buf[:m])
		}
	}
}

// takeOne returns the value at position pos, which the caller has reserved.
func (s *slots[T]) takeOne(pos uint64) T {
	i := pos & s.mask
	v := s.buf[i]
	if s.clear {
		var zero T
		s.buf[i] = zero
	}
	return v
}

// hasPointers reports whether values of type t contain pointers the garbage
// collector must trace.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	default: // pointers, slices, strings, maps, channels, funcs, interfaces
		return true
	}
}

// single is one side of a ring used by one goroutine at a time.
//
// tail is the published position: for a producer, every slot before it has
// been written; for a consumer, every slot before it has been read. The
// other side loads it. pos and limit are private to the owning goroutine:
// pos mirrors tail without an atomic load, and limit caches the other side's
// tail (plus the capacity, for a producer) so that the owner reloads it only
// when its cached room is insufficient.
type single struct {
	tail  atomic.Uint64
	pos   uint64
	limit uint64
}

// reserve returns how many of want slots the owner may use from pos: want
// or, if fewer are available, 0 for a bulk and the available number for a
// burst. other is the other side's tail and offset is added to it to obtain
// the bound (the capacity for a producer, 0 for a consumer).
func (s *single) reserve(other *atomic.Uint64, offset, want uint64, bulk bool) uint64 {
	room := s.limit - s.pos
	if room < want {
		s.limit = other.Load() + offset
		room = s.limit - s.pos
		if room < want {
			if bulk {
				return 0
			}
			return room
		}
	}
	return want
}

// publish makes the n slots from pos visible to the other side.
func (s *single) publish(n uint64) {
	s.pos += n
	s.tail.Store(s.pos)
}

func (s *single) init(start, limit uint64) {
	s.tail.Store(start)
	s.pos = start
	s.limit = limit
}

// multi is one side of a ring shared by several goroutines. head is the next
// position to reserve (advanced by CAS), tail the published position
// (advanced in reservation order), and limit a shared hint of the other
// side's tail plus offset; see the package documentation for why a stale
// hint is safe.
type multi struct {
	head  atomic.Uint64
	tail  atomic.Uint64
	limit atomic.Uint64
}

func (m *multi) init(start, limit uint64) {
	m.head.Store(start)
	m.tail.Store(start)
	m.limit.Store(limit)
}

// reserve claims up to want slots (exactly want or none if bulk) and returns
// the first reserved position and how many were reserved. size is the ring
// capacity, used to recognise a hint or head too stale to compute a room.
func (m *multi) reserve(other *atomic.Uint64, offset, size, want uint64, bulk bool) (start, n uint64) {
	for {
		// The head must be loaded before the other side's tail (or the
		// hint), so that the tail is at least as new as the head and the
		// room cannot be overestimated; sync/atomic loads are sequentially
		// consistent, so program order is enough.
		start = m.head.Load()
		room := m.limit.Load() - start
		if room < want || room > size {
			limit := other.Load() + offset
			room = limit - start
			if room > size {
				// Other goroutines of this side moved the head past
				// start since we loaded it (the fresh other tail is
				// beyond it); start again with a fresh head.
				continue
			}
			m.limit.Store(limit)
		}
		n = want
		if n > room {
			if bulk {
				return start, 0
			}
			n = room
		}
		if n == 0 {
			return start, 0
		}
		if m.head.CompareAndSwap(start, start+n) {
			return start, n
		}
	}
}

// publish waits until every reservation before start has been published,
// then publishes [start, start+n).
func (m *multi) publish(start, n uint64) {
	for spins := 0; m.tail.Load() != start; spins++ {
		if spins == spinsBeforeYield {
			// The goroutine that reserved before us may be
			// descheduled; give it the processor (essential with
			// GOMAXPROCS=1, where spinning would never end).
			runtime.Gosched()
			spins = 0
		}
	}
	m.tail.Store(start + n)
}

// length returns the number of values between the consumer's and the
// producer's published tails, clamped to [0, size]. The consumer tail is
// loaded first so the difference cannot be negative; it can exceed size if
// both sides moved between the two loads, hence the clamp.
func length(consTail, prodTail *atomic.Uint64, size uint64) int {
	c := consTail.Load()
	p := prodTail.Load()
	n := p - c
	if n > size {
		n = size
	}
	return int(n)
}
