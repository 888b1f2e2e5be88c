//go:build !linux || race

package flowtable

// free is never called: arrays live on the Go heap here (mem_other.go).
func (m mapping) free() {}
