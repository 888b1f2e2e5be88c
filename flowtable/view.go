package flowtable

import "math/bits"

// View is the part of a session that the NAT's fast path reads for a
// packet of an established session: which session matched (Hit), its
// state word, and the session's other key, the one the packet is
// translated to. It is what LookupProbe's Entry holds, less the matched
// key (equal to the probe's), the last-seen tick and the user words: a
// hit that fills a View loads seven words of the record where one that
// fills an Entry loads ten, and stores five words where an Entry takes
// a dozen (Go's atomic loads do not fold their addresses, so each word
// read under the seqlock costs three instructions).
//
// A View belongs to the goroutine that filled it.
type View struct {
	Hit
	// State is the session's state word.
	State uint32
	// other is the key not matched, packed as the record holds it.
	other [2]uint64
}

// Other returns the key that the lookup did not match: key 1 when Dir is
// 0 and key 0 when Dir is 1.
func (v *View) Other() Key { return unpack(v.other[0], v.other[1]) }

// OtherSrc returns the other key's source address as a big-endian
// integer (the address 10.0.0.1 is 0x0a000001), OtherSrcPort its source
// port, and OtherDst and OtherDstPort its destination: the fields of
// Other without building a Key, which the fast path would write with
// narrow stores only to read them back.
func (v *View) OtherSrc() uint32 { return bits.ReverseBytes32(uint32(v.other[0])) }

// OtherDst returns the other key's destination address (see OtherSrc).
func (v *View) OtherDst() uint32 { return bits.ReverseBytes32(uint32(v.other[0] >> 32)) }

// OtherSrcWire returns the other key's source address as its four bytes
// lie in a packet, loaded little-endian (binary.LittleEndian.Uint32 of
// them): the form the record holds, which a rewrite stores into a frame
// as it is, and whose checksum terms it sums in that order (RFC 1071
// section 2(B)), with no byte swap either way.
func (v *View) OtherSrcWire() uint32 { return uint32(v.other[0]) }

// OtherDstWire returns the other key's destination address as OtherSrcWire
// returns its source.
func (v *View) OtherDstWire() uint32 { return uint32(v.other[0] >> 32) }

// OtherSrcPort returns the other key's source port (see OtherSrc).
func (v *View) OtherSrcPort() uint16 { return uint16(v.other[1]) }

// OtherDstPort returns the other key's destination port (see OtherSrc).
func (v *View) OtherDstPort() uint16 { return uint16(v.other[1] >> 16) }

// ViewProbe is LookupProbe filling a View instead of an Entry. A hit is
// verified as LookupProbe's: the record's generation is loaded before
// and after its words and must be the same even value both times, and
// the matched key is compared in full with the probe's only after that.
// It is small enough to inline: the call it saves is a tenth of a hit.
func (t *Table) ViewProbe(p *Probe, v *View) bool { return t.viewRef(p, p.ref, v) }

// Missing reports whether p is in no live session as its home bucket
// shows it now, when its prefetch found no slot of its fingerprint (no
// reference remembered): ViewProbe's answer for a new flow's first
// packet, without its calls (viewRef, viewSlow: about 18 instructions a
// new session, bench-instr). False means only that ViewProbe must decide.
func (t *Table) Missing(p *Probe) bool {
	return p.ref == 0 && t.absentAt(t.ix.Home(p.h), fpOf(p.h))
}

// viewRef reads the record of slot reference ref for probe p into v, as
// readRef does for an Entry: the record's generation, its key dir (from
// ref, at an offset chosen by dir, not by a branch on it), the other key
// and the state word, then the generation again. Keys change only while
// the generation is odd and the state only through the gated writes, so
// equal even loads around them make the key that generation's key and
// the state one the session held during it. A reference that does not
// lead to the probe's key (none remembered, or the index changed since
// the prefetch) goes to viewSlow.
func (t *Table) viewRef(p *Probe, ref uint32, v *View) bool {
	id, dir, ok := t.refRecord(ref)
	if !ok {
		return t.viewSlow(p, ref, v)
	}
	r := &t.recs[id]
	g := r.gen.Load() & genMask
	k, o := &r.keys[dir], &r.keys[dir^1]
	a0, a1 := k[0].Load(), k[1].Load()
	b0, b1 := o[0].Load(), o[1].Load()
	state := r.state.Load()
	if g&1 != 0 || r.gen.Load()&genMask != g || a0 != p.w0 || a1 != p.w1 {
		return t.viewSlow(p, ref, v)
	}
	v.ID, v.Dir, v.Gen, v.State = id, uint8(dir), g, state
	v.other[0], v.other[1] = b0, b1
	return true
}

