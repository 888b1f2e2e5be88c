package checksum

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// fullField recomputes a checksum field from scratch over data whose field
// at offset at is treated as zero.
func fullField(data []byte, at int, initial uint16, udp bool) uint16 {
	saved := binary.BigEndian.Uint16(data[at:])
	binary.BigEndian.PutUint16(data[at:], 0)
	s := refChecksum(data, initial)
	binary.BigEndian.PutUint16(data[at:], saved)
	if udp {
		return FinishUDP(s)
	}
	return Finish(s)
}

// sumExcept is the reference sum of data with the 16-bit words at the given
// offsets treated as zero.
func sumExcept(data []byte, initial uint16, at ...int) uint16 {
	saved := make([]uint16, len(at))
	for i, o := range at {
		saved[i] = binary.BigEndian.Uint16(data[o:])
		binary.BigEndian.PutUint16(data[o:], 0)
	}
	s := refChecksum(data, initial)
	for i, o := range at {
		binary.BigEndian.PutUint16(data[o:], saved[i])
	}
	return s
}

// zeroingWord returns the value that, written into a word whose other data
// sums to rest, makes the whole sum 0xFFFF (negative zero), so the checksum
// field computed from scratch is 0x0000.
func zeroingWord(rest uint16) uint16 {
	return 0xFFFF - rest
}

type randHeader struct {
	data []byte
	ck   int // offset of the checksum field
}

// newRandHeader builds random data of even length 4..64 with a checksum
// field at a random even offset, holding the checksum computed from
// scratch.
func newRandHeader(rng *rand.Rand, initial uint16, udp bool) randHeader {
	n := 4 + 2*rng.IntN(31)
	h := randHeader{data: make([]byte, n), ck: 2 * rng.IntN(n/2)}
	for i := range h.data {
		h.data[i] = byte(rng.Uint32())
	}
	binary.BigEndian.PutUint16(h.data[h.ck:], fullField(h.data, h.ck, initial, udp))
	return h
}

// otherWord picks an even offset for a field of size bytes that does not
// overlap the checksum field.
func (h randHeader) otherWord(rng *rand.Rand, size int) (int, bool) {
	for range 100 {
		o := 2 * rng.IntN(len(h.data)/2)
		if o+size <= len(h.data) && (o+size <= h.ck || o >= h.ck+2) {
			return o, true
		}
	}
	return 0, false
}

// checkUpdates is the test of an Update function against recomputation:
// 200000 times it builds a random header, changes a random size-byte word
// (2 or 4) of it to the value pick chooses, and checks that update, given
// the old field and the word's old and new value, returns the field
// computed from scratch, and that the data then verifies. pick forces
// results of 0x0000 often enough that at least 1000 must occur.
func checkUpdates(t *testing.T, name string, seed uint64, size int, pick func(rng *rand.Rand, i int, h randHeader, o int, old uint32) uint32, update func(hc uint16, old, new uint32) uint16) {
	t.Helper()
	word := func(b []byte) uint32 {
		if size == 2 {
			return uint32(binary.BigEndian.Uint16(b))
		}
		return binary.BigEndian.Uint32(b)
	}
	rng := rand.New(rand.NewPCG(seed, seed+1))
	zeros := 0
	for i := range 200000 {
		h := newRandHeader(rng, 0, false)
		o, ok := h.otherWord(rng, size)
		if !ok {
			continue
		}
		old := word(h.data[o:])
		new := pick(rng, i, h, o, old)
		hc := binary.BigEndian.Uint16(h.data[h.ck:])
		if size == 2 {
			binary.BigEndian.PutUint16(h.data[o:], uint16(new))
		} else {
			binary.BigEndian.PutUint32(h.data[o:], new)
		}
		got := update(hc, old, new)
		want := fullField(h.data, h.ck, 0, false)
		if got != want {
			t.Fatalf("%s(%#04x, %#x, %#x) = %#04x, recompute %#04x (data % x)", name, hc, old, new, got, want, h.data)
		}
		if want == 0 {
			zeros++
		}
		binary.BigEndian.PutUint16(h.data[h.ck:], got)
		if refChecksum(h.data, 0) != 0xFFFF {
			t.Fatalf("%s: updated data does not verify", name)
		}
	}
	if zeros < 1000 {
		t.Fatalf("%s: only %d cases produced a 0x0000 field; the forcing is broken", name, zeros)
	}
}

