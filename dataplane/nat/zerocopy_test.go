package nat

import (
	"fmt"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/port/memport"
)

// newWorkerPorts makes a worker's inside and outside memports: on one
// shared pool, as natd's AF_XDP sockets on one UMEM, or (copyPorts) with a
// pool each, so that forwarding copies between them.
func newWorkerPorts(t testing.TB, cfg memport.Config, copyPorts bool) [NumSides]*memport.Port {
	t.Helper()
	in, err := memport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out *memport.Port
	if copyPorts {
		out, err = memport.New(cfg)
	} else {
		out, err = memport.NewShared(in, memport.Config{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return [NumSides]*memport.Port{in, out}
}

// census checks that every frame of worker 0's pools is in exactly one
// place: free in its pool, on an RX ring, on a TX ring, or held by the
// worker, and that what the ports count as held is exactly what the worker
// holds (frames waiting for a neighbour, held fragments, spare copy
// targets). It returns what the worker holds.
func (h *harness) census() int {
	h.t.Helper()
	ps := h.ports
	pools := [][]*memport.Port{{ps[Inside], ps[Outside]}}
	if ps[Inside].Pool() != ps[Outside].Pool() {
		pools = [][]*memport.Port{{ps[Inside]}, {ps[Outside]}}
	}
	held := 0
	for _, pool := range pools {
		st := pool[0].Stats()
		sum := st.FreeFrames + int(st.Held)
		for _, p := range pool {
			s := p.Stats()
			sum += s.RxQueued + s.TxQueued
		}
		if sum != pool[0].Frames() {
			h.t.Errorf("pool of %d frames: free %d + held %d + on rings = %d", pool[0].Frames(), st.FreeFrames, st.Held, sum)
		}
		held += int(st.Held)
	}
	w := h.w
	want := w.pend.n + w.frag.n + w.spare[Inside].n + w.spare[Outside].n
	if held != want {
		h.t.Errorf("ports count %d frames held by the worker; it holds %d (pending %d, fragments %d, spares %d+%d)",
			held, want, w.pend.n, w.frag.n, w.spare[Inside].n, w.spare[Outside].n)
	}
	return held
}

// TestSharedPoolAccounting forwards traffic both ways with the worker's
// ports on one pool and on two, with drops and frames waiting for a
// neighbour, and checks after each step that every frame is in exactly one
// place. On one pool the worker never takes a spare frame to copy into.
func TestSharedPoolAccounting(t *testing.T) {
	for _, copyPorts := range []bool{false, true} {
		name := map[bool]string{false: "shared", true: "copy"}[copyPorts]
		t.Run(name, func(t *testing.T) {
			h := newHarnessPorts(t, testConfig(), 1, copyPorts)
			if h.w.SharesFrames() == copyPorts {
				t.Fatalf("SharesFrames = %v with copyPorts %v", h.w.SharesFrames(), copyPorts)
			}
			const n, pend = 20, 5
			h.neigh.setPending([4]byte{198, 18, 0, 9}, true)
			for i := range n {
				if !h.ports[Inside].Inject(udp("10.0.0.5", uint16(2000+i), "198.18.0.2", 53)) {
					t.Fatal("inject")
				}
			}
			for i := range pend {
				if !h.ports[Inside].Inject(udp("10.0.0.6", uint16(3000+i), "198.18.0.9", 53)) {
					t.Fatal("inject")
				}
			}
			// Three malformed frames: a truncated IPv4 header.
			for range 3 {
				if !h.ports[Inside].Inject(udp("10.0.0.7", 4000, "198.18.0.2", 53)[:30]) {
					t.Fatal("inject")
				}
			}
			h.w.Poll()
			if got := h.census(); got < pend {
				t.Fatalf("worker holds %d frames, want at least the %d waiting for a neighbour", got, pend)
			}
			out := h.collect(Outside)
			if len(out) != n {
				t.Fatalf("%d frames out, want %d (drops %v)", len(out), n, h.drops())
			}
			var total uint64
			for _, v := range h.drops() {
				total += v
			}
			if total != 3 {
				t.Fatalf("drops %v, want the 3 malformed frames", h.drops())
			}
			h.census()
			// Replies come back in through the outside port.
			for _, pk := range out {
				e := eps(pk)
				if pk.Layer(layers.LayerTypeUDP) == nil {
					t.Fatalf("not UDP: %v", pk)
				}
				if !h.ports[Outside].Inject(udp(e.dst, e.dport, e.src, e.sport)) {
					t.Fatal("inject reply")
				}
			}
			h.w.Poll()
			h.census()
			if back := h.collect(Inside); len(back) != n {
				t.Fatalf("%d replies in, want %d (drops %v)", len(back), n, h.drops())
			}
			// The neighbour resolves: the held frames leave.
			h.neigh.setPending([4]byte{198, 18, 0, 9}, false)
			h.clock.Advance(10e6)
			h.w.Poll()
			if got := len(h.collect(Outside)); got != pend {
				t.Fatalf("%d held frames out after resolution, want %d", got, pend)
			}
			held := h.census()
			if !copyPorts && (held != 0 || h.w.spare[Inside].n+h.w.spare[Outside].n != 0) {
				t.Errorf("one pool: the worker holds %d frames, %d of them spare copy targets; want none",
					held, h.w.spare[Inside].n+h.w.spare[Outside].n)
			}
			h.checkNoLeaks()
		})
	}
}

// TestZeroAllocSharedForward: forwarding between ports on one pool
// allocates nothing (the copy path is covered by
// TestZeroAllocTranslatePaths, whose loop ports have a pool each).
func TestZeroAllocSharedForward(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	h := newHarnessPorts(t, testConfig(), 1, false)
	frames := make([][]byte, MaxBurst)
	for i := range frames {
		frames[i] = udp("10.0.0.5", uint16(2000+i), "198.18.0.2", 53)
	}
	out := 0
	count := func([]byte) { out++ }
	round := func() {
		h.ports[Inside].InjectBurst(frames)
		h.w.Poll()
		h.ports[Outside].Collect(count)
	}
	round() // sessions
	if allocs := testing.AllocsPerRun(100, round); allocs != 0 {
		t.Fatalf("%v allocations per burst", allocs)
	}
	if out != 102*MaxBurst {
		t.Fatalf("forwarded %d frames, want %d (drops %v)", out, 102*MaxBurst, h.drops())
	}
}

// BenchmarkCrossPort measures established UDP inside to outside through
// the engine on memports, 64 frames per burst, with the two ports on one
// pool (shared: the frame leaves as it is) and on two (copy: send copies it
// into the outside port's pool), for 64- and 1518-byte frames (FCS
// included). ns/op is per packet and includes the test side's work, the
// same in both modes: injecting (a copy into the pool) and collecting. Run
// both modes in one invocation and compare them by ratio:
//
//	go test -run XXX -bench CrossPort -count 5 ./dataplane/nat/
func BenchmarkCrossPort(b *testing.B) {
	for _, size := range []int{64, 1518} {
		for _, copyPorts := range []bool{false, true} {
			name := fmt.Sprintf("size=%d/%s", size, map[bool]string{false: "shared", true: "copy"}[copyPorts])
			b.Run(name, func(b *testing.B) {
				h := newHarnessPorts(b, testConfig(), 1, copyPorts)
				frames := make([][]byte, MaxBurst)
				for i := range frames {
					frames[i] = pkt("10.0.0.5", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP,
						sport: uint16(2000 + i), dport: 53, payload: make([]byte, size-4-14-20-8)})
				}
				if len(frames[0]) != size-4 {
					b.Fatalf("frame of %d bytes, want %d", len(frames[0]), size-4)
				}
				var out int
				count := func([]byte) { out++ }
				in, egress := h.ports[Inside], h.ports[Outside]
				in.InjectBurst(frames) // sessions
				h.w.Poll()
				egress.Collect(count)
				out = 0
				b.SetBytes(int64(size))
				b.ResetTimer()
				n := 0
				for ; n < b.N; n += MaxBurst {
					in.InjectBurst(frames)
					h.w.Poll()
					egress.Collect(count)
				}
				b.StopTimer()
				if out != n {
					b.Fatalf("forwarded %d of %d (drops %v)", out, n, h.drops())
				}
			})
		}
	}
}
