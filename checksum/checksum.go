// Package checksum computes and incrementally updates the Internet checksum
// (RFC 1071) for the NAT rewrite path.
//
// In the pipeline it sits under dataplane/header: the parser verifies the
// IPv4 header and ICMP checksums with Checksum, and every address, port,
// identifier and TTL rewrite fixes the affected checksums with the RFC 1624
// Update functions instead of summing the packet again. Full recomputation
// (Checksum plus PseudoHeaderSum) is for frames the appliance builds itself,
// such as ICMP errors, and for tests.
//
// Two kinds of 16-bit value appear in this API and must not be confused:
//
//   - a sum is the folded one's-complement sum of some data, NOT complemented
//     (the convention of gVisor's checksum package). Checksum and
//     PseudoHeaderSum return sums, and Checksum takes one as its initial
//     value, so sums chain across discontiguous pieces of a packet.
//   - a field is the value stored in a header's checksum field, which is the
//     complement of a sum. Finish and FinishUDP turn a sum into a field; the
//     Update functions take and return fields.
//
// Every function here is pure, allocation-free and safe for use by any
// goroutine.
package checksum

import (
	"encoding/binary"
	"math/bits"
)

// Checksum returns the one's-complement sum of b, taken as big-endian 16-bit
// words with a trailing odd byte padded on the right with zero (RFC 1071
// section 1), added to initial and folded to 16 bits. The result is not
// complemented: use Finish or FinishUDP to get the value a header stores.
//
// To verify a received checksum, sum the data including the checksum field
// (and, for TCP/UDP, the pseudo-header as initial): the data is intact iff
// the result is 0xFFFF (RFC 1071 section 1, step 3).
//
// b may start at any address and have any length. The result is 0 only when
// initial is 0 and every byte of b is 0; otherwise end-around carry keeps a
// zero total as 0xFFFF ("negative zero").
func Checksum(b []byte, initial uint16) uint16 {
	return Combine(initial, sum(b))
}

// sum is the folded, uncomplemented one's-complement sum of b in network
// byte order.
//
// RFC 1071 section 2(B), byte order independence: "the sum of 16-bit integers
// can be computed in either byte order". So we add the data as little-endian
// 64-bit words (a plain load on the machines we run on; each 64-bit word is
// four 16-bit words side by side, and a carry out of one 16-bit lane into the
// next is exactly the one's-complement carry, RFC 1071 section 2(C), "Parallel
// summation"), fold the 64-bit total down to 16 bits, and swap the two bytes
// once at the end to return to network order.
//
// The carry out of the top lane is the end-around carry; bits.Add64 chains
// carry it (the compiler emits ADC on amd64 and ADDS/ADCS on arm64). The carry
// is kept live across the whole loop and added back only at the end.
func sum(b []byte) uint16 {
	if len(b) == 20 {
		return sum20(b)
	}
	var acc, c uint64
	for len(b) >= 64 {
		acc, c = add32(acc, c, b[0:32])
		acc, c = add32(acc, c, b[32:64])
		b = b[64:]
	}
	if len(b) >= 32 {
		acc, c = add32(acc, c, b[0:32])
		b = b[32:]
	}
	if len(b) >= 16 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:16]), c)
		b = b[16:]
	}
	if len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	// The tail is under 8 bytes; gather it into one more word. Only the
	// parity of a byte's position matters: a byte at an even offset must land
	// in the low half of some 16-bit lane (the high half after the final
	// byte swap), so the shifts below stay multiples of 16. A trailing odd
	// byte is at an even offset, so it becomes the high byte of a word whose
	// low byte is zero: RFC 1071's "pad with a zero byte on the right".
	var t uint64
	var shift uint
	if len(b) >= 4 {
		t = uint64(binary.LittleEndian.Uint32(b[0:4]))
		b = b[4:]
		shift = 32
	}
	if len(b) >= 2 {
		t |= uint64(binary.LittleEndian.Uint16(b[0:2])) << shift
		b = b[2:]
		shift += 16
	}
	if len(b) == 1 {
		t |= uint64(b[0]) << shift
	}
	acc, c = bits.Add64(acc, t, c)
	// Add the last carry back in (end-around carry). t < 2^56, so if that
	// add carried out, acc is now below 2^56 and this cannot carry again.
	acc += c

	// Fold 64 -> 32 -> 16 bits with end-around carry. Each step's result
	// fits in one more bit than its width, so two folds per step suffice.
	s := acc>>32 + acc&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return bits.ReverseBytes16(uint16(s))
}