func TestUpdate16MatchesRecompute(t *testing.T) {
	pick := func(rng *rand.Rand, i int, h randHeader, o int, old uint32) uint32 {
		switch i % 4 {
		case 0: // force a from-scratch result of 0x0000
			return uint32(zeroingWord(sumExcept(h.data, 0, h.ck, o)))
		case 1: // unchanged value: the field must not move (RFC 1624 errata 4782)
			return old
		}
		return uint32(uint16(rng.Uint32()))
	}
	checkUpdates(t, "Update16", 11, 2, pick, func(hc uint16, old, new uint32) uint16 {
		return Update16(hc, uint16(old), uint16(new))
	})
}

func TestUpdate16UnchangedZeroField(t *testing.T) {
	// RFC 1624 errata 4782 claims Eqn. 3 turns a 0x0000 field into 0xFFFF
	// when m == m'. With end-around carry it does not: ~0 + ~m + m is
	// 0xFFFF + 0xFFFF, which folds to 0xFFFF, complemented 0x0000.
	for _, m := range []uint16{0, 0x5555, 0xFFFF} {
		if got := Update16(0x0000, m, m); got != 0x0000 {
			t.Errorf("Update16(0, %#04x, %#04x) = %#04x, want 0", m, m, got)
		}
	}
	// Eqn. 2 (RFC 1141), for contrast, yields -0 here.
	eqn2 := func(hc, m, m2 uint16) uint16 { return Combine(Combine(hc, m), ^m2) }
	if got := eqn2(0x0000, 0x5555, 0x5555); got != 0xFFFF {
		t.Errorf("Eqn. 2 sanity: got %#04x, want 0xffff (the -0 RFC 1624 fixes)", got)
	}
}

func TestUpdate32MatchesRecompute(t *testing.T) {
	pick := func(rng *rand.Rand, i int, h randHeader, o int, _ uint32) uint32 {
		n := rng.Uint32()
		if i%3 == 0 {
			// Force 0x0000: keep the high half random, solve for the low
			// (the high half goes in as an extra word at the end).
			rest := sumExcept(append(bytes.Clone(h.data), byte(n>>24), byte(n>>16)), 0, h.ck, o, o+2)
			n = n&0xFFFF0000 | uint32(zeroingWord(rest))
		}
		return n
	}
	checkUpdates(t, "Update32", 13, 4, pick, func(hc uint16, old, new uint32) uint16 {
		var o, n [4]byte
		binary.BigEndian.PutUint32(o[:], old)
		binary.BigEndian.PutUint32(n[:], new)
		return Update32(hc, o, n)
	})
}

// segment is a random TCP- or UDP-like datagram: a pseudo-header, a header
// with ports at 0 and 2, and the checksum field at ck.
type segment struct {
	src, dst [4]byte
	proto    uint8
	data     []byte
	ck       int
}

func newSegment(rng *rand.Rand, udp bool) segment {
	s := segment{proto: 6, ck: 16, data: make([]byte, 20+rng.IntN(40))}
	if udp {
		s.proto, s.ck, s.data = 17, 6, make([]byte, 8+rng.IntN(40))
	}
	binary.BigEndian.PutUint32(s.src[:], rng.Uint32())
	binary.BigEndian.PutUint32(s.dst[:], rng.Uint32())
	for i := range s.data {
		s.data[i] = byte(rng.Uint32())
	}
	if udp {
		binary.BigEndian.PutUint16(s.data[4:], uint16(len(s.data)))
	}
	binary.BigEndian.PutUint16(s.data[s.ck:], s.recompute())
	return s
}

func (s segment) pseudo() uint16 {
	return refPseudo(s.src, s.dst, s.proto, uint16(len(s.data)))
}

func (s segment) recompute() uint16 {
	return fullField(s.data, s.ck, s.pseudo(), s.proto == 17)
}

func (s segment) field() uint16 { return binary.BigEndian.Uint16(s.data[s.ck:]) }

func TestUpdateAddrPortMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, udp := range []bool{false, true} {
		zeros, ffff := 0, 0
		for i := range 200000 {
			s := newSegment(rng, udp)
			hc := s.field()
			oldAddr, oldPort := s.src, binary.BigEndian.Uint16(s.data[0:])
			var newAddr [4]byte
			binary.BigEndian.PutUint32(newAddr[:], rng.Uint32())
			newPort := uint16(rng.Uint32())
			s.src = newAddr
			if i%3 == 0 {
				// Force a computed sum of negative zero: from-scratch field
				// 0x0000 for TCP, 0xFFFF for UDP (RFC 768).
				binary.BigEndian.PutUint16(s.data[0:], 0)
				newPort = zeroingWord(sumExcept(s.data, s.pseudo(), s.ck))
			}
			binary.BigEndian.PutUint16(s.data[0:], newPort)
			// The fused update, and the same through the address's terms
			// computed apart (AddrChange), as the NAT's rewrite applies
			// them to two checksums.
			var got, with uint16
			if udp {
				got = UpdateUDPAddrPort(hc, oldAddr, newAddr, oldPort, newPort)
				with = UpdateUDPWith(hc, AddrChange(oldAddr, newAddr), oldPort, newPort)
			} else {
				got = UpdateAddrPort(hc, oldAddr, newAddr, oldPort, newPort)
				with = UpdateWith(hc, AddrChange(oldAddr, newAddr), oldPort, newPort)
			}
			want := s.recompute()
			if got != want || with != want {
				t.Fatalf("udp=%v: AddrPort update = %#04x, with AddrChange %#04x, recompute %#04x", udp, got, with, want)
			}
			switch want {
			case 0:
				zeros++
			case 0xFFFF:
				ffff++
			}
			// Sequential updates: address then port through the split
			// functions must agree with the fused one.
			s2 := newSegment(rng, udp)
			hc2, oa, op := s2.field(), s2.dst, binary.BigEndian.Uint16(s2.data[2:])
			na, np := newAddr, newPort
			s2.dst = na
			binary.BigEndian.PutUint16(s2.data[2:], np)
			var split, fused uint16
			if udp {
				split = UpdateUDP16(UpdateUDP32(hc2, oa, na), op, np)
				fused = UpdateUDPAddrPort(hc2, oa, na, op, np)
			} else {
				split = Update16(Update32(hc2, oa, na), op, np)
				fused = UpdateAddrPort(hc2, oa, na, op, np)
			}
			if want := s2.recompute(); split != want || fused != want {
				t.Fatalf("udp=%v: split %#04x fused %#04x recompute %#04x", udp, split, fused, want)
			}
		}
		if udp && (zeros != 0 || ffff < 1000) {
			t.Fatalf("udp: %d zero fields (must be 0), %d 0xffff fields (want many)", zeros, ffff)
		}
		if !udp && zeros < 1000 {
			t.Fatalf("tcp: only %d 0x0000 fields", zeros)
		}
	}
}

func TestUDPZeroChecksumRules(t *testing.T) {
	a, b := [4]byte{10, 0, 0, 1}, [4]byte{203, 0, 113, 7}
	// RFC 768: a transmitted 0 means "no checksum"; it stays 0.
	if got := UpdateUDP16(0, 1234, 4321); got != 0 {
		t.Errorf("UpdateUDP16 on absent checksum = %#04x, want 0", got)
	}
	if got := UpdateUDP32(0, a, b); got != 0 {
		t.Errorf("UpdateUDP32 on absent checksum = %#04x, want 0", got)
	}
	if got := UpdateUDPAddrPort(0, a, b, 1, 2); got != 0 {
		t.Errorf("UpdateUDPAddrPort on absent checksum = %#04x, want 0", got)
	}
	// A present checksum never becomes 0 through any UDP update, whatever
	// the change.
	rng := rand.New(rand.NewPCG(17, 18))
	for range 1 << 20 {
		hc := uint16(rng.Uint32()) | 1 // nonzero
		old, new := uint16(rng.Uint32()), uint16(rng.Uint32())
		if UpdateUDP16(hc, old, new) == 0 {
			t.Fatalf("UpdateUDP16(%#04x, %#04x, %#04x) = 0", hc, old, new)
		}
	}
	// The exact case: field 0x1234, word 0 -> 0x1234 makes the sum -0, so
	// Update16 says 0x0000 and the UDP form says 0xFFFF.
	if got := Update16(0x1234, 0, 0x1234); got != 0 {
		t.Fatalf("Update16 = %#04x, want 0", got)
	}
	if got := UpdateUDP16(0x1234, 0, 0x1234); got != 0xFFFF {
		t.Fatalf("UpdateUDP16 = %#04x, want 0xffff", got)
	}
	// And a 0xFFFF field (computed zero) updates like 0x0000 would have.
	if got, want := UpdateUDP16(0xFFFF, 5, 7), Update16(0x0000, 5, 7); got != want {
		t.Fatalf("UpdateUDP16 from 0xffff = %#04x, want %#04x", got, want)
	}
}

