package neigh

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/xnat/xnat/dataplane/fwd"
)

func ip4(s string) [4]byte { return netip.MustParseAddr(s).As4() }
func u32(s string) uint32 {
	a := ip4(s)
	return binary.BigEndian.Uint32(a[:])
}

func mkRoute(prefix string, metric uint32, gws ...string) route {
	p := netip.MustParsePrefix(prefix)
	r := route{mask: prefixMask(p.Bits()), plen: uint8(p.Bits()), metric: metric, nhops: 1}
	r.prefix = u32(p.Addr().String()) & r.mask
	if len(gws) > 0 {
		r.nhops = uint8(len(gws))
		for i, g := range gws {
			r.gw[i] = u32(g)
		}
	}
	return r
}

func reject(prefix string) route {
	r := mkRoute(prefix, 0)
	r.kind = kindReject
	return r
}

// testTable is the lab topology's view from the NAT namespace, built
// without netlink: 10.0.0.0/24 inside, 198.18.0.0/24 outside, a default via
// 198.18.0.2, a static 198.18.99.0/24 via 198.18.0.2, a blackhole and
// nInside resolved inside hosts from 10.0.0.2 up (the /24 is widened to a
// /16 when more are asked for).
type testTable struct {
	*Table
	st     *neighState
	probes *probeLog
	links  [fwd.NumSides]linkState
	routes [fwd.NumSides][]route
}

func newTestTable(nInside int) *testTable {
	p := &probeLog{}
	tt := &testTable{probes: p}
	tt.Table = newTable(Config{})
	tt.st = newNeighState(5000*ms, 1000*ms, p.probe, &tt.stats)
	tt.links = [fwd.NumSides]linkState{{index: 2, up: true}, {index: 3, up: true}}
	inPrefix := "10.0.0.0/24"
	if nInside > 250 {
		inPrefix = "10.0.0.0/16"
	}
	in := []route{mkRoute(inPrefix, 0)}
	out := []route{
		mkRoute("198.18.0.0/24", 0),
		mkRoute("0.0.0.0/0", 100, "198.18.0.2"),
		mkRoute("198.18.99.0/24", 0, "198.18.0.2"),
		reject("198.19.66.0/24"),
	}
	sortRoutes(in)
	sortRoutes(out)
	tt.routes = [fwd.NumSides][]route{in, out}
	for i := range nInside {
		ip := u32("10.0.0.2") + uint32(i)
		tt.st.kernel(nkey{fwd.Inside, ip}, nudReachable, [6]byte{2, 0, 0, 0, byte(i >> 8), byte(i)}, 0)
	}
	tt.st.kernel(nkey{fwd.Outside, u32("198.18.0.2")}, nudReachable, macB, 0)
	tt.publish()
	return tt
}

func (tt *testTable) publish() {
	tt.snap.Store(buildSnapshot(tt.snap.Load(), tt.links, routeTables(tt.routes), tt.st))
}

// routeTables builds each side's routeTable from routes in lookup order.
func routeTables(rs [fwd.NumSides][]route) (out [fwd.NumSides]routeTable) {
	for side := range rs {
		out[side] = newRouteTable(rs[side])
	}
	return out
}

func (tt *testTable) drain() []posted { return drainAll(tt.req) }

// expect resolves dst on side and fails t unless the answer is want and
// the requests posted to the control goroutine since the last drain are
// exactly posts.
func (tt *testTable) expect(t *testing.T, side fwd.Side, dst string, want fwd.Resolution, posts ...posted) {
	t.Helper()
	if _, res := tt.Resolve(side, ip4(dst)); res != want {
		t.Fatalf("Resolve(%v, %s) = %v, want %v", side, dst, res, want)
	}
	if got := tt.drain(); !slices.Equal(got, posts) {
		t.Fatalf("Resolve(%v, %s) posted %v, want %v", side, dst, got, posts)
	}
}

