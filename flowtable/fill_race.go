//go:build race

package flowtable

import "sync/atomic"

// StoreUnpublished writes v to *p, a word of a record that no reader
// accepts yet, atomically for the race detector (fill.go says why other
// builds use a plain store).
func StoreUnpublished(p *atomic.Uint64, v uint64) { p.Store(v) }

// storeUnpublished32 is StoreUnpublished for a 32-bit word.
func storeUnpublished32(p *atomic.Uint32, v uint32) { p.Store(v) }

// loadLine32 reads *p, a 32-bit half of an index slot, atomically for the
// race detector (fill.go says why other builds use a plain load).
func loadLine32(p *uint32) uint32 { return atomic.LoadUint32(p) }

// loadSlot reads *p, an index slot, atomically for the race detector
// (fill.go says why other builds use a plain load).
func loadSlot(p *atomic.Uint64) uint64 { return p.Load() }

// storeLocked writes v to *p, an empty index slot of a bucket whose lock
// the caller holds, atomically for the race detector (fill.go says why
// other builds use a plain store).
func storeLocked(p *atomic.Uint64, v uint64) { p.Store(v) }
