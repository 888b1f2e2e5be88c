package memport

import (
	"bytes"
	"testing"

	"github.com/xnat/xnat/dataplane/port"
)

// TestSharedPoolForwardsWithoutCopy receives frames on one port and
// transmits them, as they are, on a port sharing its pool: the frame the
// test collects on b is the very memory a received into, and the pool's
// accounting (Held, InUse) covers both ports.
func TestSharedPoolForwardsWithoutCopy(t *testing.T) {
	a := newPort(t, Config{Frames: 8})
	b, err := NewShared(a, Config{})
	if err != nil {
		t.Fatal(err)
	}
	other := newPort(t, Config{Frames: 8})
	if !port.SamePool(a, b) || !port.SamePool(b, a) || port.SamePool(a, other) {
		t.Fatalf("SamePool: a~b %v, b~a %v, a~other %v", port.SamePool(a, b), port.SamePool(b, a), port.SamePool(a, other))
	}
	for i := range 3 {
		if !a.Inject(testFrame(uint32(i), 64+i)) {
			t.Fatal("inject")
		}
	}
	bufs := make([]port.Buf, 4)
	n := a.RxBurst(bufs)
	if n != 3 {
		t.Fatalf("RxBurst = %d, want 3", n)
	}
	if got := b.Stats().Held; got != 3 {
		t.Fatalf("Held seen from b = %d, want 3 (one pool)", got)
	}
	mems := make([]*byte, n)
	for i := range n {
		mems[i] = &bufs[i].Data[0]
	}
	// Two leave through b, one is freed on b.
	if sent := b.TxBurst(bufs[:2]); sent != 2 {
		t.Fatalf("TxBurst on b = %d, want 2", sent)
	}
	b.Free(bufs[2:3])
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if a.InUse() != 2 || b.InUse() != 2 {
		t.Fatalf("InUse a %d b %d, want 2 and 2 (on b's TX ring)", a.InUse(), b.InUse())
	}
	i := 0
	b.Collect(func(f []byte) {
		if &f[0] != mems[i] || !bytes.Equal(f, testFrame(uint32(i), 64+i)) {
			t.Errorf("frame %d: copied or changed", i)
		}
		i++
	})
	if i != 2 || a.InUse() != 0 || a.Stats().Held != 0 {
		t.Fatalf("collected %d, InUse %d, Held %d; want 2, 0, 0", i, a.InUse(), a.Stats().Held)
	}
	// A frame of another pool is refused, as before.
	if other.Alloc(bufs[:1]) != 1 {
		t.Fatal("alloc")
	}
	bufs[0].Data = append(bufs[0].Data, testFrame(9, 64)...)
	mustPanic(t, "belongs to pool", func() { b.TxBurst(bufs[:1]) })
	if _, err := NewShared(a, Config{Frames: 16}); err == nil {
		t.Error("NewShared with another frame count succeeded")
	}
}
