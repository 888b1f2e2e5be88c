package gen

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestCursorMatchesTuple walks cursors with several strides over specs
// with small and degenerate ranges and compares every tuple with the
// division-based reference, and checks Index inverts it.
func TestCursorMatchesTuple(t *testing.T) {
	specs := []*FlowSpec{
		testSpec(5000),
		{Src: AddrRange{First: [4]byte{10, 0, 0, 2}, Count: 1}, SrcPorts: PortRange{First: 1, Count: 65535},
			Dst: AddrRange{First: [4]byte{198, 18, 0, 2}, Count: 1}, DstPorts: PortRange{First: 9, Count: 1}, Count: 65535},
		{Src: AddrRange{First: [4]byte{10, 1, 0, 0}, Count: 7}, SrcPorts: PortRange{First: 100, Count: 3},
			Dst: AddrRange{First: [4]byte{198, 19, 0, 0}, Count: 5}, DstPorts: PortRange{First: 65530, Count: 6}, Count: 7 * 3 * 5 * 6},
		{Src: AddrRange{First: [4]byte{10, 255, 255, 250}, Count: 1 << 16}, SrcPorts: PortRange{First: 1024, Count: 256},
			Dst: AddrRange{First: [4]byte{198, 18, 0, 2}, Count: 1}, DstPorts: PortRange{First: 9, Count: 1}, Count: MaxFlows},
	}
	for si, s := range specs {
		if err := s.Validate(); err != nil {
			t.Fatalf("spec %d: %v", si, err)
		}
		for _, step := range []uint32{1, 2, 3, 8, 13} {
			for first := range min(step, 3) {
				c := NewCursor(s, first, step)
				want := first
				round := uint32(0)
				seen := map[Tuple]bool{}
				for range 3000 {
					if c.Index != want || c.Round != round {
						t.Fatalf("spec %d step %d: index %d round %d, want %d %d", si, step, c.Index, c.Round, want, round)
					}
					ref := s.Tuple(want)
					if *c.Tuple() != ref {
						t.Fatalf("spec %d step %d flow %d: cursor %v, reference %v", si, step, want, *c.Tuple(), ref)
					}
					if idx, ok := s.Index(ref); !ok || idx != want {
						t.Fatalf("spec %d: Index(Tuple(%d)) = %d, %v", si, want, idx, ok)
					}
					if round == 0 && seen[ref] {
						t.Fatalf("spec %d: tuple %v repeated within a round", si, ref)
					}
					seen[ref] = true
					c.Next()
					if want += step; want >= s.Count {
						want = first
						round++
					}
				}
			}
		}
	}
}

// TestTuplesDistinct checks a whole small spec maps indexes one-to-one.
func TestTuplesDistinct(t *testing.T) {
	s := &FlowSpec{Src: AddrRange{First: [4]byte{10, 1, 0, 0}, Count: 5}, SrcPorts: PortRange{First: 1000, Count: 4},
		Dst: AddrRange{First: [4]byte{198, 19, 0, 0}, Count: 3}, DstPorts: PortRange{First: 80, Count: 2}, Count: 120}
	seen := map[Tuple]uint32{}
	for i := range s.Count {
		tu := s.Tuple(i)
		if j, dup := seen[tu]; dup {
			t.Fatalf("flows %d and %d share %v", j, i, tu)
		}
		seen[tu] = i
	}
	if _, ok := s.Index(Tuple{Src: [4]byte{10, 1, 0, 5}, Dst: [4]byte{198, 19, 0, 0}, SrcPort: 1000, DstPort: 80}); ok {
		t.Fatal("Index accepted an address outside the range")
	}
	if _, ok := s.Index(Tuple{Src: [4]byte{10, 1, 0, 0}, Dst: [4]byte{198, 19, 0, 0}, SrcPort: 999, DstPort: 80}); ok {
		t.Fatal("Index accepted a port below the range")
	}
	s.Count = 121
	if s.Validate() == nil {
		t.Fatal("more flows than tuples accepted")
	}
}

func TestIndexRejectsRandom(t *testing.T) {
	s := testSpec(100000)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		tu := Tuple{Src: put32(rng.Uint32()), Dst: put32(rng.Uint32()), SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32())}
		if i, ok := s.Index(tu); ok && s.Tuple(i) != tu {
			t.Fatalf("Index(%v) = %d whose tuple is %v", tu, i, s.Tuple(i))
		}
	}
}

func TestParseRanges(t *testing.T) {
	for _, c := range []struct {
		in    string
		first string
		count uint32
	}{
		{"10.0.0.2", "10.0.0.2", 1}, {"10.1.0.0/16", "10.1.0.0", 65536}, {"10.1.2.3/24", "10.1.2.0", 256},
		{"198.19.0.1-198.19.1.0", "198.19.0.1", 256},
	} {
		r, err := ParseAddrRange(c.in)
		if err != nil || netip.AddrFrom4(r.First).String() != c.first || r.Count != c.count {
			t.Errorf("ParseAddrRange(%q) = %v %d, %v", c.in, netip.AddrFrom4(r.First), r.Count, err)
		}
	}
	for _, bad := range []string{"", "10.0.0.2-10.0.0.1", "::1", "10.0.0.0/0", "300.1.1.1"} {
		if _, err := ParseAddrRange(bad); err == nil {
			t.Errorf("ParseAddrRange(%q) accepted", bad)
		}
	}
	p, err := ParsePortRange("1024-65535")
	if err != nil || p.First != 1024 || p.Count != 64512 {
		t.Errorf("ParsePortRange: %+v %v", p, err)
	}
	for _, bad := range []string{"", "5-4", "65536", "x"} {
		if _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) accepted", bad)
		}
	}
}

func TestPrefixes(t *testing.T) {
	for _, c := range []struct {
		r    string
		want []string
	}{
		{"198.18.0.2", []string{"198.18.0.2/32"}},
		{"198.19.0.0/16", []string{"198.19.0.0/16"}},
		{"10.0.0.1-10.0.0.6", []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
	} {
		r, err := ParseAddrRange(c.r)
		if err != nil {
			t.Fatal(err)
		}
		got := r.Prefixes()
		if len(got) != len(c.want) {
			t.Fatalf("%s: %v, want %v", c.r, got, c.want)
		}
		for i := range got {
			if got[i].String() != c.want[i] {
				t.Fatalf("%s: %v, want %v", c.r, got, c.want)
			}
		}
	}
}
