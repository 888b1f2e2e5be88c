package nat

import (
	"time"

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
// Both structures are per worker, fixed-size and preallocated, and never
// touch unfragmented traffic (RFC 4787 REQ-14a). Held fragments occupy
// frames of the port they arrived on, which the port also needs to
// receive, so their number is bounded by Limits.HeldFragments, never more
// than a quarter of the port's frames (MaxHeldFragmentsFor), and by
// Limits.HeldFragmentBytes; and each source address may hold only its own
// share (Limits.HeldFragmentsPerSource, HeldFragmentBytesPerSource), so a
// flood of orphans from one sender leaves room for everyone else's
// fragments. The limits are read from the snapshot on every fragment, so a
// reload applies from the next burst; the holding area is allocated once,
// for the largest limit the worker accepts. Fragments of one datagram must
// reach one worker, which holds when the NIC hashes fragmented packets on
// addresses only, as RSS does.

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
	until uint32 // 0: the slot is free
}

// srcCount is what one source address (on one side) holds.
type srcCount struct {
	src    [4]byte
	side   Side
	used   bool
	frames uint32
	bytes  uint32
}

const fragSlots = 1024 // power of two

// fragState is a worker's fragment state; only its goroutine uses it.
type fragState struct {
	slots [fragSlots]fragEntry
	held  []heldFrag // len == MaxHeldFragmentsFor(its ports)
	free  []int32    // indices of free held slots (a stack)
	n     int        // held frames
	bytes int        // held bytes (frame lengths)
	next  uint32     // no held fragment expires before this tick
	// srcs counts held fragments per source: open addressing with linear
	// probing, at least twice as many slots as fragments can be held, so
	// a free slot always ends a probe.
	srcs    []srcCount
	srcMask uint32
	seed    uint32 // keeps a sender from choosing colliding sources
	// orig is the received key of the frame being processed.
	orig fragKey
	// reparse is where a held fragment is parsed again when its first
	// fragment arrives: a field, not a local, so that it does not escape
	// to the heap through the forward -> rememberFirstFragment cycle.
	reparse header.Parsed
}

// MaxHeldFragmentsFor is the most out-of-order fragments a worker whose
// ports have frames frames each (the smaller of the two; 0 if unknown) may
// hold: a quarter of them, for the port needs the rest to receive, to wait
// for neighbours and to transmit.
func MaxHeldFragmentsFor(frames int) int {
	if frames <= 0 {
		return MaxHeldFragments
	}
	return min(MaxHeldFragments, frames/4)
}

func (f *fragState) init(capacity int, seed uint32) {
	f.held = make([]heldFrag, capacity)
	f.free = make([]int32, capacity)
	for i := range f.free {
		f.free[i] = int32(capacity - 1 - i)
	}
	n := 1
	for n < 2*capacity {
		n <<= 1
	}
	f.srcs = make([]srcCount, n)
	f.srcMask = uint32(n - 1)
	f.seed = seed
}

func (k *fragKey) hash() uint32 {
	h := uint32(2166136261)
	for _, b := range [...]byte{k.src[0], k.src[1], k.src[2], k.src[3], k.dst[0], k.dst[1], k.dst[2], k.dst[3],
		byte(k.id), byte(k.id >> 8), k.proto, byte(k.side)} {
		h = (h ^ uint32(b)) * 16777619
	}
	return h
}

// fragLive reports whether a translation that expires at tick until is
// still valid at tick now. Ticks wrap every 49.7 days; a deadline is at
// most the fragment timeout (≤ maxTimeout) ahead of the tick it was set
// at, so a live one is less than maxTimeout ahead of now. int32(until-now)
// > 0 alone would bring an entry that expired 2^31 ms (24.9 days) ago back
// to life, and a later fragment would follow a translation whose port may
// belong to someone else by then.
func fragLive(until, now uint32) bool {
	d := until - now
	return d != 0 && d <= uint32(maxTimeout/time.Millisecond)
}

