package memport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/xnat/xnat/dataplane/port"
)

func newPort(t testing.TB, cfg Config) *Port {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return p
}

// testFrame returns a frame of length n whose bytes encode seq, so a
// mismatch names the frame.
func testFrame(seq uint32, n int) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(seq) + byte(i)
	}
	if n >= 4 {
		binary.BigEndian.PutUint32(f, seq)
	}
	return f
}

// mustPanic runs fn and checks it panics with a message containing want.
func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic, want one containing %q", want)
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
			t.Fatalf("panic %q, want one containing %q", msg, want)
		}
	}()
	fn()
}

func TestNewValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Frames: -1},
		{Frames: MaxFrames + 1},
		{FrameSize: MinFrameSize - 1},
		{FrameSize: -5},
		{FrameSize: MaxFrameSize + 1},
		{Frames: MaxFrames, FrameSize: MaxFrameSize}, // 64 GiB
		{RxRing: 3},
		{TxRing: 100},
		{Frames: 8, RxRing: -4},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v): err = %v, want ErrConfig", cfg, err)
		}
	}
	p := newPort(t, Config{})
	if p.Frames() != DefaultFrames || p.FrameSize() != DefaultFrameSize || p.InUse() != 0 {
		t.Errorf("defaults: %d frames of %d, InUse %d", p.Frames(), p.FrameSize(), p.InUse())
	}
	if s := p.Stats(); s.FreeFrames != DefaultFrames {
		t.Errorf("new port has %d free frames, want %d", s.FreeFrames, DefaultFrames)
	}
	// Frames need not be a power of two.
	p = newPort(t, Config{Frames: 5, FrameSize: 64})
	bufs := make([]port.Buf, 8)
	if n := p.Alloc(bufs); n != 5 {
		t.Errorf("Alloc from 5-frame pool = %d", n)
	}
}

func TestInjectReceiveTransmitCollect(t *testing.T) {
	p := newPort(t, Config{Frames: 64, FrameSize: 256})
	var sent [][]byte
	for i := range 40 {
		f := testFrame(uint32(i), 60+i*4)
		if !p.Inject(f) {
			t.Fatalf("Inject %d failed", i)
		}
		sent = append(sent, f)
	}
	if p.InUse() != 40 {
		t.Fatalf("InUse = %d after injecting 40", p.InUse())
	}
	bufs := make([]port.Buf, 100) // longer than the internal chunk
	n := p.RxBurst(bufs)
	if n != 40 {
		t.Fatalf("RxBurst = %d, want 40", n)
	}
	handles := map[uint64]bool{}
	for i, b := range bufs[:n] {
		if !bytes.Equal(b.Data, sent[i]) {
			t.Fatalf("frame %d: got % x, want % x", i, b.Data[:8], sent[i][:8])
		}
		if cap(b.Data) != 256 {
			t.Fatalf("frame %d: cap %d, want the frame size", i, cap(b.Data))
		}
		if handles[b.Handle] {
			t.Fatalf("handle %#x handed out twice", b.Handle)
		}
		handles[b.Handle] = true
		b.Data[5] ^= 0xff // the pipeline rewrites in place
		sent[i][5] ^= 0xff
	}
	if s := p.Stats(); s.Held != 40 || s.RxPackets != 40 || s.Injected != 40 {
		t.Fatalf("stats after RxBurst: %+v", s)
	}
	if got := p.TxBurst(bufs[:n]); got != 40 {
		t.Fatalf("TxBurst = %d", got)
	}
	// Nothing is visible before Flush.
	if got := p.Drain(); len(got) != 0 {
		t.Fatalf("Drain before Flush returned %d frames", len(got))
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	got := p.Drain()
	if len(got) != 40 {
		t.Fatalf("Drain returned %d frames, want 40", len(got))
	}
	for i := range got {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("collected frame %d differs", i)
		}
	}
	s := p.Stats()
	want := Stats{Injected: 40, RxPackets: 40, TxPackets: 40, Collected: 40, FreeFrames: 64}
	if s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d at the end", p.InUse())
	}
	if p.RxBurst(bufs) != 0 {
		t.Fatal("RxBurst on empty ring returned frames")
	}
}

