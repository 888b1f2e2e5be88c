package nat

import (
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/flowtable"
)

// Early drop of embryonic sessions opened from outside.
//
// A SYN flood from spoofed sources to a port forward or a static mapping
// fills Limits.InboundSessions (or a rule's InboundSessionsPerRule) with
// sessions whose handshake never completes: the inside host answers with
// a SYN-ACK that goes nowhere, and nobody ever acknowledges it. Those
// sessions are transitory (tcpEstablished), yet they would hold the limit
// for the whole transitory idle timeout (4 min by default, RFC 5382 REQ-5),
// and every legitimate client would be refused until then.
//
// As Linux conntrack's early drop of unassured entries does, the
// housekeeper therefore reclaims them first while sessions from outside
// are under pressure: a TCP session opened from outside (stInbound and
// stSynOut) that the outside host has not acknowledged since the inside's
// SYN (no stAckOut), neither reset nor closing, and idle for at least
// EmbryonicGrace, is deleted with DeletedPressure. A legitimate client
// retransmitting its SYN then finds room. An established session (the
// outside's ACK seen) is never reclaimed, and without pressure nothing is:
// RFC 5382 REQ-5's transitory idle timeout of at least 4 minutes is kept
// for sessions that are merely idle. Reclaiming under pressure departs from
// that timeout on purpose: it is resource protection against an attack,
// and it touches only sessions whose handshake never completed.
//
// Pressure means: the inbound count has reached 7/8 of
// Limits.InboundSessions, or a worker refused a session from outside for
// either limit since the previous Housekeep (reclaimState.refused).
// Under pressure the housekeeper walks the session table with its own
// cursor, a tenth of the table per call (at least reclaimMinVisit), so
// with Housekeep every 100 ms the whole table is swept in about a second:
// an embryonic session is reclaimed between EmbryonicGrace and
// EmbryonicGrace + 1 s after its last packet. The walk is separate from
// the idle-expiry sweep, whose cursor and budget stay as they are.
//
// Two more kinds of session opened from outside are unassured in the
// same sense and are reclaimed under pressure too: a TCP session that is
// over (reset, or closed in both directions), idle for EmbryonicGrace,
// whose transitory timeout only guards against late segments; and a UDP
// or ICMP session idle for IdleInboundGrace, which a flood from spoofed
// sources leaves behind by the thousand and which would otherwise hold
// the limit for the UDP timeout (TestE2EHostileOutside: after a SYN and
// UDP flood to a forward, legitimate clients were refused for minutes).
// A live UDP flow sends more often than that; one that does not loses
// its session only while the limit is under pressure, and its next
// packet from outside opens a new one.
//
// A reclaimed session is cleaned up like an expired one (cleanup gives
// back the inbound count and the rule's reference). An ACK that arrives
// in the instant between the housekeeper's check and its delete is lost
// with the session; it arrived after EmbryonicGrace of silence, under an
// attack, and the client's retransmission opens a new session.

// EmbryonicGrace is how long an embryonic session opened from outside is
// left alone under pressure before it may be reclaimed: several round
// trips, so that a legitimate handshake in progress completes first.
const EmbryonicGrace = time.Second

// IdleInboundGrace is how long a UDP or ICMP session opened from outside
// must have been idle to be reclaimed under pressure.
const IdleInboundGrace = 5 * time.Second

const (
	// reclaimSweepDiv: under pressure each Housekeep visits 1/reclaimSweepDiv
	// of the table.
	reclaimSweepDiv = 10
	reclaimMinVisit = 4096
	// reclaimPressureNum/Den: the share of Limits.InboundSessions from
	// which the inbound count alone means pressure (7/8).
	reclaimPressureNum = 7
	reclaimPressureDen = 8
)

// reclaimState is the early-drop walker's state. refused is set by
// workers; everything else belongs to the housekeeper (ctl held).
type reclaimState struct {
	refused   atomic.Bool // a worker refused a session from outside for a limit
	reclaimed atomic.Uint64
	cursor    uint32
	scratch   flowtable.Entry
}

// noteInboundRefused records, for the housekeeper, that a session from
// outside was refused for a limit. Workers call it on refusal only; the
// load first keeps a flood from bouncing the cache line with stores.
func (e *Engine) noteInboundRefused() {
	if !e.reclaim.refused.Load() {
		e.reclaim.refused.Store(true)
	}
}

// embryonic reports whether a TCP session in state st was opened from
// outside and its handshake is incomplete: the outside's SYN seen, no ACK
// from outside after the inside's SYN, no reset and no FIN.
func embryonic(st uint32) bool {
	return st&(stInbound|stSynOut|stAckOut|stRst|stFinIn|stFinOut) == stInbound|stSynOut
}

// tcpOver reports whether a TCP session in state st has been reset or
// closed in both directions.
func tcpOver(st uint32) bool {
	return st&stRst != 0 || st&(stFinIn|stFinOut) == stFinIn|stFinOut
}

// inboundPressure reports whether sessions from outside are under
// pressure (see above), and clears the workers' refusal flag.
func (e *Engine) inboundPressure(s *Snapshot) bool {
	refused := e.reclaim.refused.Swap(false)
	if refused {
		return true
	}
	lim := int64(s.Config.Limits.InboundSessions)
	return lim != 0 && e.inbound.Load()*reclaimPressureDen >= lim*reclaimPressureNum
}

// reclaimEmbryonic deletes, under pressure, the unassured sessions opened
// from outside (see above) that have been idle for their grace. Housekeep calls it, ctl
// held. It returns the number reclaimed.
func (e *Engine) reclaimEmbryonic(now uint32, s *Snapshot) int {
	if !e.inboundPressure(s) {
		return 0
	}
	n := uint32(e.sessions.Cap())
	visit := n / reclaimSweepDiv
	if visit < reclaimMinVisit {
		visit = reclaimMinVisit
	}
	if visit > n {
		visit = n
	}
	// Ticks are milliseconds.
	tcpGrace, idleGrace := uint32(EmbryonicGrace/time.Millisecond), uint32(IdleInboundGrace/time.Millisecond)
	r := &e.reclaim
	x := &r.scratch
	reclaimed := 0
	for i := uint32(0); i < visit; i++ {
		id := r.cursor
		if r.cursor++; r.cursor >= n {
			r.cursor = 0
		}
		if !e.sessions.Get(id, x) || x.State&stInbound == 0 {
			continue
		}
		grace := idleGrace
		if x.Keys[0].Proto == ipProtoTCP {
			if !embryonic(x.State) && !tcpOver(x.State) {
				continue
			}
			grace = tcpGrace
		}
		// A Seen after now is a session touched after the clock was
		// read: not idle at all.
		if idle := now - x.Seen; int32(idle) < 0 || idle < grace {
			continue
		}
		if e.sessions.Delete(id, x.Gen) {
			e.cleanup(x, DeletedPressure, now, s)
			reclaimed++
		}
	}
	r.reclaimed.Add(uint64(reclaimed))
	return reclaimed
}

// ReclaimedSessions returns the number of embryonic sessions opened from
// outside that were reclaimed under pressure since start (DeletedPressure).
func (e *Engine) ReclaimedSessions() uint64 { return e.reclaim.reclaimed.Load() }