func (f *fragState) find(k *fragKey, now uint32) *fragEntry {
	h := k.hash()
	for i := uint32(0); i < 4; i++ {
		e := &f.slots[(h+i)&(fragSlots-1)]
		if e.used && e.key == *k && fragLive(e.until, now) {
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
		if !s.used || s.key == e.key || !fragLive(s.until, now) {
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

// source returns the slot of source src on side: its own, or the free
// slot where it would go (used == false).
func (f *fragState) source(src [4]byte, side Side) uint32 {
	h := f.seed
	for _, b := range [...]byte{src[0], src[1], src[2], src[3], byte(side)} {
		h = (h ^ uint32(b)) * 16777619
	}
	i := h & f.srcMask
	for {
		s := &f.srcs[i]
		if !s.used || (s.src == src && s.side == side) {
			return i
		}
		i = (i + 1) & f.srcMask
	}
}

// take counts a held fragment of len bytes against its source.
func (f *fragState) take(i uint32, src [4]byte, side Side, n int) {
	s := &f.srcs[i]
	if !s.used {
		*s = srcCount{src: src, side: side, used: true}
	}
	s.frames++
	s.bytes += uint32(n)
	f.n++
	f.bytes += n
}

// give undoes take for a fragment that leaves the holding area, deleting
// the source's slot with its last fragment (backward-shift deletion, so
// that probes need no tombstones).
func (f *fragState) give(src [4]byte, side Side, n int) {
	f.n--
	f.bytes -= n
	i := f.source(src, side)
	s := &f.srcs[i]
	s.frames--
	s.bytes -= uint32(n)
	if s.frames != 0 {
		return
	}
	for j := (i + 1) & f.srcMask; f.srcs[j].used; j = (j + 1) & f.srcMask {
		// Move entry j into the hole at i if its home slot does not lie
		// cyclically in (i, j].
		home := f.home(&f.srcs[j])
		if (j-home)&f.srcMask >= (j-i)&f.srcMask {
			f.srcs[i] = f.srcs[j]
			i = j
		}
	}
	f.srcs[i] = srcCount{}
}

func (f *fragState) home(s *srcCount) uint32 {
	h := f.seed
	for _, b := range [...]byte{s.src[0], s.src[1], s.src[2], s.src[3], byte(s.side)} {
		h = (h ^ uint32(b)) * 16777619
	}
	return h & f.srcMask
}

// holds reports whether source src on side holds any fragment.
func (f *fragState) holds(src [4]byte, side Side) bool {
	return f.n != 0 && f.srcs[f.source(src, side)].used
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
	f := &w.frag
	if !f.holds(e.key.src, e.key.side) {
		return
	}
	for i := range f.held {
		h := &f.held[i]
		if h.until != 0 && h.key == e.key {
			b := h.buf
			side := h.key.side
			f.release(int32(i))
			// The held frame is parsed again: it is a non-first
			// fragment, and now has a translation to follow.
			header.Parse(b.Data, &f.reparse)
			w.translateFragment(side, &b, &f.reparse, &e)
			if !f.holds(e.key.src, e.key.side) {
				return
			}
		}
	}
}

// release frees held slot i, whose frame the caller has taken.
func (f *fragState) release(i int32) {
	h := &f.held[i]
	f.give(h.key.src, h.key.side, len(h.buf.Data))
	*h = heldFrag{}
	f.free = append(f.free, i)
}

// laterFragment handles a non-first fragment.
func (w *Worker) laterFragment(side Side, b *port.Buf, p *header.Parsed) {
	k := fragKey{src: p.Src, dst: p.Dst, id: p.IPID, proto: p.Proto, side: side}
	if e := w.frag.find(&k, w.now); e != nil {
		w.translateFragment(side, b, p, e)
		return
	}
	w.holdFragment(side, b, &k)
}

// holdFragment keeps a later fragment until its first fragment comes,
// within the worker's and its source's limits.
func (w *Worker) holdFragment(side Side, b *port.Buf, k *fragKey) {
	f := &w.frag
	l := &w.snap.Config.Limits
	size := len(b.Data)
	if f.n >= min(l.HeldFragments, len(f.held)) || f.bytes+size > l.HeldFragmentBytes {
		w.dropFrame(side, b, drop.FragCacheFull)
		return
	}
	si := f.source(k.src, side)
	frames, bytes := 0, 0
	if s := &f.srcs[si]; s.used {
		frames, bytes = int(s.frames), int(s.bytes)
	}
	if frames >= l.HeldFragmentsPerSource || bytes+size > l.HeldFragmentBytesPerSource {
		w.dropFrame(side, b, drop.FragSourceLimit)
		return
	}
	i := f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	until := w.now + w.snap.frag
	if until == 0 {
		until = 1 // 0 marks a free slot
	}
	if f.n == 0 || int32(until-f.next) < 0 {
		f.next = until
	}
	f.held[i] = heldFrag{key: *k, buf: *b, until: until}
	f.take(si, k.src, side, size)
	w.c[FragmentsHeld]++
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

// expire drops held fragments whose first fragment never came. It walks
// the holding area only when the earliest deadline has passed.
func (f *fragState) expire(w *Worker) {
	if f.n == 0 || int32(f.next-w.now) > 0 {
		return
	}
	next, first := uint32(0), true
	for i := range f.held {
		h := &f.held[i]
		if h.until == 0 {
			continue
		}
		if int32(h.until-w.now) <= 0 {
			b, side := h.buf, h.key.side
			f.release(int32(i))
			w.dropFrame(side, &b, drop.FragTimeout)
			continue
		}
		if first || int32(h.until-next) < 0 {
			next, first = h.until, false
		}
	}
	f.next = next
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
