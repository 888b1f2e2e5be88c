//go:build amd64 && !race

package flowtable

import (
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// haveCAS16 is whether casUser1 may be used: CMPXCHG16B is in every
// x86-64 processor since the first years, but not in Go's amd64 baseline
// (v1), so it is checked. Race builds go without it (casp_other.go): the
// race detector cannot see into the assembly.
var haveCAS16 = cpu.X86.HasCX16

// casUser1 is CompareAndSwapUser of user word 1 (at u) of a record whose
// generation word follows it, for a generation gen already checked (even,
// within genMask): it swaps the pair from (old, gen) to (new, gen) in one
// atomic step (LOCK CMPXCHG16B on the 16-byte-aligned pair,
// casp_amd64.s). The first try assumes no pin in flight, so it loads
// nothing first. A failed swap reads what the pair held in the same
// atomic step: another generation (the session is gone or was recycled:
// not live), another word (live, not swapped), or only another pin count,
// and then it tries again with that. TestCompareAndSwapUserModel checks
// it against the pinned swap.
//
//go:noescape
func casUser1(u *atomic.Uint64, old, gen, new uint64) (swapped, live bool)
