package flowtable

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

func TestLayoutSizes(t *testing.T) {
	if got := unsafe.Sizeof(Key{}); got != KeySize {
		t.Errorf("sizeof(Key) = %d, want %d", got, KeySize)
	}
	if got := unsafe.Sizeof(record{}); got != 64 {
		t.Errorf("sizeof(record) = %d, want one 64-byte cache line", got)
	}
	if got := unsafe.Sizeof(Bucket{}); got != BucketSize {
		t.Errorf("sizeof(Bucket) = %d, want one 64-byte cache line", got)
	}
	// CompareAndSwapUser swaps user word 1 and the generation as one aligned pair.
	var r record
	if u, g := unsafe.Offsetof(r.user)+8, unsafe.Offsetof(r.gen); u != 48 || g != 56 {
		t.Errorf("user word 1 at %d and gen at %d, want 48 and 56", u, g)
	}
	tb := mustNew(t, 4)
	if a := uintptr(unsafe.Pointer(&tb.recs[1].user[1])); a%16 != 0 {
		t.Errorf("user word 1 of a record at %#x, not 16-byte aligned", a)
	}
}

// TestCompareAndSwapUserModel drives CompareAndSwapUser on both user
// words from random states (generations live, recycled, odd; pins in
// flight; words equal to old or not) and checks each result against the
// definition: live if the record is at gen, swapped if also the word
// held old, and nothing else changed. Word 1 takes the pair swap where
// haveCAS16 (amd64 without -race: casUser1), word 0 the pin; both must agree.
func TestCompareAndSwapUserModel(t *testing.T) {
	tb := mustNew(t, 4)
	k0 := testKey(1)
	k1 := partner(k0)
	var e Entry
	if tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e) != Inserted {
		t.Fatal("insert failed")
	}
	r := &tb.recs[e.ID]
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(a, b uint64) uint64 {
		if rng.IntN(2) == 0 {
			return a
		}
		return b
	}
	for n := 0; n < 20000; n++ {
		base := uint64(rng.IntN(1000)) * 2
		word := base + uint64(rng.IntN(4)/3)         // odd a quarter of the time
		word += uint64(rng.IntN(3)) * pinOne         // 0 to 2 pins in flight
		gen := pick(base, pick(base+2, word|pinOne)) // the live generation, a later one, or a bad one
		cur := rng.Uint64() >> 1
		old := pick(cur, cur+1)
		nw := rng.Uint64()
		i := rng.IntN(2)
		r.gen.Store(word)
		r.user[i].Store(cur)
		r.user[1-i].Store(7)
		sw, live := tb.CompareAndSwapUser(e.ID, gen, i, old, nw)
		wantLive := gen&1 == 0 && gen <= genMask && word&genMask == gen
		wantSw := wantLive && cur == old
		want := cur
		if wantSw {
			want = nw
		}
		if sw != wantSw || live != wantLive || r.user[i].Load() != want || r.gen.Load() != word || r.user[1-i].Load() != 7 {
			t.Fatalf("word %d, gen word %#x, user %#x: CompareAndSwapUser(gen %#x, old %#x, new %#x) = %v, %v, leaving gen word %#x, user %#x, other %d; want %v, %v, user %#x",
				i, word, cur, gen, old, nw, sw, live, r.gen.Load(), r.user[i].Load(), r.user[1-i].Load(), wantSw, wantLive, want)
		}
	}
	r.gen.Store(e.Gen)
}

// testKey returns a distinct key for every i, spread like real traffic:
// inside hosts in 10/8, a few servers, varied ports, two protocols.
func testKey(i uint32) Key {
	var k Key
	binary.BigEndian.PutUint32(k.Src[:], 0x0a000000|i>>8)
	k.Dst = [4]byte{198, 18, 0, byte(i % 7)}
	k.SrcPort = uint16(1024 + i&0xff)
	k.DstPort = 443
	k.Proto = 6
	if i&(1<<31) != 0 {
		k.Proto = 17
	}
	return k
}

// partner derives the second key of a session from its first, so that any
// goroutine can check that both keys lead to one record. It is injective,
// and its image (sources outside 10/8) never meets the first keys.
func partner(k Key) Key { return k.Reverse() }

func TestKeyPackRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		var k Key
		binary.LittleEndian.PutUint32(k.Src[:], r.Uint32())
		binary.LittleEndian.PutUint32(k.Dst[:], r.Uint32())
		k.SrcPort, k.DstPort, k.Proto = uint16(r.Uint32()), uint16(r.Uint32()), uint8(r.Uint32())
		w0, w1 := k.pack()
		if got := unpack(w0, w1); got != k {
			t.Fatalf("unpack(pack(%v)) = %v", k, got)
		}
		if k.Reverse().Reverse() != k {
			t.Fatalf("Reverse is not an involution for %v", k)
		}
	}
}

