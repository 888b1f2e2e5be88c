package nat

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// overflowTotal sums the overflow counts of the port table's buckets.
func overflowTotal(t *portTable) uint64 {
	var n uint64
	for b := range t.buckets {
		n += t.buckets[b].Meta.Load() / lineOverflow
	}
	return n
}

// TestPortTableFullAndOverflow fills a port table to capacity with ports of
// many addresses and protocols, so that some buckets overflow into their
// neighbours: every port must be found with its state, one more must be
// refused (RFC 6888 REQ-11: nothing is evicted), and after freeing every
// port in random order the table must be empty with every overflow count
// back at zero.
func TestPortTableFullAndOverflow(t *testing.T) {
	pt, err := newPortTable(Limits{MaxSessions: 2048})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	type port struct {
		key uint64
		st  uint64
	}
	seen := map[uint64]bool{}
	var ports []port
	for len(ports) < pt.Cap() {
		k := portKey(uint32(r.IntN(maxAddrSlots)), Proto(r.IntN(int(NumProtos))), uint16(r.Uint32()))
		if seen[k] {
			continue
		}
		seen[k] = true
		st := uint64(1 + r.IntN(portState))
		if !pt.insert(k, st, nil) {
			t.Fatalf("insert %d of %d refused", len(ports)+1, pt.Cap())
		}
		ports = append(ports, port{k, st})
	}
	if overflowTotal(pt) == 0 {
		t.Fatal("a full table has no overflowing bucket: the test covers no probe chain")
	}
	for {
		k := portKey(0, UDP, uint16(r.Uint32()))
		if seen[k] {
			continue
		}
		if pt.insert(k, 1, nil) {
			t.Fatalf("insert into a full table (%d ports) accepted", pt.Len())
		}
		break
	}
	if pt.insert(ports[0].key, 1, nil) {
		t.Fatal("a port in the table inserted again")
	}
	for _, p := range ports {
		var ref portRef
		v, ok := pt.find(p.key, &ref)
		if !ok || v != p.key|p.st {
			t.Fatalf("port %#x: found %v, word %#x, want %#x", p.key, ok, v, p.key|p.st)
		}
	}
	r.Shuffle(len(ports), func(i, j int) { ports[i], ports[j] = ports[j], ports[i] })
	for i, p := range ports {
		var ref portRef
		if _, ok := pt.find(p.key, &ref); !ok {
			t.Fatalf("port %#x lost after %d deletes", p.key, i)
		}
		if _, _, found, ok := pt.update(p.key, &ref, func(uint64) (uint64, bool) { return 0, true }, nil); !found || !ok {
			t.Fatalf("port %#x: free failed", p.key)
		}
		var pr portProbe
		if pt.Prepare(p.key, &pr); pt.LookupProbe(&pr) {
			t.Fatalf("port %#x still there after its free", p.key)
		}
	}
	if pt.Len() != 0 || overflowTotal(pt) != 0 {
		t.Fatalf("%d ports and overflow %d left in an emptied table", pt.Len(), overflowTotal(pt))
	}
	checkIndexEmpty(t, &pt.lineIndex)
}

// TestPortTableConcurrentClaims has goroutines claim and free ports of a
// small, nearly full table at once, through the same keys, so that probe
// chains grow and shrink under each other: no port may be held twice, no
// claim may be lost, and the table must end empty with no overflow count
// left.
func TestPortTableConcurrentClaims(t *testing.T) {
	// 50 ports in 13 buckets of 7 slots: most chains pass a full bucket.
	pt := makePortTable(50)
	const workers, rounds, keys = 4, 20000, 300
	var held [keys]int32 // owners per key, checked by the goroutines
	var mu sync.Mutex
	goRand(workers, 9, func(_ int, r *rand.Rand) {
		var mine []int
		for i := 0; i < rounds; i++ {
			if len(mine) > 0 && (len(mine) > 30 || r.IntN(2) == 0) {
				j := r.IntN(len(mine))
				k := mine[j]
				mine[j] = mine[len(mine)-1]
				mine = mine[:len(mine)-1]
				mu.Lock()
				held[k]--
				mu.Unlock()
				var ref portRef
				if _, ok := pt.find(portKey(uint32(k), TCP, 80), &ref); !ok {
					t.Errorf("key %d vanished while owned", k)
					return
				}
				if _, _, _, ok := pt.update(portKey(uint32(k), TCP, 80), &ref, func(uint64) (uint64, bool) { return 0, true }, nil); !ok {
					t.Errorf("key %d: free failed", k)
					return
				}
				continue
			}
			k := r.IntN(keys)
			if pt.insert(portKey(uint32(k), TCP, 80), 1, nil) {
				mu.Lock()
				held[k]++
				n := held[k]
				mu.Unlock()
				if n != 1 {
					t.Errorf("key %d claimed by %d owners at once", k, n)
					return
				}
				mine = append(mine, k)
			}
		}
		for _, k := range mine {
			mu.Lock()
			held[k]--
			mu.Unlock()
			var ref portRef
			if _, ok := pt.find(portKey(uint32(k), TCP, 80), &ref); ok {
				pt.update(portKey(uint32(k), TCP, 80), &ref, func(uint64) (uint64, bool) { return 0, true }, nil)
			}
		}
	})
	if pt.Len() != 0 || overflowTotal(pt) != 0 {
		t.Fatalf("%d ports and overflow %d left", pt.Len(), overflowTotal(pt))
	}
}
