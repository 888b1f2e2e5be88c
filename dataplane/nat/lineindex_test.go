package nat

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/xnat/xnat/flowtable"
	"github.com/xnat/xnat/internal/hashtest"
)

// splitmix is the compact tables' hash before the folded multiply
// (lineIndex.hash): the seeded splitmix64 finaliser, the reference the
// tests below hold the hash to.
func splitmix(v, seed uint64) uint64 {
	z := v ^ seed
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// lineHashSeeds are the seeds the tests draw: three, so that no property
// holds for one lucky seed only.
func lineHashSeeds() []uint64 {
	r := rand.New(rand.NewPCG(9, 10))
	return []uint64{r.Uint64(), r.Uint64(), r.Uint64()}
}

// lineKeySets are the structured key sets the compact tables see, 2^16
// keys each, as the words their hash takes: the bind table's inside keys
// (consecutive hosts on one port, one host's consecutive ports) and
// external keys (a few pool addresses, consecutive ports); the port
// table's keys with the pair bit cleared, as portTable.hash hashes them
// (one address's consecutive pairs, each protocol; many consecutive
// registry slots with a few pairs each); the count tables' permission
// keys (consecutive inside hosts to one remote, one mapping to consecutive
// remotes) as two packed words, hashed as countTable.keyHash does.
func lineKeySets() (words map[string][]uint64, pairs map[string][][2]uint64) {
	const n = 1 << 16
	words = map[string][]uint64{}
	addW := func(name string, f func(i uint32) uint64) {
		ws := make([]uint64, n)
		for i := range ws {
			ws[i] = f(uint32(i))
		}
		words[name] = ws
	}
	host := func(base, i uint32) [4]byte {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], base|i)
		return a
	}
	addW("bind-inside-hosts", func(i uint32) uint64 {
		return bindWord(host(0x0a000000, i), 40000, 17, 0)
	})
	addW("bind-inside-ports", func(i uint32) uint64 {
		return bindWord(host(0x0a000000, 7), uint16(i), 6, 0)
	})
	addW("bind-external", func(i uint32) uint64 {
		return bindWord(host(0xc6120000, i>>14), uint16(1024+i&0x3fff), []uint8{6, 17}[i>>13&1], 1)
	})
	addW("port-pairs-one-address", func(i uint32) uint64 {
		return portKey(3, []Proto{TCP, UDP}[i>>15], uint16(i<<1)) &^ portPairBit
	})
	addW("port-pairs-many-addresses", func(i uint32) uint64 {
		return portKey(i>>4, UDP, uint16(1024+(i&15)<<1)) &^ portPairBit
	})
	pairs = map[string][][2]uint64{}
	addP := func(name string, f func(i uint32) flowtable.Key) {
		ps := make([][2]uint64, n)
		for i := range ps {
			k := f(uint32(i))
			ps[i][0], ps[i][1] = countPack(&k)
		}
		pairs[name] = ps
	}
	addP("count-inside-hosts", func(i uint32) flowtable.Key {
		return flowtable.Key{Src: host(0x0a000000, i), Dst: [4]byte{198, 51, 100, 1}, SrcPort: 40000, Proto: 17}
	})
	addP("count-remotes", func(i uint32) flowtable.Key {
		return flowtable.Key{Src: [4]byte{10, 0, 0, 7}, Dst: host(0xc6330000, i), SrcPort: 40000, Proto: 6}
	})
	return words, pairs
}

