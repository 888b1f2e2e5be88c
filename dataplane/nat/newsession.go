package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/flowtable"
)

// Stage slow path: creating the session of a packet whose flow has none.
// The mapping machinery it draws on (subscribers, bindings, ports,
// permissions, undo) is in mapping.go.

// New sessions in a pipeline. Creating a session touches, beside the
// bucket of its inside key (prefetched by receive), records that are
// rarely in cache at a million sessions: the subscriber, the mapping's
// bucket (to find none), the port's record, and the bucket the session's
// outside key goes into. Looked up one packet after another they cost a
// memory latency each, in series. The fast path therefore leaves the
// outbound packets that found no session to newSessions, which runs over
// all of them four times, each pass reading what the previous one asked
// for and asking for the next lines of the whole burst at once, with
// prefetch instructions collected in newBurst.lines and issued at the
// pass's end (flowtable.Lines; a load in their place stalls the pass):
//
//  1. prefetch the subscriber's bucket and record and ask for the
//     mapping's bucket; a short pass then scans the mapping's bucket
//     (bindTable.Scan) and asks for an existing mapping's record;
//  2. look both up: an existing mapping gives the external endpoint, so
//     the session's outside bucket is prefetched; for a new port, the
//     subscriber's paired address gives the record of the port that port
//     preservation would take, prefetched;
//  3. with that record in cache, decide the port: the preserved one if it
//     is free, else a random candidate of the worker's share (RFC 6056),
//     drawn now rather than at creation, whose record is prefetched; then
//     prefetch the bucket of the session's outside key on that port (a
//     new mapping's external key has no bucket: its port's word in the
//     port table names it);
//  4. create the sessions in arrival order.
//
// What the passes found is handed to the fourth (newHint), so that no key
// is looked up twice: the subscriber, the mapping (found, or known to be
// missing), and the planned port. Each is a hint, checked where it is
// used: a record found is taken only through its generation (acquireRef),
// a missing mapping created meanwhile by another worker makes the insert
// of ours fail (and the mapping is looked up again), and a planned port is
// claimed by an insert that fails if it was taken meanwhile. A mapping
// whose inside endpoint an earlier packet of the list shares is looked up
// again at creation: that packet may have just created it.

// newBurst lists the outbound packets of a burst that found no session.
// It belongs to its worker's goroutine.
type newBurst struct {
	n     int
	idx   [MaxBurst]uint8
	dup   [MaxBurst]bool // an earlier packet of the list has the same session key
	epDup [MaxBurst]bool // an earlier packet of the list has the same inside endpoint
	seen  [128]uint8     // open addressing by endpointMix: list index + 1
	plan  [MaxBurst]newPlan
	// sp are the subscribers' keys, packet by packet as plan: in one
	// array, so that pass 1 prefetches them as a burst
	// (flowtable.Table.PrefetchBurst).
	sp  [MaxBurst]flowtable.Probe
	pub publicMemo
	// lines are the lines a pass asks for at its end (flowtable.Lines).
	lines flowtable.Lines
}

// publicMemo remembers the last peer address sessionState asked about and
// whether it is public in snapshot snap: the new sessions of a burst go
// mostly to a few destinations, and Snapshot.isPublic is a map lookup
// (about 80 instructions, bench-instr). A snapshot is immutable, and the
// memo's pointer keeps the one it names from being reused, so the answer
// stays exact.
type publicMemo struct {
	snap *Snapshot
	addr [4]byte
	is   bool
}

// public reports whether a is public in s (Snapshot.isPublic).
func (nb *newBurst) public(s *Snapshot, a [4]byte) bool {
	m := &nb.pub
	if m.snap != s || m.addr != a {
		m.snap, m.addr, m.is = s, a, s.isPublic(a)
	}
	return m.is
}

// newPlan is what the first three passes found out for one packet.
type newPlan struct {
	bp bindProbe       // the mapping's inside key
	op flowtable.Probe // the session's outside key, when has&planOut
	// sub is the subscriber of address subAt, when has&planSub: its
	// number, generation and user words only (flowtable.LookupUser).
	sub   flowtable.Entry
	subAt [4]byte
	bind  flowtable.Entry // the mapping, when has&planBind
	st    *addrState      // the subscriber's paired address, for planPort
	// port is the port to claim on st, when has&planPort and not
	// has&planNone: the preserved port, or the random candidate once
	// that is taken; pp is its probe in the port table (portSet.probe).
	pp   portProbe
	port uint16
	// lo and hi are the range of the packet's port (Snapshot.portRange),
	// when has&planPort: pass 2 finds it, pass 3 draws from it.
	lo, hi uint16
	// proto is the packet's (ProtoOfNumber), when has&planPort: pass 3
	// takes it from here (about 3 instructions a new session, 2,801 to
	// 2,798, bench-instr).
	proto Proto
	has   uint8
}

