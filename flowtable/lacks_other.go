//go:build !(amd64 || arm64)

package flowtable

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
// This is the portable version; lacks_le.go's compares each fingerprint
// where it lies.
//
//go:noinline
func (b *Bucket) Lacks(fp uint32) bool {
	// One test a slot: an || chain compiles to flag shuffling between
	// its terms.
	f := uint64(fp)
	if b.Slots[0].Load()>>32 == f {
		return false
	}
	if b.Slots[1].Load()>>32 == f {
		return false
	}
	if b.Slots[2].Load()>>32 == f {
		return false
	}
	if b.Slots[3].Load()>>32 == f {
		return false
	}
	if b.Slots[4].Load()>>32 == f {
		return false
	}
	if b.Slots[5].Load()>>32 == f {
		return false
	}
	if b.Slots[6].Load()>>32 == f {
		return false
	}
	return b.Meta.Load() < MetaOverflow
}

// fpIn returns the high half of slot s of b, its fingerprint in a
// Table's slots (lacks_le.go's loads the half alone).
func (b *Bucket) fpIn(s int) uint32 { return uint32(b.Slots[s].Load() >> 32) }
