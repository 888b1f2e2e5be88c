package nat

import (
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/port/memport"
	"github.com/xnat/xnat/internal/testclock"
)

// Hostile input (issue 11): fragment floods.

// floodOrphans injects n later fragments of distinct datagrams from src on
// side, polling as the RX ring fills.
func (h *harness) floodOrphans(side Side, src string, n, size int) {
	h.t.Helper()
	dst := "198.18.0.2"
	if side == Outside {
		dst = "198.18.0.100"
	}
	rx := func() uint64 { return h.counters()[RxPackets+Counter(side)] }
	want := rx() + uint64(n)
	for i := 0; i < n; i++ {
		f := pkt(src, dst, l4spec{proto: layers.IPProtocolUDP, rawL4: make([]byte, size), fragOff: 512, ipID: uint16(i), srcMAC: macGateway})
		if !h.ports[side].Inject(f) {
			h.t.Fatal("RX ring full")
		}
		if i%MaxBurst == MaxBurst-1 {
			h.w.Poll()
		}
	}
	for tries := 0; rx() < want && tries < n+10; tries++ {
		h.w.Poll()
	}
	if rx() != want {
		h.t.Fatalf("received %d of %d", rx()+uint64(n)-want, n)
	}
}

// outOfOrder sends a fragmented datagram of src last fragment first and
// reports how many fragments came out.
func (h *harness) outOfOrder(src string, id uint16) int {
	h.t.Helper()
	frags := fragments(pkt(src, "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, payload: make([]byte, 1000), ipID: id}), 400)
	for i := len(frags) - 1; i >= 0; i-- {
		h.inject(Inside, frags[i])
	}
	return len(h.collect(Outside))
}

// Defect 9: one source cannot take the fragment budget of everyone
// (RFC 4787 REQ-14a).
func TestFragmentFloodFromOneSourceLeavesRoom(t *testing.T) {
	h := newHarness(t, testConfig()) // defaults: 64 per worker, 16 per source
	h.floodOrphans(Inside, "10.0.0.66", 200, 64)
	if h.w.frag.n > 16 {
		t.Fatalf("one source holds %d fragments", h.w.frag.n)
	}
	if got := h.counters().Drops(drop.FragSourceLimit); got != 184 {
		t.Fatalf("%d refused for the source's share, want 184 (drops %v)", got, h.drops())
	}
	// Another source's out-of-order datagram still gets through.
	if n := h.outOfOrder("10.0.0.2", 1); n != 3 {
		t.Fatalf("a legitimate out-of-order datagram: %d of 3 fragments out (drops %v)", n, h.drops())
	}
	// Many sources fill the worker's budget, and no more.
	for i := 0; i < 10; i++ {
		h.floodOrphans(Inside, "10.0.1."+string(rune('0'+i)), 16, 64)
	}
	if h.w.frag.n != 64 {
		t.Fatalf("held %d, want the worker's 64", h.w.frag.n)
	}
	h.clock.Advance(3 * time.Second)
	h.w.Poll()
	if h.w.frag.n != 0 {
		t.Fatalf("%d still held after the timeout", h.w.frag.n)
	}
	for i := range h.w.frag.srcs {
		if h.w.frag.srcs[i].used {
			t.Fatalf("source slot %d still used: %+v", i, h.w.frag.srcs[i])
		}
	}
	h.checkNoLeaks()
}

// Defect 9: held bytes are bounded too.
func TestFragmentBytesBounded(t *testing.T) {
	c := testConfig()
	c.Limits.HeldFragmentBytes = 10 * 1000
	c.Limits.HeldFragmentBytesPerSource = 3 * 1000
	h := newHarness(t, c)
	frame := len(pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, rawL4: make([]byte, 900), fragOff: 512}))
	for i := 0; i < 8; i++ {
		h.floodOrphans(Inside, "10.0.2."+string(rune('0'+i)), 5, 900)
	}
	perSource := 3000 / frame
	if want := 10000 / frame; h.w.frag.n != want || h.w.frag.bytes > 10000 {
		t.Fatalf("held %d frames, %d bytes; want %d frames within 10000 bytes", h.w.frag.n, h.w.frag.bytes, want)
	}
	// The first sources fill their share, the worker's budget runs out
	// on the fourth: every fragment not held is counted by reason.
	full := 10000/frame - 3*perSource
	if got := h.counters().Drops(drop.FragSourceLimit); got != uint64(3*(5-perSource)) {
		t.Fatalf("source limit drops %d (drops %v)", got, h.drops())
	}
	if got := h.counters().Drops(drop.FragCacheFull); got != uint64(40-10000/frame-3*(5-perSource)) || full < 1 {
		t.Fatalf("cache full drops %d (drops %v)", got, h.drops())
	}
	h.clock.Advance(3 * time.Second)
	h.w.Poll()
	h.checkNoLeaks()
}

