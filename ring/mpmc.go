package ring

// MPMC is a bounded FIFO ring for any number of producer and consumer
// goroutines, such as a frame pool that workers and a test goroutine both
// allocate from and free to.
//
// Every method may be called concurrently from any goroutine.
//
// Values leave the ring in the order their bursts were reserved; values of
// one producer burst are handed out in order, and any one consumer sees the
// values of any one producer in the order that producer enqueued them. A
// goroutine may wait (spinning, then yielding) for a concurrent goroutine of
// its side that reserved before it to publish.
type MPMC[T any] struct {
	_    pad
	s    slots[T]
	_    pad
	prod multi // shared by producers; prod.tail is loaded by consumers
	_    pad
	cons multi // shared by consumers; cons.tail is loaded by producers
	_    pad
}

// NewMPMC returns an empty ring holding up to capacity values. capacity must
// be a power of two between 1 and MaxCapacity.
func NewMPMC[T any](capacity int) (*MPMC[T], error) {
	return newMPMCAt[T](capacity, 0)
}

// newMPMCAt starts all indices at start, so tests can exercise wraparound.
func newMPMCAt[T any](capacity int, start uint64) (*MPMC[T], error) {
	if err := checkCapacity(capacity); err != nil {
		return nil, err
	}
	q := &MPMC[T]{}
	q.s.init(capacity)
	q.prod.init(start, start+q.s.size)
	q.cons.init(start, start)
	return q, nil
}

// EnqueueBurst appends as many values of src as fit and returns how many it
// appended (src[:n]). Any goroutine.
func (q *MPMC[T]) EnqueueBurst(src []T) int { return q.enqueue(src, false) }

// EnqueueBulk appends all of src and returns true, or appends nothing and
// returns false if they do not all fit. An empty src succeeds. Any goroutine.
func (q *MPMC[T]) EnqueueBulk(src []T) bool { return q.enqueue(src, true) == len(src) }

// enqueue is the one body of EnqueueBurst and EnqueueBulk (see
// SPSC.enqueue): it appends src[:n] and returns n.
func (q *MPMC[T]) enqueue(src []T, bulk bool) int {
	start, n := q.prod.reserve(&q.cons.tail, q.s.size, q.s.size, uint64(len(src)), bulk)
	if n == 0 {
		return 0
	}
	q.s.put(start, src[:n])
	q.prod.publish(start, n)
	return int(n)
}

// Enqueue appends v and returns true, or returns false if the ring is full.
// Any goroutine.
func (q *MPMC[T]) Enqueue(v T) bool {
	start, n := q.prod.reserve(&q.cons.tail, q.s.size, q.s.size, 1, true)
	if n == 0 {
		return false
	}
	q.s.buf[start&q.s.mask] = v
	q.prod.publish(start, 1)
	return true
}

// DequeueBurst removes up to len(dst) values into dst[:n] and returns n.
// Any goroutine.
func (q *MPMC[T]) DequeueBurst(dst []T) int { return q.dequeue(dst, false) }

// DequeueBulk fills all of dst and returns true, or removes nothing and
// returns false if the ring holds fewer than len(dst) published values. An
// empty dst succeeds. Any goroutine.
func (q *MPMC[T]) DequeueBulk(dst []T) bool { return q.dequeue(dst, true) == len(dst) }

// dequeue is the one body of DequeueBurst and DequeueBulk: it fills dst[:n]
// and returns n.
func (q *MPMC[T]) dequeue(dst []T, bulk bool) int {
	start, n := q.cons.reserve(&q.prod.tail, 0, q.s.size, uint64(len(dst)), bulk)
	if n == 0 {
		return 0
	}
	q.s.take(start, dst[:n])
	q.cons.publish(start, n)
	return int(n)
}

// Dequeue removes and returns the oldest value, or reports false if the ring
// is empty. Any goroutine.
func (q *MPMC[T]) Dequeue() (v T, ok bool) {
	start, n := q.cons.reserve(&q.prod.tail, 0, q.s.size, 1, true)
	if n == 0 {
		return v, false
	}
	v = q.s.takeOne(start)
	q.cons.publish(start, 1)
	return v, true
}

// Len returns the number of published values in the ring (a snapshot).
func (q *MPMC[T]) Len() int { return length(&q.cons.tail, &q.prod.tail, q.s.size) }

// Cap returns the capacity given to NewMPMC.
func (q *MPMC[T]) Cap() int { return int(q.s.size) }

// Free returns Cap() - Len() (a snapshot).
func (q *MPMC[T]) Free() int { return int(q.s.size) - q.Len() }