// newPlan.has bits.
const (
	planSub     = 1 << iota // sub holds the subscriber
	planBind                // bind holds the mapping
	planNoBind              // the mapping was looked for and is missing
	planPort                // a port on st was planned (port, or planNone)
	planTaken               // the preserved port is taken or out of range
	planNone                // the preserved port is taken and no candidate was drawn
	planOut                 // op holds the session's outside key, prepared
	planBindKey             // bp holds the packet's mapping's inside key, prepared
)

// newHint is the plan of the packet whose session is being created, with
// the parts (has bits) not used yet; acquireSub, eimMapping and allocPort
// take it in place of their first lookup. Each part is used once.
type newHint struct {
	plan *newPlan
	left uint8
}

// subscriber copies the hinted subscriber into x if it is the subscriber
// of address a: its number, generation and user words, which is what the
// plan has (LookupUser), and of its key the address, x.Keys[0].Src, which
// is all a claim's readers of its subscriber take (claim). The rest of x
// is left as it was: the whole key, built and copied (subscriberKey, then
// NoKey), cost about 15 instructions a new session (bench-instr).
func (h *newHint) subscriber(a [4]byte, x *flowtable.Entry) bool {
	if h.left&planSub == 0 {
		return false
	}
	h.left &^= planSub
	if h.plan.subAt != a {
		return false
	}
	// Field by field: a composite literal would clear the whole Entry
	// first. One statement each, and not Dir, which no reader of a
	// claim's subscriber takes (a subscriber's is 0): in one multiple
	// assignment Go loaded the user words ahead and kept them on the
	// stack (about 2 instructions a new session, 2,603 to 2,601,
	// bench-instr).
	sub := &h.plan.sub
	x.ID = sub.ID
	x.Gen = sub.Gen
	x.User = sub.User
	x.Keys[0].Src = a
	return true
}

// outside returns the prepared outside key of the session, if the plan
// has one: taken if it is the session's. The plan is the packet's own,
// and its key was prepared from the packet's remote endpoint and
// protocol (pass 3, prefetchOutside), so only the external endpoint can
// differ (flowtable.Probe.IsTo).
func (h *newHint) outside() *flowtable.Probe {
	if h.left&planOut == 0 {
		return nil
	}
	h.left &^= planOut
	return &h.plan.op
}

// mapping looks up the mapping with inside key bk in t into x, unless the
// hint already knows the answer.
func (h *newHint) mapping(t *bindTable, bk *flowtable.Key, x *flowtable.Entry) bool {
	left := h.left
	h.left &^= planBind | planNoBind
	switch {
	case left&planBind != 0 && h.plan.bind.Keys[0] == *bk:
		*x = h.plan.bind
		return true
	case left&planNoBind != 0:
		return false
	}
	return t.Lookup(bk, x)
}

// noMapping reports whether the plan knows the mapping to be missing,
// using that part of the hint: mapping's common answer for a new
// session, where mapping itself does not inline.
func (h *newHint) noMapping() bool {
	if h.left&planNoBind == 0 {
		return false
	}
	h.left &^= planBind | planNoBind
	return true
}

// port returns the plan of a port on st, if one was made.
func (h *newHint) port(st *addrState) *newPlan {
	if h.left&planPort == 0 || h.plan.st != st {
		return nil
	}
	h.left &^= planPort
	return h.plan
}

// bindProbe returns the prepared probe of the inside key of a new
// mapping, if the plan has one: the probe that the first pass prepared to
// prefetch its bucket. The plan's probe is only read
// (bindTable.InsertProbe). The caller prepares its own when there is none:
// with the preparing in it, this was over Go's inlining budget, and its
// call cost about 7 instructions a new session (bench-instr).
//
// The probe is taken by its plan bit (planBindKey, set only where pass 1
// prepared it, for that packet and burst), without comparing its word
// with the caller's, as outside takes its key, and the caller builds the
// word only when there is none (about 8 instructions a new session, 2,700
// -> 2,692, bench-instr): eimMapping, the one caller, runs for
// the hint's packet p, under the burst's snapshot, whose endpoint-
// independent mapping made pass 1 prepare the key, and builds the word
// pass 1 built, bindWord(p.Src, sport, p.Proto, 0) with sport
// (sessionTuple's from the inside) p.SrcPort. A plan whose packet shares
// its endpoint with an earlier one (epDup) has no probe, and a plan of an
// earlier burst no bit: has is cleared for each packet in pass 1, and
// the hint after each burst. TestNewSessionBurstNoStaleMappingKey fails
// if the plan's probe is taken without its bit; a check of the word in
// eimMapping never failed in the package's tests.
func (h *newHint) bindProbe() *bindProbe {
	if h.left&planBindKey != 0 {
		return &h.plan.bp
	}
	return nil
}

