package flowtable

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// refHash is the reference: the xxhash library over the key's 16 bytes.
func refHash(w0, w1 uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], w0)
	binary.LittleEndian.PutUint64(b[8:], w1)
	return xxhash.Sum64(b[:])
}

func TestHashMatchesXXHash(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1_000_000; i++ {
		w0, w1 := r.Uint64(), r.Uint64()
		if i < 4 {
			w0, w1 = uint64(i), 0 // zeros and tiny values
		}
		if got, want := hash(w0, w1), refHash(w0, w1); got != want {
			t.Fatalf("hash(%#x, %#x) = %#x, xxhash says %#x", w0, w1, got, want)
		}
	}
}

func FuzzHash(f *testing.F) {
	f.Add(uint64(0), uint64(0))
	f.Add(^uint64(0), uint64(1))
	f.Fuzz(func(t *testing.T, w0, w1 uint64) {
		if hash(w0, w1) != refHash(w0, w1) {
			t.Fatalf("hash(%#x, %#x) differs from xxhash", w0, w1)
		}
	})
}

func BenchmarkHash(b *testing.B) {
	var sink uint64
	b.Run("inline", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			sink += hash(uint64(i), sink)
		}
	})
	b.Run("xxhash-library", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			sink += refHash(uint64(i), sink)
		}
	})
}
