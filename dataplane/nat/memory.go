package nat

// TableMemory is what the engine's preallocated tables cost, in bytes per
// slot of the limit each is sized from: records and index, from the
// tables' layout (docs/operations.md, "Memory", quotes these figures;
// bench/memslot measures their sum as resident memory).
type TableMemory struct {
	// Per slot of limits.max_sessions:
	Sessions float64 // flowtable: 64-byte record, two keys in the index
	Bindings float64 // bindTable: 24-byte record, its inside key in the index
	// Permissions is the permissions table (countTable: 24-byte record,
	// one key in the index), 0 until some protocol's filtering is
	// address-dependent (counttables.go).
	Permissions float64
	Ports       float64 // portTable: PortsPerSessionSlot words in the index
	// PortsPerSessionSlot is the port table's capacity per session slot:
	// 1.5 (ports in hold-down on top of the ports owned; newPortTable),
	// and 1024 more for the whole table.
	PortsPerSessionSlot float64
	// Rules is the rule session table (countTable), 0 until
	// limits.inbound_sessions_per_rule is set; sized by the sessions from
	// outside (ruleTableSize), it is given here per session slot.
	Rules float64
	// Per slot of limits.max_subscribers:
	Subscribers float64 // flowtable: 64-byte record, one key in the index
}

// PerSessionSlot is the memory of the tables sized from
// limits.max_sessions, and of the rule session table, per session slot.
func (m TableMemory) PerSessionSlot() float64 {
	return m.Sessions + m.Bindings + m.Permissions + m.Ports + m.Rules
}

// TableMemory returns the memory per slot of the engine's tables. Any
// goroutine may call it.
func (e *Engine) TableMemory() TableMemory {
	return TableMemory{
		Sessions:            e.sessions.BytesPerSession(),
		Bindings:            e.bindings.BytesPerEntry(),
		Permissions:         countBytes(e.perms.Load(), e.sessions.Cap()),
		Rules:               countBytes(e.rules.Load(), e.sessions.Cap()),
		Ports:               e.portTab.BytesPerPort() * portsPerSessionSlot,
		PortsPerSessionSlot: portsPerSessionSlot,
		Subscribers:         e.subs.BytesPerSession(),
	}
}

// countBytes is count table t's memory per slot of a table of slots
// entries (0 for no table).
func countBytes(t *countTable, slots int) float64 {
	if t == nil {
		return 0
	}
	return t.BytesPerEntry() * float64(t.Cap()) / float64(slots)
}
