//go:build !amd64 || race

package flowtable

import "sync/atomic"

// haveCAS16 is false where casUser1 has no assembly (locked_amd64.go), and
// in race builds: CompareAndSwapUser pins the record instead.
const haveCAS16 = false

func casUser1(u *atomic.Uint64, old, gen, new uint64) (swapped, live bool) {
	panic("flowtable: casUser1 without CMPXCHG16B")
}

// unlockMeta clears the lock bit of a bucket's meta word m, held by the
// caller, by subtracting it: the overflow count in the rest of the word
// changes under other inserters' adds meanwhile (locked_amd64.go stores
// the lock's byte instead).
func unlockMeta(m *atomic.Uint64) { m.Add(^uint64(MetaLock - 1)) }
