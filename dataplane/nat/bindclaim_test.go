package nat

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnat/xnat/flowtable"
)

// TestBindTableInsertProbe: InsertProbe refuses a second binding of a live
// inside key, with the binding that holds it, and inserts a binding that
// its inside key finds, and its external key only through External (the
// port table's name for it): external keys are not in the index.
func TestBindTableInsertProbe(t *testing.T) {
	bt := testBindTable(8)
	probe := func(i int) (p0 bindProbe, port uint16) {
		k0, k1 := testBinding(i)
		bt.Prepare(&k0, &p0)
		return p0, k1.DstPort
	}
	var x flowtable.Entry
	p0, port := probe(1)
	if r := bt.InsertProbe(&p0, port, bindingWords(1, 7), &x); r != flowtable.Inserted {
		t.Fatalf("insert: %v", r)
	}
	id := x.ID
	k0, k1 := testBinding(1)
	if !bt.Lookup(&k0, &x) || x.ID != id || x.Keys != [2]flowtable.Key{k0, k1} || x.User != bindingWords(1, 7) {
		t.Fatalf("binding not found by its inside key: %+v", x)
	}
	if !bt.External(id, 7, port, k1.Proto, &x) || x.Keys != [2]flowtable.Key{k0, k1} || x.Dir != 1 {
		t.Fatalf("binding not confirmed by its external key: %+v", x)
	}
	if bt.Lookup(&k1, &x) {
		t.Fatal("an external key found a binding in the inside index")
	}
	_, other := probe(2)
	for _, c := range []struct {
		idx   uint32
		port  uint16
		proto uint8
	}{{7, other, k1.Proto}, {6, port, k1.Proto}, {7, port, ipProtoTCP}} {
		if bt.External(id, c.idx, c.port, c.proto, &x) {
			t.Fatalf("External confirmed another external key: %+v", c)
		}
	}
	if r := bt.InsertProbe(&p0, other, bindingWords(2, 7), &x); r != flowtable.Exists || x.Keys[0] != k0 {
		t.Fatalf("second binding of a live inside key: %v, %+v", r, x)
	}
}

// TestBindingPortsClaimed holds the engine to what InsertProbe and
// bindingAt rely on: every live binding's external port is owned in the
// port table and names the binding, so that bindingAt finds it from
// outside, through mappings created, ended (hold-down, then its end) and
// created again on the same ports; a port claimed by an insert therefore
// never belongs to a live binding.
func TestBindingPortsClaimed(t *testing.T) {
	cfg := benchConfig(1 << 12)
	// Enough addresses for deterministic mode's ranges over the inside
	// prefixes, so that the test runs in every port allocation mode.
	cfg.Pools[0].Addresses = []netip.Prefix{netip.MustParsePrefix("198.18.128.0/22")}
	r := newPerfRig(t, cfg)
	e := r.eng
	tmpl := newUDPTemplate(server, 7777, macInsideHost, macNATIn)
	flow := 0
	fill := func(i int, buf []byte) int {
		// 10.0.2.0 to 10.0.3.255: inside in every mode (deterministic
		// mode's test configuration maps 10.0.0.0/16).
		host := 512 + flow%512
		src := [4]byte{10, 0, byte(host >> 8), byte(host)}
		sport := uint16(1024 + flow/512)
		flow++
		return tmpl.write(buf, src, sport)
	}
	check := func(round int) {
		t.Helper()
		live := 0
		var b flowtable.Entry
		for id := 0; id < e.bindings.Cap(); id++ {
			if !e.bindings.Get(uint32(id), &b) {
				continue
			}
			live++
			proto, _ := ProtoOfNumber(b.Keys[1].Proto)
			st := e.addr(bindingOf(&b).addr())
			if st.addr != b.Keys[1].Dst {
				t.Fatalf("round %d: binding %+v names address slot of %v", round, b.Keys, st.addr)
			}
			if owners, _ := st.ports[proto].state(b.Keys[1].DstPort); owners < 1 {
				t.Fatalf("round %d: live binding %+v: its port has %d owners", round, b.Keys, owners)
			}
			if id, ok := st.ports[proto].boundTo(b.Keys[1].DstPort); !ok || id != b.ID {
				t.Fatalf("round %d: live binding %d %+v: its port names %d (%v)", round, b.ID, b.Keys, id, ok)
			}
			var f flowtable.Entry
			if !e.bindingAt(e.snap.Load(), b.Keys[1].Dst, b.Keys[1].DstPort, proto, &f) || f.ID != b.ID || f.Keys != b.Keys {
				t.Fatalf("round %d: live binding %d %+v not found from outside: %+v", round, b.ID, b.Keys, f)
			}
		}
		if live != 2048 {
			var c Counters
			r.w.Counters(&c)
			t.Fatalf("round %d: %d live bindings, want one a flow, 2048 (drops: %v)", round, live, dropsOf(&c))
		}
	}
	for round := 0; round < 3; round++ {
		flow = 0
		for n := 0; n < 2048; n += MaxBurst {
			r.poll(Inside, MaxBurst, fill)
		}
		check(round)
		// End the sessions; their ports go into hold-down, then (the
		// clock past it) back to the pool for the next round.
		e.FlushSessions(SessionFilter{})
		r.clock.Advance(5 * time.Minute)
		e.Housekeep(1)
	}
}

