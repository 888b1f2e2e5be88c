package nat

import (
	"fmt"
	"sync/atomic"
)

// The address registry: every external address the engine manages (pool
// addresses, and the outside addresses of static mappings and port
// forwards), each with its port sets and reference counts.
//
// Records (bindings, subscribers, sessions) name an address by its registry
// index. The registry is a fixed array of slots allocated with the engine,
// so an index never points past it, whatever snapshot a worker holds (issue
// 11: a worker on an older snapshot indexed a newer, longer registry slice
// out of range). A slot holds its address for as long as anything can name
// it, and is recycled only after the address has left the configuration and
// fully drained (see retire).

// maxAddrSlots is the registry's capacity: the largest configuration
// (MaxPoolAddresses) plus as many addresses still draining after being
// removed, so that a whole pool can be renumbered in one change. Slot
// indices fit the 24 bits that session records give them (sessWords).
const maxAddrSlots = 2 * MaxPoolAddresses

// addrState flags and counts, in refs:
//
//	bits 0..31  references: subscribers paired with the address, sessions
//	            of static mappings and port forwards on it, and claims in
//	            flight (a worker that is about to take a port on it)
//	bit 61      addrInRules: a static mapping or port forward uses it
//	bit 62      addrInPool: a pool lists it; new subscribers and new
//	            mappings may use it
//	bit 63      addrRetired: it has drained and left the configuration;
//	            nothing may take a reference any more
//
// A reference is taken only while the flag that allows it is set (acquire),
// so once an address has left the configuration its count can only fall;
// the control plane retires it when the count is zero and no port is owned
// or held.
const (
	addrInRules = 1 << 61
	addrInPool  = 1 << 62
	addrRetired = 1 << 63
	addrCount   = 1<<32 - 1
)

// addrState is one external address. Workers use it without locks; the
// flags change only under the engine's ctl mutex.
type addrState struct {
	addr  [4]byte
	idx   uint32
	ports [NumProtos]portSet
	refs  atomic.Uint64
	// subs and rules count the references by kind, for the management
	// plane.
	subs  atomic.Int32
	rules atomic.Int32
}

// acquire takes n references on the address if it has flag need (and is
// not retired).
func (a *addrState) acquire(need, n uint64) bool {
	for {
		v := a.refs.Load()
		if v&need == 0 || v&addrRetired != 0 {
			return false
		}
		// The count, v&addrCount, plus n over addrCount: a 32-bit
		// compare with a constant once acquire inlines, where the sum
		// and its 64-bit compare took about 7 instructions more a new
		// session (2,636 to 2,629, bench-instr). TestAddrAcquire.
		if uint32(v) > uint32(addrCount-n) {
			return false
		}
		if a.refs.CompareAndSwap(v, v+n) {
			return true
		}
	}
}

// release drops n references.
func (a *addrState) release(n uint64) { a.refs.Add(^(n - 1)) }

// setFlags replaces the address's configuration flags (ctl held).
func (a *addrState) setFlags(f uint64) {
	for {
		v := a.refs.Load()
		if a.refs.CompareAndSwap(v, v&^(addrInRules|addrInPool)|f) {
			return
		}
	}
}

// portsIdle reports whether no port of the address is owned or held.
func (a *addrState) portsIdle() bool {
	for p := range a.ports {
		if a.ports[p].inUse.Load() != 0 {
			return false
		}
	}
	return true
}

// busy reports whether anything still uses the address: a reference or a
// port owned or in hold-down.
func (a *addrState) busy() bool {
	return a.refs.Load()&addrCount != 0 || !a.portsIdle()
}

// addr returns the state in registry slot idx: nil for a free slot. Any
// goroutine may call it; idx must come from a record or a snapshot of this
// engine.
func (e *Engine) addr(idx uint32) *addrState { return e.slots[idx].Load() }

// register returns the registry state of external address a, adding it
// (ctl held). Callers check the capacity first (freeSlots).
func (e *Engine) register(a [4]byte) *addrState {
	if idx, ok := e.addrIndex[a]; ok {
		return e.slots[idx].Load()
	}
	var idx uint32
	if n := len(e.freeSlots); n > 0 {
		idx = e.freeSlots[n-1]
		e.freeSlots = e.freeSlots[:n-1]
	} else {
		idx = e.nextSlot
		e.nextSlot++
	}
	st := &addrState{addr: a, idx: idx}
	for p := range st.ports {
		st.ports[p].init(e.portTab, a, idx, Proto(p))
	}
	e.slots[idx].Store(st)
	e.addrIndex[a] = idx
	return st
}

// freeSlotCount is the number of addresses that can still be registered.
func (e *Engine) freeSlotCount() int {
	return len(e.freeSlots) + len(e.slots) - int(e.nextSlot)
}

// checkRegistry refuses a configuration whose new addresses do not fit the
// registry beside those still draining (ctl held).
func (e *Engine) checkRegistry(addrs map[[4]byte]uint64) error {
	n := 0
	for a := range addrs {
		if _, ok := e.addrIndex[a]; !ok {
			n++
		}
	}
	if free := e.freeSlotCount(); n > free {
		return &FieldError{Field: "pools", Reason: fmt.Sprintf("%d new external addresses, but only %d registry slots are free while removed addresses drain; retry when they have drained", n, free)}
	}
	return nil
}

// retire frees the slot of an address that has left the configuration and
// drained (ctl held). It reports whether it did.
func (e *Engine) retire(st *addrState) bool {
	// No flag is set, so no worker can take a reference: a count of zero
	// stays zero. Ports are claimed only under a reference, and held ports
	// are released only under ctl, so idle ports stay idle too.
	if !st.refs.CompareAndSwap(0, addrRetired) {
		return false
	}
	if !st.portsIdle() {
		st.refs.Store(0)
		return false
	}
	e.slots[st.idx].Store(nil)
	delete(e.addrIndex, st.addr)
	e.freeSlots = append(e.freeSlots, st.idx)
	return true
}