// add32 adds the 32 bytes of b to acc as four 64-bit words with carry in
// and out (c), the step that sum unrolls. It is small enough to be inlined,
// so the carry stays in a register across calls.
func add32(acc, c uint64, b []byte) (uint64, uint64) {
	b = b[:32]
	acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
	acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:16]), c)
	acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:24]), c)
	acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:32]), c)
	return acc, c
}

// sum20 is sum for the commonest input of all, an IPv4 header without
// options, which every packet's parse verifies. Five 32-bit words cannot
// overflow a 64-bit accumulator, so no carry chain is needed; a carry out of
// a word's low 16-bit lane lands in its high lane, which the fold adds back
// in (RFC 1071 section 2(C)).
func sum20(b []byte) uint16 {
	b = b[:20]
	a := uint64(binary.BigEndian.Uint32(b[0:4])) + uint64(binary.BigEndian.Uint32(b[4:8])) +
		uint64(binary.BigEndian.Uint32(b[8:12])) + uint64(binary.BigEndian.Uint32(b[12:16])) +
		uint64(binary.BigEndian.Uint32(b[16:20]))
	a = a>>32 + a&0xffffffff
	a = a>>16 + a&0xffff
	a = a>>16 + a&0xffff
	a = a>>16 + a&0xffff
	return uint16(a)
}

// Combine returns the one's-complement sum of two sums: a + b with
// end-around carry (RFC 1071 section 1).
func Combine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// Finish turns a sum into the value a checksum field stores: its one's
// complement (RFC 791 section 3.1, RFC 793 section 3.1, RFC 792). Use it for
// IPv4, TCP and ICMP; use FinishUDP for UDP.
func Finish(sum uint16) uint16 {
	return ^sum
}

// FinishUDP turns a UDP sum (pseudo-header included) into the value the UDP
// checksum field stores. RFC 768: "If the computed checksum is zero, it is
// transmitted as all ones (the equivalent in one's complement arithmetic). An
// all zero transmitted checksum value means that the transmitter generated no
// checksum". A computed 0x0000 therefore goes on the wire as 0xFFFF, so that
// a checksummed datagram is never mistaken for an unchecksummed one.
func FinishUDP(sum uint16) uint16 {
	f := ^sum
	if f == 0 {
		return 0xFFFF
	}
	return f
}

// PseudoHeaderSum returns the sum of the IPv4 pseudo-header that TCP
// (RFC 793 section 3.1) and UDP (RFC 768) prefix to their checksummed data:
//
//	+--------+--------+--------+--------+
//	|           source address          |
//	+--------+--------+--------+--------+
//	|         destination address       |
//	+--------+--------+--------+--------+
//	|  zero  |protocol|   TCP/UDP length |
//	+--------+--------+--------+--------+
//
// The result is meant to be passed as Checksum's initial value. length is
// the TCP segment length (header plus data) or the UDP length field.
func PseudoHeaderSum(src, dst [4]byte, proto uint8, length uint16) uint16 {
	a := binary.BigEndian.Uint32(src[:])
	b := binary.BigEndian.Uint32(dst[:])
	// Six 16-bit terms: no overflow of 32 bits.
	s := a>>16 + a&0xffff + b>>16 + b&0xffff + uint32(proto) + uint32(length)
	return fold32(s)
}

// fold32 folds a 32-bit sum of at most 65537 16-bit terms to 16 bits with
// end-around carry. The first fold leaves at most 0x1FFFE, the second at
// most 0xFFFF.
func fold32(s uint32) uint16 {
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}