func TestAllocAndStrip(t *testing.T) {
	p := newPort(t, Config{Frames: 4, FrameSize: 128})
	bufs := make([]port.Buf, 6)
	n := p.Alloc(bufs)
	if n != 4 {
		t.Fatalf("Alloc(6) from 4 frames = %d", n)
	}
	for _, b := range bufs[:n] {
		if len(b.Data) != 0 || cap(b.Data) != 128 {
			t.Fatalf("allocated frame len %d cap %d", len(b.Data), cap(b.Data))
		}
	}
	if s := p.Stats(); s.AllocFailed != 2 || s.Held != 4 || s.FreeFrames != 0 {
		t.Fatalf("stats %+v", s)
	}
	if p.Alloc(bufs[:1]) != 0 {
		t.Fatal("Alloc from empty pool succeeded")
	}
	// Build a frame in place, and one whose first 4 bytes are stripped
	// (as when popping a VLAN tag): Data then starts inside the frame.
	bufs[0].Data = append(bufs[0].Data, testFrame(1, 70)...)
	bufs[1].Data = append(bufs[1].Data, testFrame(2, 74)...)
	bufs[1].Data = bufs[1].Data[4:]
	if p.TxBurst(bufs[:2]) != 2 {
		t.Fatal("TxBurst failed")
	}
	p.Free(bufs[2:4])
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	got := p.Drain()
	if len(got) != 2 || !bytes.Equal(got[0], testFrame(1, 70)) || !bytes.Equal(got[1], testFrame(2, 74)[4:]) {
		t.Fatalf("Drain = %x", got)
	}
	if p.InUse() != 0 || p.Stats().Held != 0 {
		t.Fatalf("InUse %d, stats %+v", p.InUse(), p.Stats())
	}
}