func TestResolve(t *testing.T) {
	tt := newTestTable(2)
	in1 := [6]byte{2, 0, 0, 0, 0, 0}
	in2 := [6]byte{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		side fwd.Side
		dst  string
		mac  [6]byte
		res  fwd.Resolution
	}{
		{fwd.Inside, "10.0.0.2", in1, fwd.Resolved},
		{fwd.Inside, "10.0.0.3", in2, fwd.Resolved},
		{fwd.Outside, "198.18.0.2", macB, fwd.Resolved},          // connected
		{fwd.Outside, "198.18.99.7", macB, fwd.Resolved},         // static via 198.18.0.2
		{fwd.Outside, "203.0.113.9", macB, fwd.Resolved},         // default via 198.18.0.2
		{fwd.Outside, "198.19.66.1", [6]byte{}, fwd.Unreachable}, // blackhole beats the default
		{fwd.Inside, "198.18.0.2", [6]byte{}, fwd.Unreachable},   // the route is the outside's
		{fwd.Inside, "192.0.2.1", [6]byte{}, fwd.Unreachable},    // no inside default
		{fwd.Side(7), "10.0.0.2", [6]byte{}, fwd.Unreachable},    // no such side
	} {
		mac, res := tt.Resolve(c.side, ip4(c.dst))
		if res != c.res || mac != c.mac {
			t.Errorf("Resolve(%v, %s) = %x, %v; want %x, %v", c.side, c.dst, mac, res, c.mac, c.res)
		}
	}
	if got := tt.drain(); len(got) != 0 {
		t.Fatalf("hits posted requests: %v", got)
	}
	// Resolved neighbours are marked for the refresh sweep.
	if tt.snap.Load().sides[fwd.Inside].neigh.find(u32("10.0.0.2")).used.Load() == 0 {
		t.Fatal("resolved neighbour not marked used")
	}
}

func TestResolveOnLinkZeroIsUnreachable(t *testing.T) {
	tt := newTestTable(0)
	tt.routes[fwd.Inside] = []route{mkRoute("0.0.0.0/0", 0)} // "default dev nat-in"
	tt.publish()
	tt.expect(t, fwd.Inside, "0.0.0.0", fwd.Unreachable)
}

func TestResolveMissPostsAndGoesPending(t *testing.T) {
	tt := newTestTable(1)
	for range 5 {
		if _, res := tt.Resolve(fwd.Inside, ip4("10.0.0.77")); res != fwd.Pending {
			t.Fatalf("miss: %v", res)
		}
	}
	got := tt.drain()
	if len(got) != 1 || got[0] != (posted{fwd.Inside, u32("10.0.0.77")}) {
		t.Fatalf("posted %v", got)
	}
	// A miss through a gateway asks for the gateway, not the destination.
	tt.st.kernelGone(nkey{fwd.Outside, u32("198.18.0.2")})
	tt.publish()
	tt.expect(t, fwd.Outside, "198.18.99.7", fwd.Pending, posted{fwd.Outside, u32("198.18.0.2")})
	// The control goroutine turns the request into a probe and a Pending
	// entry; further misses no longer post.
	tt.st.request(nkey{fwd.Inside, u32("10.0.0.77")}, 0)
	tt.publish()
	tt.expect(t, fwd.Inside, "10.0.0.77", fwd.Pending)
	tt.st.kernel(nkey{fwd.Inside, u32("10.0.0.77")}, nudReachable, macA, 1)
	tt.publish()
	if mac, res := tt.Resolve(fwd.Inside, ip4("10.0.0.77")); res != fwd.Resolved || mac != macA {
		t.Fatalf("after the kernel's answer: %x %v", mac, res)
	}
}

func TestResolveFailedAndRetry(t *testing.T) {
	tt := newTestTable(0)
	k := nkey{fwd.Inside, u32("10.0.0.99")}
	tt.st.request(k, 0)
	tt.st.kernel(k, nudFailed, [6]byte{}, 3000*ms)
	tt.publish()
	tt.expect(t, fwd.Inside, "10.0.0.99", fwd.Failed) // not armed: no retry yet
	tt.st.tick(4000 * ms)
	tt.publish()
	// Armed: Pending, as a retry is starting.
	tt.expect(t, fwd.Inside, "10.0.0.99", fwd.Pending, posted{fwd.Inside, u32("10.0.0.99")})
}

func TestResolveLinkDown(t *testing.T) {
	tt := newTestTable(1)
	tt.links[fwd.Inside].up = false
	tt.publish()
	tt.expect(t, fwd.Inside, "10.0.0.2", fwd.Unreachable)
	tt.expect(t, fwd.Outside, "198.18.0.2", fwd.Resolved) // the other side is unaffected
}

