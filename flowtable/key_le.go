//go:build amd64 || arm64

package flowtable

import (
	"encoding/binary"
	"unsafe"
)

// unpackFrom writes the two packed words over k with two 8-byte stores. On
// a little-endian machine pack's words are exactly the Key's 16 bytes in
// memory (Src, Dst, then SrcPort, DstPort and Proto as little-endian
// fields, then the zero pad: stored words come from pack, whose bits 40..63
// of w1 are zero), so this is the field-by-field version (key_other.go) in
// two instructions instead of about a dozen narrow stores; the copy of a
// lookup's two keys into its Entry was a tenth of the lookup. Narrow loads
// of the fields afterwards forward from the wide stores. The view as bytes,
// not as words, keeps the conversion valid for a Key at any alignment.
func (k *Key) unpackFrom(w0, w1 uint64) {
	b := (*[KeySize]byte)(unsafe.Pointer(k))
	binary.LittleEndian.PutUint64(b[0:8], w0)
	binary.LittleEndian.PutUint64(b[8:16], w1)
}