// ViewBurst is viewRef's common case for a whole burst in one call: for
// each probe ps[i] whose prefetch remembered a slot reference to a key of
// direction dir (0 or 1: the only one the caller translates a hit of), it
// reads the record that reference names into vs[i], verified as viewRef
// verifies (the generation even and the same before and after, the
// matched key equal to the probe's), and sets bit i of hits when it is
// the probe's session. A clear bit is no miss: the probe had no
// reference, or one to the other direction's key, or the reference no
// longer led to its key (the session moved or was deleted since the
// prefetch), and ViewProbe, which then searches the index, decides; vs[i]
// is then undefined. Only the first 64
// probes are read (a bit each); len(vs) must be at least that many.
//
// One call a burst rather than one a packet: the burst's loop keeps the
// table and the probe in registers, where the fast path's loop, with a
// call per packet, reloaded its own state after every call (about a
// third of a lookup's instructions, make bench-instr).
func (t *Table) ViewBurst(ps []Probe, vs []View, dir uint8) (hits uint64) {
	want := uint32(dir)
	ps = ps[:min(len(ps), 64)]
	vs = vs[:len(ps)]
	recs := t.recs
	for i := range ps {
		p := &ps[i]
		// refRecord, written out: ref-1 wraps a missing reference (0)
		// to an id beyond any table.
		id, dir := (p.ref-1)>>1, (p.ref-1)&1
		if int(id) >= len(recs) || dir != want {
			continue
		}
		r, v := &recs[id], &vs[i]
		// viewRef's loads, in its order between the two loads of the
		// generation; the other key and the state go to v as they
		// come, which leaves registers to the loop. The two
		// directions apart, each with its offsets constant.
		g := r.gen.Load()
		var a0, a1 uint64
		if dir == 0 {
			v.other[0], v.other[1] = r.keys[1][0].Load(), r.keys[1][1].Load()
			v.State = r.state.Load()
			a0, a1 = r.keys[0][0].Load(), r.keys[0][1].Load()
		} else {
			v.other[0], v.other[1] = r.keys[0][0].Load(), r.keys[0][1].Load()
			v.State = r.state.Load()
			a0, a1 = r.keys[1][0].Load(), r.keys[1][1].Load()
		}
		if a0 != p.w0 || a1 != p.w1 {
			continue
		}
		if g&1 != 0 {
			continue
		}
		if (r.gen.Load()^g)&genMask != 0 {
			continue
		}
		v.ID, v.Dir, v.Gen = id, uint8(dir), g&genMask
		hits |= 1 << uint(i)
	}
	return hits
}

// viewSlow is viewRef's way out when reference tried did not lead to
// p's key: it finds the key's slot in the index (findHashed) and reads
// the record that slot names. It ends when the index has no live session
// with the key, or names the reference just tried again (a session
// deleted between the two reads: a miss, as if the lookup had come after
// the delete).
func (t *Table) viewSlow(p *Probe, tried uint32, v *View) bool {
	// No reference tried: the prefetch found no slot with the key's
	// fingerprint, nearly always a new flow's first packet, whose home
	// bucket then shows the miss alone (absentAt), read again now.
	if tried == 0 && t.absentAt(t.ix.Home(p.h), fpOf(p.h)) {
		return false
	}
	var x Hit
	if !t.findHashed(p.w0, p.w1, p.h, &x) {
		return false
	}
	ref := slotRef(x.ID, x.Dir)
	if ref == tried {
		return false
	}
	return t.viewRef(p, ref, v)
}

// GetAt copies session id into e if it is still live at generation gen,
// with e.Dir set to dir: the Entry of a View (GetAt(v.ID, v.Gen, v.Dir,
// e)), for the packets that need more of the session than the View
// holds. It returns false if the session is gone or was recycled.
func (t *Table) GetAt(id uint32, gen uint64, dir uint8, e *Entry) bool {
	if !t.Get(id, e) || e.Gen != gen {
		return false
	}
	e.Dir = dir
	return true
}