func TestSnapshotAndStats(t *testing.T) {
	tt := newTestTable(2)
	s := tt.Snapshot()
	if s.Links[fwd.Inside] != (LinkState{Index: 2, Up: true}) {
		t.Fatalf("links %+v", s.Links)
	}
	if len(s.Routes) != 5 || s.Stats.Routes != [fwd.NumSides]int{1, 4} {
		t.Fatalf("routes %+v stats %+v", s.Routes, s.Stats.Routes)
	}
	// Lookup order: longest prefix first on each side.
	if s.Routes[1].Prefix.String() != "198.18.0.0/24" || s.Routes[4].Prefix.String() != "0.0.0.0/0" ||
		s.Routes[4].NextHops[0] != netip.MustParseAddr("198.18.0.2") || s.Routes[1].NextHops[0].IsValid() {
		t.Fatalf("routes %+v", s.Routes)
	}
	var rejects int
	for _, r := range s.Routes {
		if r.Reject {
			rejects++
		}
	}
	if rejects != 1 {
		t.Fatalf("%d reject routes", rejects)
	}
	if len(s.Neighbors) != 3 || s.Stats.Entries != [fwd.NumSides]int{2, 1} {
		t.Fatalf("neighbours %+v entries %v", s.Neighbors, s.Stats.Entries)
	}
	for _, n := range s.Neighbors {
		if n.Side == fwd.Outside && (n.Addr != netip.MustParseAddr("198.18.0.2") || n.MAC != macB || n.State != fwd.Resolved) {
			t.Fatalf("outside neighbour %+v", n)
		}
	}
}

func TestResolveAllocs(t *testing.T) {
	tt := newTestTable(100)
	k := nkey{fwd.Inside, u32("10.0.0.250")}
	tt.st.request(k, 0)
	tt.st.kernel(k, nudFailed, [6]byte{}, 0)
	tt.publish()
	var sink fwd.Resolution
	for _, c := range []struct {
		name string
		side fwd.Side
		dst  string
	}{
		{"hit", fwd.Inside, "10.0.0.50"},
		{"gateway", fwd.Outside, "203.0.113.1"},
		{"miss", fwd.Inside, "10.0.0.200"},
		{"failed", fwd.Inside, "10.0.0.250"},
		{"unreachable", fwd.Inside, "192.0.2.1"},
	} {
		dst := ip4(c.dst)
		if n := testing.AllocsPerRun(1000, func() {
			_, r := tt.Resolve(c.side, dst)
			sink += r
		}); n != 0 {
			t.Errorf("Resolve %s allocates %.1f times", c.name, n)
		}
	}
	_ = sink
}

func TestResolveConcurrentWithPublish(t *testing.T) {
	// Workers resolve while the control goroutine republishes: run with
	// -race. Every answer must be one of the published states.
	tt := newTestTable(50)
	done := make(chan struct{})
	errs := make(chan string, 4)
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 20000 {
				dst := [4]byte{10, 0, 0, byte(2 + (i+w)%60)}
				mac, res := tt.Resolve(fwd.Inside, dst)
				switch {
				case res == fwd.Resolved && mac[0] != 2:
					errs <- "resolved with a bad MAC"
					return
				case res == fwd.Unreachable || res == fwd.Failed:
					errs <- "unexpected " + res2s(res)
					return
				}
			}
		}()
	}
	for i := range 200 {
		k := nkey{fwd.Inside, u32("10.0.0.2") + uint32(i%50)}
		if i%2 == 0 {
			tt.st.kernel(k, nudReachable, [6]byte{2, 0, 0, 1, 0, byte(i)}, 0)
		} else {
			tt.st.kernelGone(k)
		}
		tt.publish()
		tt.drain()
	}
	for range 4 {
		<-done
	}
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
}

func res2s(r fwd.Resolution) string {
	return [...]string{"resolved", "pending", "unreachable", "failed"}[r]
}

var benchSink [6]byte

func benchResolve(b *testing.B, tt *testTable, side fwd.Side, dst [4]byte) {
	b.ReportAllocs()
	for b.Loop() {
		mac, _ := tt.Resolve(side, dst)
		benchSink = mac
	}
}

func BenchmarkResolve(b *testing.B) {
	tt := newTestTable(1000)
	b.Run("hit-inside", func(b *testing.B) { benchResolve(b, tt, fwd.Inside, ip4("10.0.2.100")) })
	b.Run("hit-gateway", func(b *testing.B) { benchResolve(b, tt, fwd.Outside, ip4("203.0.113.77")) })
	b.Run("miss", func(b *testing.B) {
		// Every call misses and posts; the request is already waiting, so
		// this is the de-duplicated steady state of a burst to one
		// unresolved neighbour.
		benchResolve(b, tt, fwd.Inside, ip4("10.0.9.9"))
	})
	b.Run("unreachable", func(b *testing.B) { benchResolve(b, tt, fwd.Inside, ip4("192.0.2.1")) })
	// Destinations cycling through all 1000 neighbours (a table of 32 KiB).
	dsts := make([][4]byte, 1024)
	for i := range dsts {
		a := u32("10.0.0.2") + uint32(i%1000)
		dsts[i] = [4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}
	}
	b.Run("hit-spread", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			mac, _ := tt.Resolve(fwd.Inside, dsts[i&1023])
			benchSink = mac
			i++
		}
	})
	b.Run("hit-spread-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var m byte
			i := 0
			for pb.Next() {
				mac, _ := tt.Resolve(fwd.Inside, dsts[i&1023])
				m ^= mac[5]
				i++
			}
			benchSink[1] = m
		})
	})
}

