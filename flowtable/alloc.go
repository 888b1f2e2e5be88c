package flowtable

import "runtime"

// AllocArray returns a zeroed array of n elements of T for a table that is
// not a Table (the NAT engine's compact tables), allocated as a Table's
// arrays are (mem_linux.go): from 4 MiB up outside the Go heap, on
// transparent huge pages where the kernel allows. Kept off the heap, a
// big table neither counts toward the collector's pacing (a gigabyte of
// live table would otherwise let a gigabyte of garbage pile up before a
// collection) nor gets scanned. T must hold no Go pointers. The memory is
// released once owner, the object that holds the array, is unreachable.
func AllocArray[T, O any](owner *O, n int) []T {
	a, m := allocArray[T](n)
	if m != nil {
		runtime.AddCleanup(owner, mapping.free, m)
	}
	return a
}
