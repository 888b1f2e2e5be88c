package nat

import "testing"

// TestEIMWords: eimWords is sessionWords for a claim that holds its
// mapping and its subscriber and owns no port, with and without a
// permission.
func TestEIMWords(t *testing.T) {
	for _, ids := range [][3]uint32{{0, 0, 0}, {1, 2, 3}, {1<<26 - 1, 1<<26 - 2, 1<<31 - 1}, {7, 1<<32 - 2, 9}} {
		for _, perm := range []bool{false, true} {
			for _, worker := range []uint8{0, 3, 255} {
				var c claim
				c.begin()
				c.binding.ID, c.sub.ID, c.perm.ID = ids[0], ids[1], ids[2]
				c.hasBinding, c.hasSub, c.hasPerm = true, true, perm
				if got, want := eimWords(&c, worker), sessionWords(&c, worker); got != want {
					t.Fatalf("ids %v perm %v worker %d: eimWords %#x, sessionWords %#x", ids, perm, worker, got, want)
				}
			}
		}
	}
}
