package neigh

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/xnat/xnat/dataplane/fwd"
)

// fullTableRoutes is the size of a full IPv4 BGP table, with room to grow.
const fullTableRoutes = 900_000

// bgpPeers are the outside gateways of the synthetic tables.
func bgpPeer(i int) uint32 { return u32("198.18.0.2") + uint32(i) }

const bgpPeerCount = 8

// bgpRoutes returns n outside routes shaped like a full BGP table: random
// prefixes, about 60% /24, 35% /16../23 and 2% /8../15 (the rest /25../32,
// which full tables filter but a NAT's own statics may hold), over
// bgpPeerCount gateways with one route in twenty over two of them; plus the
// connected outside /24 and a default route, so every destination
// resolves. Deterministic per seed.
func bgpRoutes(seed uint64, n int) []route {
	rng := rand.New(rand.NewPCG(seed, 99))
	rs := make([]route, 0, n+2)
	rs = append(rs, mkRoute("198.18.0.0/24", 0), mkRoute("0.0.0.0/0", 100, "198.18.0.2"))
	for len(rs) < n {
		var plen int
		switch x := rng.IntN(1000); {
		case x < 600:
			plen = 24
		case x < 950:
			plen = 16 + rng.IntN(8)
		case x < 970:
			plen = 8 + rng.IntN(8)
		default:
			plen = 25 + rng.IntN(8)
		}
		r := route{mask: prefixMask(plen), plen: uint8(plen), metric: 20, nhops: 1}
		r.prefix = rng.Uint32() & r.mask
		r.gw[0] = bgpPeer(rng.IntN(bgpPeerCount))
		if rng.IntN(20) == 0 {
			r.nhops = 2
			r.gw[1] = bgpPeer(rng.IntN(bgpPeerCount))
		}
		rs = append(rs, r)
	}
	sortRoutes(rs)
	return rs
}

// resolveTable is a Table whose outside side has routes and every outside
// gateway resolved.
func resolveTable(routes []route) *testTable {
	tt := newTestTable(0)
	tt.routes[fwd.Outside] = routes
	for i := range bgpPeerCount {
		tt.st.kernel(nkey{fwd.Outside, bgpPeer(i)}, nudReachable, [6]byte{2, 0, 0, 0, 9, byte(i)}, 0)
	}
	tt.publish()
	return tt
}

// randomDsts returns n random destinations, the same for every call.
func randomDsts(n int) [][4]byte {
	rng := rand.New(rand.NewPCG(4, 5))
	dsts := make([][4]byte, n)
	for i := range dsts {
		binary.BigEndian.PutUint32(dsts[i][:], rng.Uint32())
	}
	return dsts
}

// resolveBlock resolves every destination of dsts on the outside: the
// unit both the benchmark and its callgrind count (make bench-lpm-instr
// toggles collection on this function) measure.
//
//go:noinline
func resolveBlock(t *Table, dsts [][4]byte) (acc byte) {
	for _, d := range dsts {
		mac, _ := t.Resolve(fwd.Outside, d)
		acc ^= mac[5]
	}
	return acc
}

// TestFullTableResolves is the benchmark's correctness check: on a
// BGP-shaped table (small under -short) every destination resolves through
// the gateway the linear scan picks.
func TestFullTableResolves(t *testing.T) {
	n := 5_000
	if testing.Short() {
		n = 1_000
	}
	rs := bgpRoutes(1, n)
	tt := resolveTable(rs)
	f := tt.snap.Load().sides[fwd.Outside].routes.fib
	rng := rand.New(rand.NewPCG(2, 3))
	for range 2_000 { // each check scans every route
		d := rng.Uint32()
		checkFIB(t, f, rs, d)
		want, _ := wantHops(rs, d)
		var dst [4]byte
		binary.BigEndian.PutUint32(dst[:], d)
		mac, res := tt.Resolve(fwd.Outside, dst)
		nh := want.nextHop(d)
		wantMAC := [6]byte{2, 0, 0, 0, 9, byte(nh - bgpPeer(0))}
		if nh == d { // on-link in 198.18.0.0/24: no such neighbour yet
			if res != fwd.Pending {
				t.Fatalf("%08x on-link: %v", d, res2s(res))
			}
			continue
		}
		if res != fwd.Resolved || mac != wantMAC {
			t.Fatalf("%08x via %08x: %x %v, want %x", d, nh, mac, res2s(res), wantMAC)
		}
	}
}

