package flowtable

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/xnat/xnat/internal/hashtest"
)

// refHash is the reference the table's hash is held to: XXH64 (the xxhash
// library) over the key's 16 bytes, the table's hash before the cheaper
// multiply-and-fold one.
func refHash(w0, w1 uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], w0)
	binary.LittleEndian.PutUint64(b[8:], w1)
	return xxhash.Sum64(b[:])
}

// testSeed is the seed the hash tests hold the function to: the constants
// the hash used before tables had secret seeds. TestSeedDecides checks that
// other seeds place keys elsewhere.
var testSeed = hashSeed{k0: 0xffffffff00000000, k1: 0x9e3779b97f4a7c15}

// hash is the table's hash under testSeed.
func hash(w0, w1 uint64) uint64 { return testSeed.hash(w0, w1) }

// TestSeedDecides checks the defence against hash flooding: two tables
// draw different seeds, and keys an attacker chose to share one home
// bucket under one seed (as they could under a public function) spread over
// the buckets of a table with another.
func TestSeedDecides(t *testing.T) {
	a, err := New(1 << 12)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(1 << 12)
	if err != nil {
		t.Fatal(err)
	}
	if a.seed == b.seed {
		t.Fatalf("two tables drew the same seed %#x", a.seed)
	}
	// Collect 64 keys of one source that share a's home bucket of the
	// first: the attacker's keys, if a's seed were known.
	first := Key{Src: [4]byte{198, 18, 0, 9}, Dst: [4]byte{198, 19, 0, 1}, SrcPort: 1, DstPort: 80, Proto: 6}
	target := a.ix.Home(a.seed.hash(first.pack()))
	var chosen []Key
	for p := 1; p < 1<<20 && len(chosen) < 64; p++ {
		k := Key{Src: [4]byte{198, 18, byte(p >> 16), 9}, Dst: [4]byte{198, 19, 0, 1}, SrcPort: uint16(p), DstPort: 80, Proto: 6}
		if a.ix.Home(a.seed.hash(k.pack())) == target {
			chosen = append(chosen, k)
		}
	}
	if len(chosen) < 64 {
		t.Fatalf("found only %d colliding keys", len(chosen))
	}
	homes := map[uint64]int{}
	for _, k := range chosen {
		homes[b.ix.Home(b.seed.hash(k.pack()))]++
	}
	// 64 keys over 2048 buckets: all in one bucket by chance is
	// impossible; more than 4 in any one bucket is a 1-in-10^4 event.
	for h, n := range homes {
		if n > 4 {
			t.Fatalf("%d of the 64 chosen keys share bucket %d under another seed", n, h)
		}
	}
}

// randomPacked returns the packed words of a random key: any addresses and
// ports, protocol 1..255 (bits 40..63 of w1 are zero in every packed key).
func randomPacked(r *rand.Rand) (uint64, uint64) {
	return r.Uint64(), r.Uint64()&(1<<40-1) | uint64(1+r.IntN(255))<<32
}

// TestHashAvalanche flips each of the 104 bits a packed key can hold, on
// random keys, and checks that every output bit flips about half the time:
// no input bit may leave an output bit (and so a bucket or fingerprint bit)
// unchanged or flip it predictably. With 4000 keys, one pair's rate has a
// standard deviation under 0.008; 0.44..0.56 is more than seven of them.
func TestHashAvalanche(t *testing.T) {
	const keys = 4000
	r := rand.New(rand.NewPCG(5, 6))
	var flips [104][64]int
	for range keys {
		w0, w1 := randomPacked(r)
		h := hash(w0, w1)
		for in := range 104 {
			a, b := w0, w1
			if in < 64 {
				a ^= 1 << in
			} else {
				b ^= 1 << (in - 64)
			}
			d := h ^ hash(a, b)
			for out := range 64 {
				flips[in][out] += int(d >> out & 1)
			}
		}
	}
	worst, wi, wo := 0.0, 0, 0
	for in := range flips {
		for out, n := range flips[in] {
			if dev := math.Abs(float64(n)/keys - 0.5); dev > worst {
				worst, wi, wo = dev, in, out
			}
		}
	}
	t.Logf("worst avalanche bias %.4f (input bit %d, output bit %d)", worst, wi, wo)
	if worst > 0.06 {
		t.Errorf("input bit %d flips output bit %d with probability %.3f, want 0.5±0.06", wi, wo, 0.5+worst)
	}
}

