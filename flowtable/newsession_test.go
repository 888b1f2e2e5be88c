package flowtable

import (
	"testing"
	"unsafe"
)

// TestLookupUser holds LookupUser to LookupProbe's answer for the fields
// it copies: after a prefetch that found the record, with a remembered
// slot that went stale (the session deleted, its record reused by another
// key), and for a key inserted after the prefetch, which only the walk
// finds.
func TestLookupUser(t *testing.T) {
	tb, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	a := Key{Src: [4]byte{10, 0, 0, 1}, Proto: 255}
	b := Key{Src: [4]byte{10, 0, 0, 2}, Proto: 255}
	var x Entry
	if r := tb.Insert(&a, &NoKey, 0, [2]uint64{7, 9}, 1, &x); r != Inserted {
		t.Fatalf("insert a: %v", r)
	}
	var pa Probe
	tb.Prepare(&a, &pa)
	tb.Prefetch(&pa)
	if pa.ref == 0 {
		t.Fatal("the prefetch found no slot for a")
	}
	check := func(p *Probe, want bool, what string) {
		t.Helper()
		var e, l Entry
		// A mark in the fields LookupUser leaves alone, when it reads
		// the record the prefetch found.
		e.Seen, e.State = 0xdead, 0xbeef
		got := tb.LookupUser(p, &e)
		if lok := tb.LookupProbe(p, &l); got != want || lok != want {
			t.Fatalf("%s: LookupUser %v, LookupProbe %v, want %v", what, got, lok, want)
		}
		if got && (e.ID != l.ID || e.Dir != l.Dir || e.Gen != l.Gen || e.User != l.User) {
			t.Fatalf("%s: LookupUser gave %d/%d gen %d user %v, LookupProbe %d/%d gen %d user %v",
				what, e.ID, e.Dir, e.Gen, e.User, l.ID, l.Dir, l.Gen, l.User)
		}
	}
	check(&pa, true, "a after its prefetch")
	var e Entry
	if tb.LookupUser(&pa, &e); e.Seen != 0 || e.User != [2]uint64{7, 9} {
		t.Fatalf("a: user %v seen %d, want [7 9] and the entry's zero tick left alone", e.User, e.Seen)
	}
	// Delete a; b takes its record (capacity 1): a's remembered slot now
	// leads to b's session.
	if !tb.Delete(x.ID, x.Gen) {
		t.Fatal("delete a")
	}
	if r := tb.Insert(&b, &NoKey, 0, [2]uint64{3, 4}, 1, &x); r != Inserted {
		t.Fatalf("insert b: %v", r)
	}
	check(&pa, false, "a, its slot stale and its record b's")
	var pb Probe
	tb.Prepare(&b, &pb) // no prefetch: only the walk finds b
	check(&pb, true, "b without a prefetch")
	// a again, in a record b gives back: the stale slot fails the key
	// check, and the walk finds the new one.
	if !tb.Delete(x.ID, x.Gen) {
		t.Fatal("delete b")
	}
	if r := tb.Insert(&a, &NoKey, 0, [2]uint64{5, 6}, 1, &x); r != Inserted {
		t.Fatalf("insert a again: %v", r)
	}
	check(&pa, true, "a again, through its old probe")
}

// TestIsTuple holds IsTuple to PrepareTuple: a probe is its own tuple
// and no other, and an unprepared probe is none; IsTo tells its
// destination and port from others; and Is tells a probe's own key from
// another.
func TestIsTuple(t *testing.T) {
	tb, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	src, dst := [4]byte{198, 51, 100, 7}, [4]byte{198, 18, 0, 1}
	var hint Probe
	if hint.IsTuple([4]byte{}, [4]byte{}, 0, 0, 0) {
		t.Fatal("an unprepared probe is a tuple")
	}
	var l Lines
	tb.PrefetchTupleProbe(src, dst, 53, 1024, 17, &hint, &l)
	if l.n != 1 || l.a[0] != uintptr(unsafe.Pointer(&tb.ix.buckets[tb.ix.Home(hint.h)])) {
		t.Fatalf("PrefetchTupleProbe noted %d lines, first %#x: want the home bucket", l.n, l.a[0])
	}
	l.Flush()
	if l.n != 0 {
		t.Fatalf("%d lines left after Flush", l.n)
	}
	if !hint.IsTuple(src, dst, 53, 1024, 17) {
		t.Fatal("a probe is not its own tuple")
	}
	// IsTo: the destination and its port, each differing in turn.
	if !hint.IsTo(dst, 1024) || hint.IsTo([4]byte{198, 18, 0, 2}, 1024) ||
		hint.IsTo([4]byte{199, 18, 0, 1}, 1024) || hint.IsTo(dst, 1025) || hint.IsTo(dst, 1024+1<<8) {
		t.Fatal("IsTo is wrong")
	}
	if (&Probe{}).IsTo([4]byte{}, 0) {
		t.Fatal("an unprepared probe is to somewhere")
	}
	// Each field differs in turn: the hint must not be taken.
	for i, k := range []Key{
		{Src: [4]byte{198, 51, 100, 8}, Dst: dst, SrcPort: 53, DstPort: 1024, Proto: 17},
		{Src: src, Dst: [4]byte{198, 18, 0, 2}, SrcPort: 53, DstPort: 1024, Proto: 17},
		{Src: src, Dst: dst, SrcPort: 54, DstPort: 1024, Proto: 17},
		{Src: src, Dst: dst, SrcPort: 53, DstPort: 1025, Proto: 17},
		{Src: src, Dst: dst, SrcPort: 53, DstPort: 1024, Proto: 6},
	} {
		if hint.IsTuple(k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto) {
			t.Fatalf("key %d: another key's probe is its tuple", i)
		}
		var w Probe
		tb.PrepareTuple(k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto, &w)
		var pk Probe
		tb.Prepare(&k, &pk)
		if w != pk || !w.IsTuple(k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto) {
			t.Fatalf("key %d: PrepareTuple %+v, Prepare %+v", i, w, pk)
		}
		if hint.Is(&k) || !w.Is(&k) {
			t.Fatalf("key %d: Is is wrong", i)
		}
	}
	own := Key{Src: src, Dst: dst, SrcPort: 53, DstPort: 1024, Proto: 17}
	if !hint.Is(&own) {
		t.Fatal("a probe is not its own key")
	}
}