// deferNew leaves packet i, from the inside and without a session, to
// newSessions. It only lists it: which packets of the list share a key
// with an earlier one is found there, in its first pass (here, a call for
// each new flow from the fast path's loop cost about 15 instructions a
// new session more, bench-instr).
func (w *Worker) deferNew(i int) {
	nb := &w.nb
	nb.idx[nb.n] = uint8(i)
	nb.n++
}

// sameEndpoint is newSessions' test of packet j of the list, p, against
// the earlier packet number o-1 that newBurst.seen holds where p's inside
// endpoint hashes to: it notes whether that one has the same inside
// endpoint (epDup: its mapping that one may create) or the same session
// key (dup: that one creates the session, and this one must look it up
// again; the others need not), and reports the latter, which ends the
// search. Out of line: it runs only on a collision in seen (collide).
func (w *Worker) sameEndpoint(j int, p *header.Parsed, o uint8) bool {
	nb := &w.nb
	q := &w.pk[nb.idx[o-1]]
	if q.Src == p.Src && q.SrcPort == p.SrcPort && q.Proto == p.Proto {
		nb.epDup[j] = true
		if sameSession(Inside, p, q) {
			nb.dup[j] = true
			return true
		}
	}
	return false
}

// collide is newSessions' search of seen for packet j of the list, p,
// whose inside endpoint hashes to h, where packet o-1 is: the probe of
// the slots after h, each taken one tested by sameEndpoint, until a free
// slot, which then notes j, or the same session key. Out of line, and
// called only on a collision in h, so that the pass's loop has no inner
// loop with a call, around which Go kept the pass's values in memory for
// every packet (about 3 instructions a new session, 2,606 to 2,603,
// bench-instr; with 256 slots in seen, fewer collisions, no fewer).
func (w *Worker) collide(j int, p *header.Parsed, h uint32, o uint8) {
	nb := &w.nb
	for !w.sameEndpoint(j, p, o) {
		h = (h + 1) % uint32(len(nb.seen))
		if o = nb.seen[h]; o == 0 {
			nb.seen[h] = uint8(j + 1)
			return
		}
	}
}

// endpointMix spreads a packet's inside endpoint over newBurst.seen; any
// mixing will do, since sameEndpoint compares.
func endpointMix(p *header.Parsed) uint32 {
	x := be32(p.Src)*0x9E3779B1 ^ (uint32(p.SrcPort)<<8|uint32(p.Proto))*0xC2B2AE3D
	return x >> 25
}

// sameSession reports whether packets a and b from side have the same
// session key.
func sameSession(side Side, a, b *header.Parsed) bool {
	as, ad, asp, adp := sessionTuple(side, a)
	bs, bd, bsp, bdp := sessionTuple(side, b)
	return as == bs && ad == bd && asp == bsp && adp == bdp && a.Proto == b.Proto
}