// TestResolveMatchesReference checks the whole of Resolve against a slow
// reference (linear scan over unsorted routes, a Go map of neighbours) on
// random tables. Single next hops only: ECMP selection is TestNextHop's.
func TestResolveMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	type refEntry struct {
		res   fwd.Resolution
		mac   [6]byte
		retry bool
	}
	pool := func() uint32 { return 0x0a000000 | uint32(rng.IntN(64)) } // addresses that collide often
	var seen [4]int
	for iter := range 200 {
		p := &probeLog{}
		tb := newTable(Config{})
		st := newNeighState(5000*ms, 1000*ms, p.probe, &tb.stats)
		var links [fwd.NumSides]linkState
		var routes, sorted [fwd.NumSides][]route
		ref := [fwd.NumSides]map[uint32]refEntry{{}, {}}
		for side := range fwd.NumSides {
			links[side] = linkState{index: int(side) + 1, up: rng.IntN(8) != 0}
			for range rng.IntN(12) {
				plen := []int{0, 8, 24, 26, 28, 32}[rng.IntN(6)]
				r := route{mask: prefixMask(plen), plen: uint8(plen), metric: uint32(rng.IntN(3)), nhops: 1}
				r.prefix = pool() & r.mask
				if rng.IntN(2) == 0 {
					r.gw[0] = pool()
				}
				if rng.IntN(6) == 0 {
					r.kind = kindReject
				}
				routes[side] = append(routes[side], r)
			}
			sorted[side] = append([]route(nil), routes[side]...)
			sortRoutes(sorted[side])
			// Failed entries whose retry delay has passed (armed), then
			// the other states, which may overwrite some of them.
			for range rng.IntN(10) {
				st.kernel(nkey{side, pool()}, nudFailed, [6]byte{}, 0)
			}
			st.tick(2000 * ms)
			for range rng.IntN(60) {
				k := nkey{side, pool()}
				mac := [6]byte{2, byte(iter), 0, 0, byte(side), byte(k.ip)}
				switch rng.IntN(3) {
				case 0:
					st.kernel(k, nudReachable, mac, 2000*ms)
				case 1:
					st.kernel(k, nudIncomplete, [6]byte{}, 2000*ms)
				case 2:
					st.kernel(k, nudFailed, [6]byte{}, 2000*ms)
				}
			}
		}
		for k, e := range st.m {
			ref[k.side][k.ip] = refEntry{e.res, e.mac, e.retry}
		}
		tb.snap.Store(buildSnapshot(nil, links, routeTables(sorted), st))
		for range 300 {
			side := fwd.Side(rng.IntN(2))
			d := pool()
			if rng.IntN(4) == 0 {
				d = rng.Uint32()
			}
			var dst [4]byte
			binary.BigEndian.PutUint32(dst[:], d)
			// Reference.
			wantMAC, want := [6]byte{}, fwd.Unreachable
			if r, ok := refLookup(routes[side], d); links[side].up && ok && r.kind == kindForward {
				nh := d
				if r.gw[0] != 0 {
					nh = r.gw[0]
				}
				e, found := ref[side][nh]
				switch {
				case nh == 0:
				case !found:
					want = fwd.Pending
				case e.res == fwd.Resolved:
					want, wantMAC = fwd.Resolved, e.mac
				case e.res == fwd.Failed && e.retry:
					want = fwd.Pending
				default:
					want = e.res
				}
			}
			seen[want]++
			mac, got := tb.Resolve(side, dst)
			if got != want || mac != wantMAC {
				t.Fatalf("iter %d: Resolve(%v, %08x) = %x %v, reference %x %v", iter, side, d, mac, res2s(got), wantMAC, res2s(want))
			}
		}
	}
	for r, n := range seen {
		if n < 1000 {
			t.Errorf("outcome %s seen only %d times: the random tables miss a case", res2s(fwd.Resolution(r)), n)
		}
	}
	t.Logf("outcomes resolved/pending/unreachable/failed: %v", seen)
}
