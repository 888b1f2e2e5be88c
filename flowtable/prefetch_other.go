//go:build !amd64 && !arm64

package flowtable

import "unsafe"

// prefetchAsm is whether this architecture has the assembly.
const prefetchAsm = false

// prefetch does nothing where the table has no prefetch instruction
// (prefetch.go): lookups are as correct, and their misses do not overlap.
func prefetch(unsafe.Pointer) {}

// prefetchAt does nothing, as prefetch.
func prefetchAt(uintptr) {}

// prefetchLines does nothing, as prefetch.
func prefetchLines(*uintptr, int) {}

// prefetchBurst is PrefetchBurst without the assembly: no first pass
// (there is nothing to ask for), and the second in Go, which still finds
// each probe's slot for LookupProbe.
func (t *Table) prefetchBurst(ps []Probe) { t.prefetchSlotsGo(ps) }
