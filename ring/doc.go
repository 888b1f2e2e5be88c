// Package ring provides bounded lock-free FIFO rings that carry values
// between the goroutines of the dataplane, in the spirit of DPDK's rte_ring.
//
// In the pipeline, rings are the only hand-off between goroutines: a memport
// (dataplane/port/memport) moves frame descriptors between the test goroutine
// and a worker through SPSC rings and keeps its frame pool in an MPMC ring;
// each NAT worker publishes session events to the exporter through its own
// SPSC ring (dataplane/nat/event.go), and fills its capture and trace
// rings in place (SPSC's Reserve and Commit, dataplane/nat/vis.go). Every
// operation moves a burst, so one
// index publication (one cache line transfer) is amortised over up to 32–64
// values.
//
// There is no MPSC ring: nothing needs one. An MPMC ring serves several
// producers and one consumer correctly, at the price of a CAS on the
// consumer side.
//
// # Contracts
//
// The contract is in the type name and is not checked at run time:
//
//   - SPSC: exactly one goroutine at a time may call the Enqueue methods
//     and exactly one goroutine at a time may call the Dequeue methods.
//   - MPMC: any number of goroutines may enqueue and dequeue concurrently.
//
// "One goroutine at a time" means the calls must be ordered by some other
// synchronisation (usually: always the same goroutine). Len, Cap and Free
// may be called from any goroutine.
//
// Each side has two forms: a burst (EnqueueBurst, DequeueBurst) moves as many
// values as fit and returns how many it moved; a bulk (EnqueueBulk,
// DequeueBulk) moves all of them or none and reports which. Enqueue and
// Dequeue move one value; SPSC's Reserve and Commit enqueue one value
// written in place, for values too big to copy twice. No operation blocks
// or allocates.
//
// # Indices
//
// Both sides count positions with free-running uint64 counters that are only
// ever incremented; a position addresses slot pos & (capacity-1), which is
// why the capacity must be a power of two. The number of values in the ring
// is prodTail - consTail in modular arithmetic, so counters may wrap (tests
// start them just below 2^32 and 2^64). uint64 rather than DPDK's uint32
// removes the ABA hazard of the multi-producer head CAS: a goroutine
// preempted between loading the head and its CAS would need 2^64 other
// operations to pass for the CAS to succeed wrongly, instead of 2^32 (43 s at
// 100 M operations/s).
//
// # Memory layout
//
// Every ring has three groups of fields: read-only data (slot array, mask),
// producer indices and consumer indices. The groups are separated by 128
// bytes of padding, not 64: Intel's L2 spatial prefetcher fetches cache lines
// in 128-byte aligned pairs, so 64-byte separation still lets a producer's
// store invalidate the line the consumer is polling. Because the Go allocator
// does not align objects to 128 bytes, the padding sits between the groups
// and around them, which keeps any two groups in different 128-byte blocks
// whatever the object's address.
//
// Each side caches the other side's published index, so it touches the other
// side's cache line only when its cached view says the ring is full (for a
// producer) or empty (for a consumer):
//
//   - a single producer or consumer keeps the cache in a plain field that only
//     it reads and writes;
//   - the multi-producer (or multi-consumer) side keeps it in an atomic on its
//     own, already shared, cache line. It is a hint: any goroutine of that side
//     may replace it with a value it has just loaded, even an older one than
//     another goroutine stored. An older value only makes the ring look
//     fuller (or emptier) than it is, which costs a reload and never
//     overcommits, because the other side's index only grows. A value too old
//     to be meaningful relative to a freshly loaded head is recognised by the
//     room it implies exceeding the capacity, and triggers a reload.
//
// # Multi-producer and multi-consumer algorithm
//
// MPMC uses DPDK's head/tail scheme rather than Vyukov's per-slot
// sequence numbers, because the dataplane moves bursts: a head/tail ring
// reserves a whole burst with one compare-and-swap and publishes it with one
// store, while a per-slot ring needs one CAS and one sequence store per value,
// and cannot implement an all-or-none bulk without reserving slot by slot.
//
// A multi side has a head (reservations) and a tail (publications). A
// goroutine loads the head and the other side's tail, computes the room,
// reserves [head, head+n) with a CAS on the head, copies its values, then
// waits until the tail equals its reservation's start, so that tails are
// published in reservation order, and stores head+n to the tail. The
// consumer side does the same against the producer's tail. Values are copied
// before the tail store and read after the tail load; sync/atomic operations
// are sequentially consistent, so the copy happens-before the other side's
// access, and the race detector sees it that way.
//
// Progress: the reservation step is lock-free (a failed CAS means another
// goroutine's succeeded). The publication step is blocking: a goroutine that
// is descheduled between its reservation and its publication holds back the
// publication of later reservations on its side (the ring stays correct; the
// values behind it are just not visible yet). Waiters spin for a bounded
// number of loads and then call runtime.Gosched, so with GOMAXPROCS=1 the
// descheduled goroutine gets the processor back instead of being livelocked by
// spinners; Go's asynchronous preemption bounds the wait on larger machines.
// A single-producer or single-consumer side never waits.
//
// # Element types
//
// Values are copied into and out of a preallocated slot array. For the
// dataplane, T should be a small pointer-free struct or integer, so the array
// is invisible to the garbage collector. If T contains pointers, the ring
// clears each slot as it is dequeued so that it does not keep dequeued values
// reachable; for pointer-free T this clearing is skipped.
package ring
