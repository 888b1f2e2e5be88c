package gen

import _ "unsafe" // for go:linkname

// nanotime is the runtime's CLOCK_MONOTONIC reading through the vDSO: the
// same clock as clock_gettime(CLOCK_MONOTONIC), without a syscall (about
// 20 ns, against several times that for unix.ClockGettime, which is a raw
// syscall). The runtime keeps this linkname working for the many packages
// that use it (see runtime/time_nofake.go).
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// Nanotime returns CLOCK_MONOTONIC in nanoseconds. Workers read it once per
// batch. It is safe for use by any goroutine.
func Nanotime() int64 { return nanotime() }
