package checksum

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// refChecksum is the slow reference: the textbook RFC 1071 loop over
// big-endian 16-bit words, a trailing odd byte padded with zero, and
// end-around carry folded at the end.
func refChecksum(b []byte, initial uint16) uint16 {
	s := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestChecksumMatchesReferenceEveryLengthAndOffset(t *testing.T) {
	const maxLen, maxOff = 2048, 7
	rng := rand.New(rand.NewPCG(1, 2))
	patterns := map[string]func(i int) byte{
		"random": func(int) byte { return byte(rng.Uint32()) },
		// All ones makes every 64-bit add carry: the end-around carry path.
		"ones":  func(int) byte { return 0xFF },
		"zeros": func(int) byte { return 0 },
		// Mostly ones with sparse zeros: carries that stop and restart.
		"nearly-ones": func(i int) byte {
			if i%13 == 0 {
				return 0
			}
			return 0xFF
		},
	}
	initials := []uint16{0, 1, 0x8000, 0xFFFE, 0xFFFF}
	for name, fill := range patterns {
		buf := make([]byte, maxLen+maxOff)
		for i := range buf {
			buf[i] = fill(i)
		}
		for off := 0; off <= maxOff; off++ {
			for n := 0; n <= maxLen; n++ {
				b := buf[off : off+n]
				initial := initials[(n+off)%len(initials)]
				if name == "random" {
					initial = uint16(rng.Uint32())
				}
				got, want := Checksum(b, initial), refChecksum(b, initial)
				if got != want {
					t.Fatalf("%s: Checksum(len %d, off %d, initial %#04x) = %#04x, reference %#04x",
						name, n, off, initial, got, want)
				}
			}
		}
	}
}

func TestChecksumKnownValues(t *testing.T) {
	// RFC 1071 section 3 worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum
	// to ddf2 (before complementing).
	rfc := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(rfc, 0); got != 0xddf2 {
		t.Errorf("RFC 1071 example: got %#04x, want 0xddf2", got)
	}
	// A real IPv4 header (the classic example, checksum field b861).
	hdr := []byte{
		0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00,
		0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
		0xc0, 0xa8, 0x00, 0xc7,
	}
	if got := Checksum(hdr, 0); got != 0xFFFF {
		t.Errorf("valid IPv4 header sums to %#04x, want 0xffff", got)
	}
	binary.BigEndian.PutUint16(hdr[10:], 0)
	if got := Finish(Checksum(hdr, 0)); got != 0xb861 {
		t.Errorf("IPv4 header checksum = %#04x, want 0xb861", got)
	}
	// Negative zero: nonzero data never sums to +0.
	if got := Checksum([]byte{0xFF, 0xFF}, 0); got != 0xFFFF {
		t.Errorf("Checksum(ffff) = %#04x, want 0xffff", got)
	}
	if got := Checksum([]byte{0x00, 0x01}, 0xFFFE); got != 0xFFFF {
		t.Errorf("Checksum(0001, fffe) = %#04x, want 0xffff", got)
	}
	if got := Checksum(nil, 0); got != 0 {
		t.Errorf("Checksum(nil, 0) = %#04x, want 0", got)
	}
	// Odd length: trailing byte is the high byte of a zero-padded word.
	if got := Checksum([]byte{0x12, 0x34, 0x56}, 0); got != 0x1234+0x5600 {
		t.Errorf("odd length: got %#04x, want %#04x", got, 0x1234+0x5600)
	}
}

func TestChecksumChainsAcrossPieces(t *testing.T) {
	// Splitting at an even offset and passing the first sum as initial must
	// give the sum of the whole.
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1500)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for split := 0; split <= len(buf); split += 2 {
		got := Checksum(buf[split:], Checksum(buf[:split], 0))
		if want := Checksum(buf, 0); got != want {
			t.Fatalf("split at %d: %#04x != %#04x", split, got, want)
		}
	}
}

func refCombine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestCombine(t *testing.T) {
	edges := []uint16{0, 1, 2, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF}
	for _, a := range edges {
		for _, b := range edges {
			if got, want := Combine(a, b), refCombine(a, b); got != want {
				t.Errorf("Combine(%#04x, %#04x) = %#04x, want %#04x", a, b, got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1 << 20 {
		a, b := uint16(rng.Uint32()), uint16(rng.Uint32())
		if got, want := Combine(a, b), refCombine(a, b); got != want {
			t.Fatalf("Combine(%#04x, %#04x) = %#04x, want %#04x", a, b, got, want)
		}
	}
}

func refPseudo(src, dst [4]byte, proto uint8, length uint16) uint16 {
	ph := make([]byte, 12)
	copy(ph[0:], src[:])
	copy(ph[4:], dst[:])
	ph[9] = proto
	binary.BigEndian.PutUint16(ph[10:], length)
	return refChecksum(ph, 0)
}

func TestPseudoHeaderSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cases := [][4]byte{{0, 0, 0, 0}, {255, 255, 255, 255}, {10, 0, 0, 1}}
	for range 10000 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], rng.Uint32())
		cases = append(cases, a)
	}
	for i, src := range cases {
		dst := cases[(i*7+1)%len(cases)]
		proto := uint8(rng.Uint32())
		length := uint16(rng.Uint32())
		if i < 3 {
			proto, length = 0xFF, 0xFFFF
		}
		if got, want := PseudoHeaderSum(src, dst, proto, length), refPseudo(src, dst, proto, length); got != want {
			t.Fatalf("PseudoHeaderSum(%v, %v, %d, %d) = %#04x, want %#04x", src, dst, proto, length, got, want)
		}
	}
}

