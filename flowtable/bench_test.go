package flowtable

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// The benchmarks compare the table against the obvious alternatives, a plain
// Go map (single-threaded lookups) and a Go map behind a sync.RWMutex, in the
// same run:
//
//	go test -run XXX -bench . -benchmem ./flowtable/
//
// Sizes are the number of live sessions (each with two keys).

var benchSizes = []int{1 << 10, 1 << 20, 10_000_000}

type fixture struct {
	tb   *Table
	keys []Key // keys[i] is key 0 of session i
	rw   *rwMap
}

// rwMap is the baseline: a map from key to session number under a lock.
type rwMap struct {
	mu sync.RWMutex
	m  map[Key]uint32
}

func (m *rwMap) lookup(k *Key) (uint32, bool) {
	m.mu.RLock()
	v, ok := m.m[*k]
	m.mu.RUnlock()
	return v, ok
}

func (m *rwMap) insert(k0, k1 *Key, v uint32) {
	m.mu.Lock()
	m.m[*k0] = v
	m.m[*k1] = v
	m.mu.Unlock()
}

func (m *rwMap) delete(k0, k1 *Key) {
	m.mu.Lock()
	delete(m.m, *k0)
	delete(m.m, *k1)
	m.mu.Unlock()
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[int]*fixture{}
)

// benchKey spreads sessions over 16M inside hosts, like a large CGNAT.
func benchKey(i uint32) Key {
	return Key{
		Src:     [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)},
		Dst:     [4]byte{198, 18, byte(i >> 24), byte(i * 7)},
		SrcPort: uint16(i*2654435761>>16) | 1024,
		DstPort: 443,
		Proto:   6,
	}
}

// getFixture builds (once) a table and a baseline map holding n sessions.
// The table has 25% headroom so churn benchmarks can insert.
func getFixture(b *testing.B, n int) *fixture {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	if f, ok := fixtures[n]; ok {
		return f
	}
	// Drop bigger fixtures first so at most one 10M table is alive.
	for k := range fixtures {
		delete(fixtures, k)
	}
	runtime.GC()
	tb := mustNew(b, n+n/4+64)
	f := &fixture{tb: tb, keys: make([]Key, n), rw: &rwMap{m: make(map[Key]uint32, 2*n)}}
	var e Entry
	for i := range n {
		k0 := benchKey(uint32(i))
		k1 := partner(k0)
		if tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e) != Inserted {
			b.Fatalf("fixture insert %d failed", i)
		}
		f.keys[i] = k0
		f.rw.m[k0] = e.ID
		f.rw.m[k1] = e.ID
	}
	fixtures[n] = f
	return f
}

func sizeName(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1<<20:
		return "1M"
	default:
		return "1k"
	}
}

