//go:build amd64 || arm64

package flowtable

import "unsafe"

// Lacks reports whether no slot of b holds fingerprint fp in its high
// half and no key was stored beyond b (its overflow count is zero; the
// lock bit does not count): then no key of that fingerprint whose home is
// b was in the index when the line was read, and a walk from b would have
// answered no after this one line. It is the miss of a key about to be
// inserted, read under its home's lock (exact then: only an insert of
// home b places such a key), and of a new flow's first packet. An empty
// slot "matches" fingerprint 0, which leaves such keys to the walk.
//
// It takes the bucket, not a table and a number, and is kept out of line:
// with the line's address in a register of its own each slot's load takes
// its offset in the instruction (4 instructions a slot), where inlined
// into a caller that indexes the bucket array Go recomputes the address
// for every atomic load (7 to 8 a slot; about 20 instructions a call,
// make bench-instr's new-session profile).
//
// On these little-endian machines a slot's fingerprint, its high half,
// is the 32-bit word at byte 4 of the slot, and it is compared where it
// lies: a load and a compare a slot, where the slot's word needs a load,
// a shift and a compare (lacks_other.go, whose result this is,
// TestLacksMatchesWords): about 7 instructions a call, five calls a new
// session (make bench-instr). The slot's word is aligned to 8 bytes, so
// its half is one aligned 32-bit load, single-copy atomic on these
// machines.
//
// The halves are read with plain loads (loadLine32, fill.go), which Go
// folds into the compare on amd64 (CMPL off(AX), BX): two instructions a
// slot instead of three, 26 to 19 a call, five calls a new session, 2,971
// to 2,930 (bench-instr). On arm64 a plain load carries its offset where
// LDARW needs the address computed first, and is not a load-acquire:
// three instructions a slot instead of four. Nothing here needs the
// atomic loads' order: a key that is in a slot, or counted in the
// overflow, for the whole call is seen whatever order the eight loads
// complete in (each returns a value the word held during the call), and
// a key placed or removed during the call may be seen or not, atomic or
// not (under its home's lock none is placed). The meta word is still an
// atomic load, and the race build reads the halves atomically too
// (fill_race.go).
//
//go:noinline
func (b *Bucket) Lacks(fp uint32) bool {
	// The line as 32-bit words: the meta word is words 0 and 1, slot s
	// words 2+2s (low half) and 3+2s (high half, the fingerprint).
	h := (*[2 * (1 + BucketSlots)]uint32)(unsafe.Pointer(b))
	if loadLine32(&h[3]) == fp {
		return false
	}
	if loadLine32(&h[5]) == fp {
		return false
	}
	if loadLine32(&h[7]) == fp {
		return false
	}
	if loadLine32(&h[9]) == fp {
		return false
	}
	if loadLine32(&h[11]) == fp {
		return false
	}
	if loadLine32(&h[13]) == fp {
		return false
	}
	if loadLine32(&h[15]) == fp {
		return false
	}
	return b.Meta.Load() < MetaOverflow
}

// fpIn returns the high half of slot s of b, its fingerprint in a
// Table's slots, loaded where it lies as Lacks loads it (a plain load,
// folded into the compare that uses it): indexPair's checks, written
// with it for every machine (lacks_other.go's loads the slot's word).
func (b *Bucket) fpIn(s int) uint32 {
	return loadLine32(&(*[2 * (1 + BucketSlots)]uint32)(unsafe.Pointer(b))[3+2*s])
}
