package nat

import "sync/atomic"

// Hold-down under pressure.
//
// RFC 6888 REQ-8: "Once an external port is deallocated, it SHOULD NOT be
// reallocated to a new mapping until at least 120 seconds have passed".
// A port in hold-down keeps its word in the port table (porttable.go), and
// that table is sized for the ports a full session table can own (one per
// session slot, limits.max_sessions) plus half as many in hold-down and
// portsForRules for the rules' claims (port forwards beyond that many take
// their ports out of the hold-down's room, holdRoom). Half is what steady churn leaves
// there: a mapping lives at least its idle timeout, and the TCP and UDP
// ones (240 s transitory, 300 s) are twice the default hold-down or more.
// But nothing else bounds the ports in hold-down. An operator who flushes
// a full table, then lets it refill and flushes again within two minutes,
// or a host churning ICMP identifiers (60 s sessions, 120 s hold-down),
// holds more ports than the table has room for beside the ports in use;
// the table then fills, and every new mapping on every address fails as
// port_exhausted although the pools have free ports, until the holds
// expire.
//
// So the hold-down is kept while it fits and shortened when it does not:
// when the ports queued for hold-down exceed the table's room for them
// (holdBudget.max), the oldest hold ends at once, first in, first out, and
// is counted (SessionCounts.PortHoldsShortened, the metric
// xnat_port_holds_shortened_total). The requirement is a SHOULD; a NAT
// that keeps it by refusing every new mapping serves no one. Reusing the
// oldest released port first keeps the risk REQ-8 guards against (a late
// packet of the old mapping reaching the new one) to the port released
// longest ago.

// Block mode (cgn_block.go) holds whole port blocks the same way, and
// their records sit in the block table: a block in use has two entries
// (its subscriber's slot and its claim on the address), one in hold-down
// keeps its claim. The table has room for the blocks a full engine can
// use and blockReserve entries more, so a flush of a full table, or two
// of a fuller one, used to leave no room for new blocks (in
// TestHoldDownBlocksAfterFlushes, four flushes of 1000 subscribers' blocks
// within the hold-down refused 976 of the next 2000 flows as
// port_exhausted). There the bound on blocks in use is loose (a
// subscriber takes a new block only when its others are full), so the
// room is not computed from it: the oldest block holds end early, each
// logged as the block's release (RFC 7422) when it happens, whenever
// fewer than blockReserve entries of the table are free, checked as a
// block enters hold-down and at every Housekeep.

// blockReserve is the number of block-table entries kept free for new
// blocks by shortening block hold-downs.
const blockReserve = 1024

// portsForRules is the port table's room for the ports the rules claim
// (port forwards) beyond those of sessions and hold-down.
const portsForRules = 1024

// holdBudget is the engine's account of ports in hold-down. The ctl lock
// guards queued and cut; shortened may be read by any goroutine.
type holdBudget struct {
	// queued counts the port entries of the hold-down FIFO (Engine.held)
	// not yet ended; a port that left hold-down otherwise (a forward took
	// it) stays counted until its entry is reached, which can only end
	// holds early, never let the table overfill.
	queued int
	// cut is the index in Engine.held below which no port entry is left
	// to shorten: the entries before it are shortened, block entries, or
	// at most heldHead. blockCut is the same for block entries.
	cut, blockCut int
	// shortened counts port holds ended early, blocksShortened block
	// holds.
	shortened, blocksShortened atomic.Uint64
}

// holdRoom is the number of ports that may be in hold-down: the port
// table's capacity less the ports a full session table and the rules can
// own (the port forwards' claims, portsForRules when fewer; more, when
// an operator configured more, come out of the hold-down's room), and
// less the credits the workers can hold unused (portCredits: none in a
// table below 8192 ports), so that a worker short of credits still finds
// room for a port while the session table has room. Called with ctl held.
func (e *Engine) holdRoom() int {
	return max(e.portTab.Cap()-e.sessions.Cap()-max(len(e.fwdClaims), portsForRules)-e.portTab.strandable(e.nworkers), 0)
}

// shortenHolds ends the oldest holds while more ports are queued for
// hold-down than the port table has room for. Called with ctl held.
func (e *Engine) shortenHolds() {
	room := e.holdRoom()
	i := max(e.holds.cut, e.heldHead)
	for e.holds.queued > room && i < len(e.held) {
		h := &e.held[i]
		i++
		if h.proto == heldBlock || h.addr == nil {
			continue // blocks are not in the port table
		}
		endHold(h)
		h.addr = nil // releaseHeld skips it
		e.holds.queued--
		e.holds.shortened.Add(1)
	}
	e.holds.cut = i
	// The shortened entries at the head are done: drop them now, so that
	// the FIFO holds about holdRoom entries however often it overflows.
	e.dropShortened()
}

// shortenBlockHolds ends the oldest block hold-downs, as releaseHeld would
// at their time (the block freed and its release logged now), while fewer
// than blockReserve entries of the block table are free. Called with ctl
// held.
func (e *Engine) shortenBlockHolds(now uint32) {
	t := e.cgn.blocks
	if t == nil || t.Cap()-t.Len() >= blockReserve {
		return
	}
	i := max(e.holds.blockCut, e.heldHead)
	for t.Cap()-t.Len() < blockReserve && i < len(e.held) {
		h := &e.held[i]
		i++
		if h.proto != heldBlock || h.addr == nil {
			continue
		}
		e.releaseHeldBlock(h, now)
		h.addr = nil // releaseHeld skips it
		e.holds.blocksShortened.Add(1)
	}
	e.holds.blockCut = i
	e.dropShortened()
}

// dropShortened drops the shortened entries at the head of the FIFO, so
// that it holds about what is still in hold-down however often it
// overflows. Called with ctl held.
func (e *Engine) dropShortened() {
	for e.heldHead < len(e.held) && e.held[e.heldHead].addr == nil {
		e.heldHead++
	}
	e.compactHeld()
}

// compactHeld moves the FIFO's live entries to the front of its array once
// the done ones fill more than half of it. Called with ctl held.
func (e *Engine) compactHeld() {
	if e.heldHead > 1024 && e.heldHead*2 > len(e.held) {
		e.held = append(e.held[:0], e.held[e.heldHead:]...)
		e.holds.cut = max(e.holds.cut-e.heldHead, 0)
		e.holds.blockCut = max(e.holds.blockCut-e.heldHead, 0)
		e.heldHead = 0
	}
}

// endHold ends the hold-down of h's port, if it is still in hold-down.
func endHold(h *heldPort) {
	ps := &h.addr.ports[h.proto]
	if _, held := ps.state(h.port); held {
		ps.unhold(h.port)
	}
}

// PortHoldsShortened returns the number of port hold-downs ended early
// because the port table had no room for them (block holds ended early are
// CGNStats.BlockHoldsShortened).
func (e *Engine) PortHoldsShortened() uint64 { return e.holds.shortened.Load() }
