package ring

// MPSC is a bounded FIFO ring for any number of producer goroutines and one
// consumer goroutine, such as NAT workers publishing session events to the
// exporter.
//
// EnqueueBurst, EnqueueBulk and Enqueue may be called concurrently from any
// goroutines; DequeueBurst, DequeueBulk and Dequeue by one goroutine at a
// time (the consumer). Len, Cap and Free may be called from any goroutine.
//
// Values from one producer are dequeued in the order that producer enqueued
// them, and the values of one burst stay contiguous. A producer may wait
// (spinning, then yielding) for a concurrent producer that reserved before it
// to publish; the consumer never waits.
type MPSC[T any] struct {
	_    pad
	s    slots[T]
	_    pad
	prod multi // shared by producers; prod.tail is loaded by the consumer
	_    pad
	cons single // consumer-owned; cons.tail is loaded by producers
	_    pad
}

// NewMPSC returns an empty ring holding up to capacity values. capacity must
// be a power of two between 1 and MaxCapacity.
func NewMPSC[T any](capacity int) (*MPSC[T], error) {
	return newMPSCAt[T](capacity, 0)
}

// newMPSCAt starts all indices at start, so tests can exercise wraparound.
func newMPSCAt[T any](capacity int, start uint64) (*MPSC[T], error) {
	if err := checkCapacity(capacity); err != nil {
		return nil, err
	}
	q := &MPSC[T]{}
	q.s.init(capacity)
	q.prod.init(start, start+q.s.size)
	q.cons.init(start, start)
	return q, nil
}

// EnqueueBurst appends as many values of src as fit and returns how many it
// appended (src[:n]). Any goroutine.
func (q *MPSC[T]) EnqueueBurst(src []T) int {
	start, n := q.prod.reserve(&q.cons.tail, q.s.size, q.s.size, uint64(len(src)), false)
	if n == 0 {
		return 0
	}
	q.s.put(start, src[:n])
	q.prod.publish(start, n)
	return int(n)
}

// EnqueueBulk appends all of src and returns true, or appends nothing and
// returns false if they do not all fit. An empty src succeeds. Any goroutine.
func (q *MPSC[T]) EnqueueBulk(src []T) bool {
	start, n := q.prod.reserve(&q.cons.tail, q.s.size, q.s.size, uint64(len(src)), true)
	if n == 0 {
		return len(src) == 0
	}
	q.s.put(start, src)
	q.prod.publish(start, n)
	return true
}

// Enqueue appends v and returns true, or returns false if the ring is full.
// Any goroutine.
func (q *MPSC[T]) Enqueue(v T) bool {
	start, n := q.prod.reserve(&q.cons.tail, q.s.size, q.s.size, 1, true)
	if n == 0 {
		return false
	}
	q.s.buf[start&q.s.mask] = v
	q.prod.publish(start, 1)
	return true
}

// DequeueBurst removes up to len(dst) values into dst[:n] and returns n.
// Consumer only.
func (q *MPSC[T]) DequeueBurst(dst []T) int {
	n := q.cons.reserve(&q.prod.tail, 0, uint64(len(dst)), false)
	if n == 0 {
		return 0
	}
	q.s.take(q.cons.pos, dst[:n])
	q.cons.publish(n)
	return int(n)
}

// DequeueBulk fills all of dst and returns true, or removes nothing and
// returns false if the ring holds fewer than len(dst) published values. An
// empty dst succeeds. Consumer only.
func (q *MPSC[T]) DequeueBulk(dst []T) bool {
	n := q.cons.reserve(&q.prod.tail, 0, uint64(len(dst)), true)
	if n == 0 {
		return len(dst) == 0
	}
	q.s.take(q.cons.pos, dst)
	q.cons.publish(n)
	return true
}

// Dequeue removes and returns the oldest value, or reports false if the ring
// is empty. Consumer only.
func (q *MPSC[T]) Dequeue() (v T, ok bool) {
	if q.cons.reserve(&q.prod.tail, 0, 1, true) == 0 {
		return v, false
	}
	v = q.s.takeOne(q.cons.pos)
	q.cons.publish(1)
	return v, true
}

// Len returns the number of published values in the ring (a snapshot).
func (q *MPSC[T]) Len() int { return length(&q.cons.tail, &q.prod.tail, q.s.size) }

// Cap returns the capacity given to NewMPSC.
func (q *MPSC[T]) Cap() int { return int(q.s.size) }

// Free returns Cap() - Len() (a snapshot; slots reserved by producers that
// have not published yet count as free).
func (q *MPSC[T]) Free() int { return int(q.s.size) - q.Len() }
