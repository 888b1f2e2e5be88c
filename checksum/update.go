package checksum

import "encoding/binary"

// Incremental update (RFC 1624).
//
// RFC 1624 section 2 names HC the old checksum field, C the one's-complement
// sum of the old header (so HC = ~C), m and m' the old and new value of a
// changed 16-bit field, and the primes the new values. RFC 1141 updated the
// field with
//
//	HC' = HC + m + ~m'                     [Eqn. 2]
//
// which "appears to work" but, RFC 1624 section 3, "there are boundary
// conditions under which it produces a result which differs from the one
// obtained by checksum computation from scratch. This is due to the way zero
// is handled in one's complement arithmetic." End-around-carry addition of
// inputs that are not all zero never yields +0 (0x0000); it yields -0
// (0xFFFF) instead. A checksum computed from scratch is ~C' where C' is such
// a sum, so it is never 0xFFFF but may well be 0x0000. Eqn. 2 sums the field
// itself, so exactly when the right answer is 0x0000 it returns 0xFFFF.
// (Receivers accept either, but a rewritten packet would then differ from a
// freshly built one, and for UDP 0x0000 versus 0xFFFF is not a matter of
// taste.) RFC 1624 fixes this by summing the complement and complementing
// once at the end, so the value that may become -0 is the sum, never the
// field:
//
//	HC' = ~(C + (-m) + m')    --    [Eqn. 3]
//	    = ~(~HC + ~m + m')
//
// Every Update function below is Eqn. 3 over one or more changed 16-bit
// words. Its result equals a recomputation from scratch bit for bit whenever
// hc was itself computed from scratch, which the tests check exhaustively.
// Eqn. 3 also keeps a wrong checksum wrong by the same amount: a packet that
// arrived corrupt still fails verification after the rewrite.
//
// The changed words must sit at even offsets from the start of the
// checksummed data (all header fields the NAT rewrites do).

// Update16 returns the checksum field hc after one 16-bit word of the
// checksummed data (a port, an ICMP identifier, the TTL/protocol word)
// changed from old to new. Not for UDP: use UpdateUDP16.
func Update16(hc, old, new uint16) uint16 {
	// RFC 1624 Eqn. 3: HC' = ~(~HC + ~m + m'). Three 16-bit terms fit in 32
	// bits with room to spare; fold32 adds the carries back around.
	s := uint32(^hc) + uint32(^old) + uint32(new)
	return ^fold32(s)
}

// Update32 returns the checksum field hc after a 32-bit field (an IPv4
// address) of the checksummed data changed from old to new. It is Eqn. 3
// applied to both halves at once, with one fold. Not for UDP: use
// UpdateUDP32.
func Update32(hc uint16, old, new [4]byte) uint16 {
	// ^o complements both 16-bit halves of the old value at once: ~m for
	// each. Five 16-bit terms fit in 32 bits.
	o := ^binary.BigEndian.Uint32(old[:])
	n := binary.BigEndian.Uint32(new[:])
	s := uint32(^hc) + o>>16 + o&0xffff + n>>16 + n&0xffff
	return ^fold32(s)
}

// UpdateAddrPort returns the checksum field hc after an address and a port
// both changed: the NAT rewrite of a TCP checksum, whose coverage includes
// the address through the pseudo-header and the port in the header (RFC 793
// section 3.1). One fold instead of two. Not for UDP: use UpdateUDPAddrPort.
func UpdateAddrPort(hc uint16, oldAddr, newAddr [4]byte, oldPort, newPort uint16) uint16 {
	// UpdateWith(hc, AddrChange(oldAddr, newAddr), oldPort, newPort),
	// spelt out to stay within the inlining budget.
	return ^fold32(uint32(^hc) + AddrChange(oldAddr, newAddr) + uint32(^oldPort) + uint32(newPort))
}

// AddrChange returns the terms an address change from old to new adds to
// Eqn. 3 in every checksum that covers the address: ~m + m' for each of its
// two 16-bit halves. A NAT rewrite changes one address that both the IPv4
// header checksum and, through the pseudo-header, the TCP or UDP checksum
// cover (RFC 791, RFC 793, RFC 768), together with one more word in each
// (the TTL/protocol word; the port): it computes the address's terms once
// and applies them to both with UpdateWith or UpdateUDPWith.
func AddrChange(old, new [4]byte) uint32 {
	return AddrChange32(binary.BigEndian.Uint32(old[:]), binary.BigEndian.Uint32(new[:]))
}