func mustNew(t testing.TB, n int) *Table {
	t.Helper()
	tb, err := New(n)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestNewRejectsBadCapacity(t *testing.T) {
	for _, n := range []int{0, -1, MaxCapacity + 1} {
		if _, err := New(n); err == nil {
			t.Errorf("New(%d) succeeded", n)
		}
	}
}

func TestInsertLookupDelete(t *testing.T) {
	tb := mustNew(t, 64)
	k0 := testKey(1)
	k1 := partner(k0)
	var e Entry
	if tb.Lookup(&k0, &e) {
		t.Fatal("hit in empty table")
	}
	if res := tb.Insert(&k0, &k1, 7, [2]uint64{11, 12}, 100, &e); res != Inserted {
		t.Fatalf("Insert = %v", res)
	}
	id, gen := e.ID, e.Gen
	for dir, k := range []Key{k0, k1} {
		var got Entry
		if !tb.Lookup(&k, &got) {
			t.Fatalf("key %d not found", dir)
		}
		if got.ID != id || got.Gen != gen || int(got.Dir) != dir || got.Keys != [2]Key{k0, k1} ||
			got.State != 7 || got.User != [2]uint64{11, 12} || got.Seen != 100 {
			t.Fatalf("key %d: got %+v", dir, got)
		}
	}
	// A second insert of either key reports the existing session.
	k2 := testKey(2)
	if res := tb.Insert(&k2, &k1, 0, [2]uint64{}, 0, &e); res != Exists || e.ID != id {
		t.Fatalf("duplicate insert = %v id %d, want exists id %d", res, e.ID, id)
	}
	if tb.Lookup(&k2, &e) {
		t.Fatal("failed insert left its other key behind")
	}
	if tb.Len() != 1 {
		t.Fatalf("Len = %d", tb.Len())
	}
	if tb.Delete(id, gen+2) {
		t.Fatal("Delete with wrong generation succeeded")
	}
	if !tb.Delete(id, gen) {
		t.Fatal("Delete failed")
	}
	if tb.Delete(id, gen) {
		t.Fatal("second Delete succeeded")
	}
	if tb.Lookup(&k0, &e) || tb.Lookup(&k1, &e) {
		t.Fatal("deleted session still found")
	}
	if tb.Len() != 0 {
		t.Fatalf("Len = %d", tb.Len())
	}
}

func TestSingleKeyEntry(t *testing.T) {
	tb := mustNew(t, 4)
	k := testKey(3)
	var e Entry
	if tb.Insert(&k, &NoKey, 0, [2]uint64{1, 0}, 0, &e) != Inserted {
		t.Fatal("insert failed")
	}
	if tb.Lookup(&NoKey, &e) {
		t.Fatal("NoKey was indexed")
	}
	if !tb.Lookup(&k, &e) || !tb.Delete(e.ID, e.Gen) {
		t.Fatal("single-key entry not found or not deleted")
	}
}

func TestFullNeverEvicts(t *testing.T) {
	// RFC 6888 REQ-11: a full table refuses new sessions and never evicts.
	const n = 100
	tb := mustNew(t, n)
	var e Entry
	for i := uint32(0); i < n; i++ {
		k0 := testKey(i)
		k1 := partner(k0)
		if res := tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e); res != Inserted {
			t.Fatalf("insert %d: %v", i, res)
		}
	}
	k0 := testKey(n)
	k1 := partner(k0)
	if res := tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e); res != Full {
		t.Fatalf("insert into full table = %v, want full", res)
	}
	for i := uint32(0); i < n; i++ {
		k := testKey(i)
		if !tb.Lookup(&k, &e) {
			t.Fatalf("session %d lost after a refused insert", i)
		}
	}
	if tb.Lookup(&k0, &e) || tb.Lookup(&k1, &e) {
		t.Fatal("refused session is visible")
	}
}

func TestTouchAndState(t *testing.T) {
	tb := mustNew(t, 4)
	k0 := testKey(9)
	k1 := partner(k0)
	var e Entry
	tb.Insert(&k0, &k1, 1, [2]uint64{}, 5, &e)
	tb.Touch(e.ID, 9)
	if !tb.CompareAndSwapState(e.ID, e.Gen, 1, 2) {
		t.Fatal("state CAS failed")
	}
	if tb.CompareAndSwapState(e.ID, e.Gen, 1, 3) {
		t.Fatal("state CAS with stale old value succeeded")
	}
	if tb.CompareAndSwapState(e.ID, e.Gen+2, 2, 3) {
		t.Fatal("state CAS with stale generation succeeded")
	}
	if got, ok := tb.AddUser(e.ID, e.Gen, 1, 5); got != 5 || !ok {
		t.Fatalf("AddUser = %d, %v", got, ok)
	}
	if _, ok := tb.AddUser(e.ID, e.Gen+2, 1, 5); ok {
		t.Fatal("AddUser with a stale generation succeeded")
	}
	if sw, live := tb.CompareAndSwapUser(e.ID, e.Gen, 1, 4, 6); sw || !live {
		t.Fatalf("CompareAndSwapUser with a stale old value = %v, %v", sw, live)
	}
	if sw, live := tb.CompareAndSwapUser(e.ID, e.Gen+2, 1, 5, 6); sw || live {
		t.Fatalf("CompareAndSwapUser with a stale generation = %v, %v", sw, live)
	}
	// Generations no record has: odd, and beyond genMask (the live one
	// with a pin's bit), which must not match a pinned word.
	for _, g := range []uint64{e.Gen + 1, e.Gen | pinOne, e.Gen + pinOne + 1} {
		if sw, live := tb.CompareAndSwapUser(e.ID, g, 1, 5, 6); sw || live {
			t.Fatalf("CompareAndSwapUser at generation %#x = %v, %v", g, sw, live)
		}
	}
	if g := tb.recs[e.ID].gen.Load(); g != e.Gen {
		t.Fatalf("generation word %#x after the gated writes, want %#x (no pin left)", g, e.Gen)
	}
	// A bad word index panics before the pin: a pin left behind would
	// make Delete wait for ever.
	for name, f := range map[string]func(){
		"AddUser":            func() { tb.AddUser(e.ID, e.Gen, 2, 1) },
		"CompareAndSwapUser": func() { tb.CompareAndSwapUser(e.ID, e.Gen, -1, 0, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with a bad word index did not panic", name)
				}
			}()
			f()
		}()
		if g := tb.recs[e.ID].gen.Load(); g != e.Gen {
			t.Fatalf("generation word %#x after %s's panic, want %#x (no pin left)", g, name, e.Gen)
		}
	}
	var got Entry
	tb.Lookup(&k1, &got)
	if got.Seen != 9 || got.State != 2 || got.User[1] != 5 {
		t.Fatalf("got %+v", got)
	}
}

