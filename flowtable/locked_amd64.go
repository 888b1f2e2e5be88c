//go:build amd64 && !race

package flowtable

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// Two locked instructions avoided on amd64: the pin around a swap of user
// word 1 (casUser1) and the atomic add of a bucket's unlock (unlockMeta).
// Each is about 2% of a new session's time at a million sessions (perf;
// docs/engineering.md). Race builds and other machines keep the locked
// forms (locked_other.go).

// haveCAS16 is whether casUser1 may be used: CMPXCHG16B is in every
// x86-64 processor since the first years, but not in Go's amd64 baseline
// (v1), so it is checked. Race builds go without it (locked_other.go): the
// race detector cannot see into the assembly.
var haveCAS16 = cpu.X86.HasCX16

// casUser1 is CompareAndSwapUser of user word 1 (at u) of a record whose
// generation word follows it, for a generation gen already checked (even,
// within genMask): it swaps the pair from (old, gen) to (new, gen) in one
// atomic step (LOCK CMPXCHG16B on the 16-byte-aligned pair,
// locked_amd64.s). The first try assumes no pin in flight, so it loads
// nothing first. A failed swap reads what the pair held in the same
// atomic step: another generation (the session is gone or was recycled:
// not live), another word (live, not swapped), or only another pin count,
// and then it tries again with that. TestCompareAndSwapUserModel checks
// it against the pinned swap.
//
//go:noescape
func casUser1(u *atomic.Uint64, old, gen, new uint64) (swapped, live bool)

// unlockMeta clears the lock bit of a bucket's meta word m, held by the
// caller, with a plain store of the word's low byte, which holds the lock
// bit and nothing else (MetaOverflow). The overflow count, in the bytes
// above, changes under other inserters' locked adds (Place, Unwind) while
// the lock is held; a store of one byte and a locked add of the whole
// word each apply whole, one before the other, as the Linux kernel's
// queued spinlock releases its locked byte under atomic updates of the
// rest of its word. Unlock is a release: amd64 does not reorder stores
// with earlier stores or loads, and Go keeps a plain store after the
// atomics before it in program order, so whatever the holder wrote is
// visible before the lock is seen free. What it saves is the locked add's
// wait for the store buffer to drain: four unlocks a new session (the
// session's two home buckets, the binding's and the port's).
func unlockMeta(m *atomic.Uint64) { *(*uint8)(unsafe.Pointer(m)) = 0 }
