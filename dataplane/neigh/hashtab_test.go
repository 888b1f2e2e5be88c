package neigh

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/xnat/xnat/dataplane/fwd"
)

type refNeigh struct {
	mac [6]byte
	res fwd.Resolution
}

func TestNTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 2, 7, 8, 100, 1000, 5000} {
		for _, dense := range []bool{false, true} {
			ref := make(map[uint32]refNeigh, n)
			for len(ref) < n {
				ip := rng.Uint32()
				if dense {
					// One /19 of consecutive hosts: the usual inside LAN.
					ip = 0x0a000000 | uint32(rng.IntN(8192))
				}
				if ip == 0 {
					continue
				}
				var mac [6]byte
				for i := range mac {
					mac[i] = byte(rng.Uint32())
				}
				ref[ip] = refNeigh{mac: mac, res: fwd.Resolution(rng.IntN(4))}
			}
			tab := newNTable(len(ref))
			for ip, r := range ref {
				s := tab.insert(ip)
				s.mac, s.res = r.mac, r.res
			}
			if tab.n != len(ref) {
				t.Fatalf("n=%d: table counts %d entries", len(ref), tab.n)
			}
			if 2*tab.n > len(tab.slots) {
				t.Fatalf("n=%d: load factor above 1/2 (%d slots)", tab.n, len(tab.slots))
			}
			for ip, r := range ref {
				s := tab.find(ip)
				if s == nil || s.ip != ip || s.mac != r.mac || s.res != r.res {
					t.Fatalf("n=%d dense=%v: find(%08x) = %+v, want %+v", n, dense, ip, s, r)
				}
			}
			for range 2000 {
				ip := rng.Uint32()
				if dense {
					ip = 0x0a000000 | uint32(rng.IntN(16384))
				}
				_, want := ref[ip]
				if ip == 0 {
					continue
				}
				if got := tab.find(ip) != nil; got != want {
					t.Fatalf("n=%d dense=%v: find(%08x) present=%v, want %v", n, dense, ip, got, want)
				}
			}
			// Re-inserting returns the same slot and does not grow the count.
			for ip := range ref {
				if tab.insert(ip) != tab.find(ip) || tab.n != len(ref) {
					t.Fatalf("re-insert of %08x changed the table", ip)
				}
				break
			}
		}
	}
}

func TestNSlotLayout(t *testing.T) {
	// 16 bytes: four slots per cache line, no padding surprises.
	if s := unsafe.Sizeof(nslot{}); s != 16 {
		t.Fatalf("nslot is %d bytes, want 16", s)
	}
	if s := unsafe.Sizeof(route{}); s != 32 {
		t.Fatalf("route is %d bytes, want 32", s)
	}
}

func TestMarkUsed(t *testing.T) {
	var s nslot
	s.markUsed()
	s.markUsed()
	if s.used.Load() != 1 {
		t.Fatal("markUsed did not mark")
	}
}

func TestTableHotFieldsOwnLine(t *testing.T) {
	var tb Table
	if off := unsafe.Offsetof(tb.stats); off < 64 {
		t.Fatalf("counters at offset %d share the snapshot pointer's cache line", off)
	}
}