func TestExpire(t *testing.T) {
	tb := mustNew(t, 16)
	var e Entry
	timeouts := map[uint64]uint32{1: 10, 2: 100}
	for i := uint32(0); i < 10; i++ {
		k0 := testKey(i)
		k1 := partner(k0)
		class := uint64(1 + i%2)
		tb.Insert(&k0, &k1, 0, [2]uint64{class, 0}, 1000, &e)
	}
	timeout := func(e *Entry) uint32 { return timeouts[e.User[0]] }
	var gone []uint32
	expired := func(e *Entry) { gone = append(gone, e.ID) }

	if _, removed := tb.Expire(1009, tb.Cap(), timeout, expired); removed != 0 {
		t.Fatalf("expired %d sessions one tick early", removed)
	}
	if _, removed := tb.Expire(1010, tb.Cap(), timeout, expired); removed != 5 {
		t.Fatalf("expired %d sessions at their 10-tick timeout, want 5", removed)
	}
	if tb.Len() != 5 {
		t.Fatalf("Len = %d", tb.Len())
	}
	// Refreshing a session postpones its expiry.
	k := testKey(1) // class 2
	tb.Lookup(&k, &e)
	tb.Touch(e.ID, 1050)
	if _, removed := tb.Expire(1100, tb.Cap(), timeout, expired); removed != 4 {
		t.Fatalf("removed %d, want 4", removed)
	}
	if !tb.Lookup(&k, &e) {
		t.Fatal("refreshed session expired")
	}
	if _, removed := tb.Expire(1150, tb.Cap(), timeout, expired); removed != 1 || tb.Len() != 0 {
		t.Fatalf("removed %d, Len %d", removed, tb.Len())
	}
	if len(gone) != 10 {
		t.Fatalf("expired callback ran %d times", len(gone))
	}
}

// TestExpireSeenAfterNow: a worker may create or refresh a session after
// the expirer read its clock; that session is not idle, however close to
// the 32-bit wrap the ticks are.
func TestExpireSeenAfterNow(t *testing.T) {
	for _, now := range []uint32{1000, 1<<32 - 3} {
		tb := mustNew(t, 16)
		var e Entry
		k0 := testKey(1)
		k1 := partner(k0)
		tb.Insert(&k0, &k1, 0, [2]uint64{}, now+5, &e)
		timeout := func(*Entry) uint32 { return 10 }
		if _, removed := tb.Expire(now, tb.Cap(), timeout, nil); removed != 0 {
			t.Fatalf("now %d: expired a session seen at %d", now, now+5)
		}
		if _, removed := tb.Expire(now+15, tb.Cap(), timeout, nil); removed != 1 {
			t.Fatalf("now %d: session seen at %d not expired at %d", now, now+5, now+15)
		}
	}
}

func TestExpireIsIncremental(t *testing.T) {
	tb := mustNew(t, 100)
	var e Entry
	for i := uint32(0); i < 100; i++ {
		k0 := testKey(i)
		k1 := partner(k0)
		tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e)
	}
	timeout := func(*Entry) uint32 { return 1 }
	total := 0
	for range 10 {
		visited, removed := tb.Expire(5, 10, timeout, nil)
		if visited != 10 {
			t.Fatalf("visited %d records with a budget of 10", visited)
		}
		total += removed
	}
	if total != 100 || tb.Len() != 0 {
		t.Fatalf("removed %d in ten slices, Len %d", total, tb.Len())
	}
}

func TestRangePagination(t *testing.T) {
	tb := mustNew(t, 1000)
	var e Entry
	want := map[Key]bool{}
	for i := uint32(0); i < 700; i++ {
		k0 := testKey(i)
		k1 := partner(k0)
		tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e)
		want[k0] = true
	}
	// Delete some, so pages have holes.
	for i := uint32(0); i < 700; i += 3 {
		k := testKey(i)
		tb.Lookup(&k, &e)
		tb.Delete(e.ID, e.Gen)
		delete(want, k)
	}
	seen := map[Key]bool{}
	cursor := uint32(0)
	pages := 0
	for int(cursor) < tb.Cap() {
		n := 0
		cursor = tb.Range(cursor, func(e *Entry) bool {
			if seen[e.Keys[0]] {
				t.Fatalf("session %v listed twice", e.Keys[0])
			}
			seen[e.Keys[0]] = true
			n++
			return n < 50
		})
		pages++
	}
	if len(seen) != len(want) {
		t.Fatalf("listed %d sessions, want %d", len(seen), len(want))
	}
	for k := range want {
		if !seen[k] {
			t.Fatalf("session %v not listed", k)
		}
	}
	if pages < len(want)/50 {
		t.Fatalf("only %d pages", pages)
	}
}