// newSessions creates the sessions of the packets deferNew left, and
// translates them (see above).
func (w *Worker) newSessions() {
	nb := &w.nb
	n := nb.n
	if n == 0 {
		return
	}
	nb.n = 0
	nb.seen = [128]uint8{}
	// Cleared whole, as seen: a few wide stores a burst, where two
	// stores a packet cost about 4 instructions a new session (2,578
	// to 2,574, bench-instr).
	nb.dup, nb.epDup = [MaxBurst]bool{}, [MaxBurst]bool{}
	e := w.eng
	s := w.snap
	eim := s.Config.Mapping == EndpointIndependent
	dynamic := s.cgn.mode == AllocDynamic
	// 1. Which packets share a key with an earlier one (dup, epDup);
	// the subscriber's bucket and the mapping's. The first in a loop of
	// its own cost about 15 instructions a new session more
	// (bench-instr).
	for j := 0; j < n; j++ {
		p := &w.pk[nb.idx[j]]
		if h := endpointMix(p); nb.seen[h] == 0 {
			nb.seen[h] = uint8(j + 1)
		} else {
			w.collide(j, p, h, nb.seen[h])
		}
		pl := &nb.plan[j]
		// The subscriber's key (subscriberKey), packed from the field:
		// PrepareAddrs inlines, Prepare of a Key did not.
		e.subs.PrepareAddrs(be32(p.Src), 0, 0, 0, 255, &nb.sp[j])
		// has starts empty, or with planBindKey where the mapping's key
		// is prepared (newHint.bindProbe).
		if eim && !nb.epDup[j] {
			// The mapping's inside key (bindingKeys), packed from the
			// fields.
			e.bindings.prepareWord(bindWord(p.Src, p.SrcPort, p.Proto, 0), &pl.bp)
			e.bindings.PrefetchHome(&pl.bp, &nb.lines)
			pl.has = planBindKey
		} else {
			pl.has = 0
		}
	}
	nb.lines.Flush()
	// The subscribers' buckets, then their records (a Prefetch a packet
	// cost about 10 instructions more, bench-instr).
	e.subs.PrefetchBurst(nb.sp[:n])
	// The mappings' buckets, asked for in pass 1, have had the
	// subscribers' two passes to arrive: scan them, and ask for the
	// record of an existing mapping.
	if eim {
		// Scan, its test of the home bucket written out (the call with
		// its frame and spills cost about 26 instructions a new session,
		// 2,861 to 2,835, bench-instr): the probe was prepared above.
		bt := e.bindings
		for j := 0; j < n; j++ {
			if !nb.epDup[j] {
				bp := &nb.plan[j].bp
				if bp.absent = bt.noFingerprint(bt.home(bp.h), bp.fp); !bp.absent {
					bt.scanSlots(bp, &nb.lines)
				}
			}
		}
		nb.lines.Flush()
	}
	// 2. The subscriber and the mapping; then the outside bucket of a
	// session on an existing mapping, or the record of the port that
	// port preservation would give a new one.
	for j := 0; j < n; j++ {
		p := &w.pk[nb.idx[j]]
		pl := &nb.plan[j]
		// st is stored once: each store of a pointer into the plan
		// tests the write barrier (about 8 instructions a new session,
		// bench-instr).
		var st *addrState
		if e.subs.LookupUser(&nb.sp[j], &pl.sub) {
			pl.has |= planSub
			pl.subAt = p.Src
			st = e.addr(subAddr(pl.sub.User[0]))
		}
		pl.st = st
		if eim {
			if nb.epDup[j] {
				continue
			}
			// The prefetch's scan of the home bucket may have
			// answered already: no such mapping.
			if !pl.bp.absent && e.bindings.LookupProbe(&pl.bp, &pl.bind) {
				pl.has |= planBind
				w.prefetchOutside(p, pl, pl.bind.Keys[1].Dst, pl.bind.Keys[1].DstPort)
				continue
			}
			pl.has |= planNoBind
		}
		if !dynamic || st == nil {
			continue
		}
		pl.has |= planPort
		proto, _ := ProtoOfNumber(p.Proto)
		lo, hi := s.portRange(proto, p.SrcPort)
		pl.lo, pl.hi, pl.proto = lo, hi, proto
		if p.SrcPort < lo || p.SrcPort > hi {
			pl.has |= planTaken
			continue
		}
		ps := &st.ports[proto]
		pl.port = p.SrcPort
		ps.probe(p.SrcPort, &pl.pp)
		ps.prefetch(&pl.pp, &nb.lines)
	}
	nb.lines.Flush()
	// 3. The port of a new mapping (or, with address-and-port-dependent
	// mapping, of the session), and the buckets its keys go into. The
	// worker's share of the range is the same for most packets.
	var sh portShare
	shLo, shHi := uint16(1), uint16(0)
	for j := 0; j < n; j++ {
		pl := &nb.plan[j]
		if pl.has&planPort == 0 {
			continue
		}
		p := &w.pk[nb.idx[j]]
		ps := &pl.st.ports[pl.proto]
		port := p.SrcPort
		// takenAt, its test of the home bucket (portTable.look) written
		// out, the walk called only when the bucket cannot tell: the
		// call's frame cost about 13 instructions a new session (2,835
		// to 2,822, bench-instr; the fifth round's try of it, on the
		// code of then, lost 4).
		taken := pl.has&planTaken != 0
		if !taken {
			var sure bool
			if taken, sure = ps.pt.look(pl.pp.key, pl.pp.home); !sure {
				taken = ps.takenAt(&pl.pp)
			}
		}
		if taken {
			pl.has |= planTaken
			if lo, hi := pl.lo, pl.hi; lo != shLo || hi != shHi {
				sh, shLo, shHi = shareOf(lo, hi, int(w.id), e.nworkers), lo, hi
			}
			c, ok := sh.random(w.rand())
			if !ok {
				pl.has |= planNone
				continue
			}
			ps.probe(c, &pl.pp)
			ps.prefetch(&pl.pp, &nb.lines)
			pl.port, port = c, c
		}
		// The session's outside key (prefetchOutside's, written out: a
		// call here cost about 20 instructions, bench-instr; and
		// PrefetchTupleProbe's, whose two halves inline), from the
		// addresses as integers (PrepareAddrs, as receive's): through
		// PrepareTuple the two [4]byte went through memory (about 5
		// instructions a new session, 2,749 to 2,744, bench-instr).
		_, dst, _, dport := sessionTuple(Inside, p)
		pl.has |= planOut
		e.sessions.PrepareAddrs(be32(dst), be32(pl.st.addr), dport, port, p.Proto, &pl.op)
		e.sessions.PrefetchHome(&pl.op, &nb.lines)
	}
	nb.lines.Flush()
	// 4. Create, in arrival order. A packet may belong to a flow that
	// an earlier packet of this burst has just given a session.
	var x flowtable.Entry
	var hop burstHop
	for j := 0; j < n; j++ {
		i := nb.idx[j]
		b, p := &w.rx[i], &w.pk[i]
		if nb.dup[j] && e.sessions.LookupProbe(&w.probe[i], &x) && x.Dir == 0 {
			w.hint = newHint{}
			w.translateOut(b, p, &x)
			continue
		}
		w.hint = newHint{plan: &nb.plan[j], left: nb.plan[j].has}
		// outboundNew written out (a call with its frame for each new
		// session, about 8 instructions, 2,658 to 2,651, bench-instr; a
		// change there is a change here), into x: newOutbound's insert
		// fills the whole Entry where newOutbound succeeds (Inserted, or
		// Exists of this very session: flowtable.Table.Insert), and where
		// it fails the Entry is not read, so x, the dup test's, is not
		// cleared for each packet (about 9 instructions, 2,651 to 2,642).
		if icmpQuery(p) && !icmpRequest(p.ICMPType) {
			w.dropFrame(Inside, b, drop.NoSession)
			continue
		}
		_, _, sport, dport := sessionTuple(Inside, p)
		if r := w.newOutbound(p, sport, dport, &w.probe[i], &x); r != drop.None {
			w.refuse(b, p, r)
			continue
		}
		// translateOut, with what these packets make redundant left out:
		// each passed the fast path's classification (forwardBurst: not
		// a fragment, TTL to spare, fits the outside MTU, TCP, UDP or an
		// ICMP query), so it needs no Fragmentation Needed check and no
		// fragmenting; the session was inserted at w.now, so it needs no
		// Touch. It is rewritten and sent as the fast path does: one pass
		// over the headers, at the fast path's constant offsets, which
		// its classification checked (rewriteNew), the next hop once per
		// burst and destination (sendVia). A hairpinned session takes
		// translateOut. Written out here: as translateNew, a call with
		// its frame, it cost about 17 instructions a new session (2,725
		// to 2,708, bench-instr).
		if x.State&stHairpin == 0 {
			if p.L4 == header.L4TCP { // tcpSegment's test, before its call
				w.tcpSegment(&x, b, p, Inside)
			}
			ext := &x.Keys[1]
			rewriteNew(b.Data, p, le32(&ext.Dst), ext.DstPort)
			w.sendVia(&hop, b, p.Dst)
			continue
		}
		w.translateOut(b, p, &x)
	}
	// The hint is the creating packet's alone: cleared before anything
	// else runs, but not after each creation, since the next one's
	// replaces it (about 4 instructions a new session, bench-instr).
	w.hint = newHint{}
}

