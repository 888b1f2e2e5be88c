package neigh

import (
	"sync/atomic"

	"github.com/xnat/xnat/dataplane/fwd"
)

// reqSlots is the number of resolution requests that can wait for the
// control goroutine at once. A request only has to survive until the next
// wake-up of the control goroutine (microseconds to a millisecond), after
// which the neighbour shows as Pending in the snapshot and is not posted
// again, so a few hundred distinct misses per wake-up is plenty; further
// misses are counted and posted again by the next packet.
const reqSlots = 256

// reqProbe is how many neighbouring slots a post tries before giving up.
const reqProbe = 4

// requests is the packet path's only way to ask for work: a fixed array of
// atomic slots, each holding 0 or an encoded (side, address) request, plus
// a wake-up. Posting is lock-free and allocation-free: a worker claims an
// empty slot with a compare-and-swap, and a repeated miss on an address
// already waiting finds it in its home slot and does nothing, so a burst of
// frames to one unresolved neighbour costs one request.
//
// post may be called by any goroutine; drain only by the control goroutine.
type requests struct {
	slot     [reqSlots]atomic.Uint64
	waking   atomic.Bool   // a wake-up is pending; spares posters the channel
	wake     chan struct{} // capacity 1
	overflow atomic.Uint64 // posts dropped because every probed slot was busy
}

func newRequests() *requests { return &requests{wake: make(chan struct{}, 1)} }

// reqKey encodes a request; bit 40 keeps it non-zero for address 0.
func reqKey(side fwd.Side, ip uint32) uint64 {
	return 1<<40 | uint64(side)<<32 | uint64(ip)
}

func reqDecode(k uint64) (fwd.Side, uint32) { return fwd.Side(k >> 32 & 0xff), uint32(k) }

// post asks the control goroutine to resolve ip on side.
func (q *requests) post(side fwd.Side, ip uint32) {
	k := reqKey(side, ip)
	h := (spread(ip, reqSlots) + uint32(side)) % reqSlots
	for j := uint32(0); j < reqProbe; j++ {
		s := &q.slot[(h+j)%reqSlots]
		v := s.Load()
		if v == k {
			return // already waiting
		}
		if v == 0 && s.CompareAndSwap(0, k) {
			q.signal()
			return
		}
	}
	q.overflow.Add(1)
}

// signal wakes the control goroutine. Only the first poster after a
// wake-up touches the channel; the send never blocks (capacity 1, select
// with default), so a worker never waits for the control goroutine.
func (q *requests) signal() {
	if q.waking.CompareAndSwap(false, true) {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// drain takes every waiting request and calls f for each. The control
// goroutine calls it after receiving from wake; it clears waking first, so
// a request posted during the drain sends a new wake-up instead of being
// stranded.
func (q *requests) drain(f func(fwd.Side, uint32)) {
	q.waking.Store(false)
	for i := range q.slot {
		if q.slot[i].Load() == 0 {
			continue
		}
		if k := q.slot[i].Swap(0); k != 0 {
			f(reqDecode(k))
		}
	}
}