func TestOwnershipBugsPanic(t *testing.T) {
	const fs = 128
	setup := func(t *testing.T) (p *Port, held []port.Buf) {
		p = newPort(t, Config{Frames: 8, FrameSize: fs})
		held = make([]port.Buf, 2)
		if p.Alloc(held) != 2 {
			t.Fatal("Alloc failed")
		}
		held[0].Data = append(held[0].Data, testFrame(0, 64)...)
		held[1].Data = append(held[1].Data, testFrame(1, 64)...)
		return p, held
	}
	for _, tc := range []struct {
		name, want string
		fn         func(t *testing.T)
	}{
		{"double free", "double free", func(t *testing.T) {
			p, b := setup(t)
			p.Free(b[:1])
			p.Free(b[:1])
		}},
		{"double free in one call", "double free", func(t *testing.T) {
			p, b := setup(t)
			p.Free([]port.Buf{b[0], b[0]})
		}},
		{"free of another port's frame", "belongs to pool", func(t *testing.T) {
			p, _ := setup(t)
			q, b := setup(t) // same frame indices, other port
			_ = q
			p.Free(b[:1])
		}},
		{"free of the zero Buf", "belongs to pool 0", func(t *testing.T) {
			p, _ := setup(t)
			p.Free(make([]port.Buf, 1))
		}},
		{"forged handle", "out of range", func(t *testing.T) {
			p, _ := setup(t)
			p.Free([]port.Buf{{Handle: p.handle(8)}})
		}},
		{"free of a frame on the RX ring", "never received", func(t *testing.T) {
			p := newPort(t, Config{Frames: 8, FrameSize: fs})
			p.Inject(testFrame(0, 64)) // takes frame 0 from the pool
			p.Free([]port.Buf{{Handle: p.handle(0)}})
		}},
		{"free after transmit", "double free", func(t *testing.T) {
			p, b := setup(t)
			p.TxBurst(b[:1])
			p.Free(b[:1])
		}},
		{"transmit twice", "already transmitted", func(t *testing.T) {
			p, b := setup(t)
			p.TxBurst(b[:1])
			p.TxBurst(b[:1])
		}},
		{"transmit after free", "already transmitted or freed", func(t *testing.T) {
			p, b := setup(t)
			p.Free(b[:1])
			p.TxBurst(b[:1])
		}},
		{"transmit of another port's frame", "belongs to pool", func(t *testing.T) {
			p, _ := setup(t)
			_, b := setup(t)
			p.TxBurst(b[:1])
		}},
		{"transmit of foreign Data", "does not end at the frame's end", func(t *testing.T) {
			p, b := setup(t)
			b[0].Data = testFrame(0, 64)
			p.TxBurst(b[:1])
		}},
		{"transmit of Data from the wrong frame", "does not end at the frame's end", func(t *testing.T) {
			p, b := setup(t)
			b[0].Data = b[1].Data
			p.TxBurst(b[:1])
		}},
		{"transmit of capacity-limited Data", "does not end at the frame's end", func(t *testing.T) {
			p, b := setup(t)
			b[0].Data = b[0].Data[:64:100]
			p.TxBurst(b[:1])
		}},
		{"transmit of an empty frame", "is empty", func(t *testing.T) {
			p, b := setup(t)
			b[0].Data = b[0].Data[:0]
			p.TxBurst(b[:1])
		}},
		{"inject on a paired port", "paired", func(t *testing.T) {
			a := newPort(t, Config{Frames: 8, FrameSize: fs})
			b := newPort(t, Config{Frames: 8, FrameSize: fs})
			if err := Pair(a, b); err != nil {
				t.Fatal(err)
			}
			b.Inject(testFrame(0, 64))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { mustPanic(t, tc.want, func() { tc.fn(t) }) })
	}
}

// TestLeakIsVisible checks that InUse and Stats.Held expose a worker that
// forgets to free a frame, the bug NAT engine tests rely on them to find.
func TestLeakIsVisible(t *testing.T) {
	p := newPort(t, Config{Frames: 16, FrameSize: 128})
	for i := range 3 {
		p.Inject(testFrame(uint32(i), 64))
	}
	bufs := make([]port.Buf, 8)
	n := p.RxBurst(bufs)
	p.Free(bufs[:n-1]) // leaks the last one
	if p.InUse() != 1 || p.Stats().Held != 1 {
		t.Fatalf("InUse %d Held %d, want 1 and 1", p.InUse(), p.Stats().Held)
	}
	// Frames accepted by TxBurst but never flushed are in use too.
	p.TxBurst(bufs[n-1 : n])
	if p.InUse() != 1 || p.Stats().Held != 0 {
		t.Fatalf("unflushed: InUse %d Held %d, want 1 and 0", p.InUse(), p.Stats().Held)
	}
	p.Flush()
	p.Drain()
	if p.InUse() != 0 {
		t.Fatalf("InUse %d after flush and drain", p.InUse())
	}
}

func TestRingAndPoolLimits(t *testing.T) {
	t.Run("tx ring full", func(t *testing.T) {
		p := newPort(t, Config{Frames: 16, FrameSize: 64, TxRing: 4})
		bufs := make([]port.Buf, 6)
		p.Alloc(bufs)
		for i := range bufs {
			bufs[i].Data = append(bufs[i].Data, testFrame(uint32(i), 60)...)
		}
		if n := p.TxBurst(bufs[:3]); n != 3 {
			t.Fatalf("TxBurst(3) into 4-ring = %d", n)
		}
		// One more fits, counting the three staged ones.
		if n := p.TxBurst(bufs[3:]); n != 1 {
			t.Fatalf("TxBurst(3) with 1 room = %d", n)
		}
		p.Flush()
		if n := p.TxBurst(bufs[4:]); n != 0 {
			t.Fatalf("TxBurst into full ring = %d", n)
		}
		if got := p.Drain(); len(got) != 4 {
			t.Fatalf("Drain = %d frames", len(got))
		}
		if n := p.TxBurst(bufs[4:]); n != 2 {
			t.Fatalf("TxBurst after Drain = %d", n)
		}
		p.Flush()
		if got := p.Drain(); len(got) != 2 || !bytes.Equal(got[1], testFrame(5, 60)) {
			t.Fatalf("Drain = %x", got)
		}
		if p.InUse() != 0 {
			t.Fatalf("InUse %d", p.InUse())
		}
	})
	t.Run("rx ring full", func(t *testing.T) {
		p := newPort(t, Config{Frames: 16, FrameSize: 64, RxRing: 4})
		for i := range 4 {
			if !p.Inject(testFrame(uint32(i), 60)) {
				t.Fatalf("Inject %d failed", i)
			}
		}
		if p.Inject(testFrame(4, 60)) {
			t.Fatal("Inject into full RX ring succeeded")
		}
		if s := p.Stats(); s.RxDropped != 1 || s.Injected != 4 || p.InUse() != 4 {
			t.Fatalf("stats %+v, InUse %d", s, p.InUse())
		}
	})
	t.Run("pool empty", func(t *testing.T) {
		p := newPort(t, Config{Frames: 4, FrameSize: 64, RxRing: 16})
		frames := make([][]byte, 6)
		for i := range frames {
			frames[i] = testFrame(uint32(i), 60)
		}
		if n := p.InjectBurst(frames); n != 4 {
			t.Fatalf("InjectBurst(6) with 4 frames = %d", n)
		}
		if s := p.Stats(); s.RxDropped != 2 || s.FreeFrames != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("bad lengths", func(t *testing.T) {
		p := newPort(t, Config{Frames: 4, FrameSize: 64})
		if p.Inject(nil) || p.Inject(make([]byte, 65)) {
			t.Fatal("Inject of empty or oversized frame succeeded")
		}
		if !p.Inject(make([]byte, 64)) {
			t.Fatal("Inject of a full-size frame failed")
		}
		if n := p.InjectBurst([][]byte{make([]byte, 10), nil, make([]byte, 10)}); n != 1 {
			t.Fatalf("InjectBurst stopping at an empty frame = %d", n)
		}
		if s := p.Stats(); s.RxDropped != 4 || s.Injected != 2 || p.InUse() != 2 {
			t.Fatalf("stats %+v, InUse %d", s, p.InUse())
		}
	})
}

func TestLinkDown(t *testing.T) {
	p := newPort(t, Config{Frames: 8, FrameSize: 64})
	bufs := make([]port.Buf, 3)
	p.Alloc(bufs)
	for i := range bufs {
		bufs[i].Data = append(bufs[i].Data, testFrame(uint32(i), 60)...)
	}
	p.TxBurst(bufs[:2])
	p.SetLinkUp(false)
	if n := p.TxBurst(bufs[2:]); n != 0 {
		t.Fatalf("TxBurst with link down = %d", n)
	}
	err := p.Flush()
	if !errors.Is(err, ErrLinkDown) || !errors.Is(err, syscall.ENETDOWN) {
		t.Fatalf("Flush with link down = %v", err)
	}
	if s := p.Stats(); s.TxDropped != 2 || s.TxPackets != 0 {
		t.Fatalf("stats %+v", s)
	}
	p.SetLinkUp(true)
	if n := p.TxBurst(bufs[2:]); n != 1 {
		t.Fatalf("TxBurst after link up = %d", n)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := p.Drain(); len(got) != 1 || !bytes.Equal(got[0], testFrame(2, 60)) {
		t.Fatalf("Drain = %x", got)
	}
	if p.InUse() != 0 {
		t.Fatalf("InUse %d", p.InUse())
	}
}

func TestPair(t *testing.T) {
	a := newPort(t, Config{Frames: 16, FrameSize: 256})
	b := newPort(t, Config{Frames: 4, FrameSize: 128, RxRing: 4})
	if err := Pair(a, b); err != nil {
		t.Fatal(err)
	}
	if err := Pair(a, newPort(t, Config{Frames: 4})); !errors.Is(err, ErrPaired) {
		t.Fatalf("second Pair: %v", err)
	}
	if c := newPort(t, Config{Frames: 4}); !errors.Is(Pair(c, c), ErrPaired) {
		t.Fatal("Pair with itself succeeded")
	}

	bufs := make([]port.Buf, 8)
	if a.Alloc(bufs) != 8 {
		t.Fatal("Alloc failed")
	}
	for i := range bufs {
		n := 60 + i
		if i == 2 {
			n = 200 // too long for b's frames
		}
		bufs[i].Data = append(bufs[i].Data, testFrame(uint32(i), n)...)
	}
	bufs[1].Data = bufs[1].Data[4:] // stripped header: offset within the frame
	if a.TxBurst(bufs) != 8 {
		t.Fatal("TxBurst failed")
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	// b has 4 frames and a 4-entry RX ring: frames 0, 1, 3, 4 arrive;
	// 2 is too long; 5, 6, 7 find no frame.
	rx := make([]port.Buf, 8)
	n := b.RxBurst(rx)
	if n != 4 {
		t.Fatalf("b received %d frames, want 4", n)
	}
	want := [][]byte{testFrame(0, 60), testFrame(1, 61)[4:], testFrame(3, 63), testFrame(4, 64)}
	for i := range n {
		if !bytes.Equal(rx[i].Data, want[i]) {
			t.Fatalf("b frame %d = %x, want %x", i, rx[i].Data, want[i])
		}
	}
	if s := b.Stats(); s.Injected != 4 || s.RxDropped != 4 || s.RxPackets != 4 {
		t.Fatalf("b stats %+v", s)
	}
	if s := a.Stats(); s.TxPackets != 8 || a.InUse() != 0 {
		t.Fatalf("a stats %+v, InUse %d", s, a.InUse())
	}
	// b answers: its frames arrive at a.
	rx[0].Data[4] = 0xee
	if b.TxBurst(rx[:1]) != 1 {
		t.Fatal("b TxBurst failed")
	}
	b.Free(rx[1:n])
	b.Flush()
	back := make([]port.Buf, 2)
	if a.RxBurst(back) != 1 || back[0].Data[4] != 0xee || len(back[0].Data) != 60 {
		t.Fatalf("a did not receive b's frame")
	}
	a.Free(back[:1])
	if a.InUse() != 0 || b.InUse() != 0 {
		t.Fatalf("InUse a %d b %d", a.InUse(), b.InUse())
	}
	if got := a.Drain(); len(got) != 0 {
		t.Fatalf("Drain on a paired port returned %d frames", len(got))
	}
}

// TestNoAllocs proves the worker-side methods (and Inject, Collect) do not
// allocate.
func TestNoAllocs(t *testing.T) {
	p := newPort(t, Config{Frames: 256, FrameSize: 256})
	a := newPort(t, Config{Frames: 256, FrameSize: 256})
	b := newPort(t, Config{Frames: 256, FrameSize: 256})
	if err := Pair(a, b); err != nil {
		t.Fatal(err)
	}
	frame := testFrame(1, 100)
	frames := [][]byte{frame, frame, frame, frame}
	bufs := make([]port.Buf, 32)
	extra := make([]port.Buf, 8)
	var sum int
	sink := func(f []byte) { sum += len(f) }
	allocs := testing.AllocsPerRun(1000, func() {
		p.Inject(frame)
		p.InjectBurst(frames)
		n := p.RxBurst(bufs)
		p.TxBurst(bufs[:n-1])
		p.Free(bufs[n-1 : n])
		k := p.Alloc(extra)
		p.Free(extra[:k])
		_ = p.Flush()
		_ = p.FrameSize()
		p.Collect(sink)

		// Paired delivery.
		k = a.Alloc(extra)
		for i := range extra[:k] {
			extra[i].Data = append(extra[i].Data, frame...)
		}
		a.TxBurst(extra[:k])
		_ = a.Flush()
		n = b.RxBurst(bufs)
		b.Free(bufs[:n])
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
	if p.InUse() != 0 || a.InUse() != 0 || b.InUse() != 0 || sum == 0 {
		t.Fatalf("InUse %d %d %d, collected bytes %d", p.InUse(), a.InUse(), b.InUse(), sum)
	}
}