// prefetchOutside prefetches the bucket of the outside key of the session
// of outbound packet p on external endpoint ext:extPort (newOutbound says
// what it is), and keeps the key, hashed, in plan pl for the session's
// insert. Pass 3 writes it out (newSessions); pass 2, for a session on an
// existing mapping, calls it.
func (w *Worker) prefetchOutside(p *header.Parsed, pl *newPlan, ext [4]byte, extPort uint16) {
	_, dst, _, dport := sessionTuple(Inside, p)
	pl.has |= planOut
	w.eng.sessions.PrefetchTupleProbe(dst, ext, dport, extPort, p.Proto, &pl.op, &w.nb.lines)
}

// newSession creates the session of packet p from side (newOutbound,
// newInbound), filling e. It returns drop.None or the reason the packet
// must be refused.
func (w *Worker) newSession(side Side, p *header.Parsed, e *flowtable.Entry) drop.Reason {
	if side == Inside {
		_, _, sport, dport := sessionTuple(Inside, p)
		return w.newOutbound(p, sport, dport, nil, e)
	}
	var k flowtable.Key
	packetKey(side, p, &k)
	return w.newInbound(p, &k, e)
}

// filterPermission takes the session's reference, in c, on the permission
// for remote to reach the mapping's external endpoint ext:extPort, when
// proto's filtering is address-dependent (RFC 4787 REQ-8, RFC 5382 REQ-3):
// the mapping's inside endpoint has sent to remote. On failure c is given
// back.
//
// The test of the filtering inlines into the caller; the permission's
// reference is takePermission's (a call for every new session, to answer
// no, cost about 20 instructions, bench-instr).
func (w *Worker) filterPermission(proto Proto, ipProto uint8, remote, ext [4]byte, extPort uint16, c *claim) drop.Reason {
	if w.snap.Config.Filtering[proto] != FilterAddressDependent {
		return drop.None
	}
	return w.takePermission(ipProto, remote, ext, extPort, c)
}

