package nat

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/xnat/xnat/flowtable"
)

// TestCountRecSize holds the permission record to the 24 bytes of the
// sizing table (docs/operations.md). Its index's bucket is
// flowtable.Bucket, whose size flowtable's TestLayoutSizes checks.
func TestCountRecSize(t *testing.T) {
	if s := unsafe.Sizeof(countRec{}); s != 24 {
		t.Fatalf("countRec is %d bytes, want 24", s)
	}
}

func countKey(i int) flowtable.Key {
	return permKey(ipProtoUDP, [4]byte{203, 0, byte(i >> 8), byte(i)}, [4]byte{198, 18, 0, 1}, uint16(1000+i))
}

// takeCount is acquirePerm's loop on a bare count table: a reference on
// the entry of k, created if need be. It reports false when the table is
// full.
func takeCount(t *testing.T, ct *countTable, k *flowtable.Key, x *flowtable.Entry) bool {
	for {
		if ct.Lookup(k, x) {
			if ok, _ := acquireRef(ct, x, 1, nil); ok {
				return true
			}
			continue // dying: look again
		}
		switch ct.Insert(k, &flowtable.NoKey, 0, [2]uint64{0, 1}, 0, x) {
		case flowtable.Inserted:
			return true
		case flowtable.Full:
			return false
		}
	}
}

// TestCountTableLifecycle: entries are created with a count of one, found
// with their key and count, counted up and down through acquireRef and
// releaseRef, deleted by the release that ends the count, refused when the
// table is full (nothing is evicted), and an emptied table has no slot
// and no overflow count left.
func TestCountTableLifecycle(t *testing.T) {
	ct := newCountTable(100)
	var x flowtable.Entry
	ids := map[uint32]bool{}
	for i := 0; i < 100; i++ {
		k := countKey(i)
		if !takeCount(t, ct, &k, &x) {
			t.Fatalf("entry %d refused", i)
		}
		if ids[x.ID] {
			t.Fatalf("record %d given twice", x.ID)
		}
		ids[x.ID] = true
	}
	k := countKey(100)
	if ct.Insert(&k, &flowtable.NoKey, 0, [2]uint64{0, 1}, 0, &x) != flowtable.Full {
		t.Fatal("insert into a full table accepted")
	}
	k = countKey(7)
	if ct.Insert(&k, &flowtable.NoKey, 0, [2]uint64{0, 1}, 0, &x) != flowtable.Exists || x.Keys[0] != k || x.User[1] != 1 {
		t.Fatalf("insert of a present key: entry %+v", x)
	}
	if !takeCount(t, ct, &k, &x) || !ct.Lookup(&k, &x) || x.User[1] != 2 || x.Keys[0] != k {
		t.Fatalf("second reference: entry %+v", x)
	}
	if _, last := releaseRef(ct, x.ID, 1); last {
		t.Fatal("release of one of two references reported last")
	}
	for i := 0; i < 100; i++ {
		k := countKey(i)
		if !ct.Lookup(&k, &x) || x.User[1] != 1 {
			t.Fatalf("entry %d: %+v", i, x)
		}
		got, last := releaseRef(ct, x.ID, 1)
		if !last || got.Keys[0] != k {
			t.Fatalf("last release of %d: %v, %+v", i, last, got)
		}
		if ct.Lookup(&k, &x) || ct.Alive(got.ID, got.Gen) {
			t.Fatalf("entry %d still there after its last release", i)
		}
	}
	if ct.Len() != 0 {
		t.Fatalf("%d entries left", ct.Len())
	}
	checkIndexEmpty(t, &ct.lineIndex)
}

// checkIndexEmpty fails unless every slot of x is empty and every
// overflow count and lock bit zero: the state of an emptied table.
func checkIndexEmpty(t *testing.T, x *lineIndex) {
	t.Helper()
	for b := range x.buckets {
		if m := x.buckets[b].Meta.Load(); m != 0 {
			t.Fatalf("bucket %d meta %#x in an emptied table", b, m)
		}
		for s := range x.buckets[b].Slots {
			if v := x.buckets[b].Slots[s].Load(); v != 0 {
				t.Fatalf("bucket %d slot %d holds %#x in an emptied table", b, s, v)
			}
		}
	}
}

