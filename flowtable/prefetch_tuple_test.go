package flowtable

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestPrefetchTupleTouchesHomeBucket checks that PrefetchTuple reads the
// home bucket of the key its fields make: with that bucket locked, the
// value it returns carries the lock bit, and with the bucket unlocked it
// does not.
func TestPrefetchTupleTouchesHomeBucket(t *testing.T) {
	tb, err := New(1 << 12)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		k := Key{SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Proto: uint8(1 + r.IntN(255))}
		binary.LittleEndian.PutUint32(k.Src[:], r.Uint32())
		binary.LittleEndian.PutUint32(k.Dst[:], r.Uint32())
		var p Probe
		tb.Prepare(&k, &p)
		b := tb.ix.Home(p.h)
		tb.ix.Lock(b)
		locked := tb.PrefetchTuple(k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto)
		tb.ix.Unlock(b)
		free := tb.PrefetchTuple(k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto)
		if locked&MetaLock == 0 || free&MetaLock != 0 {
			t.Fatalf("key %+v: PrefetchTuple read %#x with its home bucket locked, %#x unlocked", k, locked, free)
		}
	}
}