// takePermission is filterPermission's reference on the permission.
func (w *Worker) takePermission(ipProto uint8, remote, ext [4]byte, extPort uint16, c *claim) drop.Reason {
	pk := permKey(ipProto, remote, ext, extPort)
	if r := w.acquirePerm(&pk, c); r != drop.None {
		w.undo(c)
		return r
	}
	return drop.None
}

// newOutbound creates the session for an outbound packet whose key 0 has
// ports sport and dport (sessionTuple), filling e. p0, if not nil, is
// that key as receive prepared it (w.probe), packed and hashed already:
// the session is inserted with it. It returns drop.None or the reason the
// packet must be dropped.
//
// p0 is an argument, not a part of the hint (newHint): as a pointer in
// the worker, its store for each new session and its clearing once taken
// tested the write barrier (about 3 instructions a new session, 2,608
// to 2,606, bench-instr).
func (w *Worker) newOutbound(p *header.Parsed, sport, dport uint16, p0 *flowtable.Probe, e *flowtable.Entry) drop.Reason {
	s := w.snap
	proto, _ := ProtoOfNumber(p.Proto)
	var ext [4]byte
	var extPort uint16
	c := &w.cl
	c.begin()
	state := uint32(0)
	eim := false // the session's mapping is eimMapping's (eimWords)

	// A port-forwarded server opening a flow (symmetric static NAPT), or
	// a static mapping's host (decide.go). Asked only of a snapshot with
	// such rules: outboundRule's own test, inlined, still moved its
	// three zero results into ext and extPort (about 12 instructions a
	// new session, 2,737 to 2,725, bench-instr; the fifth round's test
	// before the call, of the maps' lengths then, lost 3).
	if s.rulesOut {
		state, ext, extPort = s.outboundRule(p.Src, sport, proto)
	}
	if state != 0 {
	} else if s.Config.Mapping == EndpointIndependent {
		if r := w.eimMapping(p, sport, proto, c, &ext, &extPort); r != drop.None {
			return r
		}
		eim = true
	} else {
		// Address-and-port-dependent mapping: the session owns its port.
		st, r := w.acquireSub(p.Src, proto, 1, c)
		if r != drop.None {
			w.eventQuota(r, proto, p)
			return r
		}
		port, ok := w.allocPort(c, st, proto, sport, true)
		if !ok {
			return w.portsExhausted(c, proto, p.Src, sport, st)
		}
		c.hasOwn, c.ownAddr, c.ownPort, c.ownProto = true, st.idx, port, proto
		ext, extPort = st.addr, port
	}
	// sessionState; for a session no rule admits and no TCP state
	// follows, its one step (the hairpin test) inline: the call with its
	// eight arguments cost about 40 instructions a new session,
	// bench-instr.
	var r drop.Reason
	if state&stKindMask == 0 && proto != TCP {
		if w.nb.public(s, p.Dst) {
			state |= stHairpin
		}
	} else if state, r = w.sessionState(state, ext, extPort, proto, c, p.Dst, p.TCPFlags, Inside); r != drop.None {
		return r
	}
	// filterPermission, its test written out: inlined, Go copied its
	// address arguments to the stack before the test (about 14
	// instructions a new session, 2,601 to 2,587, bench-instr).
	if c.hasBinding && s.Config.Filtering[proto] == FilterAddressDependent {
		if r := w.takePermission(p.Proto, p.Dst, ext, extPort, c); r != drop.None {
			return r
		}
	}
	// The keys go in prepared: the inside key as receive hashed it, once,
	// for the fast path's lookup (p0, newSessions'), the outside key
	// as the pipeline's prefetch hashed it, if it is the same key. Key 1
	// is key 0 translated to the external endpoint: the reply as it
	// arrives from the remote (for an ICMP query key 0's remote "port" is
	// zero, and so is key 1's).
	// A probe of our own only where the plan has none: a local declared
	// for both was cleared for every new session (bench-instr).
	t := w.eng.sessions
	if p0 == nil {
		p0 = new(flowtable.Probe)
		t.PrepareTuple(p.Src, p.Dst, sport, dport, p.Proto, p0)
	}
	// The plan's outside key is this packet's (newHint.outside): only its
	// external endpoint is compared (IsTo), where IsTuple packed and
	// compared the whole key (about 11 instructions a new session, 2,872
	// to 2,861, bench-instr).
	p1 := w.hint.outside()
	if p1 == nil || !p1.IsTo(ext, extPort) {
		p1 = new(flowtable.Probe)
		t.PrepareTuple(p.Dst, ext, dport, extPort, p.Proto, p1)
	}
	// An existing session on the external 5-tuple that is not this one
	// means the tuple is taken (possible only with port overlap).
	// insertSession, its common outcome settled here (settleSession).
	// The session's user words: eimWords where eimMapping took the
	// mapping and the subscriber and no rule gave a port of its own.
	var user sessWords
	if eim {
		user = eimWords(c, w.id)
	} else {
		user = sessionWords(c, w.id)
	}
	res := t.InsertProbe(p0, p1, state, user, w.now, e)
	if res == flowtable.Inserted {
		w.c[SessionsCreated+Counter(proto)]++
		w.sessionEvent(SessionCreated, e)
		return drop.None
	}
	r, _ = w.settleSession(res, p0, p1, 0, proto, c, e, drop.PortExhausted, p.Src, sport)
	return r
}

