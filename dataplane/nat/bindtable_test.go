package nat

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/xnat/xnat/flowtable"
)

// testBindTable returns a bind table of n bindings over a registry whose
// eight slots all hold 198.18.0.1, testBinding's external address (the
// tests' bindingWords name slots 1 and 7).
func testBindTable(n int) *bindTable {
	reg := make([]atomic.Pointer[addrState], 8)
	for i := range reg {
		reg[i].Store(&addrState{addr: [4]byte{198, 18, 0, 1}, idx: uint32(i)})
	}
	return newBindTable(n, reg)
}

// testBinding returns the keys of binding i: inside 10.0.x.y:i, external
// 198.18.0.1:(20000+i), UDP.
func testBinding(i int) (flowtable.Key, flowtable.Key) {
	return bindingKeys(ipProtoUDP, [4]byte{10, 0, byte(i >> 8), byte(i)}, uint16(i), [4]byte{198, 18, 0, 1}, uint16(20000+i))
}

// TestBindTableLifecycle: a binding is found by its inside key, with both
// keys and both user words, also through a prefetched probe, and confirmed
// by its external key (External); its inside key refuses a new binding
// while it lives; a full table refuses (nothing is evicted); a key no
// binding can have, or an external key, is never found by a lookup (the
// external endpoints' index is the port table: bindingAt); and the last
// release deletes the binding and leaves the index empty.
func TestBindTableLifecycle(t *testing.T) {
	if s := unsafe.Sizeof(bindRec{}); s != bindRecSize {
		t.Fatalf("bindRec is %d bytes, want %d", s, bindRecSize)
	}
	bt := testBindTable(50)
	var x flowtable.Entry
	for i := 0; i < 50; i++ {
		k0, k1 := testBinding(i)
		if r := bt.Insert(&k0, &k1, 0, bindingWords(uint32(i), 7), 0, &x); r != flowtable.Inserted {
			t.Fatalf("binding %d: %v", i, r)
		}
	}
	k0, k1 := testBinding(50)
	if r := bt.Insert(&k0, &k1, 0, bindingWords(1, 7), 0, &x); r != flowtable.Full {
		t.Fatalf("insert into a full table: %v", r)
	}
	for i := 0; i < 50; i++ {
		k0, k1 := testBinding(i)
		var p bindProbe
		bt.Prepare(&k0, &p)
		var l flowtable.Lines
		bt.PrefetchHome(&p, &l)
		l.Flush()
		bt.Scan(&p, &l)
		l.Flush()
		if w := bindWord(k0.Src, k0.SrcPort, k0.Proto, 0); w != p.w {
			t.Fatalf("bindWord of inside key of binding %d: %#x, Prepare's %#x", i, w, p.w)
		}
		for _, found := range []bool{bt.Lookup(&k0, &x), bt.LookupProbe(&p, &x)} {
			if !found || x.Dir != 0 || x.Keys != [2]flowtable.Key{k0, k1} || x.User != bindingWords(uint32(i), 7) {
				t.Fatalf("binding %d by its inside key: found %v, %+v", i, found, x)
			}
		}
		id := x.ID
		if bt.Lookup(&k1, &x) {
			t.Fatalf("binding %d found by its external key in the inside index", i)
		}
		if !bt.External(id, 7, k1.DstPort, k1.Proto, &x) || x.ID != id || x.Keys != [2]flowtable.Key{k0, k1} {
			t.Fatalf("binding %d not confirmed by its external key: %+v", i, x)
		}
		// Another binding of the same inside endpoint is refused with
		// the one that holds it.
		_, o1 := testBinding(i + 100)
		if r := bt.Insert(&k0, &o1, 0, bindingWords(1, 7), 0, &x); r != flowtable.Exists || x.Keys[0] != k0 {
			t.Fatalf("second binding of inside key %d: %v", i, r)
		}
	}
	both := flowtable.Key{Src: [4]byte{10, 0, 0, 1}, Dst: [4]byte{198, 18, 0, 1}, DstPort: 20001, Proto: ipProtoUDP}
	if bt.Lookup(&both, &x) {
		t.Fatal("a key with both endpoints found a binding")
	}
	for i := 0; i < 50; i++ {
		k0, _ := testBinding(i)
		if !bt.Lookup(&k0, &x) {
			t.Fatalf("binding %d lost", i)
		}
		if _, last := releaseRef(bt, x.ID, 1); !last {
			t.Fatalf("release of binding %d's only reference not last", i)
		}
		if bt.Lookup(&k0, &x) {
			t.Fatalf("binding %d found after its deletion", i)
		}
	}
	if bt.Len() != 0 {
		t.Fatalf("%d bindings left", bt.Len())
	}
	checkIndexEmpty(t, &bt.lineIndex)
}

// TestBindTableConcurrentRefs has goroutines take and drop references on
// the bindings of a few inside endpoints of a small table at once, as
// eimMapping does, so that bindings die and their records and slots go to
// others while copies are held: every reference must stay on its binding
// (Get shows its keys), and everything returns to zero (releaseRef panics
// on a count that underflows).
func TestBindTableConcurrentRefs(t *testing.T) {
	bt := testBindTable(12) // 6 buckets for 24 keys: probes pass full ones
	inside := func(ep int) flowtable.Key { k0, _ := testBinding(ep); return k0 }
	hammerRefs(t, bt, 30, 3, 11, inside, func(ep int, x *flowtable.Entry) bool {
		k0, k1 := testBinding(ep)
		for {
			if bt.Lookup(&k0, x) {
				if ok, _ := acquireRef(bt, x, 1, nil); ok {
					return true
				}
				continue
			}
			switch bt.Insert(&k0, &k1, 0, bindingWords(uint32(ep), 1), 0, x) {
			case flowtable.Inserted:
				return true
			case flowtable.Exists:
				continue
			default:
				return false
			}
		}
	})
	if bt.Len() != 0 {
		t.Fatalf("%d bindings left after every reference was dropped", bt.Len())
	}
}

