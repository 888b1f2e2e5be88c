package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/flowtable"
)

// Quotas on sessions opened from outside. Anyone on the Internet can send
// a SYN to a port forward, to any port of a static mapping, or to a mapped
// port under endpoint-independent filtering, and each such session holds
// table space for minutes. Two limits keep an outsider from filling the
// table:
//
//   - Limits.InboundSessions counts every session a packet from outside
//     created (state stInbound), engine-wide, in Engine.inbound. The count
//     is taken in newInbound and given back by cleanup when the session
//     ends, whatever ends it.
//   - Limits.InboundSessionsPerRule counts the sessions of one port forward
//     or one static mapping, in a rule record of the rule table
//     (counttables.go, allocated once the limit is set). A session opened
//     through a rule holds a reference on the record in its
//     filter-permission slot (forwarded and static sessions have no
//     permission of their own), so cleanup releases it, into the table its
//     kind names (countTableOf), and the record disappears with the
//     rule's last session.

// Rule records use protocol numbers no packet produces: a claim's record is
// a rule's by its key (Snapshot.countTableOf).
const (
	ruleProtoForward = 254
	ruleProtoStatic  = 253
)

// ruleKey is the key of the session count of the port forward on the
// external endpoint ext:extPort of protocol proto, or, with static, of the
// static mapping of address ext.
func ruleKey(static bool, proto uint8, ext [4]byte, extPort uint16) flowtable.Key {
	if static {
		return flowtable.Key{Dst: ext, Proto: ruleProtoStatic}
	}
	return flowtable.Key{Src: [4]byte{proto}, Dst: ext, DstPort: extPort, Proto: ruleProtoForward}
}

// acquireInbound counts one more session opened from outside against the
// engine-wide limit (0: none). A refused count is not taken.
func (w *Worker) acquireInbound() drop.Reason {
	limit := int64(w.snap.Config.Limits.InboundSessions)
	for {
		v := w.eng.inbound.Load()
		if limit != 0 && v >= limit {
			w.eng.noteInboundRefused()
			return drop.InboundSessions
		}
		if w.eng.inbound.CompareAndSwap(v, v+1) {
			return drop.None
		}
	}
}

// acquireRule takes a reference on the session count of a forward or
// static mapping rule, creating it, unless the rule is at its limit. It
// uses the claim's permission slot. Called only while the snapshot sets
// Limits.InboundSessionsPerRule, so the rule table exists.
func (w *Worker) acquireRule(rk *flowtable.Key, c *claim) drop.Reason {
	r := acquireCount(w.snap.rules, rk, c, uint64(w.snap.Config.Limits.InboundSessionsPerRule), w.now)
	if r == drop.RuleSessions {
		w.eng.noteInboundRefused()
	}
	return r
}

// InboundSessions returns the number of live sessions opened from outside.
func (e *Engine) InboundSessions() int { return int(e.inbound.Load()) }
