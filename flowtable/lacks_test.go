package flowtable

import (
	"math/rand/v2"
	"sync/atomic"
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

// TestIndexPairMatchesModel holds indexPair to its definition, on
// random buckets (as TestLacksMatchesWords's, some of them locked) and
// slot words: one key (w1 0), two keys in two buckets, and two keys with
// one home. A lock taken: nothing changes. Otherwise the locks are taken
// and, for each key in turn while every key before it was stored, if
// Lacks (of the line as it is then) holds, the word goes into the first
// empty slot, if there is one; with every word stored, the generation
// is stored and the locks let go, else the locks are still held. Nothing
// else changes.
func TestIndexPairMatchesModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var bs [2]Bucket
	type line struct {
		meta  uint64
		slots [BucketSlots]uint64
	}
	fill := func(b *Bucket) {
		for s := range b.Slots {
			var v uint64
			if r.IntN(3) != 0 { // a third of the slots empty
				v = r.Uint64() | 1
			}
			b.Slots[s].Store(v)
		}
		meta := []uint64{0, MetaOverflow, 3 * MetaOverflow}[r.IntN(3)]
		if r.IntN(8) == 0 {
			meta |= MetaLock
		}
		b.Meta.Store(meta)
	}
	word := func(b *Bucket) uint64 {
		w := r.Uint64() | 1
		if r.IntN(4) == 0 { // a slot's fingerprint
			w = b.Slots[r.IntN(BucketSlots)].Load()&^(1<<32-1) | 1
		}
		return w
	}
	read := func() (l [2]line) {
		for i := range bs {
			l[i].meta = bs[i].Meta.Load()
			for s := range bs[i].Slots {
				l[i].slots[s] = bs[i].Slots[s].Load()
			}
		}
		return l
	}
	// claim is one key's step on the model's line.
	claim := func(l *line, w uint64) bool {
		for _, v := range l.slots {
			if uint32(v>>32) == uint32(w>>32) {
				return false
			}
		}
		if l.meta >= MetaOverflow {
			return false
		}
		for s, v := range l.slots {
			if v == 0 {
				l.slots[s] = w
				return true
			}
		}
		return false
	}
	var gen atomic.Uint64
	for n := 0; n < 200000; n++ {
		fill(&bs[0])
		fill(&bs[1])
		b0, b1 := &bs[0], &bs[1]
		w0, w1 := word(b0), uint64(0)
		switch r.IntN(3) {
		case 0:
			b1 = b0 // one home
			w1 = word(b1)
		case 1:
			b1 = b0 // one key
		default:
			w1 = word(b1)
		}
		gen.Store(1)
		before := read()
		want, wantGen, res := before, uint64(1), pairBusy
		m1 := &want[1]
		if b1 == b0 {
			m1 = &want[0]
		}
		if want[0].meta&MetaLock == 0 && m1.meta&MetaLock == 0 {
			want[0].meta |= MetaLock
			m1.meta |= MetaLock
			res = pairSlow
			if claim(&want[0], w0) && (w1 == 0 || claim(m1, w1)) {
				want[0].meta &^= MetaLock
				m1.meta &^= MetaLock
				res, wantGen = pairDone, 2
			}
		}
		same := b1 == b0
		if got := indexPair(b0, w0, b1, w1, &gen, 2); got != res {
			t.Fatalf("lines %+v, words %#x %#x (same %v): indexPair %d, want %d", before, w0, w1, same, got, res)
		}
		if got := read(); got != want || gen.Load() != wantGen {
			t.Fatalf("lines %+v, words %#x %#x (same %v): after indexPair %+v gen %d, want %+v gen %d",
				before, w0, w1, same, got, gen.Load(), want, wantGen)
		}
	}
}
