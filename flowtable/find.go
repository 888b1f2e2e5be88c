package flowtable

// Hit names the session a Find matched: what a map from key to session
// number would return, and what a caller needs to touch the session, read
// one word of it (LoadUser, Get) or change it (the gated writes, Delete).
type Hit struct {
	// ID is the record number, as in Entry.
	ID uint32
	// Dir is the index of the key that matched (0 or 1).
	Dir uint8
	// Gen is the generation the match was verified at.
	Gen uint64
}

// Find reports whether a live session holds k and, if so, which, without
// copying the session: it is Lookup for callers that need no more than the
// session's number (an existence check, a Touch, a gated write). The hit
// is verified as Lookup's is: the session's whole key dir equals k, read
// between two loads of one even generation. It never blocks and never
// writes.
//
// It reads the home bucket's line and three words of the record's (the
// generation and the matched key), where Lookup copies the whole record:
// fewer instructions between one lookup's misses and the next's, so that
// a loop of independent finds keeps more of them in flight.
func (t *Table) Find(k *Key, x *Hit) bool {
	w0, w1 := k.pack()
	return t.findHashed(w0, w1, t.seed.hash(w0, w1), x)
}

// FindProbe is Find for a prepared key; after a prefetch it first tries
// the slot the prefetch remembered, as LookupProbe does.
func (t *Table) FindProbe(p *Probe, x *Hit) bool {
	if t.verifyRef(p.ref, p.w0, p.w1, x) {
		return true
	}
	return t.findHashed(p.w0, p.w1, p.h, x)
}

// findHashed is lookupHashed with verifyRef for readRef: branch-free in
// the home bucket, the slot-by-slot walk for everything else.
func (t *Table) findHashed(w0, w1, h uint64, x *Hit) bool {
	bk := &t.ix.buckets[t.ix.Home(h)]
	ref := bk.pick(fpOf(h))
	if t.verifyRef(ref, w0, w1, x) {
		return true
	}
	if ref == 0 && bk.Meta.Load() < MetaOverflow {
		return false
	}
	return t.walk(h, func(ref uint32) bool { return t.verifyRef(ref, w0, w1, x) })
}

// verifyRef is read without the copy: it reports whether the record of
// slot reference ref is live and its key dir (from the reference) equals
// (w0, w1), and fills x. The key is read at an offset chosen by dir, not
// by a branch on it. The seqlock argument is read's: keys change only
// while the generation is odd, so two equal even loads around the key's
// make it the key of that generation's session.
func (t *Table) verifyRef(ref uint32, w0, w1 uint64, x *Hit) bool {
	r, g, id, dir, ok := t.openRef(ref)
	if !ok {
		return false
	}
	k := &r.keys[dir]
	a0, a1 := k[0].Load(), k[1].Load()
	if g&1 != 0 || a0 != w0 || a1 != w1 || r.gen.Load()&genMask != g {
		return false
	}
	x.ID, x.Dir, x.Gen = id, uint8(dir), g
	return true
}