// sessionState completes the state word of a new session: a session that
// a rule admits (state's kind) takes its reference on the rule's address
// ext:extPort (holdRuleAddr); a session whose remote end, peer, is one of
// our public addresses is hairpinned (its packets from the inside must
// come back inside); a TCP session starts in the state the packet's flags,
// from side from, lead to. On failure c is given back.
func (w *Worker) sessionState(state uint32, ext [4]byte, extPort uint16, proto Proto, c *claim, peer [4]byte, flags uint8, from Side) (uint32, drop.Reason) {
	if state&stKindMask != 0 {
		if r := w.holdRuleAddr(state, ext, extPort, proto, c); r != drop.None {
			w.undo(c)
			return 0, r
		}
	}
	if w.nb.public(w.snap, peer) {
		state |= stHairpin
	}
	if proto == TCP {
		state = tcpNext(state, flags, from)
	}
	return state, drop.None
}

// portsExhausted gives back c after address st had no port for inside
// endpoint in:inPort, and counts and announces it.
func (w *Worker) portsExhausted(c *claim, proto Proto, in [4]byte, inPort uint16, st *addrState) drop.Reason {
	w.undo(c)
	w.c[PortAllocFailures]++
	w.event(Event{Type: PortsExhausted, Proto: proto, InsideAddr: in, InsidePort: inPort, OutsideAddr: st.addr})
	return drop.PortExhausted
}

// insertSession inserts the session with keys p0 (inside) and p1
// (outside), prepared, created by a packet of side dir (0: inside, its key
// p0; 1: outside, p1), holding the claims in c, and settles the outcome:
// counted and announced when inserted; c given back otherwise. Exists is a
// success when another worker created this very session a moment ago, and
// taken otherwise; a full table is announced with the inside endpoint
// (zero when the creator does not know it).
func (w *Worker) insertSession(p0, p1 *flowtable.Probe, dir uint8, state uint32, proto Proto, c *claim, e *flowtable.Entry,
	taken drop.Reason, inAddr [4]byte, inPort uint16) (r drop.Reason, inserted bool) {
	res := w.eng.sessions.InsertProbe(p0, p1, state, sessionWords(c, w.id), w.now, e)
	return w.settleSession(res, p0, p1, dir, proto, c, e, taken, inAddr, inPort)
}

