package nat

import (
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/flowtable"
)

// Session state word (flowtable user-defined state). The low bits track TCP
// well enough to choose a timeout (RFC 7857 section 2.2, the RFC 6146 state
// machine reduced to what decides timers); the high bits are flags fixed at
// creation.
const (
	stSynIn  = 1 << 0 // SYN seen from the inside host
	stSynOut = 1 << 1 // SYN seen from the outside host
	stFinIn  = 1 << 2
	stFinOut = 1 << 3
	stRst    = 1 << 4
	// stAckOut: the outside host acknowledged after the inside's SYN (a
	// bare ACK from outside once stSynIn is set). For a session opened
	// from outside it completes the three-way handshake; without it the
	// session is embryonic (see reclaim.go).
	stAckOut = 1 << 5
	stTCP    = stSynIn | stSynOut | stFinIn | stFinOut | stRst | stAckOut

	// stHairpin: packets of this session that leave the outside
	// translation are addressed to one of our own public addresses and
	// must be translated again and sent back inside.
	stHairpin = 1 << 8
	// stInbound: the session was created by an inbound packet (port
	// forward, static mapping, or endpoint-independent filtering).
	stInbound = 1 << 9
	// Kind of translation, bits 10..11.
	stKindShift   = 10
	stKindMask    = 3 << stKindShift
	kindDynamic   = 0
	kindStatic    = 1 // static 1:1 address mapping; ports kept
	kindForward   = 2 // port forward
	stKindDynamic = kindDynamic << stKindShift
	stKindStatic  = kindStatic << stKindShift
	stKindForward = kindForward << stKindShift
)

// tcpEstablished: both ends have sent a SYN (a SYN-ACK counts) and the
// connection is neither reset nor closed in both directions. RFC 5382 REQ-5
// gives it the long timeout; every other state is transitory (RFC 7857).
//
// A session opened from outside is established only once the outside host
// has acknowledged the inside's SYN-ACK: until then it is "partially open"
// (RFC 5382 section 5, transitory), and a spoofed SYN that the inside
// host answers must not hold a slot for the established timeout.
func tcpEstablished(st uint32) bool {
	if st&(stInbound|stAckOut) == stInbound {
		return false
	}
	if tcpOver(st) {
		return false
	}
	return st&(stSynIn|stSynOut) == stSynIn|stSynOut
}

// TCP flags as they appear in byte 13 of the TCP header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// tcpNext returns the state after a segment with flags from side from.
// A bare SYN after a reset or a full close starts a new connection on the
// same 5-tuple (TIME_WAIT assassination aside, RFC 6146 section 3.5.2
// treats it the same way), so the TCP bits start over.
func tcpNext(st uint32, flags uint8, from Side) uint32 {
	syn, fin := uint32(stSynIn), uint32(stFinIn)
	if from == Outside {
		syn, fin = stSynOut, stFinOut
	}
	n := st
	if flags&tcpSYN != 0 {
		if flags&tcpACK == 0 && (st&stRst != 0 || st&(stFinIn|stFinOut) == stFinIn|stFinOut) {
			n &^= stTCP
		}
		n |= syn
	}
	if flags&tcpFIN != 0 {
		n |= fin
	}
	if from == Outside && flags&(tcpSYN|tcpACK) == tcpACK && n&stSynIn != 0 {
		n |= stAckOut
	}
	if flags&tcpRST != 0 {
		n |= stRst
	}
	return n
}

// trackTCP advances the session's TCP state on SYN, FIN and RST segments,
// and on the outside's first ACK after the inside's SYN (stAckOut).
func (w *Worker) trackTCP(e *flowtable.Entry, flags uint8, from Side) {
	if flags&(tcpSYN|tcpFIN|tcpRST) == 0 && (from == Inside || e.State&(stSynIn|stAckOut) != stSynIn) {
		return // a bare segment that changes nothing: the common case
	}
	for i := 0; i < 4; i++ {
		n := tcpNext(e.State, flags, from)
		if n == e.State || w.eng.sessions.CompareAndSwapState(e.ID, e.Gen, e.State, n) {
			e.State = n
			return
		}
		var cur flowtable.Entry
		if !w.eng.sessions.Get(e.ID, &cur) || cur.Gen != e.Gen {
			return
		}
		e.State = cur.State
	}
}

// tcpSegment advances session e's TCP state for a segment from side from
// and clamps a SYN's MSS; it does nothing for other protocols.
func (w *Worker) tcpSegment(e *flowtable.Entry, b *port.Buf, p *header.Parsed, from Side) {
	if p.L4 == header.L4TCP {
		w.trackTCP(e, p.TCPFlags, from)
		w.clampMSS(b, p)
	}
}