// BenchmarkUpdateAddrPort measures the incremental rewrite as the NAT uses
// it: inlined into the caller. It uses a b.N loop rather than b.Loop, which
// would keep the call from being inlined; each iteration depends on the
// previous result through hc, so nothing is hoisted and ns/op is the latency
// of one update.
func BenchmarkUpdateAddrPort(b *testing.B) {
	oldA, newA := [4]byte{192, 168, 1, 10}, [4]byte{203, 0, 113, 5}
	var hc uint16 = 0x1c46
	b.Run("fused", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			hc = UpdateAddrPort(hc, oldA, newA, uint16(i), uint16(i)+1)
		}
		sink = hc
	})
	b.Run("fused-udp", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			hc = UpdateUDPAddrPort(hc, oldA, newA, uint16(i), uint16(i)+1)
		}
		sink = hc
	})
	b.Run("split", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			hc = Update16(Update32(hc, oldA, newA), uint16(i), uint16(i)+1)
		}
		sink = hc
	})
}

func FuzzIncremental(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7},
		uint8(10), uint8(12), uint32(0x0a000001), false)
	f.Add([]byte{0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 'h', 'i', '!', '!'},
		uint8(6), uint8(0), uint32(0xdeadbeef), true)
	f.Fuzz(func(t *testing.T, data []byte, ck, at uint8, v uint32, udp bool) {
		// data is checksummed with its field at an even offset ck; the
		// 32-bit word at the even offset at changes to v. Compare the
		// incremental field with the one recomputed from scratch.
		if len(data)%2 == 1 {
			data = data[:len(data)-1]
		}
		if len(data) < 6 {
			return
		}
		c := (int(ck) % (len(data) - 1)) &^ 1 // c+2 <= len(data)
		o := (int(at) % (len(data) - 3)) &^ 1 // o+4 <= len(data)
		if o+4 > c && o < c+2 {
			return // the changed field overlaps the checksum field
		}
		binary.BigEndian.PutUint16(data[c:], fullField(data, c, 0, udp))
		hc := binary.BigEndian.Uint16(data[c:])
		if udp && hc == 0 {
			return // only a transmitter that skipped the checksum sends 0
		}
		var old, new [4]byte
		copy(old[:], data[o:])
		binary.BigEndian.PutUint32(new[:], v)
		copy(data[o:], new[:])
		var got16, got32 uint16
		if udp {
			got32 = UpdateUDP32(hc, old, new)
			got16 = UpdateUDP16(UpdateUDP16(hc,
				binary.BigEndian.Uint16(old[0:]), binary.BigEndian.Uint16(new[0:])),
				binary.BigEndian.Uint16(old[2:]), binary.BigEndian.Uint16(new[2:]))
		} else {
			got32 = Update32(hc, old, new)
			got16 = Update16(Update16(hc,
				binary.BigEndian.Uint16(old[0:]), binary.BigEndian.Uint16(new[0:])),
				binary.BigEndian.Uint16(old[2:]), binary.BigEndian.Uint16(new[2:]))
		}
		want := fullField(data, c, 0, udp)
		if !udp && sumExcept(data, 0, c) == 0 {
			// Degenerate: the new data (field excluded) is all zero bytes,
			// which no real header is. From scratch the field is ~0 =
			// 0xFFFF, Eqn. 3 gives the equivalent +0.
			want = 0
		}
		if got32 != want || got16 != want {
			t.Fatalf("field at %d, word at %d: Update32 %#04x, Update16x2 %#04x, recompute %#04x", c, o, got32, got16, want)
		}
	})
}

