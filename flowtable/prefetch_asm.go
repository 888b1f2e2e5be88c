//go:build amd64 || arm64

package flowtable

import "unsafe"

// prefetchAsm is whether this architecture has the assembly.
const prefetchAsm = true

// prefetch hints that the cache line at p will be read soon
// (prefetch_amd64.s, prefetch_arm64.s). It never faults and has no effect
// a program can observe, other than time.
//
//go:noescape
func prefetch(p unsafe.Pointer)

// prefetchAt is prefetch of an address held as an integer
// (recordLine).
//
//go:noescape
func prefetchAt(a uintptr)

// prefetchHomes asks for the home bucket of each probe's hash in the
// index whose nb buckets start at b (PrefetchBurst's first pass; the
// assembly says why it is not Go).
//
//go:noescape
func prefetchHomes(b *Bucket, nb uint64, ps []Probe)

// prefetchSlots finds each probe's slot in its home bucket and asks for
// the record it names (PrefetchBurst's second pass; prefetchSlotsGo is
// the same in Go).
//
//go:noescape
func prefetchSlots(b *Bucket, nb uint64, recs *record, nrec uint64, ps []Probe)

// prefetchLines asks for the line of each of the n addresses at a
// (Lines.Flush).
//
//go:noescape
func prefetchLines(a *uintptr, n int)

// prefetchBurst is PrefetchBurst's two passes, in assembly.
func (t *Table) prefetchBurst(ps []Probe) {
	b := unsafe.SliceData(t.ix.buckets)
	prefetchHomes(b, t.ix.nb, ps)
	prefetchSlots(b, t.ix.nb, unsafe.SliceData(t.recs), uint64(len(t.recs)), ps)
}
