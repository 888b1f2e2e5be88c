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
func (t *Table) LookupUser(p *Probe, e *Entry) bool {
	if t.readUser(p.ref, p.w0, p.w1, e) {
		return true
	}
	return t.lookupHashed(p.w0, p.w1, p.h, e)
}

// readUser is readRef without the copy of the keys, tick and state: the
// same seqlock read (the generation before and after), the same key
// check.
func (t *Table) readUser(ref uint32, w0, w1 uint64, e *Entry) bool {
	r, g, id, dir, ok := t.openRef(ref)
	if !ok || g&1 != 0 {
		return false
	}
	a0, a1 := r.keys[0][0].Load(), r.keys[0][1].Load()
	b0, b1 := r.keys[1][0].Load(), r.keys[1][1].Load()
	u0, u1 := r.user[0].Load(), r.user[1].Load()
	if r.gen.Load()&genMask != g {
		return false
	}
	m := -uint64(dir)
	if a0^(a0^b0)&m != w0 || a1^(a1^b1)&m != w1 {
		return false
	}
	e.ID, e.Dir, e.Gen = id, uint8(dir), g
	e.User[0], e.User[1] = u0, u1
	return true
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