// TestCountTableStaleSwapFails replays the race the generation closes: a
// caller looks entry A up, A dies and its record goes to entry B with the
// same count, then the caller's compare-and-swap runs: it must fail and
// leave B alone. A caller that loaded the word of a free record must fail
// too, not panic.
func TestCountTableStaleSwapFails(t *testing.T) {
	ct := newCountTable(4)
	a, b := countKey(1), countKey(2)
	var stale, x flowtable.Entry
	if ct.Insert(&a, &flowtable.NoKey, 0, [2]uint64{0, 1}, 0, &stale) != flowtable.Inserted {
		t.Fatal("insert A")
	}
	releaseRef(ct, stale.ID, 1)
	if v := ct.LoadUser(stale.ID, 1); v != 0 {
		t.Fatalf("a free record's count reads %#x", v)
	}
	if swapped, live := ct.CompareAndSwapUser(stale.ID, stale.Gen, 1, 0, 1); swapped || live {
		t.Fatal("a swap on a free record succeeded")
	}
	if ct.Insert(&b, &flowtable.NoKey, 0, [2]uint64{0, 1}, 0, &x) != flowtable.Inserted || x.ID != stale.ID {
		t.Fatalf("B got record %d, not A's %d: the replay needs the LIFO free list", x.ID, stale.ID)
	}
	if ok, dying := acquireRef(ct, &stale, 1, nil); ok || !dying {
		t.Fatalf("a reference on dead A through its reused record: ok %v dying %v", ok, dying)
	}
	if ct.Get(stale.ID, &x); x.User[1] != 1 || x.Keys[0] != b {
		t.Fatalf("B after the stale swap: %+v", x)
	}
}

// TestCountTableConcurrentRefs has goroutines take and drop references on
// the same few keys of a small table at once, so that entries die and
// their records and slots go to other keys while others hold copies: no
// reference may be lost or land on another key, and everything returns
// to zero (releaseRef panics on a count that underflows).
func TestCountTableConcurrentRefs(t *testing.T) {
	ct := newCountTable(24) // 6 buckets: most probes pass a full one
	hammerRefs(t, ct, 40, 6, 3, countKey, func(n int, x *flowtable.Entry) bool {
		k := countKey(n)
		return takeCount(t, ct, &k, x)
	})
	if ct.Len() != 0 {
		t.Fatalf("%d entries left after every reference was dropped", ct.Len())
	}
}

// hammerRefs runs the body of the concurrent reference tests: four
// goroutines, 20,000 rounds each, take (with take) and drop references on
// keys 0..keys-1 of tab (keyOf names them), each holding up to hold at a
// time, so that entries die and their records and slots go to other keys
// while copies are held. Every dropped reference must still be on its key
// (Get shows it), and releaseRef panics on a count that underflows. The
// caller checks that the table is empty afterwards.
func hammerRefs(t *testing.T, tab refTable, keys, hold int, seed uint64, keyOf func(int) flowtable.Key, take func(n int, x *flowtable.Entry) bool) {
	const workers, rounds = 4, 20000
	goRand(workers, seed, func(_ int, r *rand.Rand) {
		type ref struct {
			key int
			id  uint32
		}
		var mine []ref
		drop := func(j int) {
			m := mine[j]
			mine[j] = mine[len(mine)-1]
			mine = mine[:len(mine)-1]
			var x flowtable.Entry
			if !tab.Get(m.id, &x) || x.Keys[0] != keyOf(m.key) {
				t.Errorf("key %d: record %d holds %+v", m.key, m.id, x)
			}
			releaseRef(tab, m.id, 1)
		}
		for i := 0; i < rounds; i++ {
			if len(mine) > 0 && (len(mine) > hold || r.IntN(2) == 0) {
				drop(r.IntN(len(mine)))
				continue
			}
			n := r.IntN(keys)
			var x flowtable.Entry
			if take(n, &x) {
				mine = append(mine, ref{n, x.ID})
			}
		}
		for len(mine) > 0 {
			drop(0)
		}
	})
}
