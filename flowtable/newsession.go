package flowtable

import "encoding/binary"

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
		// The key by a branch on dir, not an index: Go took the
		// indexed key's address in four instructions for its two
		// loads (about 5 instructions a new session, 2,596 to 2,591,
		// bench-instr). The branch is decided alike for every lookup
		// of a single-key table such as the subscribers' (dir 0); on
		// a table whose lookups match either key at random it would
		// be mispredicted half the time, and readRef's selection by
		// mask is the better choice.
		k := &r.keys[0]
		if dir != 0 {
			k = &r.keys[1]
		}
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
func (t *Table) PrefetchTupleProbe(src, dst [4]byte, sport, dport uint16, proto uint8, p *Probe, l *Lines) {
	t.PrepareTuple(src, dst, sport, dport, proto, p)
	t.PrefetchHome(p, l)
}

// PrefetchHome notes prepared key p's home bucket in l, to ask for at l's
// Flush: PrefetchTupleProbe after its PrepareTuple. The pipeline's pass that prefetches every new
// session's outside key calls the two so, as they inline where
// PrefetchTupleProbe does not.
//
// It is a prefetch, not a load: at a million sessions the
// line is rarely in cache, and a load whose value is kept holds the
// processor's reorder window until the line arrives, so that a pass over
// a burst keeps only a few misses in flight (prefetch.go). A load here
// was a tenth of a new session's time at 1M (perf record of
// BenchmarkNewSessionAt1M, docs/engineering.md).
func (t *Table) PrefetchHome(p *Probe, l *Lines) { l.AddBucket(&t.ix.buckets[t.ix.Home(p.h)]) }

// IsTuple reports whether p is the key with the given fields
// (PrepareTuple), prepared: then an insert may take p as it is. The
// new-session path inserts the session's outside key with the pipeline's
// probe of it (PrefetchTupleProbe, or PrepareTuple and PrefetchHome) when it
// is the same key, and prepares the key from the packet's fields and the
// external endpoint otherwise, without building a Key to pack again
// (about 40 instructions a new session, make bench-instr). A stale probe
// costs the hash, never a wrong one. It inlines, where a call that also
// prepared the key did not (about 15 instructions, bench-instr).
func (p *Probe) IsTuple(src, dst [4]byte, sport, dport uint16, proto uint8) bool {
	w0 := uint64(binary.LittleEndian.Uint32(src[:])) | uint64(binary.LittleEndian.Uint32(dst[:]))<<32
	w1 := uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32
	return p.w0 == w0 && p.w1 == w1 && p.h != 0
}

// IsTo reports whether p, prepared (PrepareTuple, PrepareAddrs), has
// destination dst and destination port dport: IsTuple for a caller that
// knows the other fields to be its own, the probe having been prepared
// from them (the new-session path's plan of a packet's outside key, whose
// external endpoint may have changed since). It inlines, and compares two
// fields where IsTuple packs and compares five.
func (p *Probe) IsTo(dst [4]byte, dport uint16) bool {
	return uint32(p.w0>>32) == binary.LittleEndian.Uint32(dst[:]) && uint16(p.w1>>16) == dport && p.h != 0
}

// Is reports whether p is the prepared k: an insert that returns Exists
// tells its caller by this whether the session found holds the caller's
// own key.
func (p *Probe) Is(k *Key) bool {
	w0, w1 := k.pack()
	return p.w0 == w0 && p.w1 == w1
}