// rng is a tiny xorshift generator, so that picking a random session costs
// a few cycles and no shared state.
type rng uint64

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = rng(x)
	return x
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range benchSizes {
		if n > 1<<20 && testing.Short() {
			continue
		}
		for _, hit := range []bool{true, false} {
			kind := "hit"
			if !hit {
				kind = "miss"
			}
			var f *fixture
			lookupKey := func(r *rng) Key {
				k := f.keys[r.next()%uint64(n)]
				if !hit {
					k.DstPort = 80 // never inserted
				}
				return k
			}
			b.Run(fmt.Sprintf("%s/%s/flowtable/single", kind, sizeName(n)), func(b *testing.B) {
				f = getFixture(b, n)
				r := rng(88172645463325252)
				var e Entry
				found := 0
				for b.Loop() {
					k := lookupKey(&r)
					if f.tb.Lookup(&k, &e) {
						found++
					}
				}
				checkFound(b, hit, found)
			})
			// find is the lookup that returns what the map returns (a
			// session number, here with its direction and generation),
			// verified against the record's key like Lookup.
			b.Run(fmt.Sprintf("%s/%s/flowtable/find", kind, sizeName(n)), func(b *testing.B) {
				f = getFixture(b, n)
				r := rng(88172645463325252)
				var x Hit
				found := 0
				for b.Loop() {
					k := lookupKey(&r)
					if f.tb.Find(&k, &x) {
						found++
					}
				}
				checkFound(b, hit, found)
			})
			// index-only is not a lookup: it hashes the key and picks
			// the slot from the home bucket, trusting the fingerprint
			// and never reading the record. It is the floor of any
			// lookup that reads one line of this index, reported beside
			// the others to show how much of a hit's time the record
			// read is.
			b.Run(fmt.Sprintf("%s/%s/flowtable/index-only", kind, sizeName(n)), func(b *testing.B) {
				f = getFixture(b, n)
				r := rng(88172645463325252)
				found := 0
				for b.Loop() {
					k := lookupKey(&r)
					w0, w1 := k.pack()
					h := f.tb.seed.hash(w0, w1)
					if f.tb.ix.buckets[f.tb.ix.Home(h)].pick(fpOf(h)) != 0 {
						found++
					}
				}
				// Keys stored beyond their home bucket are not found
				// here; at 4 keys to 7 slots that is a few percent.
				if hit && found < b.N*9/10 || !hit && found > b.N/100 {
					b.Fatalf("index-only found %d of %d", found, b.N)
				}
			})
			b.Run(fmt.Sprintf("%s/%s/flowtable/burst64", kind, sizeName(n)), func(b *testing.B) {
				f = getFixture(b, n)
				r := rng(88172645463325252)
				var keys [64]Key
				var ps [64]Probe
				var es [64]Entry
				found := 0
				b.ResetTimer()
				for i := 0; i < b.N; i += len(keys) {
					m := min(len(keys), b.N-i)
					for j := range m {
						keys[j] = lookupKey(&r)
						f.tb.Prepare(&keys[j], &ps[j])
					}
					found += bits.OnesCount64(f.tb.LookupBurst(ps[:m], es[:m]))
				}
				checkFound(b, hit, found)
			})
			// The baselines' loops are written out, not shared through a
			// lookup func: an indirect call per lookup would slow the
			// baseline and flatter the table.
			b.Run(fmt.Sprintf("%s/%s/map/single", kind, sizeName(n)), func(b *testing.B) {
				f = getFixture(b, n)
				r := rng(88172645463325252)
				found := 0
				for b.Loop() {
					k := lookupKey(&r)
					if _, ok := f.rw.m[k]; ok {
						found++
					}
				}
				checkFound(b, hit, found)
			})
			b.Run(fmt.Sprintf("%s/%s/rwmutex-map/single", kind, sizeName(n)), func(b *testing.B) {
				f = getFixture(b, n)
				r := rng(88172645463325252)
				found := 0
				for b.Loop() {
					k := lookupKey(&r)
					if _, ok := f.rw.lookup(&k); ok {
						found++
					}
				}
				checkFound(b, hit, found)
			})
			b.Run(fmt.Sprintf("%s/%s/flowtable/parallel", kind, sizeName(n)), func(b *testing.B) {
				f = getFixture(b, n)
				var seed atomic.Uint64
				b.RunParallel(func(pb *testing.PB) {
					r := rng(seed.Add(0x9e3779b97f4a7c15))
					var e Entry
					for pb.Next() {
						k := lookupKey(&r)
						f.tb.Lookup(&k, &e)
					}
				})
			})
			b.Run(fmt.Sprintf("%s/%s/rwmutex-map/parallel", kind, sizeName(n)), func(b *testing.B) {
				f = getFixture(b, n)
				var seed atomic.Uint64
				b.RunParallel(func(pb *testing.PB) {
					r := rng(seed.Add(0x9e3779b97f4a7c15))
					for pb.Next() {
						k := lookupKey(&r)
						f.rw.lookup(&k)
					}
				})
			})
		}
	}
}

func checkFound(b *testing.B, hit bool, found int) {
	if hit && found != b.N {
		b.Fatalf("found %d of %d", found, b.N)
	}
	if !hit && found != 0 {
		b.Fatalf("found %d absent keys", found)
	}
}

// startChurn runs churn in a goroutine until the returned stop is called.
func startChurn(f *fixture, n int, table bool) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go churn(f, n, &done, &wg, table)
	return func() {
		done.Store(true)
		wg.Wait()
	}
}

// churn is the writer of the under-churn benchmarks: it inserts and deletes
// sessions beyond the fixture's n as fast as it can, in the table or in the
// baseline, until stop.
func churn(f *fixture, n int, stop *atomic.Bool, done *sync.WaitGroup, table bool) {
	defer done.Done()
	var e Entry
	for i := uint32(0); !stop.Load(); i++ {
		k0 := benchKey(uint32(n) + i%4096)
		k1 := partner(k0)
		if table {
			if f.tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e) == Inserted {
				f.tb.Delete(e.ID, e.Gen)
			}
		} else {
			f.rw.insert(&k0, &k1, i)
			f.rw.delete(&k0, &k1)
		}
	}
}

// BenchmarkLookupUnderChurn is the headline comparison: lookup hits
// at 1M sessions from parallel readers (GOMAXPROCS of them) while one writer
// goroutine inserts and deletes sessions as fast as it can.
func BenchmarkLookupUnderChurn(b *testing.B) {
	n := 1 << 20
	var f *fixture
	for _, impl := range []string{"flowtable", "rwmutex-map"} {
		b.Run(fmt.Sprintf("hit/1M/%s/parallel+writer", impl), func(b *testing.B) {
			f = getFixture(b, n)
			b.ResetTimer()
			stop := startChurn(f, n, impl == "flowtable")
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				r := rng(seed.Add(0x9e3779b97f4a7c15))
				var e Entry
				for pb.Next() {
					k := f.keys[r.next()%uint64(n)]
					if impl == "flowtable" {
						f.tb.Lookup(&k, &e)
					} else {
						f.rw.lookup(&k)
					}
				}
			})
			stop()
		})
	}
}

