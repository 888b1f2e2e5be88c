package nat

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// portWords counts the words in the port table's slots: the ports it
// holds, whatever its counts say.
func portWords(pt *portTable) int {
	n := 0
	for b := range pt.buckets {
		for s := range pt.buckets[b].Slots {
			if pt.buckets[b].Slots[s].Load() != 0 {
				n++
			}
		}
	}
	return n
}

// freePort frees key's port with cr (nil: the table's count).
func freePort(pt *portTable, key uint64, cr *portCredits) bool {
	var ref portRef
	if _, ok := pt.find(key, &ref); !ok {
		return false
	}
	_, _, _, ok := pt.update(key, &ref, func(uint64) (uint64, bool) { return 0, true }, cr)
	return ok
}

func TestCreditChunk(t *testing.T) {
	for _, c := range []struct{ n, want int64 }{
		{50, 1}, {4024, 1}, {8191, 1}, {8192, 2}, {13312, 3}, {65536, 16},
		{262144, 64}, {int64(1_000_000*portsPerSessionSlot) + portsForRules, 64},
	} {
		if got := creditChunk(c.n); got != c.want {
			t.Errorf("creditChunk(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

// TestPortCreditsSmallTable: below 8192 ports a worker holds no credits
// (chunk 1): every insert and free moves the table's count, as without
// credits, so the count is the ports in the table at every step, and the
// table still fills to exactly its capacity.
func TestPortCreditsSmallTable(t *testing.T) {
	pt := makePortTable(4024)
	if pt.chunk != 1 || pt.strandable(16) != 0 {
		t.Fatalf("chunk %d, strandable %d: want 1, 0", pt.chunk, pt.strandable(16))
	}
	var cr portCredits
	pt.register(&cr)
	check := func(live int) {
		t.Helper()
		if cr.n != 0 || pt.reserved.Load() != int64(live) || pt.Len() != live || portWords(pt) != live {
			t.Fatalf("credits %d, reserved %d, Len %d, words %d; want 0, %d, %d, %d",
				cr.n, pt.reserved.Load(), pt.Len(), portWords(pt), live, live, live)
		}
	}
	for i := range 100 {
		if !pt.insert(portKey(1, UDP, uint16(i)), 1, &cr) {
			t.Fatalf("insert %d refused", i)
		}
		check(i + 1)
	}
	for i := range 50 {
		if !freePort(pt, portKey(1, UDP, uint16(i)), &cr) {
			t.Fatalf("free %d failed", i)
		}
		check(99 - i)
	}
	for i := 100; i < 50+pt.Cap(); i++ {
		if !pt.insert(portKey(2, UDP, uint16(i)), 1, &cr) {
			t.Fatalf("insert refused with %d of %d ports", pt.Len(), pt.Cap())
		}
	}
	check(pt.Cap())
	if pt.insert(portKey(3, UDP, 1), 1, &cr) || pt.insert(portKey(3, UDP, 2), 1, nil) {
		t.Fatal("insert into a full table accepted")
	}
	check(pt.Cap())
}

// TestPortCreditsChunks follows one worker's pool in a table of chunk 16:
// the first insert takes a chunk, inserts spend it, its own frees come
// back to it until it holds more than two chunks, when one goes back to
// the table's count; frees without a pool go to the table's count; and
// giveBack leaves the count equal to the ports in the table.
func TestPortCreditsChunks(t *testing.T) {
	pt := makePortTable(65536)
	const chunk = 16
	if pt.chunk != chunk {
		t.Fatalf("chunk %d, want %d", pt.chunk, chunk)
	}
	var cr portCredits
	pt.register(&cr)
	live := 0
	check := func(credits int64) {
		t.Helper()
		cr.publish()
		if cr.n != credits || pt.reserved.Load() != int64(live)+cr.n || pt.Len() != live || portWords(pt) != live {
			t.Fatalf("credits %d, reserved %d, Len %d, words %d; want %d, %d, %d, %d",
				cr.n, pt.reserved.Load(), pt.Len(), portWords(pt), credits, int64(live)+credits, live, live)
		}
	}
	for i := range 40 {
		if !pt.insert(portKey(1, TCP, uint16(i)), 1, &cr) {
			t.Fatalf("insert %d refused", i)
		}
		live++
		check(int64((chunk - 1 - i%chunk)))
	}
	// 40 ports, 8 credits. Own frees: 9..32 credits, then 17 (and so on).
	want := int64(8)
	for i := range 30 {
		if !freePort(pt, portKey(1, TCP, uint16(i)), &cr) {
			t.Fatalf("free %d failed", i)
		}
		live--
		if want++; want > 2*chunk {
			want -= chunk
		}
		check(want)
	}
	// Frees by another goroutine go to the table's count.
	for i := 30; i < 40; i++ {
		if !freePort(pt, portKey(1, TCP, uint16(i)), nil) {
			t.Fatalf("free %d failed", i)
		}
		live--
		check(want)
	}
	pt.giveBack(&cr)
	check(0)
	if pt.reserved.Load() != 0 || cr.pub.Load() != 0 {
		t.Fatalf("after giveBack: reserved %d, published %d", pt.reserved.Load(), cr.pub.Load())
	}
}

// TestPortCreditsPartialChunk: near capacity a pool takes what is left,
// fewer than a chunk; credits another pool holds are out of its reach
// (strandable) but not lost: the table fills to exactly its capacity and
// refuses the next insert.
func TestPortCreditsPartialChunk(t *testing.T) {
	pt := makePortTable(65536 + 5) // chunk 16
	var a, b portCredits
	pt.register(&a)
	pt.register(&b)
	key := func(n int) uint64 { return portKey(uint32(n/65536), UDP, uint16(n)) }
	if !pt.insert(key(0), 1, &b) || b.n != 15 {
		t.Fatalf("b's first insert: %d credits left, want 15", b.n)
	}
	n := 1
	for ; pt.insert(key(n), 1, &a); n++ {
	}
	// a took 65536-16 in chunks, then the 5 left of its last one.
	if n != pt.Cap()-15 || a.n != 0 || pt.reserved.Load() != int64(pt.Cap()) {
		t.Fatalf("a refused after %d ports, credits %d, reserved %d; want %d, 0, %d", n, a.n, pt.reserved.Load(), pt.Cap()-15, pt.Cap())
	}
	for ; pt.insert(key(n), 1, &b); n++ {
	}
	if n != pt.Cap() || b.n != 0 || portWords(pt) != pt.Cap() || pt.Len() != pt.Cap() {
		t.Fatalf("b refused after %d ports, credits %d, words %d, Len %d; want the capacity %d, 0", n, b.n, portWords(pt), pt.Len(), pt.Cap())
	}
	if pt.insert(key(n), 1, &a) || pt.insert(key(n), 1, nil) || pt.reserved.Load() != int64(pt.Cap()) {
		t.Fatal("insert into a full table accepted")
	}
}

// TestPortCreditsConcurrentCapacity has goroutines, each with its own
// pool, fill a table to its capacity and free parts of it (with their
// own pool, or as another goroutine would, to the table's count) over and
// over at once: the ports they hold never exceed the capacity, Len read
// meanwhile stays within its bounds, and at the end the counts add up and
// the table, with the credits given back, fills to exactly its capacity.
func TestPortCreditsConcurrentCapacity(t *testing.T) {
	pt := makePortTable(65536) // chunk 16
	const workers, rounds = 4, 6
	pools := make([]portCredits, workers)
	for i := range pools {
		pt.register(&pools[i])
	}
	var held atomic.Int64 // ports inserted and not yet being freed: ≤ the table's
	mine := make([][]uint64, workers)
	stop := make(chan struct{})
	var lenErr atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Off by the credits taken or spent since a pool's last
			// publication, and above Cap by a refused chunk not yet
			// given back.
			if n := pt.Len(); n < -workers*2*16 || n > pt.Cap()+workers*16 {
				lenErr.Store(n)
			}
			time.Sleep(50 * time.Microsecond)
		}
	})
	goRand(workers, 5, func(g int, r *rand.Rand) {
		cr := &pools[g]
		next := uint32(0)
		for range rounds {
			for {
				// Keys of goroutine g: addresses g*1000 + ..., disjoint.
				k := portKey(uint32(g*1000)+next/65536, TCP, uint16(next))
				next++
				if !pt.insert(k, 1, cr) {
					break
				}
				if n := held.Add(1); n > int64(pt.Cap()) {
					t.Errorf("%d ports held in a table of %d", n, pt.Cap())
					return
				}
				mine[g] = append(mine[g], k)
			}
			cr.publish()
			// Free a random third of what this goroutine holds.
			for i := 0; i < len(mine[g]); {
				if r.IntN(3) != 0 {
					i++
					continue
				}
				k := mine[g][i]
				mine[g][i] = mine[g][len(mine[g])-1]
				mine[g] = mine[g][:len(mine[g])-1]
				held.Add(-1)
				pool := cr
				if r.IntN(2) == 0 {
					pool = nil
				}
				if !freePort(pt, k, pool) {
					t.Errorf("free of %#x failed", k)
					return
				}
			}
			cr.publish()
		}
	})
	close(stop)
	wg.Wait()
	if v := lenErr.Load(); v != nil {
		t.Fatalf("Len read %v during the churn", v)
	}
	live, credits := 0, int64(0)
	for g := range mine {
		live += len(mine[g])
		if n := pools[g].n; n < 0 || n > 2*pt.chunk {
			t.Fatalf("pool %d holds %d credits", g, n)
		}
		credits += pools[g].n
	}
	if portWords(pt) != live || pt.reserved.Load() != int64(live)+credits || pt.Len() != live || pt.reserved.Load() > int64(pt.Cap()) {
		t.Fatalf("words %d, reserved %d, Len %d; want %d, %d, %d", portWords(pt), pt.reserved.Load(), pt.Len(), live, int64(live)+credits, live)
	}
	for g := range pools {
		pt.giveBack(&pools[g])
	}
	if pt.reserved.Load() != int64(live) || pt.Len() != live {
		t.Fatalf("credits given back: reserved %d, Len %d, want %d", pt.reserved.Load(), pt.Len(), live)
	}
	for i := 0; ; i++ {
		if !pt.insert(portKey(9000+uint32(i)/65536, UDP, uint16(i)), 1, nil) {
			break
		}
	}
	if portWords(pt) != pt.Cap() || pt.Len() != pt.Cap() {
		t.Fatalf("refilled: %d words, Len %d, want the capacity %d", portWords(pt), pt.Len(), pt.Cap())
	}
}

// TestWorkerCreditsReturn: a worker's first new session takes a chunk of
// credits, Len counts the ports alone once the Poll has published them,
// and Publish (idle, or stopping: poller.Runner.Stop) gives them back.
func TestWorkerCreditsReturn(t *testing.T) {
	c := testConfig()
	c.Limits.MaxSessions = 8192
	h := newHarness(t, c)
	pt := h.eng.portTab
	if pt.chunk < 2 {
		t.Fatalf("chunk %d: the table (%d ports) is too small for credits", pt.chunk, pt.Cap())
	}
	h.one(Inside, udp("10.0.0.5", 4000, "192.0.2.1", 53), Outside)
	if got, want := h.w.credits.n, pt.chunk-1; got != want || h.w.credits.pub.Load() != want {
		t.Fatalf("worker holds %d credits (published %d), want %d", got, h.w.credits.pub.Load(), want)
	}
	if pt.Len() != 1 || pt.reserved.Load() != pt.chunk {
		t.Fatalf("Len %d, reserved %d; want 1, %d", pt.Len(), pt.reserved.Load(), pt.chunk)
	}
	h.w.Publish()
	if h.w.credits.n != 0 || h.w.credits.pub.Load() != 0 || pt.Len() != 1 || pt.reserved.Load() != 1 {
		t.Fatalf("after Publish: credits %d (published %d), Len %d, reserved %d; want 0, 0, 1, 1",
			h.w.credits.n, h.w.credits.pub.Load(), pt.Len(), pt.reserved.Load())
	}
	if got, want := h.eng.holdRoom(), pt.Cap()-h.eng.sessions.Cap()-portsForRules-2*int(pt.chunk); got != want {
		t.Fatalf("holdRoom %d, want %d (less one worker's two chunks)", got, want)
	}
	h.expireAll()
	if pt.Len() != 0 || pt.reserved.Load() != 0 {
		t.Fatalf("expired: Len %d, reserved %d", pt.Len(), pt.reserved.Load())
	}
}
