package flowtable

// Entry points for the NAT engine's new-session pipeline
// (dataplane/nat/newsession.go), which looks up and prefetches for a whole
// burst before it inserts: lookups that copy only what the pipeline uses,
// and prefetches that keep the hashed key for the insert.

// LookupUser is LookupProbe for a caller that needs of the entry only its
// number, direction, generation and user words (the engine's subscriber
// records): from the record a prefetch found it copies those alone, not
// the two keys, tick and state (a whole Entry's copy cost about 60
// instructions a new session, make bench-instr). The matched key is p's
// own. e's other fields are left as they were, or, when the record is
// found by the walk instead, filled as LookupProbe fills them.
//
// The record is verified as verifyRef verifies it, in one pass with the
// copy: its key dir (from the reference) and its user words are read
// between two loads of one even generation, so they are that
// generation's, as readRef's are (through verifyRef and a third load of
// the generation it cost about 40 instructions more, bench-instr).
func (t *Table) LookupUser(p *Probe, e *Entry) bool {
	if r, g, id, dir, ok := t.openRef(p.ref); ok && g&1 == 0 {
		k := &r.keys[dir]
		a0, a1 := k[0].Load(), k[1].Load()
		u0, u1 := r.user[0].Load(), r.user[1].Load()
		if a0 == p.w0 && a1 == p.w1 && r.gen.Load()&genMask == g {
			e.ID, e.Dir, e.Gen = id, uint8(dir), g
			e.User[0], e.User[1] = u0, u1
			return true
		}
	}
	return t.lookupHashed(p.w0, p.w1, p.h, e)
}

// PrefetchTupleProbe is PrefetchTuple that keeps the prepared key in p
// (PrepareTuple), so that the insert it prefetches for need not hash the
// key again (Prepared).
func (t *Table) PrefetchTupleProbe(src, dst [4]byte, sport, dport uint16, proto uint8, p *Probe) uint64 {
	t.PrepareTuple(src, dst, sport, dport, proto, p)
	return t.ix.buckets[t.ix.Home(p.h)].Meta.Load()
}

// Prepared prepares k into p, as Prepare does, taking the hash from hint
// when hint holds the same key (PrefetchTupleProbe, a moment ago): a
// stale hint costs the hash, never a wrong one.
func (t *Table) Prepared(k *Key, hint, p *Probe) {
	p.w0, p.w1 = k.pack()
	p.ref = 0
	if hint != nil && hint.w0 == p.w0 && hint.w1 == p.w1 && hint.h != 0 {
		p.h = hint.h
		return
	}
	p.h = t.seed.hash(p.w0, p.w1)
}
