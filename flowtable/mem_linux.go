//go:build linux && !race

package flowtable

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Large tables live outside the Go heap, in anonymous memory the kernel is
// asked to back with transparent huge pages. A 10M-session table spans a
// gigabyte; with 4 KiB pages nearly every lookup of a random session also
// misses the TLB, and with 2 MiB pages almost none does — the same reason
// DPDK runs on hugepages. The arrays hold no Go pointers, so the garbage
// collector has nothing to find there. Memory is returned by a finalizer
// on the Table that owns it.
//
// Under the race detector the tables stay on the Go heap (mem_other.go):
// the detector only watches heap memory.

// bigAlloc is the size from which arrays are mapped rather than allocated.
const bigAlloc = 4 << 20

type mapping []byte

// allocArray returns a zeroed array of n elements of T, and the mapping to
// release (nil for heap memory).
func allocArray[T any](n int) ([]T, mapping) {
	var zero T
	size := int(unsafe.Sizeof(zero)) * n
	if size < bigAlloc {
		return make([]T, n), nil
	}
	m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]T, n), nil
	}
	// Best effort: without THP (never mode) this fails and 4 KiB pages
	// serve.
	_ = unix.Madvise(m, unix.MADV_HUGEPAGE)
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(m))), n), m
}

func (t *Table) releaseLater(ms ...mapping) {
	var keep []mapping
	for _, m := range ms {
		if m != nil {
			keep = append(keep, m)
		}
	}
	if len(keep) == 0 {
		return
	}
	runtime.SetFinalizer(t, func(*Table) {
		for _, m := range keep {
			_ = unix.Munmap(m)
		}
	})
}
