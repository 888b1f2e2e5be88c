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

// recordLine is the address of record next-1 of t, for prefetchAt: the
// record of a free list's new top (pop), which the next insert fills.
// It is an integer, which keeps nothing alive (as Lines' addresses are:
// the table keeps its records), and it takes no test: next 0, an empty
// list, gives the line before the records, and any address is as
// harmless to ask for, since a prefetch never faults.
func (t *Table) recordLine(next uint32) uintptr {
	return uintptr(unsafe.Pointer(unsafe.SliceData(t.recs))) + uintptr(int(next)-1)*unsafe.Sizeof(record{})
}

// PrefetchLine asks for the cache line that holds *p, at once: for a line
// the caller needs one of (the record a free list's pop will take next),
// where Lines would batch many.
func PrefetchLine[T any](p *T) { prefetch(unsafe.Pointer(p)) }

// Lines collects the lines one pass of a pipeline asks for, and asks for
// them in one call (Flush). The call is the point: Go calls assembly
// through the ABI0 convention, which costs a call a line some ten
// instructions of moves and spills around it (make bench-instr), and a
// plain load in its place stalls the pass (PrefetchHome). Collected, a
// line costs a store of its address and three instructions of Flush's
// loop. It belongs to one goroutine.
//
// The addresses are kept as integers, which keep nothing alive: they are
// elements of tables their owners keep, and a prefetch of an address
// that has since gone is harmless, as it never faults.
type Lines struct {
	n int
	a [linesMax]uintptr
}

// linesMax is the most lines a Lines holds: four a packet of a burst of
// 64. Adds beyond it overwrite the first lines (still correct, only
// slower), so that an Add is a masked store, with no test.
const linesMax = 256

// LinesAdd notes the line of *p, to ask for at the next Flush.
func LinesAdd[T any](l *Lines, p *T) {
	l.a[l.n&(linesMax-1)] = uintptr(unsafe.Pointer(p))
	l.n++
}

// Len returns the number of lines noted since the last Flush.
func (l *Lines) Len() int { return l.n }

// AddBucket notes bucket b's line (LinesAdd).
func (l *Lines) AddBucket(b *Bucket) { LinesAdd(l, b) }

// Flush asks for every line noted since the last Flush (the last
// linesMax of them).
func (l *Lines) Flush() {
	if l.n > 0 {
		prefetchLines(&l.a[0], min(l.n, linesMax))
		l.n = 0
	}
}

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