// TestBindRecUser: a binding record's u0 gives back User[0] (subscriber,
// address index) and the external port for every value in range, the
// largest ones included.
func TestBindRecUser(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(sub, idx uint32, port uint16) {
		u0, gotIdx, gotPort := bindRecFields(bindRecUser(bindingWords(sub, idx)[0], port))
		if u0 != bindingWords(sub, idx)[0] || gotIdx != idx || gotPort != port {
			t.Fatalf("sub %d idx %d port %d: got %#x, %d, %d", sub, idx, port, u0, gotIdx, gotPort)
		}
	}
	check(1<<26-1, maxAddrSlots-1, 65535)
	check(0, 0, 0)
	for i := 0; i < 10000; i++ {
		check(uint32(r.IntN(1<<26)), uint32(r.IntN(maxAddrSlots)), uint16(r.Uint32()))
	}
}

// TestBindTableScan holds the new-session pipeline's two steps on a
// mapping's bucket to what pass 2 relies on. For a live binding, Scan
// remembers the slot of its record (LookupProbe then reads the record
// straight) and notes the record's line for the next Flush, after
// PrefetchHome noted the bucket's; absent is never set for it. For keys
// no binding holds, absent, when set, is a correct answer (the lookup
// agrees), and in a table a fifth full it is set for nearly all of them:
// a Scan that never said absent would send every new session's pass 2 to
// the walk.
func TestBindTableScan(t *testing.T) {
	const n = 200
	bt := testBindTable(5 * n)
	var x flowtable.Entry
	ids := make([]uint32, n)
	for i := range n {
		k0, k1 := testBinding(i)
		if r := bt.Insert(&k0, &k1, 0, bindingWords(uint32(i), 7), 0, &x); r != flowtable.Inserted {
			t.Fatalf("binding %d: %v", i, r)
		}
		ids[i] = x.ID
	}
	var l flowtable.Lines
	absent := 0
	for i := range 2 * n {
		k0, _ := testBinding(i)
		var p bindProbe
		bt.Prepare(&k0, &p)
		bt.PrefetchHome(&p, &l)
		if l.Len() != 1 {
			t.Fatalf("key %d: PrefetchHome noted %d lines, want its bucket's", i, l.Len())
		}
		l.Flush()
		bt.Scan(&p, &l)
		live := i < n
		if live {
			if p.absent || p.ref == 0 || (p.ref-1)>>1 != ids[i] {
				t.Fatalf("binding %d (record %d): Scan gave absent %v, slot %#x", i, ids[i], p.absent, p.ref)
			}
			if l.Len() != 1 {
				t.Fatalf("binding %d: Scan noted %d lines, want its record's", i, l.Len())
			}
		} else if p.absent && l.Len() != 0 {
			t.Fatalf("key %d: Scan said absent and noted %d lines", i, l.Len())
		}
		l.Flush()
		found := bt.LookupProbe(&p, &x)
		if found != live || live && x.ID != ids[i] {
			t.Fatalf("key %d: LookupProbe after Scan found %v (record %d), want %v", i, found, x.ID, live)
		}
		if !live && p.absent {
			absent++
		}
	}
	if absent < n*9/10 {
		t.Fatalf("Scan said absent for %d of %d missing keys", absent, n)
	}
}

// TestFreeListInUseAcrossWrap checks inUse, the pops counted in the head
// less the pushes, while both counts wrap past 2^32, and that the list
// still hands out each record once between its pushes.
func TestFreeListInUseAcrossWrap(t *testing.T) {
	const n = 16
	var f freeList
	links := make([]uint64, n)
	setNext := func(id uint32, next uint64) { links[id] = next }
	f.init(n, setNext)
	const before = 1<<32 - 5 // as if that many records had come and gone
	f.head.Store(uint64(before)<<32 | f.head.Load()&(1<<32-1))
	f.pushes.Store(before)
	pop := func() uint32 {
		for {
			h, id, ok := f.top()
			if !ok {
				t.Fatal("the list is empty")
			}
			if f.take(h, links[id]) {
				return id
			}
		}
	}
	held := map[uint32]bool{}
	for round := 0; round < 4; round++ {
		var ids []uint32
		for i := 0; i < 10+round; i++ {
			id := pop()
			if held[id] {
				t.Fatalf("round %d: record %d handed out twice", round, id)
			}
			held[id] = true
			ids = append(ids, id)
			if got := f.inUse(n); got != len(held) {
				t.Fatalf("round %d: inUse %d after %d pops, want %d", round, got, len(ids), len(held))
			}
		}
		for _, id := range ids[:len(ids)-round] {
			f.push(id, setNext)
			delete(held, id)
			if got := f.inUse(n); got != len(held) {
				t.Fatalf("round %d: inUse %d after a push, want %d", round, got, len(held))
			}
		}
	}
	if uint32(f.head.Load()>>32) >= before {
		t.Fatal("the count of pops did not wrap")
	}
}
