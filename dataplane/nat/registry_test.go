package nat

import "testing"

// TestAddrAcquire: acquire takes references only with its flag, not on a
// retired address, and never past addrCount (its 32-bit compare).
func TestAddrAcquire(t *testing.T) {
	var a addrState
	if a.acquire(addrInPool, 1) {
		t.Fatal("acquired without the flag")
	}
	a.refs.Store(addrInRules)
	if a.acquire(addrInPool, 1) || !a.acquire(addrInRules, 2) || a.refs.Load()&addrCount != 2 {
		t.Fatalf("flags: refs %#x", a.refs.Load())
	}
	a.refs.Store(addrInPool | addrRetired)
	if a.acquire(addrInPool, 1) {
		t.Fatal("acquired a retired address")
	}
	for _, n := range []uint64{1, 2} {
		for _, c := range []uint64{0, 1, addrCount - 2, addrCount - 1, addrCount} {
			a.refs.Store(addrInPool | c)
			want := c+n <= addrCount
			if got := a.acquire(addrInPool, n); got != want {
				t.Fatalf("count %#x + %d: acquired %v, want %v", c, n, got, want)
			}
			if want && a.refs.Load() != addrInPool|(c+n) {
				t.Fatalf("count %#x + %d: refs %#x", c, n, a.refs.Load())
			}
		}
	}
}
