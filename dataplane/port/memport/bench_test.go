package memport

import (
	"testing"

	"github.com/xnat/xnat/dataplane/port"
)

// Benchmarks measure memport's own per-frame overhead, which NAT engine
// benchmarks on memport include: one goroutine plays both the test side and
// the worker, so no cache-line transfers are counted.
//
//	go test -run '^$' -bench . -count 6 ./dataplane/port/memport/

const benchBurst = 32

func reportPerFrame(b *testing.B, frames int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}

// BenchmarkRoundTrip: InjectBurst, RxBurst, TxBurst, Flush, Collect of a
// burst of 64-byte frames.
func BenchmarkRoundTrip(b *testing.B) {
	p := newPort(b, Config{Frames: 1024, FrameSize: 2048})
	frame := testFrame(1, 64)
	frames := make([][]byte, benchBurst)
	for i := range frames {
		frames[i] = frame
	}
	bufs := make([]port.Buf, benchBurst)
	var bytes int
	sink := func(f []byte) { bytes += len(f) }
	b.ReportAllocs()
	for b.Loop() {
		p.InjectBurst(frames)
		n := p.RxBurst(bufs)
		p.TxBurst(bufs[:n])
		_ = p.Flush()
		p.Collect(sink)
	}
	reportPerFrame(b, benchBurst)
	if p.InUse() != 0 || bytes == 0 {
		b.Fatalf("InUse %d", p.InUse())
	}
}

// BenchmarkPairForward: Alloc, fill, TxBurst and Flush on one port of a
// pair, which copies each frame into the other port's pool, then RxBurst
// and Free there: the path of a frame across a pair.
func BenchmarkPairForward(b *testing.B) {
	a := newPort(b, Config{Frames: 1024, FrameSize: 2048})
	c := newPort(b, Config{Frames: 1024, FrameSize: 2048})
	if err := Pair(a, c); err != nil {
		b.Fatal(err)
	}
	frame := testFrame(1, 64)
	tx := make([]port.Buf, benchBurst)
	rx := make([]port.Buf, benchBurst)
	b.ReportAllocs()
	for b.Loop() {
		n := a.Alloc(tx)
		for i := range tx[:n] {
			tx[i].Data = append(tx[i].Data, frame...)
		}
		a.TxBurst(tx[:n])
		_ = a.Flush()
		m := c.RxBurst(rx)
		c.Free(rx[:m])
	}
	reportPerFrame(b, benchBurst)
	if a.InUse() != 0 || c.InUse() != 0 || c.Stats().RxDropped != 0 {
		b.Fatalf("InUse %d %d, stats %+v", a.InUse(), c.InUse(), c.Stats())
	}
}