// TestUpdateDecTTLMatchesUpdateWith holds UpdateDecTTL, whose TTL terms are
// a constant, to its reference, UpdateWith over the TTL/protocol word read
// and decremented, and to a recomputation of a random IPv4 header from
// scratch, for every TTL from 1 to 255 and random checksums, protocols
// and address changes.
func TestUpdateDecTTLMatchesUpdateWith(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for i := range 300000 {
		ttl := uint16(1 + i%255)
		x := ttl<<8 | uint16(rng.Uint32()&0xff)
		addr := AddrChange32(rng.Uint32(), rng.Uint32())
		hc := uint16(rng.Uint32())
		if got, want := UpdateDecTTL(hc, addr), UpdateWith(hc, addr, x, x-0x0100); got != want {
			t.Fatalf("ttl %d, word %#04x, hc %#04x: UpdateDecTTL %#04x, UpdateWith %#04x", ttl, x, hc, got, want)
		}
		// A real header: from-scratch checksum before and after.
		var h [20]byte
		for j := range h {
			h[j] = byte(rng.Uint32())
		}
		h[8] = byte(ttl)
		oldAddr := binary.BigEndian.Uint32(h[12:])
		newAddr := rng.Uint32()
		binary.BigEndian.PutUint16(h[10:], 0)
		binary.BigEndian.PutUint16(h[10:], Finish(refChecksum(h[:], 0)))
		got := UpdateDecTTL(binary.BigEndian.Uint16(h[10:]), AddrChange32(oldAddr, newAddr))
		h[8]--
		binary.BigEndian.PutUint32(h[12:], newAddr)
		if want := fullField(h[:], 10, 0, false); got != want {
			t.Fatalf("header % x: UpdateDecTTL %#04x, recompute %#04x", h, got, want)
		}
	}
}

// TestUpdateDecTTLSwapped holds the little-endian form to UpdateDecTTL:
// the field and the address terms loaded little-endian give UpdateDecTTL's
// field, byte-swapped, and a from-scratch recomputation of a real header.
func TestUpdateDecTTLSwapped(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	for i := range 300000 {
		oldAddr, newAddr := rng.Uint32(), rng.Uint32()
		hc := uint16(rng.Uint32())
		if i%7 == 0 {
			hc = []uint16{0, 0xFFFF, 0x0001, 0xFFFE}[i%4]
		}
		want := bits.ReverseBytes16(UpdateDecTTL(hc, AddrChange32(oldAddr, newAddr)))
		got := UpdateDecTTLSwapped(bits.ReverseBytes16(hc), AddrChange32(bits.ReverseBytes32(oldAddr), bits.ReverseBytes32(newAddr)))
		if got != want {
			t.Fatalf("hc %#04x, %#08x -> %#08x: swapped %#04x, UpdateDecTTL swapped %#04x", hc, oldAddr, newAddr, got, want)
		}
		var h [20]byte
		for j := range h {
			h[j] = byte(rng.Uint32())
		}
		h[8] = byte(2 + i%254)
		binary.BigEndian.PutUint16(h[10:], 0)
		binary.BigEndian.PutUint16(h[10:], Finish(refChecksum(h[:], 0)))
		c := AddrChange32(binary.LittleEndian.Uint32(h[12:]), bits.ReverseBytes32(newAddr))
		got = UpdateDecTTLSwapped(binary.LittleEndian.Uint16(h[10:]), c)
		h[8]--
		binary.BigEndian.PutUint32(h[12:], newAddr)
		if want := fullField(h[:], 10, 0, false); got != bits.ReverseBytes16(want) {
			t.Fatalf("header % x: UpdateDecTTLSwapped %#04x, recompute %#04x", h, got, want)
		}
	}
}
