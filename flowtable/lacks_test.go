package flowtable

import (
	"math/rand/v2"
	"testing"
)

// lacksWords is Lacks from the slots' whole words (lacks_other.go's
// test): the reference for the version that compares the fingerprints
// where they lie (lacks_le.go).
func lacksWords(b *Bucket, fp uint32) bool {
	for s := range b.Slots {
		if uint32(b.Slots[s].Load()>>32) == fp {
			return false
		}
	}
	return b.Meta.Load() < MetaOverflow
}

// TestLacksMatchesWords holds Lacks to lacksWords on random buckets:
// fingerprints in any slot, a fingerprint equal to a slot's low half only
// (which must not match), empty slots against fingerprint 0, and meta
// words with and without the lock bit and overflow counts.
func TestLacksMatchesWords(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var b Bucket
	for n := 0; n < 200000; n++ {
		for s := range b.Slots {
			var v uint64
			if r.IntN(4) != 0 { // a quarter of the slots empty
				v = r.Uint64()
			}
			b.Slots[s].Store(v)
		}
		b.Meta.Store([]uint64{0, MetaLock, MetaOverflow, MetaOverflow | MetaLock, 5 * MetaOverflow}[r.IntN(5)])
		var fp uint32
		switch s := r.IntN(len(b.Slots)); r.IntN(4) {
		case 0:
			fp = uint32(b.Slots[s].Load() >> 32) // a slot's fingerprint
		case 1:
			fp = uint32(b.Slots[s].Load()) // a slot's low half only
		case 2:
			fp = 0
		default:
			fp = r.Uint32()
		}
		if got, want := b.Lacks(fp), lacksWords(&b, fp); got != want {
			t.Fatalf("bucket %+v, fingerprint %#x: Lacks %v, want %v", &b, fp, got, want)
		}
	}
}