// AddrChange32 is AddrChange for addresses held as big-endian integers.
func AddrChange32(old, new uint32) uint32 {
	// ^old complements both 16-bit halves at once: ~m for each. Four
	// 16-bit terms.
	o := ^old
	return o>>16 + o&0xffff + new>>16 + new&0xffff
}

// UpdateWith returns the checksum field hc after the address change
// addr (from AddrChange) and the change of one more 16-bit word from old
// to new. Not for UDP: use UpdateUDPWith.
func UpdateWith(hc uint16, addr uint32, old, new uint16) uint16 {
	// Seven 16-bit terms: at most 7*0xFFFF, far below 2^32.
	return ^fold32(uint32(^hc) + addr + uint32(^old) + uint32(new))
}

// UpdateDecTTL returns an IPv4 header checksum field hc after the address
// change addr (from AddrChange) and the TTL's decrement by one, for a TTL
// of at least 1 before it. The TTL is the high byte of the TTL/protocol
// word x, so its Eqn. 3 terms are ~x + (x - 0x0100) = 0xFFFF - 0x0100 =
// 0xFEFF whatever x is (x >= 0x0100, so nothing borrows): a constant, and
// the word need not be read. UpdateWith(hc, addr, x, x-0x0100) without the
// load (TestUpdateDecTTLMatchesUpdateWith).
func UpdateDecTTL(hc uint16, addr uint32) uint16 {
	// Six 16-bit terms: at most 6*0xFFFF, far below 2^32.
	return ^fold32(uint32(^hc) + addr + 0xFEFF)
}

// UDP checksum rules (RFC 768):
//
//   - a transmitted checksum of 0x0000 means the sender computed none; it
//     must stay 0x0000 through any rewrite, because the receiver then skips
//     verification, and an "updated" value would fail it;
//   - a computed checksum of 0x0000 is transmitted as 0xFFFF.
//
// The UpdateUDP functions apply both rules, so a UDP checksum field is
// always updated through them and never through the plain Update functions.

// UpdateUDP16 is Update16 for a UDP checksum field.
func UpdateUDP16(hc, old, new uint16) uint16 {
	if hc == 0 {
		return 0
	}
	return udpField(Update16(hc, old, new))
}

// UpdateUDP32 is Update32 for a UDP checksum field.
func UpdateUDP32(hc uint16, old, new [4]byte) uint16 {
	if hc == 0 {
		return 0
	}
	return udpField(Update32(hc, old, new))
}

// UpdateUDPAddrPort is UpdateAddrPort for a UDP checksum field.
func UpdateUDPAddrPort(hc uint16, oldAddr, newAddr [4]byte, oldPort, newPort uint16) uint16 {
	return UpdateUDPWith(hc, AddrChange(oldAddr, newAddr), oldPort, newPort)
}

// UpdateUDPWith is UpdateWith for a UDP checksum field.
func UpdateUDPWith(hc uint16, addr uint32, old, new uint16) uint16 {
	if hc == 0 {
		return 0
	}
	return udpField(UpdateWith(hc, addr, old, new))
}

// udpField maps an updated, non-absent UDP checksum to its transmitted
// form: Eqn. 3 yields 0x0000 exactly when a recomputation would, and RFC 768
// sends that as 0xFFFF.
func udpField(f uint16) uint16 {
	if f == 0 {
		return 0xFFFF
	}
	return f
}

// UpdateDecTTLSwapped is UpdateDecTTL for a checksum field and address
// terms loaded in the other byte order, as a little-endian machine loads
// the network's words: the one's-complement sum of byte-swapped words is
// the byte-swapped sum (RFC 1071 section 2(B)), so the result, stored back
// in that order, is UpdateDecTTL's bytes. Only the TTL's constant term
// changes: the decrement takes one from the low byte of the swapped
// TTL/protocol word x, so ~x + (x - 1) = 0xFFFE (TestUpdateDecTTLSwapped).
func UpdateDecTTLSwapped(hc uint16, addr uint32) uint16 {
	return ^fold32(uint32(^hc) + addr + 0xFFFE)
}
