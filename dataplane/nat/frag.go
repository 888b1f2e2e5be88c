package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
)

// Fragments (RFC 4787 REQ-14, REQ-13).
//
// Only the first fragment of a datagram carries the transport header, so
// only it can be looked up in the session table. When the worker translates
// a first fragment it remembers, per (source, destination, protocol, IP id)
// as received, the addresses it rewrote to and the side it sent to; later
// fragments of the datagram are rewritten from that record. A later
// fragment that arrives before its first fragment waits in a small bounded
// holding area until the first arrives or the fragment timeout passes.
//
// Both structures are per worker, fixed-size and preallocated, so a flood
// of bogus fragments costs at most HeldFragments frames and never touches
// unfragmented traffic (REQ-14a). Fragments of one datagram must reach one
// worker, which holds when the NIC hashes fragmented packets on addresses
// only, as RSS does.

type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
	side     Side
}

type fragEntry struct {
	key            fragKey
	newSrc, newDst [4]byte
	egress         Side
	until          uint32
	used           bool
}

type heldFrag struct {
	key   fragKey
	buf   port.Buf
	until uint32
}

const fragSlots = 1024 // power of two

type fragState struct {
	slots [fragSlots]fragEntry
	held  []heldFrag // len == capacity; a zero until means free
	n     int        // held frames
	// orig is the received key of the frame being processed.
	orig fragKey
}

func (f *fragState) init(capacity int) {
	f.held = make([]heldFrag, capacity)
}

func (k *fragKey) hash() uint32 {
	h := uint32(2166136261)
	for _, b := range [...]byte{k.src[0], k.src[1], k.src[2], k.src[3], k.dst[0], k.dst[1], k.dst[2], k.dst[3],
		byte(k.id), byte(k.id >> 8), k.proto, byte(k.side)} {
		h = (h ^ uint32(b)) * 16777619
	}
	return h
}

func (f *fragState) find(k *fragKey, now uint32) *fragEntry {
	h := k.hash()
	for i := uint32(0); i < 4; i++ {
		e := &f.slots[(h+i)&(fragSlots-1)]
		if e.used && e.key == *k && int32(e.until-now) > 0 {
			return e
		}
	}
	return nil
}

// put stores a translation, replacing an expired or the soonest-expiring
// entry among the probed slots.
func (f *fragState) put(e fragEntry, now uint32) {
	h := e.key.hash()
	victim := &f.slots[h&(fragSlots-1)]
	for i := uint32(0); i < 4; i++ {
		s := &f.slots[(h+i)&(fragSlots-1)]
		if !s.used || s.key == e.key || int32(s.until-now) <= 0 {
			victim = s
			break
		}
		if int32(s.until-victim.until) < 0 {
			victim = s
		}
	}
	e.used = true
	*victim = e
}

// noteOrigin records the received addresses of the frame about to be
// processed, before any rewriting.
func (w *Worker) noteOrigin(side Side, p *header.Parsed) {
	w.frag.orig = fragKey{src: p.Src, dst: p.Dst, id: p.IPID, proto: p.Proto, side: side}
}

// rememberFirstFragment records how the first fragment of a datagram was
// translated, then releases any later fragments already waiting for it.
func (w *Worker) rememberFirstFragment(egress Side, p *header.Parsed) {
	e := fragEntry{key: w.frag.orig, newSrc: p.Src, newDst: p.Dst, egress: egress, until: w.now + w.snap.frag}
	w.frag.put(e, w.now)
	if w.frag.n == 0 {
		return
	}
	for i := range w.frag.held {
		h := &w.frag.held[i]
		if h.until != 0 && h.key == e.key {
			b := h.buf
			side := h.key.side
			h.until = 0
			w.frag.n--
			// The held frame is re-parsed: it is a non-first fragment,
			// and now has a translation to follow.
			var q header.Parsed
			header.Parse(b.Data, &q)
			w.translateFragment(side, &b, &q, &e)
		}
	}
}

// laterFragment handles a non-first fragment.
func (w *Worker) laterFragment(side Side, b *port.Buf, p *header.Parsed) {
	k := fragKey{src: p.Src, dst: p.Dst, id: p.IPID, proto: p.Proto, side: side}
	if e := w.frag.find(&k, w.now); e != nil {
		w.translateFragment(side, b, p, e)
		return
	}
	for i := range w.frag.held {
		h := &w.frag.held[i]
		if h.until == 0 {
			*h = heldFrag{key: k, buf: *b, until: w.now + w.snap.frag}
			if h.until == 0 {
				h.until = 1
			}
			w.frag.n++
			w.c[FragmentsHeld]++
			return
		}
	}
	w.dropFrame(side, b, drop.FragCacheFull)
}

func (w *Worker) translateFragment(side Side, b *port.Buf, p *header.Parsed, e *fragEntry) {
	if p.TTL <= 1 {
		w.timeExceeded(side, b, p)
		return
	}
	p.DecTTL(b.Data)
	if p.Src != e.newSrc {
		p.SetSrc(b.Data, e.newSrc, 0)
	}
	if p.Dst != e.newDst {
		p.SetDst(b.Data, e.newDst, 0)
	}
	w.c[FragmentsTranslated]++
	w.forward(side, e.egress, b, p)
}

// expire drops held fragments whose first fragment never came.
func (f *fragState) expire(w *Worker) {
	if f.n == 0 {
		return
	}
	for i := range f.held {
		h := &f.held[i]
		if h.until != 0 && int32(h.until-w.now) <= 0 {
			w.dropFrame(h.key.side, &h.buf, drop.FragTimeout)
			h.until = 0
			f.n--
		}
	}
}

// fragment splits a translated packet that exceeds the egress MTU and has
// DF clear (RFC 4787 REQ-13a: fragment, and send the fragments in order).
// The first fragment stays in the received frame; the others are built in
// frames of the egress port.
func (w *Worker) fragment(owner, egress Side, b *port.Buf, p *header.Parsed) {
	mtu := w.snap.mtu[egress]
	f := b.Data
	l3, l4 := p.L3Off, p.L4Off
	ihl := l4 - l3
	payload := p.End - l4
	chunk := (mtu - ihl) &^ 7
	if chunk < 8 {
		w.dropFrame(owner, b, drop.FragNeeded)
		return
	}
	frags := &w.fragBufs
	n := 0
	for off := chunk; off < payload; off += chunk {
		if n == len(frags) || w.ports[egress].Alloc(frags[n:n+1]) != 1 {
			w.ports[egress].Free(frags[:n])
			w.dropFrame(owner, b, drop.NoFrame)
			return
		}
		size := min(chunk, payload-off)
		nb := &frags[n]
		n++
		nb.Data = nb.Data[:l4+size]
		copy(nb.Data[:l4], f[:l4])
		copy(nb.Data[l4:], f[l4+off:l4+off+size])
		ip := header.IPv4(nb.Data[l3:])
		ip.SetTotalLen(uint16(ihl + size))
		ip.SetFlagsFragment(false, off+size < payload || p.MF, int(p.FragOff)+off)
		ip.SetChecksum(0)
		ip.SetChecksum(ip.CalculateChecksum())
	}
	b.Data = f[:l4+chunk]
	ip := header.IPv4(b.Data[l3:])
	ip.SetTotalLen(uint16(ihl + chunk))
	ip.SetFlagsFragment(false, true, int(p.FragOff))
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())
	w.c[FragmentsMade] += uint64(n + 1)
	w.l2send(owner, egress, b, p.Dst)
	for i := 0; i < n; i++ {
		w.l2send(egress, egress, &frags[i], p.Dst)
	}
}
