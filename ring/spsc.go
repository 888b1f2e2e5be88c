package ring

// SPSC is a bounded FIFO ring for one producer goroutine and one consumer
// goroutine.
//
// EnqueueBurst, EnqueueBulk and Enqueue may be called by one goroutine at a
// time (the producer); DequeueBurst, DequeueBulk and Dequeue by one
// goroutine at a time (the consumer). The producer and the consumer may be
// the same goroutine. Len, Cap and Free may be called from any goroutine.
// Neither side ever waits for the other.
type SPSC[T any] struct {
	_    pad
	s    slots[T]
	_    pad
	prod single // producer-owned; prod.tail is loaded by the consumer
	_    pad
	cons single // consumer-owned; cons.tail is loaded by the producer
	_    pad
}

// NewSPSC returns an empty ring holding up to capacity values. capacity must
// be a power of two between 1 and MaxCapacity.
func NewSPSC[T any](capacity int) (*SPSC[T], error) {
	return newSPSCAt[T](capacity, 0)
}

// newSPSCAt starts both indices at start, so tests can exercise wraparound.
func newSPSCAt[T any](capacity int, start uint64) (*SPSC[T], error) {
	if err := checkCapacity(capacity); err != nil {
		return nil, err
	}
	q := &SPSC[T]{}
	q.s.init(capacity)
	q.prod.init(start, start+q.s.size)
	q.cons.init(start, start)
	return q, nil
}

// EnqueueBurst appends as many values of src as fit and returns how many it
// appended (src[:n]). Producer only.
func (q *SPSC[T]) EnqueueBurst(src []T) int { return q.enqueue(src, false) }

// EnqueueBulk appends all of src and returns true, or appends nothing and
// returns false if they do not all fit. An empty src succeeds. Producer only.
func (q *SPSC[T]) EnqueueBulk(src []T) bool { return q.enqueue(src, true) == len(src) }

// enqueue is the one body of EnqueueBurst and EnqueueBulk (as in DPDK's
// rte_ring, the two differ only in what reserve does when src does not all
// fit): it appends src[:n] and returns n, where n is len(src), or 0 for a
// bulk that does not fit, or what fits for a burst. The exported wrappers
// inline where the ring's type is concrete (memport, the event rings), so
// the pipeline still makes one call per burst.
func (q *SPSC[T]) enqueue(src []T, bulk bool) int {
	n := q.prod.reserve(&q.cons.tail, q.s.size, uint64(len(src)), bulk)
	if n == 0 {
		return 0
	}
	q.s.put(q.prod.pos, src[:n])
	q.prod.publish(n)
	return int(n)
}

// Enqueue appends v and returns true, or returns false if the ring is full.
// Producer only.
func (q *SPSC[T]) Enqueue(v T) bool {
	if q.prod.reserve(&q.cons.tail, q.s.size, 1, true) == 0 {
		return false
	}
	q.s.buf[q.prod.pos&q.s.mask] = v
	q.prod.publish(1)
	return true
}

// Reserve returns the slot that the next enqueue fills, for the producer
// to write in place, or nil if the ring is full; Commit publishes it. It
// is DPDK's zero-copy enqueue (rte_ring_enqueue_zc_*), for values too big
// to build and then copy in (a worker's 2 KiB captured frame). Until
// Commit the slot is the producer's alone and the consumer cannot see it;
// a later Reserve without a Commit returns the same slot. Producer only.
func (q *SPSC[T]) Reserve() *T {
	if q.prod.reserve(&q.cons.tail, q.s.size, 1, true) == 0 {
		return nil
	}
	return &q.s.buf[q.prod.pos&q.s.mask]
}

// Commit publishes the slot the last Reserve returned. It must follow a
// Reserve that returned a slot. Producer only.
func (q *SPSC[T]) Commit() { q.prod.publish(1) }

// DequeueBurst removes up to len(dst) values into dst[:n] and returns n.
// Consumer only.
func (q *SPSC[T]) DequeueBurst(dst []T) int { return q.dequeue(dst, false) }

// DequeueBulk fills all of dst and returns true, or removes nothing and
// returns false if the ring holds fewer than len(dst) values. An empty dst
// succeeds. Consumer only.
func (q *SPSC[T]) DequeueBulk(dst []T) bool { return q.dequeue(dst, true) == len(dst) }

// dequeue is the one body of DequeueBurst and DequeueBulk, as enqueue is of
// the enqueues: it fills dst[:n] and returns n.
func (q *SPSC[T]) dequeue(dst []T, bulk bool) int {
	n := q.cons.reserve(&q.prod.tail, 0, uint64(len(dst)), bulk)
	if n == 0 {
		return 0
	}
	q.s.take(q.cons.pos, dst[:n])
	q.cons.publish(n)
	return int(n)
}

// Dequeue removes and returns the oldest value, or reports false if the ring
// is empty. Consumer only.
func (q *SPSC[T]) Dequeue() (v T, ok bool) {
	if q.cons.reserve(&q.prod.tail, 0, 1, true) == 0 {
		return v, false
	}
	v = q.s.takeOne(q.cons.pos)
	q.cons.publish(1)
	return v, true
}

// Len returns the number of values in the ring. From the consumer it is a
// lower bound on what DequeueBulk will find; from elsewhere it is a snapshot.
func (q *SPSC[T]) Len() int { return length(&q.cons.tail, &q.prod.tail, q.s.size) }

// Cap returns the capacity given to NewSPSC.
func (q *SPSC[T]) Cap() int { return int(q.s.size) }

// Free returns Cap() - Len(). From the producer it is a lower bound on the
// room EnqueueBulk will find; from elsewhere it is a snapshot.
func (q *SPSC[T]) Free() int { return int(q.s.size) - q.Len() }
