package flowtable

// PrefetchTuple touches the home bucket of the key with the given fields
// (see PrepareTuple) and returns a value derived from it (its meta word,
// loaded: the value keeps the load alive, and tests read it),
// for a key about to be inserted: an insert locks and searches that
// bucket, so a burst that prefetches the buckets of all its inserts first
// waits for their misses together. Unlike Prefetch it does not scan the
// bucket for the key, which a key about to be inserted is not expected to
// be in.
func (t *Table) PrefetchTuple(src, dst [4]byte, sport, dport uint16, proto uint8) uint64 {
	var p Probe
	t.PrepareTuple(src, dst, sport, dport, proto, &p)
	return t.ix.buckets[t.ix.Home(p.h)].Meta.Load()
}
