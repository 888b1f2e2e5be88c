//go:build linux && !race

package flowtable

import "golang.org/x/sys/unix"

// free unmaps an array of AllocArray.
func (m mapping) free() { _ = unix.Munmap(m) }
