//go:build !race

package flowtable

import (
	"sync/atomic"
	"unsafe"
)

// StoreUnpublished writes v to *p, a word of a record that no reader
// accepts yet: one popped from a free list and not yet made live by the
// atomic store that publishes it (a Table's generation, a compact table's
// count word). It is a plain store.
//
// Why plain: on amd64 Go's atomic stores are XCHG instructions, each a
// full barrier that waits for every earlier store to reach the cache, and
// the ten a new session made to fill its records cost it about a tenth of
// its time (BenchmarkNewSession and BenchmarkNewSessionAt1M, alternating
// binaries, docs/engineering.md). They order nothing a reader needs. The
// publishing store orders every store before it: on amd64 stores are not
// reordered with stores, on arm64 Go's atomic store is a store-release,
// and the compiler keeps plain stores in program order against atomic
// ones. A reader that races with the fill, by a stale reference or a free
// list's link, reads each word whole (aligned, written whole; Go's memory
// model promises a racing read of a word one of the values written) and
// then rejects the record by the word it publishes with, as it would any
// record read before it was live.
//
// The race detector cannot follow that argument, so race builds store
// atomically (fill_race.go), as every other access to such a word does.
func StoreUnpublished(p *atomic.Uint64, v uint64) { *(*uint64)(unsafe.Pointer(p)) = v }

// storeUnpublished32 is StoreUnpublished for a 32-bit word.
func storeUnpublished32(p *atomic.Uint32, v uint32) { *(*uint32)(unsafe.Pointer(p)) = v }

// loadLine32 reads *p, a 32-bit half of an index slot, with a plain load,
// which Go folds into the instruction that uses it (Bucket.Lacks says why
// that is enough there). A racing read of an aligned word returns one of
// the values written to it (Go's memory model); the race detector cannot
// follow that, so race builds load atomically (fill_race.go).
func loadLine32(p *uint32) uint32 { return *p }

// loadSlot reads *p, an index slot, with a plain load, for a test that
// only filters before a compare-and-swap on the slot decides (Place): Go
// folds it into the test, as loadLine32's. Race builds load atomically
// (fill_race.go).
func loadSlot(p *atomic.Uint64) uint64 { return *(*uint64)(unsafe.Pointer(p)) }

// storeLocked writes v to *p, an empty index slot of a bucket whose lock
// the caller holds, with a plain store: only the holder of a bucket's
// lock fills its empty slots (Index.Place says why), so no other store
// can race with this one, and readers load the slot whole. The unlock
// after it is a release (Bucket.Unlock), so the next holder of the lock
// sees it. Race builds store atomically (fill_race.go).
func storeLocked(p *atomic.Uint64, v uint64) { *(*uint64)(unsafe.Pointer(p)) = v }