// hashKeySets are the structured key sets NAT traffic makes, 2^16 keys
// each, where a weak hash would crowd buckets: the ports of one host pair,
// consecutive inside hosts with one port, one external address's port
// table, subscriber keys of consecutive hosts, and the benchmarks' keys.
func hashKeySets() map[string][]Key {
	const n = 1 << 16
	sets := map[string][]Key{}
	add := func(name string, f func(i uint32) Key) {
		ks := make([]Key, n)
		for i := range ks {
			ks[i] = f(uint32(i))
		}
		sets[name] = ks
	}
	add("ports-of-one-host-pair", func(i uint32) Key {
		return Key{Src: [4]byte{10, 0, 0, 1}, Dst: [4]byte{198, 18, 0, 1}, SrcPort: uint16(i), DstPort: 443, Proto: 6}
	})
	add("both-ports", func(i uint32) Key {
		return Key{Src: [4]byte{198, 18, 0, 1}, Dst: [4]byte{198, 19, 0, 1}, SrcPort: uint16(i >> 8), DstPort: uint16(i & 0xff), Proto: 17}
	})
	add("consecutive-hosts", func(i uint32) Key {
		var k Key
		binary.BigEndian.PutUint32(k.Src[:], 0x0a000000|i)
		k.Dst, k.SrcPort, k.DstPort, k.Proto = [4]byte{198, 18, 0, 1}, 40000, 53, 17
		return k
	})
	add("port-table", func(i uint32) Key {
		return Key{Dst: [4]byte{198, 18, 0, byte(i >> 16)}, DstPort: uint16(i), Proto: []uint8{1, 6, 17}[i%3]}
	})
	add("subscribers", func(i uint32) Key {
		var k Key
		binary.BigEndian.PutUint32(k.Src[:], 0x0a000000|i)
		k.Proto = 255
		return k
	})
	add("bench", benchKey)
	add("test", testKey)
	return sets
}

// TestHashSpread places each structured key set in buckets the way the
// table does (home, four keys a bucket) and checks the spread against a
// uniform one: Pearson's chi-square over the buckets must stay within six
// standard deviations of its mean (the number of buckets), as must the
// spread of the fingerprints' top 14 bits; no two keys may share home
// bucket and fingerprint (the slot that would lead a lookup to a wrong
// record; expected 2^16·2^16/2 / (2^14·2^32) = 2^-15 pairs a set). XXH64
// is held to the same bounds, so a failure here is the hash's, not the
// bound's.
func TestHashSpread(t *testing.T) {
	const nb = 1 << 14
	tb := &Table{ix: Index{nb: nb}}
	for name, keys := range hashKeySets() {
		for _, h := range []struct {
			name string
			f    func(w0, w1 uint64) uint64
		}{{"hash", hash}, {"xxh64", refHash}} {
			homes := make([]int, nb)
			fps := make([]int, 1<<14)
			seen := map[[2]uint64]bool{}
			same := 0
			for i := range keys {
				w0, w1 := keys[i].pack()
				x := h.f(w0, w1)
				homes[tb.ix.Home(x)]++
				fps[fpOf(x)>>18]++
				slot := [2]uint64{tb.ix.Home(x), uint64(fpOf(x))}
				if seen[slot] {
					same++
				}
				seen[slot] = true
			}
			bound := nb + 6*math.Sqrt(2*nb)
			cb, cf := hashtest.ChiSquare(homes, len(keys)), hashtest.ChiSquare(fps, len(keys))
			t.Logf("%s/%s: chi-square buckets %.0f, fingerprints %.0f (bound %.0f), %d shared slots", name, h.name, cb, cf, bound, same)
			if cb > bound || cf > bound || same > 1 {
				t.Errorf("%s/%s: chi-square buckets %.0f, fingerprints %.0f, bound %.0f; %d keys share home and fingerprint",
					name, h.name, cb, cf, bound, same)
			}
		}
	}
}

func FuzzHash(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint8(0))
	f.Add(^uint64(0), uint64(1), uint8(103))
	f.Fuzz(func(t *testing.T, w0, w1 uint64, bit uint8) {
		w1 &= 1<<40 - 1
		a, b := w0, w1
		if bit %= 104; bit < 64 {
			a ^= 1 << bit
		} else {
			b ^= 1 << (bit - 64)
		}
		// Two keys one bit apart must not land in one slot: same home
		// half and same fingerprint (a 2^-64 event for a good hash).
		if hash(w0, w1) == hash(a, b) {
			t.Fatalf("hash(%#x, %#x) equals the hash with bit %d flipped", w0, w1, bit)
		}
	})
}

func BenchmarkHash(b *testing.B) {
	var sink uint64
	b.Run("inline", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			sink += hash(uint64(i), sink)
		}
	})
	b.Run("xxhash-library", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			sink += refHash(uint64(i), sink)
		}
	})
}