// TestModel runs random operation sequences against the table and a plain
// map and compares every observable result.
func TestModel(t *testing.T) {
	type sess struct {
		k0, k1 Key
		user   uint64
		seen   uint32
	}
	for seed := uint64(0); seed < 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 99))
		capacity := 1 + r.IntN(200)
		tb := mustNew(t, capacity)
		byKey := map[Key]uint32{} // key -> id
		live := map[uint32]*sess{}
		gens := map[uint32]uint64{}
		now := uint32(0)
		var e Entry
		for op := 0; op < 5000; op++ {
			// Keys come from a small space so that collisions, duplicates
			// and reuse are frequent.
			i := uint32(r.IntN(capacity * 2))
			k0 := testKey(i)
			k1 := partner(k0)
			if r.IntN(4) == 0 {
				k1 = NoKey
			}
			switch r.IntN(6) {
			case 0, 1: // insert
				_, dup0 := byKey[k0]
				_, dup1 := byKey[k1]
				res := tb.Insert(&k0, &k1, 0, [2]uint64{uint64(i), 0}, now, &e)
				switch {
				case dup0 || (k1 != NoKey && dup1):
					if res != Exists {
						t.Fatalf("seed %d op %d: insert of existing key = %v", seed, op, res)
					}
					id := byKey[k0]
					if !dup0 {
						id = byKey[k1]
					}
					if e.ID != id {
						t.Fatalf("seed %d: exists returned id %d, want %d", seed, e.ID, id)
					}
				case len(live) == capacity:
					if res != Full {
						t.Fatalf("seed %d op %d: insert into full table = %v", seed, op, res)
					}
				default:
					if res != Inserted {
						t.Fatalf("seed %d op %d: insert = %v", seed, op, res)
					}
					if _, taken := live[e.ID]; taken {
						t.Fatalf("seed %d: id %d handed out twice", seed, e.ID)
					}
					live[e.ID] = &sess{k0, k1, uint64(i), now}
					gens[e.ID] = e.Gen
					byKey[k0] = e.ID
					if k1 != NoKey {
						byKey[k1] = e.ID
					}
				}
			case 2: // delete by key
				id, ok := byKey[k0]
				if !ok {
					if tb.Lookup(&k0, &e) {
						t.Fatalf("seed %d: lookup hit for absent key", seed)
					}
					continue
				}
				if !tb.Delete(id, gens[id]) {
					t.Fatalf("seed %d: delete of live id %d failed", seed, id)
				}
				s := live[id]
				delete(byKey, s.k0)
				delete(byKey, s.k1)
				delete(live, id)
			case 3: // touch
				if id, ok := byKey[k0]; ok {
					tb.Touch(id, now)
					live[id].seen = now
				}
			case 4: // expire a slice
				to := uint32(r.IntN(20))
				tb.Expire(now, 1+r.IntN(capacity), func(*Entry) uint32 { return to },
					func(e *Entry) {
						s, ok := live[e.ID]
						if !ok || now-s.seen < to {
							t.Fatalf("seed %d: expired id %d wrongly (live %v)", seed, e.ID, ok)
						}
						delete(byKey, s.k0)
						delete(byKey, s.k1)
						delete(live, e.ID)
					})
			case 5:
				now += uint32(r.IntN(3))
			}
			// Check a random key against the model.
			j := uint32(r.IntN(capacity * 2))
			kq := testKey(j)
			if r.IntN(2) == 0 {
				kq = partner(kq)
			}
			id, want := byKey[kq]
			got := tb.Lookup(&kq, &e)
			if got != want {
				t.Fatalf("seed %d op %d: lookup %v = %v, model %v", seed, op, kq, got, want)
			}
			if got {
				s := live[id]
				if e.ID != id || e.Keys != [2]Key{s.k0, s.k1} || e.User[0] != s.user || e.Seen != s.seen {
					t.Fatalf("seed %d: entry %+v, model %+v id %d", seed, e, s, id)
				}
			}
			if tb.Len() != len(live) {
				t.Fatalf("seed %d: Len %d, model %d", seed, tb.Len(), len(live))
			}
		}
	}
}

