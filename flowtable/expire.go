package flowtable

// Expire visits up to budget records, continuing where the previous call
// stopped and wrapping around the table, and deletes every live session
// whose idle time (now - Seen, modulo 2^32; a Seen up to 2^31 ticks after
// now is no idle time at all) has reached timeout(e). For each
// deleted session it calls expired with the session's last copy, so the
// caller can return its external port and update its counters.
//
// Only one goroutine at a time may call Expire. Workers keep looking up and
// inserting while it runs: it takes no lock and holds no record for longer
// than one compare-and-swap.
//
// A packet that touches a session in the instant between the idle check and
// the delete is still translated with the old mapping, and the session is
// deleted anyway; that packet arrived when the session had been idle for its
// full timeout, so either outcome honours the timeout.
func (t *Table) Expire(now uint32, budget int, timeout func(e *Entry) uint32, expired func(e *Entry)) (visited, removed int) {
	n := uint32(len(t.recs))
	if budget > len(t.recs) {
		budget = len(t.recs)
	}
	e := &t.expireScratch
	for ; visited < budget; visited++ {
		id := t.cursor
		t.cursor++
		if t.cursor == n {
			t.cursor = 0
		}
		if !t.Get(id, e) {
			continue
		}
		// A Seen after now belongs to a session created or refreshed
		// after the caller read its clock (workers keep going during the
		// walk); unsigned, now-Seen would make it 49 days idle.
		if idle := now - e.Seen; int32(idle) < 0 || idle < timeout(e) {
			continue
		}
		if t.Delete(id, e.Gen) {
			removed++
			if expired != nil {
				expired(e)
			}
		}
	}
	return visited, removed
}

// Range calls fn with a consistent copy of each live session whose ID is at
// least start, in ID order, until fn returns false or the table ends. It
// returns the ID to resume from, or Cap() when the walk reached the end.
//
// Range is for the management plane: it takes no lock and writes nothing
// (it allocates one Entry per call, never per session),
// so workers never wait for it. Each entry is consistent on its own; the
// walk as a whole is not a point-in-time snapshot, so sessions created or
// deleted during the walk may or may not be seen, but a session that lives
// through the whole walk is seen exactly once.
func (t *Table) Range(start uint32, fn func(e *Entry) bool) uint32 {
	var e Entry
	for id := start; int(id) < len(t.recs); id++ {
		if !t.Get(id, &e) {
			continue
		}
		if !fn(&e) {
			return id + 1
		}
	}
	return uint32(len(t.recs))
}