// settleSession is insertSession's settling of the insert's outcome res.
// newOutbound inserts itself and settles here only what is not Inserted
// (a call with ten arguments for every new session cost about 40
// instructions, bench-instr).
func (w *Worker) settleSession(res flowtable.InsertResult, p0, p1 *flowtable.Probe, dir uint8, proto Proto, c *claim, e *flowtable.Entry,
	taken drop.Reason, inAddr [4]byte, inPort uint16) (r drop.Reason, inserted bool) {
	switch res {
	case flowtable.Inserted:
		w.c[SessionsCreated+Counter(proto)]++
		w.sessionEvent(SessionCreated, e)
		return drop.None, true
	case flowtable.Exists:
		w.undo(c)
		if own := [2]*flowtable.Probe{p0, p1}[dir]; e.Dir == dir && own.Is(&e.Keys[dir]) {
			return drop.None, false
		}
		return taken, false
	default:
		w.undo(c)
		w.event(Event{Type: TableFull, Proto: proto, InsideAddr: inAddr, InsidePort: inPort})
		return drop.TableFull, false
	}
}

func (w *Worker) eventQuota(r drop.Reason, proto Proto, p *header.Parsed) {
	t := QuotaExceeded
	switch r {
	case drop.AddressExhausted:
		t = AddressesExhausted
	case drop.TableFull:
		t = TableFull
	case drop.SubscriberSessions, drop.SubscriberPorts:
	default:
		return
	}
	w.event(Event{Type: t, Proto: proto, Reason: uint8(r), InsideAddr: p.Src, InsidePort: p.SrcPort})
}

// newInbound creates a session for an inbound packet with key 1 k, when a
// port forward, a static mapping or an endpoint-independent mapping admits
// it (filtering, RFC 4787 REQ-8, RFC 5382 REQ-3, RFC 6888 REQ-7).
func (w *Worker) newInbound(p *header.Parsed, k *flowtable.Key, e *flowtable.Entry) drop.Reason {
	s := w.snap
	proto, _ := ProtoOfNumber(p.Proto)
	var c claim

	// Which rule or mapping admits the packet, and whether filtering lets
	// it through, is decided read-only (decide.go, shared with explain);
	// here the references are taken.
	var a admission
	if r := w.eng.admitInbound(s, p, k, &a); r != drop.None {
		return r
	}
	perRule := s.Config.Limits.InboundSessionsPerRule != 0
	state := stInbound | a.state
	switch a.state {
	case stKindForward:
		if perRule {
			rk := ruleKey(false, p.Proto, p.Dst, k.DstPort)
			if r := w.acquireRule(&rk, &c); r != drop.None {
				return r
			}
		}
	case stKindStatic:
		if perRule {
			rk := ruleKey(true, 0, p.Dst, 0)
			if r := w.acquireRule(&rk, &c); r != drop.None {
				return r
			}
		}
	default:
		c.binding = a.binding
		ok, _ := acquireRef(w.eng.bindings, &c.binding, 1, nil)
		if !ok {
			return drop.NoSession
		}
		c.hasBinding = true
		if _, r := w.acquireSub(c.binding.Keys[0].Src, proto, 0, &c); r != drop.None {
			w.undo(&c)
			return r
		}
		if r := w.filterPermission(proto, p.Proto, p.Src, p.Dst, k.DstPort, &c); r != drop.None {
			return r
		}
	}
	state, r := w.sessionState(state, p.Dst, k.DstPort, proto, &c, p.Src, p.TCPFlags, Outside)
	if r != drop.None {
		return r
	}
	// Counted last, after everything else that may refuse: cleanup
	// gives the count back when the session ends (see inbound.go).
	if r := w.acquireInbound(); r != drop.None {
		w.undo(&c)
		return r
	}
	k0 := insideKey(k, a.in, a.inPort)
	var pk [2]flowtable.Probe
	w.eng.sessions.Prepare(&k0, &pk[0])
	w.eng.sessions.Prepare(k, &pk[1])
	r, inserted := w.insertSession(&pk[0], &pk[1], 1, state, proto, &c, e, drop.NoSession, [4]byte{}, 0)
	if !inserted {
		w.eng.inbound.Add(-1)
	}
	return r
}