// TestConcurrentStress runs readers, writers and an expirer together and
// checks the invariants: a reader never sees a key it did not ask for (no
// false hits), both keys of a session lead to one record, a writer's pinned
// sessions are never lost, and every record is accounted for at the end.
func TestConcurrentStress(t *testing.T) {
	const (
		capacity = 1 << 14
		writers  = 3
		readers  = 3
		perW     = 4000 // keys each writer cycles through
		pinned   = 200  // keys per writer that are never expired
	)
	tb := mustNew(t, capacity)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) < 10 {
			t.Errorf(format, args...)
		}
	}
	keyOf := func(w, i int) Key { return testKey(uint32(w)<<20 | uint32(i)) }

	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			var e Entry
			for i := 0; i < pinned; i++ {
				k0 := keyOf(w, i)
				k1 := partner(k0)
				if tb.Insert(&k0, &k1, 0, [2]uint64{1, 0}, 0, &e) != Inserted {
					fail("pinned insert %d/%d failed", w, i)
				}
			}
			for !stop.Load() {
				i := pinned + r.IntN(perW-pinned)
				k0 := keyOf(w, i)
				k1 := partner(k0)
				switch res := tb.Insert(&k0, &k1, 0, [2]uint64{0, 0}, 0, &e); res {
				case Inserted, Exists:
					if e.Keys[0] != k0 || e.Keys[1] != k1 {
						fail("insert returned the wrong session: %+v", e)
					}
					if r.IntN(2) == 0 {
						tb.Delete(e.ID, e.Gen)
					}
				case Full:
				}
				p := r.IntN(pinned)
				pk := keyOf(w, p)
				if !tb.Lookup(&pk, &e) {
					fail("pinned session %d/%d lost", w, p)
				}
			}
		}()
	}
	for rd := 0; rd < readers; rd++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(rd), 8))
			var e, e2 Entry
			for !stop.Load() {
				k := keyOf(r.IntN(writers), r.IntN(perW))
				if r.IntN(2) == 0 {
					k = partner(k)
				}
				if !tb.Lookup(&k, &e) {
					continue
				}
				if e.Keys[e.Dir] != k {
					fail("false hit: asked %v got %+v", k, e)
				}
				k0 := e.Keys[0]
				if e.Keys[1] != partner(k0) {
					fail("torn record: %+v", e)
				}
				other := e.Keys[1-e.Dir]
				// Generations are per record, so two records can
				// show the same one: only a session that stayed live
				// across the second lookup proves both keys were its
				// own at that moment.
				if tb.Lookup(&other, &e2) && e2.ID != e.ID && tb.Alive(e.ID, e.Gen) {
					fail("keys of one session lead to two records")
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		timeout := func(e *Entry) uint32 {
			if e.User[0] == 1 {
				return ^uint32(0)
			}
			return 0
		}
		for !stop.Load() {
			tb.Expire(1, 512, timeout, nil)
		}
	}()
	time.Sleep(stressTime())
	stop.Store(true)
	wg.Wait()

	checkQuiescent(t, tb, nil)
}

func TestZeroAllocs(t *testing.T) {
	tb := mustNew(t, 1024)
	k0 := testKey(1)
	k1 := partner(k0)
	miss := testKey(2)
	var e Entry
	var x Hit
	var ps [64]Probe
	var es [64]Entry
	var keys [64]Key
	for i := range keys {
		keys[i] = testKey(uint32(i))
	}
	timeout := func(*Entry) uint32 { return 1 << 30 }
	cases := map[string]func(){
		"lookup-hit":  func() { tb.Lookup(&k0, &e) },
		"lookup-miss": func() { tb.Lookup(&miss, &e) },
		"insert-delete": func() {
			tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e)
			tb.Delete(e.ID, e.Gen)
		},
		"lookup-probe": func() {
			tb.Prepare(&k0, &ps[0])
			tb.LookupProbe(&ps[0], &e)
		},
		"lookup-burst": func() {
			for i := range ps {
				tb.Prepare(&keys[i], &ps[i])
			}
			tb.LookupBurst(ps[:], es[:])
		},
		"prefetch-burst": func() { tb.PrefetchBurst(ps[:]) },
		"find":           func() { tb.Find(&k0, &x) },
		"find-probe":     func() { tb.FindProbe(&ps[0], &x) },
		"view-probe": func() {
			var v View
			tb.ViewProbe(&ps[0], &v)
		},
		"get-at": func() { tb.GetAt(e.ID, e.Gen, 1, &e) },
		"insert-probe-delete": func() {
			tb.Prepare(&k0, &ps[1])
			tb.Prepare(&k1, &ps[2])
			tb.InsertProbe(&ps[1], &ps[2], 0, [2]uint64{}, 0, &e)
			tb.Delete(e.ID, e.Gen)
		},
		"touch":     func() { tb.Touch(e.ID, 3) },
		"expire":    func() { tb.Expire(5, 64, timeout, nil) },
		"state-cas": func() { tb.CompareAndSwapState(e.ID, e.Gen, 0, 0) },
		"user-cas":  func() { tb.CompareAndSwapUser(e.ID, e.Gen, 1, 0, 0) },
		"user-add":  func() { tb.AddUser(e.ID, e.Gen, 1, 0) },
	}
	tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e)
	for name, f := range cases {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per run", name, n)
		}
	}
}

func TestPrepareTupleMatchesKey(t *testing.T) {
	tb := mustNew(t, 4)
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 10000; i++ {
		var k Key
		binary.LittleEndian.PutUint32(k.Src[:], r.Uint32())
		binary.LittleEndian.PutUint32(k.Dst[:], r.Uint32())
		k.SrcPort, k.DstPort, k.Proto = uint16(r.Uint32()), uint16(r.Uint32()), uint8(r.Uint32())
		var a, b Probe
		tb.Prepare(&k, &a)
		tb.PrepareTuple(k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto, &b)
		if a != b {
			t.Fatalf("PrepareTuple(%v) = %+v, Prepare = %+v", k, b, a)
		}
	}
}

