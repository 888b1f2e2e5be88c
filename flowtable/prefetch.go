package flowtable

import "unsafe"

// Software prefetch: the one place the flow table asks for a cache line
// ahead of its use, and the only unsafe code on its read path.
//
// A burst's lookups overlap their cache misses by touching every line
// before reading any (PrefetchBurst). Touched with a plain load whose
// value is kept, each line holds a slot of the processor's reorder window
// until it arrives, and nothing behind the oldest waiting load retires:
// with some thirty instructions between one probe's record and the
// next's, a 256-entry window keeps only about eight of a burst's 64
// record misses in flight at a time. A prefetch instruction retires at
// once, line or no line, so a pass over the burst issues all of its
// misses, as many as the core's miss buffers take, and waits for none.
// Go has no prefetch intrinsic outside its runtime, hence the three
// instructions of assembly (prefetch_amd64.s, prefetch_arm64.s); other
// architectures get no prefetch (prefetch_other.go) and the lookups that
// follow take their misses one after another, correct but slower.
//
// BenchmarkLookup/hit/1M/flowtable/burst64 measures the difference
// against the plain loads of before (docs/engineering.md).

// prefetchRecord asks for record r's line.
func prefetchRecord(r *record) { prefetch(unsafe.Pointer(r)) }

// Prefetch asks for bucket b's line, for a table built on an Index
// (dataplane/nat's compact tables), whose pipeline asks for a line in one
// pass and reads it in the next.
func (b *Bucket) Prefetch() { prefetch(unsafe.Pointer(b)) }

// PrefetchLine asks for the cache line that holds *p: a record of a table
// built on an Index, found in the pass before the one that reads it.
func PrefetchLine[T any](p *T) { prefetch(unsafe.Pointer(p)) }

// prefetchSlotsGo is PrefetchBurst's second pass in Go: for each probe,
// the first slot of its home bucket whose fingerprint is the probe's, its
// reference stored in the probe (0 if none), and a prefetch of the record
// it names. It is the pass where the assembly is missing, and the
// assembly's reference (TestPrefetchSlotsMatchesGo).
func (t *Table) prefetchSlotsGo(ps []Probe) {
	for i := range ps {
		p := &ps[i]
		p.ref = t.ix.buckets[t.ix.Home(p.h)].find(fpOf(p.h))
		if id, _, ok := t.refRecord(p.ref); ok {
			prefetchRecord(&t.recs[id])
		}
	}
}