// Defect 9: held fragments may not take the frames a port needs to
// receive, and a reloaded limit applies from the next burst.
func TestHeldFragmentsBoundedByPortFrames(t *testing.T) {
	c := testConfig()
	c.Limits.HeldFragments = 1024
	eng, err := New(c, Options{Workers: 1, Clock: testclock.New(time.Unix(1_800_000_000, 0))})
	if err != nil {
		t.Fatal(err)
	}
	var ps [NumSides]port.Port
	for s := range ps {
		p, err := memport.New(memport.Config{Frames: 1024})
		if err != nil {
			t.Fatal(err)
		}
		ps[s] = p
	}
	_, err = eng.NewWorker(0, WorkerConfig{Ports: ps, Neighbors: &staticNeighbors{}})
	if err == nil || !strings.Contains(err.Error(), "limits.held_fragments") {
		t.Fatalf("a worker with 1024-frame ports accepted held_fragments 1024: %v", err)
	}

	// Within the quarter, the limit reloads.
	h := newHarness(t, testConfig())
	c = testConfig()
	c.Limits.HeldFragments = 4
	c.Limits.HeldFragmentsPerSource = 100
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	h.floodOrphans(Inside, "10.0.0.66", 20, 64)
	if h.w.frag.n != 4 {
		t.Fatalf("held %d after lowering the limit to 4", h.w.frag.n)
	}
	// Raised above what the ports allow (config validation cannot know
	// the ports): the worker holds a quarter of its frames, no more.
	c.Limits.HeldFragments = 4096
	c.Limits.HeldFragmentsPerSource = 4096
	c.Limits.HeldFragmentBytes = 1 << 20
	c.Limits.HeldFragmentBytesPerSource = 1 << 20
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		h.floodOrphans(Inside, "10.0.0.67", 100, 64)
	}
	if h.w.frag.n != 1024/4 {
		t.Fatalf("held %d of the ports' 1024 frames", h.w.frag.n)
	}
	// Unfragmented traffic still flows.
	e := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 9), Outside))
	h.one(Outside, udp("198.18.0.2", 9, e.src, e.sport), Inside)
	h.clock.Advance(3 * time.Second)
	h.w.Poll()
	h.checkNoLeaks()
}

// The per-source counts of held fragments agree with a map through any
// sequence of takes and gives, deletions included (backward shift).
func TestFragSourceTable(t *testing.T) {
	var f fragState
	f.init(64, 12345)
	type key struct {
		src  [4]byte
		side Side
	}
	ref := map[key][2]int{}
	var live []key
	sizes := map[key][]int{}
	rng := uint32(1)
	next := func() uint32 { rng = rng*1664525 + 1013904223; return rng >> 8 }
	for step := 0; step < 100000; step++ {
		if len(live) < 64 && (len(live) == 0 || next()%2 == 0) {
			// Few distinct sources, so that they collide and chain.
			k := key{[4]byte{10, 0, 0, byte(next() % 40)}, Side(next() % 2)}
			n := int(next()%1500) + 1
			f.take(f.source(k.src, k.side), k.src, k.side, n)
			r := ref[k]
			ref[k] = [2]int{r[0] + 1, r[1] + n}
			live = append(live, k)
			// Remember the size with the key for its give.
			sizes[k] = append(sizes[k], n)
		} else {
			i := int(next()) % len(live)
			k := live[i]
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
			n := sizes[k][len(sizes[k])-1]
			sizes[k] = sizes[k][:len(sizes[k])-1]
			f.give(k.src, k.side, n)
			r := ref[k]
			if r[0] == 1 {
				delete(ref, k)
			} else {
				ref[k] = [2]int{r[0] - 1, r[1] - n}
			}
		}
		used := 0
		for i := range f.srcs {
			if s := &f.srcs[i]; s.used {
				used++
				r, ok := ref[key{s.src, s.side}]
				if !ok || int(s.frames) != r[0] || int(s.bytes) != r[1] {
					t.Fatalf("step %d: slot %d holds %+v, reference %v", step, i, *s, r)
				}
				if got := f.source(s.src, s.side); got != uint32(i) {
					t.Fatalf("step %d: %v found at %d, stored at %d", step, s.src, got, i)
				}
			}
		}
		if used != len(ref) || f.n != len(live) {
			t.Fatalf("step %d: %d slots used for %d sources; n %d for %d held", step, used, len(ref), f.n, len(live))
		}
	}
}