// TestBucketFind compares bucket.find and the branch-free bucket.pick with a
// plain reading of the slots on random buckets: find returns the reference
// of the first slot whose fingerprint equals the probe's, or 0; pick the OR
// of all of them.
func TestBucketFind(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 200000; i++ {
		var b Bucket
		var words [BucketSlots]uint64
		fp := r.Uint32() | 1
		for s := range words {
			switch r.IntN(4) {
			case 0:
				words[s] = slotWord(fp, r.Uint32()|1) // a real match
			case 1:
				words[s] = 0 // empty
			case 2:
				words[s] = slotWord(fp^1<<r.IntN(32), r.Uint32()) // one bit off
			default:
				words[s] = r.Uint64()
			}
			b.Slots[s].Store(words[s])
		}
		want, all, matches := uint32(0), uint32(0), 0
		for _, w := range words {
			if w>>32 == uint64(fp) {
				if matches == 0 {
					want = uint32(w)
				}
				all |= uint32(w)
				matches++
			}
		}
		if got := b.find(fp); got != want {
			t.Fatalf("slots %x fingerprint %x: find = %d, want %d", words, fp, got, want)
		}
		if got := b.pick(fp); got != all {
			t.Fatalf("slots %x fingerprint %x: pick = %d, want %d (%d matches)", words, fp, got, all, matches)
		}
	}
}

// TestBurstMatchesReference checks the optimized burst path (PrefetchBurst,
// the remembered slot in LookupProbe, LookupBurst) against the slow
// reference, a map from key to the session's serial number, on random
// bursts of present and absent keys while sessions come and go. Between
// the prefetch and the lookup it also deletes and inserts sessions, so that
// remembered slots go stale in every way: a deleted session, a record
// reused for another key, a key inserted after the prefetch.
func TestBurstMatchesReference(t *testing.T) {
	const capacity, nkeys = 512, 700
	tb := mustNew(t, capacity)
	ref := map[Key]uint64{} // key -> serial of the live session holding it
	ids := map[uint64]Entry{}
	r := rand.New(rand.NewPCG(31, 32))
	serial := uint64(0)
	var e Entry
	churn := func() {
		i := uint32(r.IntN(nkeys))
		k0 := testKey(i)
		k1 := partner(k0)
		if s, ok := ref[k0]; ok {
			x := ids[s]
			if !tb.Delete(x.ID, x.Gen) {
				t.Fatalf("delete of session %d failed", s)
			}
			delete(ref, k0)
			delete(ref, k1)
			delete(ids, s)
			return
		}
		serial++
		switch res := tb.Insert(&k0, &k1, 0, [2]uint64{serial, 0}, 0, &e); res {
		case Inserted:
			ref[k0], ref[k1] = serial, serial
			ids[serial] = e
		case Full:
			if len(ids) != capacity {
				t.Fatalf("Full with %d of %d sessions", len(ids), capacity)
			}
		default:
			t.Fatalf("insert of an absent key: %v", res)
		}
	}
	var ps [64]Probe
	var keys [64]Key
	var es [64]Entry
	for round := 0; round < 3000; round++ {
		for range 8 {
			churn()
		}
		n := 1 + r.IntN(64)
		for i := range n {
			keys[i] = testKey(uint32(r.IntN(nkeys)))
			if r.IntN(2) == 0 {
				keys[i] = partner(keys[i])
			}
			tb.Prepare(&keys[i], &ps[i])
		}
		var found uint64
		if round%2 == 0 {
			found = tb.LookupBurst(ps[:n], es[:n])
		} else {
			tb.PrefetchBurst(ps[:n])
			for range 4 {
				churn() // make some remembered slots stale
			}
			for i := range n {
				if tb.LookupProbe(&ps[i], &es[i]) {
					found |= 1 << i
				}
			}
		}
		for i := range n {
			want, ok := ref[keys[i]]
			got := found&(1<<i) != 0
			if got != ok {
				t.Fatalf("round %d: key %v found=%v, reference says %v", round, keys[i], got, ok)
			}
			if ok && (es[i].User[0] != want || es[i].Keys[es[i].Dir] != keys[i]) {
				t.Fatalf("round %d: key %v gave session %d (%v), reference says %d", round, keys[i], es[i].User[0], es[i].Keys, want)
			}
			// Find, and FindProbe through the (maybe stale) slot
			// the prefetch remembered, name the same session.
			var x, y Hit
			if f, fp := tb.Find(&keys[i], &x), tb.FindProbe(&ps[i], &y); f != ok || fp != ok {
				t.Fatalf("round %d: key %v: Find %v, FindProbe %v, reference says %v", round, keys[i], f, fp, ok)
			}
			if ok && (x != y || x.ID != es[i].ID || x.Dir != es[i].Dir || x.Gen != es[i].Gen) {
				t.Fatalf("round %d: key %v: Find %+v, FindProbe %+v, Lookup %d/%d/%d", round, keys[i], x, y, es[i].ID, es[i].Dir, es[i].Gen)
			}
		}
	}
}

func TestLookupBurstRejectsLongBurst(t *testing.T) {
	tb := mustNew(t, 4)
	defer func() {
		if recover() == nil {
			t.Error("LookupBurst of 65 probes did not panic")
		}
	}()
	var ps [65]Probe
	var es [65]Entry
	tb.LookupBurst(ps[:], es[:])
}