// BenchmarkChurn measures one session insert (both keys) plus its delete.
func BenchmarkChurn(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		var f *fixture
		b.Run(fmt.Sprintf("%s/flowtable", sizeName(n)), func(b *testing.B) {
			f = getFixture(b, n)
			var e Entry
			i := uint32(0)
			for b.Loop() {
				k0 := benchKey(uint32(n) + i%4096)
				k1 := partner(k0)
				if f.tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e) != Inserted {
					b.Fatal("insert failed")
				}
				f.tb.Delete(e.ID, e.Gen)
				i++
			}
		})
		b.Run(fmt.Sprintf("%s/rwmutex-map", sizeName(n)), func(b *testing.B) {
			f = getFixture(b, n)
			i := uint32(0)
			for b.Loop() {
				k0 := benchKey(uint32(n) + i%4096)
				k1 := partner(k0)
				f.rw.insert(&k0, &k1, i)
				f.rw.delete(&k0, &k1)
				i++
			}
		})
	}
}

// BenchmarkLookupBurstUnderChurn is BenchmarkLookupUnderChurn the way the
// dataplane looks sessions up: in bursts of 32, with every key prepared
// and the burst's buckets, then records, prefetched (PrefetchBurst) before
// the first lookup, so that the burst's cache misses overlap. The baseline takes its read lock once
// per burst (one RLock per lookup would only make it slower).
func BenchmarkLookupBurstUnderChurn(b *testing.B) {
	const burst = 32
	n := 1 << 20
	var f *fixture
	for _, impl := range []string{"flowtable", "rwmutex-map"} {
		b.Run(fmt.Sprintf("hit/1M/%s/parallel+writer/burst32", impl), func(b *testing.B) {
			f = getFixture(b, n)
			b.ResetTimer()
			stop := startChurn(f, n, impl == "flowtable")
			var seed atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				r := rng(seed.Add(0x9e3779b97f4a7c15))
				var keys [burst]Key
				var probes [burst]Probe
				var e Entry
				for {
					for i := range keys {
						keys[i] = f.keys[r.next()%uint64(n)]
					}
					if impl == "flowtable" {
						for i := range keys {
							f.tb.Prepare(&keys[i], &probes[i])
						}
						f.tb.PrefetchBurst(probes[:])
					} else {
						f.rw.mu.RLock()
					}
					for i := range keys {
						if !pb.Next() {
							if impl != "flowtable" {
								f.rw.mu.RUnlock()
							}
							return
						}
						if impl == "flowtable" {
							f.tb.LookupProbe(&probes[i], &e)
						} else {
							_ = f.rw.m[keys[i]]
						}
					}
					if impl != "flowtable" {
						f.rw.mu.RUnlock()
					}
				}
			})
			stop()
		})
	}
}

// BenchmarkMemoryLatency measures the machine, not the table: what one
// read of a random cache line costs in a 256 MiB array allocated as the
// tables' arrays are (allocArray: outside the heap, transparent huge pages
// advised), to explain the single lookup's time (docs/engineering.md,
// "Flow table"). independent: reads whose addresses depend on nothing
// (the processor overlaps them). The chase cases make each address depend
// on the read before, so each read waits out the whole latency:
// same-4k-page reads a line of the 4 KiB page of the read before (a new
// random page every 32 reads), same-2m-region a line anywhere in the
// 2 MiB region of the read before (so in another 4 KiB page, but in the
// same huge page if the kernel gave one), any-page a line anywhere.
func BenchmarkMemoryLatency(b *testing.B) {
	const (
		size      = 256 << 20
		words     = size / 8
		lineWords = 64 / 8
		lines     = words / lineWords
		page4k    = 4096 / 8
		region2m  = 2 << 20 / 8
	)
	mem, m := allocArray[uint64](words)
	if m != nil {
		defer m.free()
	}
	for i := range mem {
		mem[i] = uint64(i)
	}
	b.Run("independent", func(b *testing.B) {
		r := rng(88172645463325252)
		var sum uint64
		for b.Loop() {
			sum += mem[(r.next()%lines)*lineWords]
		}
		if sum == 1 {
			b.Log(sum)
		}
	})
	// chase reads within spans of span words, moving to a random span
	// every 32 reads; v&1 (0: the array holds each word's index, and the
	// lines' first words are even) makes each address wait for the read
	// before.
	chase := func(span uint64) func(b *testing.B) {
		return func(b *testing.B) {
			r := rng(88172645463325252)
			var v, base uint64
			i := 0
			for b.Loop() {
				if i&31 == 0 {
					base = ((r.next() + v&1) % (words / span)) * span
				}
				i++
				v = mem[base+((r.next()+v&1)%(span/lineWords))*lineWords]
			}
			if v == 1 {
				b.Log(v)
			}
		}
	}
	b.Run("chase/same-4k-page", chase(page4k))
	b.Run("chase/same-2m-region", chase(region2m))
	b.Run("chase/any-page", chase(words))
}