// TestLineHashSpread places each structured key set in the buckets of an
// index of 2^14 buckets (home, and the fingerprint's top 14 bits, of the
// high half) under lineIndex.hash and under the splitmix64 finaliser
// before it, and holds both to the bound flowtable's TestHashSpread uses:
// Pearson's chi-square within six standard deviations of its mean, and at
// most one pair of keys sharing home and fingerprint (expected 2^-15).
// The port table's pairs share a home bucket (TestPortPairs): its sets
// hold one key a pair, as its hash sees them.
func TestLineHashSpread(t *testing.T) {
	const nb = 1 << 14
	var owner struct{}
	x := makeLineIndex(&owner, nb*lineKeysPerBucket)
	if x.nb != nb {
		t.Fatalf("index of %d buckets, want %d", x.nb, nb)
	}
	words, pairs := lineKeySets()
	for si, seed := range lineHashSeeds() {
		x.seed = seed
		hashes := map[string]func(i int, name string) uint64{
			"hash": func(i int, name string) uint64 {
				if ws, ok := words[name]; ok {
					return x.hash(ws[i])
				}
				p := pairs[name][i]
				return x.hash(x.hash(p[0]) ^ p[1])
			},
			"splitmix": func(i int, name string) uint64 {
				if ws, ok := words[name]; ok {
					return splitmix(ws[i], seed)
				}
				p := pairs[name][i]
				return splitmix(splitmix(p[0], seed)^p[1], seed)
			},
		}
		names := []string{}
		for name := range words {
			names = append(names, name)
		}
		for name := range pairs {
			names = append(names, name)
		}
		for _, name := range names {
			n := len(words[name]) + len(pairs[name])
			for hn, f := range hashes {
				homes := make([]int, nb)
				fps := make([]int, 1<<14)
				seen := map[[2]uint64]bool{}
				same := 0
				for i := range n {
					h := f(i, name)
					fp := uint32(h>>32) | 1
					homes[x.home(h)]++
					fps[fp>>18]++
					slot := [2]uint64{x.home(h), uint64(fp)}
					if seen[slot] {
						same++
					}
					seen[slot] = true
				}
				bound := nb + 6*math.Sqrt(2*nb)
				cb, cf := hashtest.ChiSquare(homes, n), hashtest.ChiSquare(fps, n)
				t.Logf("seed %d %s/%s: chi-square buckets %.0f, fingerprints %.0f (bound %.0f), %d shared slots", si, name, hn, cb, cf, bound, same)
				if cb > bound || cf > bound || same > 1 {
					t.Errorf("seed %d %s/%s: chi-square buckets %.0f, fingerprints %.0f, bound %.0f; %d keys share home and fingerprint",
						si, name, hn, cb, cf, bound, same)
				}
			}
		}
	}
}

// TestLineHashAvalanche flips each input bit of 4,000 keys of each
// structured set (each of the 64 bits of a word; each of the 104 bits a
// count key's two packed words can hold) and checks that every output bit
// of lineIndex.hash (countTable.keyHash's composition for the count keys)
// flips about half the time, as flowtable's TestHashAvalanche does: one
// pair's rate has a standard deviation under 0.008, and 0.44..0.56 is more
// than seven of them. The splitmix64 finaliser before it is held to the
// same bound.
func TestLineHashAvalanche(t *testing.T) {
	const keys = 4000
	var owner struct{}
	x := makeLineIndex(&owner, 1<<10)
	words, pairs := lineKeySets()
	check := func(name string, bitsIn int, flips [][64]int) {
		t.Helper()
		worst, wi, wo := 0.0, 0, 0
		for in := range bitsIn {
			for out, n := range flips[in] {
				if dev := math.Abs(float64(n)/keys - 0.5); dev > worst {
					worst, wi, wo = dev, in, out
				}
			}
		}
		t.Logf("%s: worst avalanche bias %.4f (input bit %d, output bit %d)", name, worst, wi, wo)
		if worst > 0.06 {
			t.Errorf("%s: input bit %d flips output bit %d with probability %.3f, want 0.5±0.06", name, wi, wo, 0.5+worst)
		}
	}
	for si, seed := range lineHashSeeds() {
		x.seed = seed
		for _, h := range []struct {
			name string
			f    func(v uint64) uint64
		}{{"hash", x.hash}, {"splitmix", func(v uint64) uint64 { return splitmix(v, seed) }}} {
			for name, ws := range words {
				flips := make([][64]int, 64)
				for k := range keys {
					v := ws[k*len(ws)/keys]
					hv := h.f(v)
					for in := range 64 {
						d := hv ^ h.f(v^1<<in)
						for out := range 64 {
							flips[in][out] += int(d >> out & 1)
						}
					}
				}
				check(name+"/"+h.name+"/seed"+string(rune('0'+si)), 64, flips)
			}
			for name, ps := range pairs {
				flips := make([][64]int, 104)
				for k := range keys {
					p := ps[k*len(ps)/keys]
					hv := h.f(h.f(p[0]) ^ p[1])
					for in := range 104 {
						a, b := p[0], p[1]
						if in < 64 {
							a ^= 1 << in
						} else {
							b ^= 1 << (in - 64)
						}
						d := hv ^ h.f(h.f(a)^b)
						for out := range 64 {
							flips[in][out] += int(d >> out & 1)
						}
					}
				}
				check(name+"/"+h.name+"/seed"+string(rune('0'+si)), 104, flips)
			}
		}
	}
}