// BenchmarkResolveFullTable measures Resolve with 10 outside routes and
// with a full BGP table of fullTableRoutes, in one run: blocks of 1024
// lookups alternate between the two tables, so both see the same machine
// load, and the metrics report each one's ns per lookup and their ratio.
// The destinations are random addresses (each resolves through the
// default or a BGP route), either a working set of 4096 cycled over (a
// NAT's busy destinations) or 1M fresh ones (a scan: every lookup misses
// the caches on the 900k table).
func BenchmarkResolveFullTable(b *testing.B) {
	small := resolveTable(bgpRoutes(1, 10))
	full := resolveTable(bgpRoutes(1, fullTableRoutes))
	for _, ws := range []int{4096, 1 << 20} {
		b.Run(fmt.Sprintf("dsts=%d", ws), func(b *testing.B) {
			dsts := randomDsts(ws)
			const block = 1024
			var tSmall, tFull time.Duration
			var lookups int
			var acc byte
			i := 0
			for b.Loop() {
				blk := dsts[i : i+block]
				i = (i + block) % ws
				t0 := time.Now()
				acc ^= resolveBlock(small.Table, blk)
				t1 := time.Now()
				acc ^= resolveBlock(full.Table, blk)
				tFull += time.Since(t1)
				tSmall += t1.Sub(t0)
				lookups += block
			}
			benchSink[0] = acc
			s, f := float64(tSmall)/float64(lookups), float64(tFull)/float64(lookups)
			b.ReportMetric(s, "ns/lookup-10routes")
			b.ReportMetric(f, "ns/lookup-900k")
			b.ReportMetric(f/s, "ratio-900k/10")
		})
	}
}

// BenchmarkResolveRoutes is one table size and destination set per
// sub-benchmark, for profiles and for counting instructions per lookup
// under callgrind (collection toggled on resolveBlock; see
// docs/engineering.md, "Next hop").
func BenchmarkResolveRoutes(b *testing.B) {
	for _, n := range []int{10, fullTableRoutes} {
		tt := resolveTable(bgpRoutes(1, n))
		for _, ws := range []int{4096, 1 << 20} {
			b.Run(fmt.Sprintf("routes=%d/dsts=%d", n, ws), func(b *testing.B) {
				dsts := randomDsts(ws)
				const block = 1024
				i := 0
				var acc byte
				for b.Loop() {
					acc ^= resolveBlock(tt.Table, dsts[i:i+block])
					i = (i + block) % ws
				}
				benchSink[0] = acc
				b.ReportMetric(float64(b.Elapsed())/float64(b.N*block), "ns/lookup")
			})
		}
	}
}

// BenchmarkBuildFIB measures compiling a full table (the routes already
// converted and sorted, as listRoutes hands them over) and reports the
// fib's size and the bytes allocated to build it.
func BenchmarkBuildFIB(b *testing.B) {
	rs := bgpRoutes(1, fullTableRoutes)
	var f *fib
	b.ReportAllocs()
	for b.Loop() {
		f = buildFIB(rs)
	}
	b.ReportMetric(float64(f.size())/(1<<20), "MiB-fib")
	b.ReportMetric(float64(len(rs)*int(unsafe.Sizeof(route{})))/(1<<20), "MiB-route-list")
}

// BenchmarkSortRoutes measures the other half of a route change's cost:
// sorting a full table of converted routes (convertRoutes does it).
func BenchmarkSortRoutes(b *testing.B) {
	rs := bgpRoutes(1, fullTableRoutes)
	rng := rand.New(rand.NewPCG(6, 7))
	work := make([]route, len(rs))
	for b.Loop() {
		b.StopTimer()
		copy(work, rs)
		rng.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
		b.StartTimer()
		sortRoutes(work)
	}
}

// BenchmarkResolveDuringBuild measures Resolve on the full table while
// another goroutine keeps compiling full tables, as the control goroutine
// does after a route change: the build runs off the packet path and must
// not stall it (on a machine with a core for each).
func BenchmarkResolveDuringBuild(b *testing.B) {
	rs := bgpRoutes(1, fullTableRoutes)
	full := resolveTable(rs)
	dsts := randomDsts(4096)
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			buildFIB(rs)
			n++
		}
	}()
	const block = 1024
	var worst time.Duration
	var acc byte
	i := 0
	for b.Loop() {
		t0 := time.Now()
		acc ^= resolveBlock(full.Table, dsts[i:i+block])
		if d := time.Since(t0); d > worst {
			worst = d
		}
		i = (i + block) % len(dsts)
	}
	close(stop)
	builds := <-done
	benchSink[0] = acc
	b.ReportMetric(float64(b.Elapsed())/float64(b.N*block), "ns/lookup")
	b.ReportMetric(float64(worst)/block, "worst-block-ns/lookup")
	b.ReportMetric(float64(builds), "builds")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
}
