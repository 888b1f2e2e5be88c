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

// TestClaimMatchesLacks holds Claim to Lacks and a store in the first
// empty slot: on random buckets (as TestLacksMatchesWords's), Claim
// stores only when Lacks is true, then in the first empty slot and
// nowhere else, and says which of the three things happened.
func TestClaimMatchesLacks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var b Bucket
	for n := 0; n < 200000; n++ {
		for s := range b.Slots {
			var v uint64
			if r.IntN(3) == 0 { // a third of the slots empty
				v = r.Uint64() | 1
			}
			b.Slots[s].Store(v)
		}
		b.Meta.Store([]uint64{0, MetaLock, MetaOverflow, MetaOverflow | MetaLock}[r.IntN(4)])
		w := r.Uint64() | 1
		if s := r.IntN(len(b.Slots)); r.IntN(4) == 0 {
			w = b.Slots[s].Load()&^(1<<32-1) | 1 // a slot's fingerprint
		}
		var before [BucketSlots]uint64
		empty := -1
		for s := range b.Slots {
			before[s] = b.Slots[s].Load()
			if before[s] == 0 && empty < 0 {
				empty = s
			}
		}
		want := ClaimUnknown
		if b.Lacks(uint32(w >> 32)) {
			want = ClaimFull
			if empty >= 0 {
				want = Claimed
			}
		}
		if got := b.Claim(w); got != want {
			t.Fatalf("bucket %v meta %#x, word %#x: Claim %d, want %d", before, b.Meta.Load(), w, got, want)
		}
		for s := range b.Slots {
			v := before[s]
			if want == Claimed && s == empty {
				v = w
			}
			if got := b.Slots[s].Load(); got != v {
				t.Fatalf("bucket %v, word %#x: slot %d holds %#x after Claim, want %#x", before, w, s, got, v)
			}
		}
	}
}
