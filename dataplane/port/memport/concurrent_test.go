package memport

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xnat/xnat/dataplane/port"
)

// The tests in this file run workers on their own goroutines while the test
// goroutine injects and collects, as NAT engine tests do; run them under
// -race. They end with a leak check.

func frameLen(seq uint32) int { return 60 + int(seq*7919%441) } // 60..500

// Worker actions, chosen by seq%5 so the test side can predict the output.
const (
	actForward = iota // rewrite one byte in place and transmit
	actDrop           // free
	actStrip          // drop the first 4 bytes (Data starts inside the frame) and transmit
	actCopy           // copy into a newly allocated frame plus a trailer byte, free the original
	actGrow           // append two bytes in place and transmit
	numActs
)

// expected returns what the worker transmits for seq, or nil if it drops it.
func expected(seq uint32) []byte {
	f := testFrame(seq, frameLen(seq))
	switch seq % numActs {
	case actForward:
		f[6] ^= 0xff
	case actDrop:
		return nil
	case actStrip:
		f = f[4:]
	case actCopy:
		f = append(f, 0xab)
	case actGrow:
		f = append(f, 0xcd, 0xef)
	}
	return f
}

// echoWorker receives from p and applies each frame's action until stop is
// set and the RX ring is empty. It retries refused transmissions, so the
// output is exactly the predicted stream.
func echoWorker(p *Port, stop *atomic.Bool, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0))
	rx := make([]port.Buf, 64)
	tx := make([]port.Buf, 0, 64)
	spare := make([]port.Buf, 1)
	for {
		finished := stop.Load()
		n := p.RxBurst(rx[:1+rng.IntN(len(rx))])
		if n == 0 {
			if finished {
				return
			}
			runtime.Gosched()
			continue
		}
		tx = tx[:0]
		for i := range rx[:n] {
			b := rx[i]
			seq := binary.BigEndian.Uint32(b.Data)
			switch seq % numActs {
			case actForward:
				b.Data[6] ^= 0xff
			case actDrop:
				p.Free(rx[i : i+1])
				continue
			case actStrip:
				b.Data = b.Data[4:]
			case actCopy:
				if p.Alloc(spare) == 1 {
					nb := spare[0]
					nb.Data = append(append(nb.Data, b.Data...), 0xab)
					p.Free(rx[i : i+1])
					b = nb
				} else {
					// Pool exhausted: same output, in place.
					b.Data = append(b.Data, 0xab)
				}
			case actGrow:
				b.Data = append(b.Data, 0xcd, 0xef)
			}
			tx = append(tx, b)
		}
		for len(tx) > 0 {
			k := p.TxBurst(tx)
			tx = tx[k:]
			if err := p.Flush(); err != nil {
				panic(err)
			}
			if len(tx) > 0 {
				runtime.Gosched() // TX ring full: let the test collect
			}
		}
	}
}