// TestSingleKeyTable checks NewSingleKey: half the index, single-key
// entries work as in New's tables, and an entry with two keys is refused
// cleanly, leaving the table as it was.
func TestSingleKeyTable(t *testing.T) {
	const n = 1000
	tb, err := NewSingleKey(n)
	if err != nil {
		t.Fatal(err)
	}
	two := mustNew(t, n)
	if got, want := tb.BytesPerSession(), 64+(two.BytesPerSession()-64)/2; got > want+0.5 {
		t.Errorf("single-key table holds %.1f B per entry, want about %.1f", got, want)
	}
	var e Entry
	k0 := testKey(1)
	k1 := partner(k0)
	if res := tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e); res != Full {
		t.Fatalf("two-key insert into a single-key table = %v, want full", res)
	}
	if tb.Len() != 0 || tb.Lookup(&k0, &e) || tb.Lookup(&k1, &e) {
		t.Fatal("the refused insert left a trace")
	}
	for i := range uint32(n) {
		k := testKey(i)
		if res := tb.Insert(&k, &NoKey, 0, [2]uint64{uint64(i), 0}, 0, &e); res != Inserted {
			t.Fatalf("insert %d: %v", i, res)
		}
	}
	k := testKey(n)
	if res := tb.Insert(&k, &NoKey, 0, [2]uint64{}, 0, &e); res != Full {
		t.Fatalf("insert beyond capacity = %v", res)
	}
	for i := range uint32(n) {
		k := testKey(i)
		if !tb.Lookup(&k, &e) || e.User[0] != uint64(i) {
			t.Fatalf("entry %d not found", i)
		}
		if !tb.Delete(e.ID, e.Gen) {
			t.Fatalf("delete %d failed", i)
		}
	}
	checkQuiescent(t, tb, nil)
}

// TestIndexOverflow fills a table to capacity and measures how often the
// index leaves the home bucket: the share of keys stored beyond their home
// bucket (a hit that reads two bucket lines) and of buckets whose overflow
// count is not zero (a miss that reads two). The layout's claim, that
// almost every lookup reads one bucket line, rests on both being small.
func TestIndexOverflow(t *testing.T) {
	const n = 100_000
	tb := mustNew(t, n)
	var e Entry
	keys := make([]Key, 0, 2*n)
	for i := range uint32(n) {
		k0 := testKey(i)
		k1 := partner(k0)
		if res := tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e); res != Inserted {
			t.Fatalf("insert %d: %v", i, res)
		}
		keys = append(keys, k0, k1)
	}
	away := 0
	for i := range keys {
		var p Probe
		tb.Prepare(&keys[i], &p)
		home := &tb.ix.buckets[tb.ix.Home(p.h)]
		if !tb.Lookup(&keys[i], &e) {
			t.Fatalf("key %v lost", keys[i])
		}
		if home.find(fpOf(p.h)) != slotRef(e.ID, e.Dir) {
			away++
		}
	}
	over := 0
	for b := range tb.ix.buckets {
		if tb.ix.buckets[b].Meta.Load() >= MetaOverflow {
			over++
		}
	}
	fa, fo := float64(away)/float64(len(keys)), float64(over)/float64(len(tb.ix.buckets))
	t.Logf("full table: %.2f%% of keys beyond their home bucket, %.2f%% of buckets with an overflow count", 100*fa, 100*fo)
	if fa > 0.05 || fo > 0.10 {
		t.Errorf("the index leaves the home bucket too often: %.2f%% of keys, %.2f%% of buckets", 100*fa, 100*fo)
	}
}

// TestPlacePassesLockedBucket: a Place whose home bucket is full stores
// beyond it only in a bucket whose lock it takes for the store, and passes
// a bucket another insert holds as if it were full, raising its overflow
// count: the holder may be filling that bucket's empty slots with plain
// stores. Lookups walk past both counts to the key; removing it lowers
// them again, and no lock is left held.
func TestPlacePassesLockedBucket(t *testing.T) {
	x := MakeIndex(new(int), 8)
	word := func(i uint64) uint64 { return i<<32 | i }
	for s := range x.buckets[2].Slots {
		x.buckets[2].Slots[s].Store(word(uint64(100 + s)))
	}
	x.Lock(2) // the inserter's home, full
	x.Lock(3) // another insert's home, with empty slots
	w := word(7)
	slot := x.Place(2, w)
	if slot != &x.buckets[4].Slots[0] {
		t.Fatalf("Place stored beyond a full home and a held bucket at %p, want bucket 4's first slot %p", slot, &x.buckets[4].Slots[0])
	}
	for s := range x.buckets[3].Slots {
		if v := x.buckets[3].Slots[s].Load(); v != 0 {
			t.Fatalf("Place stored %#x in slot %d of the bucket another insert holds", v, s)
		}
	}
	for b, want := range map[int]uint64{2: MetaLock + MetaOverflow, 3: MetaLock + MetaOverflow, 4: 0} {
		if m := x.buckets[b].Meta.Load(); m != want {
			t.Errorf("bucket %d meta %#x, want %#x", b, m, want)
		}
	}
	if x.Ended(2) || x.Ended(3) || !x.Ended(4) {
		t.Errorf("walk ends: %v %v %v, want false false true", x.Ended(2), x.Ended(3), x.Ended(4))
	}
	x.Unlock(3)
	x.Unlock(2)
	x.Remove(2, w)
	for b := range x.buckets {
		if m := x.buckets[b].Meta.Load(); m != 0 {
			t.Errorf("bucket %d meta %#x after the remove and the unlocks, want 0", b, m)
		}
	}
}

