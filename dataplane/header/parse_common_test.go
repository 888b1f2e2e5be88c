package header

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/drop"
)

// Parse's straight line for the common case against parseFrame, the
// general parser, which is the reference: for every frame both must give
// the same reason and the same Parsed.

// sameParse fails t unless Parse and parseFrame agree on frame. It returns
// Parse's reason.
func sameParse(t *testing.T, frame []byte) drop.Reason {
	t.Helper()
	var got, want Parsed
	// Garbage in both, so that a field one of them forgets to set shows.
	for i := range got.Src {
		got.Src[i], want.Src[i] = 0xEE, 0xDD
	}
	got.InnerL4Off, want.InnerL4Off = -1, -2
	r := Parse(frame, &got)
	wr := parseFrame(frame, &want)
	if r != wr || got != want {
		t.Fatalf("frame % x:\nParse      %v %+v\nparseFrame %v %+v", frame, r, got, wr, want)
	}
	return r
}

// commonSeeds are frames of the kinds Parse's straight line takes or
// nearly takes: UDP and TCP, with and without options, padding, a VLAN
// tag, fragments; with the golden and reason frames, every kind of frame
// the parser tests know.
func commonSeeds() [][]byte {
	var seeds [][]byte
	for _, c := range goldenCases {
		seeds = append(seeds, c.frame)
	}
	for _, c := range reasonCases {
		seeds = append(seeds, c.frame)
	}
	return append(seeds, udp64())
}

// mutate returns a copy of frame with a few random changes in its first
// 64 bytes, where the headers are: random bytes, or a header field set to
// an edge value; then, most of the time, the IPv4 header checksum fixed
// (if there is a plausible header at 14), so that the changes reach the
// checks behind it; and sometimes the frame cut short or padded.
func mutate(rng *rand.Rand, frame []byte) []byte {
	b := bytes.Clone(frame)
	span := min(len(b), 64)
	for range 1 + rng.IntN(3) {
		if span == 0 {
			break
		}
		i := rng.IntN(span)
		switch rng.IntN(4) {
		case 0:
			b[i] = byte(rng.Uint32())
		case 1:
			b[i] ^= 1 << rng.IntN(8)
		case 2: // an IPv4 length, flags or offset field, or a transport length
			fields := []int{14 + ipv4TotalLen, 14 + ipv4FlagsFrag, 34 + udpLength, 34 + tcpDataOff}
			if f := fields[rng.IntN(len(fields))]; f+1 < len(b) {
				vals := []uint16{0, 1, 7, 8, 19, 20, 27, 28, 39, 40, 0x4000, 0x2000, 0x0001, 0x5000, 0x4500, 0xFFFF}
				v := vals[rng.IntN(len(vals))]
				if rng.IntN(2) == 0 {
					v = uint16(len(b) - 14 - rng.IntN(4))
				}
				binary.BigEndian.PutUint16(b[f:], v)
			}
		default: // the IHL and version byte
			if len(b) > 14 {
				b[14] = []byte{0x45, 0x46, 0x44, 0x55, 0x4F}[rng.IntN(5)]
			}
		}
	}
	if rng.IntN(4) != 0 && len(b) >= 14+IPv4MinHeaderLen {
		if hl := int(b[14]&0x0F) * 4; hl >= IPv4MinHeaderLen && 14+hl <= len(b) {
			fixIPv4(b, 14)
		}
	}
	switch rng.IntN(8) {
	case 0:
		b = b[:rng.IntN(len(b)+1)]
	case 1:
		b = append(b, make([]byte, rng.IntN(20))...)
	}
	return b
}

// TestParseMatchesParseFrame compares the two on every seed and on random
// mutations of them, and checks that the mutations do reach the straight
// line both ways: some taken, some turned down after its first check.
func TestParseMatchesParseFrame(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	seeds := commonSeeds()
	taken, refused := 0, 0
	for _, s := range seeds {
		sameParse(t, s)
	}
	for i := 0; i < 200000; i++ {
		f := mutate(rng, seeds[rng.IntN(len(seeds))])
		r := sameParse(t, f)
		// What the straight line would take on its first look: untagged
		// IPv4 with IHL 5.
		if len(f) >= parseCommonMin && binary.BigEndian.Uint16(f[12:]) == EtherTypeIPv4 && f[14] == 0x45 {
			if r == drop.None {
				taken++
			} else {
				refused++
			}
		}
	}
	t.Logf("straight line: %d taken, %d refused", taken, refused)
	if taken < 1000 || refused < 1000 {
		t.Fatalf("mutations reached the straight line %d times taken, %d refused: too few to compare", taken, refused)
	}
}

// FuzzParseMatchesParseFrame is TestParseMatchesParseFrame for the fuzzer.
func FuzzParseMatchesParseFrame(f *testing.F) {
	for _, s := range commonSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) { sameParse(t, frame) })
}

// TestIPv4HeaderSumOK holds the straight line's header check to
// checksum.Checksum on random headers, headers with their checksum fixed,
// and the edge cases: all zero, all ones, a checksum field of 0x0000 or
// 0xFFFF.
func TestIPv4HeaderSumOK(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 2))
	check := func(h []byte) {
		t.Helper()
		want := checksum.Checksum(h, 0) == 0xFFFF
		if got := ipv4HeaderSumOK(h); got != want {
			t.Fatalf("header % x: ipv4HeaderSumOK %v, checksum.Checksum says %v", h, got, want)
		}
	}
	h := make([]byte, IPv4MinHeaderLen)
	check(h)
	for i := range h {
		h[i] = 0xFF
	}
	check(h)
	valid := 0
	for i := 0; i < 100000; i++ {
		for j := range h {
			h[j] = byte(rng.Uint32())
		}
		if rng.IntN(8) == 0 {
			clear(h[:10]) // few ones: sums near the bottom
		}
		check(h)
		if rng.IntN(2) == 0 {
			// Whatever its IHL says, the 20 bytes are the header here.
			IPv4(h).SetChecksum(0)
			IPv4(h).SetChecksum(^checksum.Checksum(h, 0))
			check(h)
			if checksum.Checksum(h, 0) == 0xFFFF {
				valid++
			}
			// The same sum with the field's other zero: 0xFFFF and 0x0000
			// are both "zero" in one's complement.
			if c := IPv4(h).Checksum(); c == 0 || c == 0xFFFF {
				IPv4(h).SetChecksum(^c)
				check(h)
			}
		}
	}
	if valid < 40000 {
		t.Fatalf("only %d valid headers checked", valid)
	}
}