// TestBindTableInsertClaimedConcurrent holds InsertProbe, which locks only
// the inside key's home bucket, to the table's
// invariants under concurrent inserts and deletes in a small, crowded
// index (buckets overflow into their neighbours): an inside endpoint that
// several goroutines map at once gets one live binding at a time; a
// binding inserted is found by its inside key and confirmed by its
// external one (External); and once every binding is
// deleted the index is empty, slots and overflow counts alike. Each
// goroutine's external ports are its own, as claimed ports are.
func TestBindTableInsertClaimedConcurrent(t *testing.T) {
	const (
		goroutines = 6
		inside     = 24 // inside endpoints, shared by all goroutines
		rounds     = 3000
	)
	bt := testBindTable(goroutines * 8)
	var live [inside]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan string, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			var held []flowtable.Entry // at most a few at a time
			var heldIn []int
			for n := 0; n < rounds; n++ {
				if len(held) > 0 && (len(held) >= 4 || r.IntN(2) == 0) {
					x := held[0]
					i := heldIn[0]
					held, heldIn = held[1:], heldIn[1:]
					live[i].Add(-1)
					if !bt.Delete(x.ID, x.Gen) {
						errs <- "delete of a live binding failed"
						return
					}
					continue
				}
				i := r.IntN(inside)
				k0, _ := testBinding(i)
				// A port of this goroutine's own range: claimed.
				port := uint16(1024 + g*rounds + n)
				var p0 bindProbe
				bt.Prepare(&k0, &p0)
				var x flowtable.Entry
				switch bt.InsertProbe(&p0, port, bindingWords(uint32(g), 7), &x) {
				case flowtable.Inserted:
					if v := live[i].Add(1); v != 1 {
						errs <- "two live bindings of one inside endpoint"
						return
					}
					var f flowtable.Entry
					if !bt.Lookup(&k0, &f) || f.ID != x.ID || !bt.External(x.ID, 7, port, ipProtoUDP, &f) || f.ID != x.ID {
						errs <- "a binding just inserted is not found by its inside key and confirmed by its external one"
						return
					}
					held, heldIn = append(held, x), append(heldIn, i)
				case flowtable.Exists:
					if x.Keys[0] != k0 {
						errs <- "Exists with another endpoint's binding"
						return
					}
				case flowtable.Full:
				}
			}
			for j, x := range held {
				live[heldIn[j]].Add(-1)
				if !bt.Delete(x.ID, x.Gen) {
					errs <- "delete of a live binding failed"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if n := bt.Len(); n != 0 {
		t.Fatalf("%d bindings left", n)
	}
	for b := range bt.buckets {
		bk := &bt.buckets[b]
		for s := range bk.Slots {
			if v := bk.Slots[s].Load(); v != 0 {
				t.Fatalf("bucket %d slot %d still holds %#x", b, s, v)
			}
		}
		if m := bk.Meta.Load(); m != 0 {
			t.Fatalf("bucket %d meta %#x, want 0 (no lock, no overflow)", b, m)
		}
	}
}
