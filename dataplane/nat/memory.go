package nat

// TableMemory is what the engine's preallocated tables cost, in bytes per
// slot of the limit each is sized from: records and index, from the
// tables' layout (docs/operations.md, "Memory", quotes these figures;
// bench/memslot measures their sum as resident memory).
type TableMemory struct {
	// Per slot of limits.max_sessions:
	Sessions    float64 // flowtable: 64-byte record, two keys in the index
	Bindings    float64 // bindTable: 32-byte record, two keys in the index
	Permissions float64 // countTable: 24-byte record, one key in the index
	Ports       float64 // portTable: PortsPerSessionSlot words in the index
	// PortsPerSessionSlot is the port table's capacity per session slot:
	// 1.5 (ports in hold-down on top of the ports owned; newPortTable),
	// and 1024 more for the whole table.
	PortsPerSessionSlot float64
	// Per slot of limits.max_subscribers:
	Subscribers float64 // flowtable: 64-byte record, one key in the index
}

// PerSessionSlot is the memory of the tables sized from
// limits.max_sessions, per session slot.
func (m TableMemory) PerSessionSlot() float64 {
	return m.Sessions + m.Bindings + m.Permissions + m.Ports
}

// TableMemory returns the memory per slot of the engine's tables. Any
// goroutine may call it.
func (e *Engine) TableMemory() TableMemory {
	return TableMemory{
		Sessions:            e.sessions.BytesPerSession(),
		Bindings:            e.bindings.BytesPerEntry(),
		Permissions:         e.perms.BytesPerEntry(),
		Ports:               e.portTab.BytesPerPort() * portsPerSessionSlot,
		PortsPerSessionSlot: portsPerSessionSlot,
		Subscribers:         e.subs.BytesPerSession(),
	}
}