func TestConcurrentWorkloadNoLeak(t *testing.T) {
	n := uint32(20000)
	if testing.Short() {
		n = 3000
	}
	// A small pool and TX ring so that Inject, Alloc and TxBurst all hit
	// their limits.
	p := newPort(t, Config{Frames: 128, FrameSize: 512, TxRing: 32})
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() { echoWorker(p, &stop, 1) })

	var next uint32 // next seq whose output we expect
	collected := 0
	check := func(f []byte) {
		for expected(next) == nil {
			next++
		}
		if want := expected(next); !bytes.Equal(f, want) {
			t.Errorf("output for seq %d: got %d bytes %x..., want %d bytes %x...", next, len(f), f[:8], len(want), want[:8])
		}
		next++
		collected++
	}
	rng := rand.New(rand.NewPCG(2, 0))
	batch := make([][]byte, 0, 48)
	for seq := uint32(0); seq < n; {
		batch = batch[:0]
		for k := 1 + rng.IntN(cap(batch)); k > 0 && seq+uint32(len(batch)) < n; k-- {
			s := seq + uint32(len(batch))
			batch = append(batch, testFrame(s, frameLen(s)))
		}
		got := p.InjectBurst(batch)
		seq += uint32(got)
		if p.Collect(check) == 0 && got < len(batch) {
			runtime.Gosched() // pool or RX ring full: let the worker run
		}
	}
	wantOut := 0
	for s := range n {
		if expected(s) != nil {
			wantOut++
		}
	}
	for collected < wantOut && !t.Failed() {
		if p.Collect(check) == 0 {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	p.Collect(check)

	s := p.Stats()
	t.Logf("stats %+v", s)
	if collected != wantOut {
		t.Errorf("collected %d frames, want %d", collected, wantOut)
	}
	if p.InUse() != 0 || s.Held != 0 || s.FreeFrames != p.Frames() {
		t.Errorf("leak: InUse %d, Held %d, free %d of %d", p.InUse(), s.Held, s.FreeFrames, p.Frames())
	}
	if s.Injected != uint64(n) || s.RxPackets != uint64(n) || s.TxPackets != uint64(wantOut) || s.Collected != uint64(wantOut) {
		t.Errorf("counters do not add up: %+v (injected %d, output %d)", s, n, wantOut)
	}
	if s.RxDropped == 0 {
		t.Log("note: Inject never found the pool or RX ring full")
	}
}

// TestConcurrentPairPipeline runs two workers connected by a pair of ports:
// the test injects into in, worker 1 copies in → a, the pair carries a → b,
// worker 2 copies b → out, and the test collects from out. The pair may
// drop frames (b's pool or RX ring full), so the output must be an ordered
// subsequence of the input, with every loss counted.
func TestConcurrentPairPipeline(t *testing.T) {
	n := uint32(20000)
	if testing.Short() {
		n = 3000
	}
	in := newPort(t, Config{Frames: 128, FrameSize: 512})
	a := newPort(t, Config{Frames: 128, FrameSize: 512})
	b := newPort(t, Config{Frames: 128, FrameSize: 512, RxRing: 64})
	out := newPort(t, Config{Frames: 128, FrameSize: 512})
	if err := Pair(a, b); err != nil {
		t.Fatal(err)
	}
	var injected, w1done atomic.Bool
	var wg sync.WaitGroup
	copyWorker := func(from, to *Port, stop *atomic.Bool, done *atomic.Bool) {
		defer done.Store(true)
		rx := make([]port.Buf, 32)
		tx := make([]port.Buf, 32)
		for {
			finished := stop.Load()
			k := from.RxBurst(rx)
			if k == 0 {
				if finished {
					return
				}
				runtime.Gosched()
				continue
			}
			m := 0
			for m < k {
				m += to.Alloc(tx[m:k])
				if m < k {
					runtime.Gosched() // lossless here: wait for frames
				}
			}
			for i := range k {
				tx[i].Data = append(tx[i].Data, rx[i].Data...)
			}
			from.Free(rx[:k])
			for sent := 0; sent < k; {
				sent += to.TxBurst(tx[sent:k])
				if err := to.Flush(); err != nil {
					panic(err)
				}
				if sent < k {
					runtime.Gosched()
				}
			}
		}
	}
	var w2done atomic.Bool
	wg.Go(func() { copyWorker(in, a, &injected, &w1done) })
	wg.Go(func() { copyWorker(b, out, &w1done, &w2done) })

	var last int64 = -1
	collected := 0
	check := func(f []byte) {
		seq := binary.BigEndian.Uint32(f)
		if int64(seq) <= last || seq >= n || !bytes.Equal(f, testFrame(seq, frameLen(seq))) {
			t.Errorf("bad output frame seq %d after %d (len %d)", seq, last, len(f))
		}
		last = int64(seq)
		collected++
	}
	for seq := uint32(0); seq < n; {
		if in.Inject(testFrame(seq, frameLen(seq))) {
			seq++
		} else {
			runtime.Gosched()
		}
		if seq%16 == 0 {
			out.Collect(check)
		}
	}
	injected.Store(true)
	for !w2done.Load() {
		if out.Collect(check) == 0 {
			runtime.Gosched()
		}
	}
	wg.Wait()
	out.Collect(check)

	lost := b.Stats().RxDropped
	t.Logf("%d frames in, %d out, %d dropped by the pair", n, collected, lost)
	if uint64(collected)+lost != uint64(n) {
		t.Errorf("%d collected + %d dropped != %d injected", collected, lost, n)
	}
	if a.Stats().TxPackets != uint64(n) || b.Stats().Injected != uint64(collected) {
		t.Errorf("a %+v, b %+v", a.Stats(), b.Stats())
	}
	for name, p := range map[string]*Port{"in": in, "a": a, "b": b, "out": out} {
		if p.InUse() != 0 || p.Stats().Held != 0 {
			t.Errorf("port %s leaked: InUse %d, stats %+v", name, p.InUse(), p.Stats())
		}
	}
}