// TestInsertProbe: InsertProbe with prepared keys behaves as Insert with
// the keys themselves: both keys found afterwards, Exists for either key
// of a live session (with that session), a nil second probe for a
// single-key entry, and Full from a single-key table for two keys.
func TestInsertProbe(t *testing.T) {
	tb := mustNew(t, 8)
	k0, k1 := testKey(1), partner(testKey(1))
	var p0, p1 Probe
	tb.PrepareTuple(k0.Src, k0.Dst, k0.SrcPort, k0.DstPort, k0.Proto, &p0)
	tb.Prepare(&k1, &p1)
	var e, x Entry
	if res := tb.InsertProbe(&p0, &p1, 7, [2]uint64{1, 2}, 3, &e); res != Inserted {
		t.Fatalf("InsertProbe = %v", res)
	}
	if e.Keys != [2]Key{k0, k1} || e.State != 7 || e.User != [2]uint64{1, 2} || e.Seen != 3 {
		t.Fatalf("inserted entry %+v", e)
	}
	for dir, k := range []Key{k0, k1} {
		if !tb.Lookup(&k, &x) || x.ID != e.ID || x.Dir != uint8(dir) {
			t.Fatalf("key %d not found after InsertProbe: %+v", dir, x)
		}
	}
	other := testKey(2)
	var po Probe
	tb.Prepare(&other, &po)
	if res := tb.InsertProbe(&po, &p1, 0, [2]uint64{}, 0, &x); res != Exists || x.ID != e.ID {
		t.Fatalf("InsertProbe over a live key = %v (%+v)", res, x)
	}
	if res := tb.InsertProbe(&po, nil, 0, [2]uint64{9, 0}, 0, &x); res != Inserted || x.Keys[1] != NoKey {
		t.Fatalf("single-key InsertProbe = %v (%+v)", res, x)
	}
	if !tb.Lookup(&other, &x) || x.User[0] != 9 || tb.Len() != 2 {
		t.Fatalf("single-key entry not found, or Len %d", tb.Len())
	}
	st, err := NewSingleKey(4)
	if err != nil {
		t.Fatal(err)
	}
	if res := st.InsertProbe(&p0, &p1, 0, [2]uint64{}, 0, &x); res != Full || st.Len() != 0 {
		t.Fatalf("two keys into a single-key table = %v, Len %d", res, st.Len())
	}
}

// TestLenAcrossCountWrap checks Len, the free list's pops (the head's high
// half) less its pushes, while both counts wrap past 2^32.
func TestLenAcrossCountWrap(t *testing.T) {
	tb := mustNew(t, 64)
	const before = 1<<32 - 5 // as if that many sessions had come and gone
	tb.head.Store(uint64(before)<<32 | tb.head.Load()&(1<<32-1))
	tb.pushes.Store(before)
	live := map[int]Entry{}
	next := 0
	for round := 0; round < 4; round++ {
		for i := 0; i < 10+round; i++ {
			k0 := Key{Src: [4]byte{10, 0, 0, byte(next)}, Dst: [4]byte{198, 18, 0, 1}, SrcPort: 1000, DstPort: 53, Proto: 17}
			k1 := partner(k0)
			var e Entry
			if r := tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e); r != Inserted {
				t.Fatalf("insert %d: %v", next, r)
			}
			live[next] = e
			next++
			if got := tb.Len(); got != len(live) {
				t.Fatalf("round %d: Len %d after an insert, want %d", round, got, len(live))
			}
		}
		for k, e := range live {
			if len(live) <= round {
				break
			}
			if !tb.Delete(e.ID, e.Gen) {
				t.Fatalf("delete %d failed", k)
			}
			delete(live, k)
			if got := tb.Len(); got != len(live) {
				t.Fatalf("round %d: Len %d after a delete, want %d", round, got, len(live))
			}
		}
	}
	if uint32(tb.head.Load()>>32) >= before {
		t.Fatal("the count of pops did not wrap")
	}
}

// TestInsertWaitsForHomes holds an insert to its locks' protocol: with
// the home of either key locked by someone else, the insert waits (it
// neither fails nor indexes anything) and completes once the lock is let
// go, with both keys found and no bucket left locked.
func TestInsertWaitsForHomes(t *testing.T) {
	for which := range 2 {
		tb := mustNew(t, 64)
		k0 := testKey(uint32(10 + which))
		k1 := partner(k0)
		var p [2]Probe
		tb.Prepare(&k0, &p[0])
		tb.Prepare(&k1, &p[1])
		held := &tb.ix.buckets[tb.ix.Home(p[which].h)]
		held.Lock()
		done := make(chan InsertResult)
		var e Entry
		go func() { done <- tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e) }()
		select {
		case res := <-done:
			t.Fatalf("key %d's home locked: Insert returned %v without waiting", which, res)
		case <-time.After(20 * time.Millisecond):
		}
		var x Entry
		if tb.Lookup(&k0, &x) || tb.Lookup(&k1, &x) {
			t.Fatalf("key %d's home locked: a waiting insert's key is found", which)
		}
		held.Unlock()
		if res := <-done; res != Inserted {
			t.Fatalf("key %d's home let go: Insert = %v", which, res)
		}
		for _, k := range []Key{k0, k1} {
			if !tb.Lookup(&k, &x) || x.ID != e.ID {
				t.Fatalf("key %d's home let go: key %v not found in session %d", which, k, e.ID)
			}
		}
		for b := range tb.ix.buckets {
			if tb.ix.buckets[b].Meta.Load()&MetaLock != 0 {
				t.Fatalf("bucket %d left locked", b)
			}
		}
	}
}
