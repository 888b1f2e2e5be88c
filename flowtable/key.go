package flowtable

import "encoding/binary"

// Key identifies one direction of a flow as it appears on the wire: the
// 5-tuple of a TCP or UDP packet, or (addresses, ICMP query id, protocol) for
// ICMP, where the id sits in SrcPort or DstPort as the NAT engine decides.
//
// Key is comparable, holds no pointers and has no implicit padding: the
// explicit pad keeps its size at 16 bytes (a test asserts it), so two keys
// compare equal exactly when their fields do.
type Key struct {
	Src     [4]byte
	Dst     [4]byte
	SrcPort uint16
	DstPort uint16
	Proto   uint8
	_       [3]byte
}

// KeySize is the size of a Key in bytes.
const KeySize = 16

// pack encodes k into the two words stored in a record. The encoding is
// independent of struct layout and of the pad bytes.
func (k *Key) pack() (uint64, uint64) {
	w0 := uint64(binary.LittleEndian.Uint32(k.Src[:])) | uint64(binary.LittleEndian.Uint32(k.Dst[:]))<<32
	w1 := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	return w0, w1
}

// unpack is the inverse of pack.
func unpack(w0, w1 uint64) Key {
	var k Key
	k.unpackFrom(w0, w1)
	return k
}

// unpackFrom (key_le.go, key_other.go) overwrites k with the key packed
// in (w0, w1). It writes k in place rather than building a Key and copying
// it: a Key assembled from narrow stores and then copied with one 16-byte
// load stalls on store forwarding, which costs more than the whole hash
// lookup.

// Reverse returns the key of the opposite direction of the same flow.
func (k Key) Reverse() Key {
	return Key{Src: k.Dst, Dst: k.Src, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto}
}