func TestFinish(t *testing.T) {
	if Finish(0x1234) != 0xEDCB {
		t.Error("Finish must complement")
	}
	// RFC 768: a computed zero checksum is transmitted as all ones.
	if got := FinishUDP(0xFFFF); got != 0xFFFF {
		t.Errorf("FinishUDP(sum 0xffff) = %#04x, want 0xffff (never 0)", got)
	}
	if got := FinishUDP(0x1234); got != 0xEDCB {
		t.Errorf("FinishUDP(0x1234) = %#04x, want 0xedcb", got)
	}
	for s := range 1 << 16 {
		if FinishUDP(uint16(s)) == 0 {
			t.Fatalf("FinishUDP(%#04x) = 0: would mean \"no checksum\"", s)
		}
	}
}

// sink defeats dead-code elimination in benchmarks.
var sink uint16

func BenchmarkChecksum(b *testing.B) {
	impls := []struct {
		name string
		fn   func([]byte, uint16) uint16
	}{
		{"opt", Checksum},
		{"ref", refChecksum},
		{"halves", halvesChecksum},
	}
	buf := make([]byte, 1500+1)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for _, impl := range impls {
		for _, n := range []int{20, 64, 576, 1500} {
			// Offset 1: the parser's buffers are not 8-byte aligned either
			// (an IPv4 header sits 14 bytes into the frame).
			data := buf[1 : 1+n]
			b.Run(fmt.Sprintf("impl=%s/size=%d", impl.name, n), func(b *testing.B) {
				b.SetBytes(int64(n))
				b.ReportAllocs()
				var s uint16
				for b.Loop() {
					s = impl.fn(data, s)
				}
				sink = s
			})
		}
	}
}

// halvesChecksum is the design alternative to the shipped carry-chain loop:
// add 32-bit halves into a 64-bit accumulator so that no carry is ever lost
// (no carry handling at all), two accumulators for instruction-level
// parallelism. It is kept only to show, in the same benchmark run, why the
// shipped version uses bits.Add64.
func halvesChecksum(b []byte, initial uint16) uint16 {
	var a0, a1 uint64
	for len(b) >= 32 {
		w0 := binary.LittleEndian.Uint64(b[0:8])
		w1 := binary.LittleEndian.Uint64(b[8:16])
		w2 := binary.LittleEndian.Uint64(b[16:24])
		w3 := binary.LittleEndian.Uint64(b[24:32])
		a0 += w0&0xffffffff + w0>>32 + w2&0xffffffff + w2>>32
		a1 += w1&0xffffffff + w1>>32 + w3&0xffffffff + w3>>32
		b = b[32:]
	}
	for len(b) >= 4 {
		a0 += uint64(binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		a1 += uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		a1 += uint64(b[0])
	}
	s := a0 + a1
	s = s>>32 + s&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	x := uint16(s)
	return Combine(initial, x<<8|x>>8)
}

func TestHalvesChecksumMatchesReference(t *testing.T) {
	// The benchmark alternative must be correct for the comparison to mean
	// anything.
	rng := rand.New(rand.NewPCG(9, 10))
	buf := make([]byte, 1600)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for n := 0; n < 1590; n++ {
		if got, want := halvesChecksum(buf[n%8:n%8+n], 0x1234), refChecksum(buf[n%8:n%8+n], 0x1234); got != want {
			t.Fatalf("len %d: %#04x != %#04x", n, got, want)
		}
	}
}

func TestChecksumAllocs(t *testing.T) {
	buf := make([]byte, 1500)
	if n := testing.AllocsPerRun(100, func() { sink = Checksum(buf, 0) }); n != 0 {
		t.Errorf("Checksum allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		sink = UpdateUDPAddrPort(sink, [4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2)
		sink = Update16(sink, 1, 2)
		sink = PseudoHeaderSum([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 6, 40)
	}); n != 0 {
		t.Errorf("incremental updates allocate %v times", n)
	}
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte{}, uint16(0), uint8(0))
	f.Add([]byte{0xFF}, uint16(0xFFFF), uint8(0))
	f.Add([]byte{0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7}, uint16(0), uint8(1))
	ones := make([]byte, 300)
	for i := range ones {
		ones[i] = 0xFF
	}
	f.Add(ones, uint16(1), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, initial uint16, off uint8) {
		if int(off) > len(data) {
			off = uint8(len(data))
		}
		b := data[off:]
		if got, want := Checksum(b, initial), refChecksum(b, initial); got != want {
			t.Fatalf("Checksum(len %d, initial %#04x) = %#04x, reference %#04x", len(b), initial, got, want)
		}
	})
}
