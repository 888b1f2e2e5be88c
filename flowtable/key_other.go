//go:build !(amd64 || arm64)

package flowtable

import "encoding/binary"

// unpackFrom writes the fields of k one by one: the portable version of
// key_le.go's, for machines whose byte order or alignment rules it does
// not assume.
func (k *Key) unpackFrom(w0, w1 uint64) {
	binary.LittleEndian.PutUint32(k.Src[:], uint32(w0))
	binary.LittleEndian.PutUint32(k.Dst[:], uint32(w0>>32))
	k.SrcPort = uint16(w1)
	k.DstPort = uint16(w1 >> 16)
	k.Proto = uint8(w1 >> 32)
}
