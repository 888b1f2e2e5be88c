package flowtable

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestViewMatchesLookup holds ViewProbe to LookupProbe: on every key of
// a table under churn, with and without a prefetch, and with a prefetch
// made stale by deletes and inserts since, a View is found exactly when
// an Entry is, names the same session, state and direction, and its
// other key (and each field accessor) is the Entry's other key. ViewBurst
// on the stale prefetches reports only hits ViewProbe makes, with the same
// View. Missing never answers for a key LookupProbe finds.
func TestViewMatchesLookup(t *testing.T) {
	const n = 512
	tb := mustNew(t, n)
	r := rand.New(rand.NewPCG(3, 4))
	var e Entry
	gens := map[uint32]Hit{} // session i (keys 2i, 2i+1) to its record
	for i := uint32(0); i < n; i++ {
		k0, k1 := testKey(2*i), testKey(2*i+1)
		if tb.Insert(&k0, &k1, i*7, [2]uint64{}, 0, &e) != Inserted {
			t.Fatalf("insert %d failed", i)
		}
		gens[i] = Hit{ID: e.ID, Gen: e.Gen}
	}
	missing := 0 // keys Missing answered for
	check := func(k Key, prefetch bool, p *Probe) {
		t.Helper()
		var want Entry
		var v View
		found := tb.LookupProbe(p, &want)
		if got := tb.ViewProbe(p, &v); got != found {
			t.Fatalf("key %v (prefetch %v): ViewProbe %v, LookupProbe %v", k, prefetch, got, found)
		}
		if tb.Missing(p) {
			if found {
				t.Fatalf("key %v (prefetch %v): Missing, but LookupProbe finds it", k, prefetch)
			}
			missing++
		}
		if !found {
			return
		}
		other := want.Keys[1-want.Dir]
		if v.Hit != (Hit{ID: want.ID, Dir: want.Dir, Gen: want.Gen}) || v.State != want.State || v.Other() != other {
			t.Fatalf("key %v: view %+v (other %v), entry %+v", k, v, v.Other(), want)
		}
		if v.OtherSrc() != binary.BigEndian.Uint32(other.Src[:]) || v.OtherDst() != binary.BigEndian.Uint32(other.Dst[:]) ||
			v.OtherSrcPort() != other.SrcPort || v.OtherDstPort() != other.DstPort ||
			v.OtherSrcWire() != binary.LittleEndian.Uint32(other.Src[:]) || v.OtherDstWire() != binary.LittleEndian.Uint32(other.Dst[:]) {
			t.Fatalf("key %v: accessors %#x:%d -> %#x:%d, other key %v", k, v.OtherSrc(), v.OtherSrcPort(), v.OtherDst(), v.OtherDstPort(), other)
		}
		var got Entry
		if !tb.GetAt(v.ID, v.Gen, v.Dir, &got) || got != want {
			t.Fatalf("key %v: GetAt gave %+v, want %+v", k, got, want)
		}
	}
	bursts := 0 // ViewBurst hits checked
	for round := 0; round < 4; round++ {
		// Prefetch every key, then churn a quarter of the sessions so
		// that some remembered slots are stale.
		ps := make([]Probe, 2*n+2)
		keys := make([]Key, 2*n+2)
		for i := range keys {
			keys[i] = testKey(uint32(i))
			tb.Prepare(&keys[i], &ps[i])
		}
		tb.PrefetchBurst(ps)
		for j := 0; j < n/4; j++ {
			i := uint32(r.IntN(n))
			if h, ok := gens[i]; ok {
				if !tb.Delete(h.ID, h.Gen) {
					t.Fatalf("delete of session %d failed", i)
				}
				delete(gens, i)
				continue
			}
			k0, k1 := testKey(2*i), testKey(2*i+1)
			if tb.Insert(&k0, &k1, i*7, [2]uint64{}, 0, &e) == Inserted {
				gens[i] = Hit{ID: e.ID, Gen: e.Gen}
			}
		}
		// ViewBurst on the stale prefetch, 64 probes a call: a set bit
		// is ViewProbe's hit, the same View.
		for lo := 0; lo < len(ps); lo += 64 {
			hi := min(lo+64, len(ps))
			vs := make([]View, hi-lo)
			dir := uint8(lo / 64 % 2)
			hits := tb.ViewBurst(ps[lo:hi], vs, dir)
			for j := range vs {
				if hits>>uint(j)&1 == 0 {
					continue
				}
				var v View
				if !tb.ViewProbe(&ps[lo+j], &v) || v != vs[j] || v.Dir != dir {
					t.Fatalf("key %v: ViewBurst %+v, ViewProbe %+v", keys[lo+j], vs[j], v)
				}
				bursts++
			}
		}
		for i := range keys {
			check(keys[i], true, &ps[i])
			var p Probe
			tb.Prepare(&keys[i], &p)
			check(keys[i], false, &p)
		}
	}
	if bursts < n {
		t.Fatalf("ViewBurst hit %d times in four rounds over %d sessions", bursts, n)
	}
	if missing == 0 {
		t.Fatal("Missing answered for no key")
	}
	// A session deleted after its View: GetAt refuses the stale one.
	k := testKey(0)
	var p Probe
	tb.Prepare(&k, &p)
	var v View
	if tb.ViewProbe(&p, &v) {
		if !tb.Delete(v.ID, v.Gen) {
			t.Fatal("delete of a viewed session failed")
		}
		if tb.GetAt(v.ID, v.Gen, v.Dir, &e) {
			t.Fatal("GetAt accepted a deleted session")
		}
		if tb.ViewProbe(&p, &v) {
			t.Fatal("ViewProbe found a deleted session")
		}
	}
}

// TestPrepareAddrsMatchesTuple: the integer form prepares the same probe.
func TestPrepareAddrsMatchesTuple(t *testing.T) {
	tb := mustNew(t, 4)
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 1000; i++ {
		var src, dst [4]byte
		binary.LittleEndian.PutUint32(src[:], r.Uint32())
		binary.LittleEndian.PutUint32(dst[:], r.Uint32())
		sp, dp, pr := uint16(r.Uint32()), uint16(r.Uint32()), uint8(r.Uint32())
		var a, b Probe
		tb.PrepareTuple(src, dst, sp, dp, pr, &a)
		tb.PrepareAddrs(binary.BigEndian.Uint32(src[:]), binary.BigEndian.Uint32(dst[:]), sp, dp, pr, &b)
		if a != b {
			t.Fatalf("PrepareAddrs = %+v, PrepareTuple = %+v", b, a)
		}
	}
}
