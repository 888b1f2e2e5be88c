//go:build !amd64 || race

package flowtable

import "sync/atomic"

// haveCAS16 is false where casUser1 has no assembly (casp_amd64.go), and
// in race builds: CompareAndSwapUser pins the record instead.
const haveCAS16 = false

func casUser1(u *atomic.Uint64, old, gen, new uint64) (swapped, live bool) {
	panic("flowtable: casUser1 without CMPXCHG16B")
}
