package gen

import (
	"math/rand/v2"
	"net"
	"testing"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/header"
)

var (
	testSrcMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	testDstMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

func testSpec(n uint32) *FlowSpec {
	return &FlowSpec{
		Src: AddrRange{First: [4]byte{10, 1, 0, 0}, Count: 256}, SrcPorts: PortRange{First: 1024, Count: 1000},
		Dst: AddrRange{First: [4]byte{198, 19, 0, 1}, Count: 3}, DstPorts: PortRange{First: 9, Count: 2},
		Count: n,
	}
}

func mustBuilder(t testing.TB, proto uint8, sizes Sizes) *Builder {
	t.Helper()
	b, err := NewBuilder(FrameConfig{SrcMAC: testSrcMAC, DstMAC: testDstMAC, Proto: proto, Sizes: sizes})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode checks a frame with gopacket: every layer present, both
// checksums verified by gopacket's own computation, Mark intact.
func decode(t *testing.T, f []byte, proto uint8, tu *Tuple, m *Mark) gopacket.Packet {
	t.Helper()
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v\n% x", el.Error(), f)
	}
	eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if [6]byte(eth.SrcMAC) != testSrcMAC || [6]byte(eth.DstMAC) != testDstMAC {
		t.Fatalf("MACs %v %v", eth.SrcMAC, eth.DstMAC)
	}
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		t.Fatal("no IPv4 layer")
	}
	if !ip.SrcIP.Equal(net.IP(tu.Src[:])) || !ip.DstIP.Equal(net.IP(tu.Dst[:])) || ip.TTL != 64 || ip.Flags != layers.IPv4DontFragment {
		t.Fatalf("IPv4 %v -> %v ttl %d flags %v, want %v", ip.SrcIP, ip.DstIP, ip.TTL, ip.Flags, tu)
	}
	if int(ip.Length) != len(f)-14 {
		t.Fatalf("IPv4 total length %d for a %d-byte frame", ip.Length, len(f))
	}
	if _, v := ip.VerifyChecksum(); !v.Valid {
		t.Fatalf("IPv4 checksum %#04x, gopacket computes %#04x", v.Actual, v.Correct)
	}
	var payload []byte
	switch proto {
	case header.ProtocolUDP:
		u, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if u == nil {
			t.Fatal("no UDP layer")
		}
		if uint16(u.SrcPort) != tu.SrcPort || uint16(u.DstPort) != tu.DstPort || int(u.Length) != len(f)-34 {
			t.Fatalf("UDP %d -> %d len %d", u.SrcPort, u.DstPort, u.Length)
		}
		if err := u.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		if _, v := u.VerifyChecksum(); !v.Valid || u.Checksum == 0 {
			t.Fatalf("UDP checksum %#04x, gopacket computes %#04x", v.Actual, v.Correct)
		}
		payload = u.Payload
	case header.ProtocolTCP:
		tc, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tc == nil {
			t.Fatal("no TCP layer")
		}
		if uint16(tc.SrcPort) != tu.SrcPort || uint16(tc.DstPort) != tu.DstPort {
			t.Fatalf("TCP %d -> %d", tc.SrcPort, tc.DstPort)
		}
		if err := tc.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		if _, v := tc.VerifyChecksum(); !v.Valid {
			t.Fatalf("TCP checksum %#04x, gopacket computes %#04x", v.Actual, v.Correct)
		}
		payload = tc.Payload
	}
	if len(payload) < MarkLen {
		t.Fatalf("payload %d bytes", len(payload))
	}
	if got := ReadMark(payload); got != *m {
		t.Fatalf("mark %+v, want %+v", got, *m)
	}
	return pkt
}

func TestTupleLayout(t *testing.T) {
	if s := unsafe.Sizeof(Tuple{}); s != 12 {
		t.Fatalf("Tuple is %d bytes, want 12 (no padding)", s)
	}
}

func TestFramesDecodeAllSizes(t *testing.T) {
	spec := testSpec(5000)
	for _, proto := range []uint8{header.ProtocolUDP, header.ProtocolTCP} {
		for _, size := range []string{"64", "512", "1518", "imix", "100", "77"} {
			sz, err := ParseSizes(size)
			if err != nil {
				t.Fatal(err)
			}
			b := mustBuilder(t, proto, sz)
			buf := make([]byte, 2048)
			seen := map[int]int{}
			for i := range 240 {
				flow := uint32(i%4) * 1237
				round := uint32(i / 4)
				tu := spec.Tuple(flow)
				m := Mark{Stream: uint16(i % 5), Seq: uint32(i) * 0x10001, TxNs: 0x1122334455667788 + uint64(i)*977, Flow: flow}
				n := b.Build(buf[:0], &tu, round, &m)
				want := max(sz.Slots()[sz.Slot(flow, round)], MinFrameLen(proto)) - 4
				if n != want {
					t.Fatalf("%s/%d: frame %d bytes, want %d", size, proto, n, want)
				}
				seen[n+4]++
				pkt := decode(t, buf[:n], proto, &tu, &m)
				if proto == header.ProtocolTCP {
					tc := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
					isn := ClientISN(flow)
					if round == 0 {
						if !tc.SYN || tc.ACK || tc.Seq != isn {
							t.Fatalf("round 0: SYN %v ACK %v seq %d, want SYN seq %d", tc.SYN, tc.ACK, tc.Seq, isn)
						}
					} else if tc.SYN || !tc.ACK || tc.Ack != ServerISN(isn)+1 || tc.Seq != isn+1+refBytesBefore(b, flow, round) {
						t.Fatalf("round %d: flags SYN %v ACK %v seq %d ack %d", round, tc.SYN, tc.ACK, tc.Seq, tc.Ack)
					}
				}
			}
			if size == "imix" {
				// 240 frames: 60 rounds (5 cycles of 12 slots) of 4
				// flows: the 7:4:1 mix exactly.
				small := 64
				if proto == header.ProtocolTCP {
					small = MinFrameLen(proto)
				}
				if seen[small] != 140 || seen[576] != 80 || seen[1518] != 20 {
					t.Fatalf("imix %d: sizes %v, want 140/80/20", proto, seen)
				}
			}
		}
	}
}

// refBytesBefore sums the TCP payload of rounds 0..r-1 one by one.
func refBytesBefore(b *Builder, flow, r uint32) uint32 {
	var s uint32
	for k := range r {
		s += uint32(b.FrameLen(b.sizes.Slot(flow, k)) - b.markOff)
	}
	return s
}

func TestBytesBeforeMatchesReference(t *testing.T) {
	for _, proto := range []uint8{header.ProtocolUDP, header.ProtocolTCP} {
		for _, sz := range []string{"imix", "512"} {
			z, _ := ParseSizes(sz)
			b := mustBuilder(t, proto, z)
			for flow := range uint32(30) {
				for r := range uint32(40) {
					if got, want := b.bytesBefore(flow, r), refBytesBefore(b, flow, r); got != want {
						t.Fatalf("%s flow %d round %d: %d, want %d", sz, flow, r, got, want)
					}
				}
			}
		}
	}
}

// TestChecksumRandom compares Build's incremental checksums with a full
// recomputation over random tuples, marks and rounds.
func TestChecksumRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, proto := range []uint8{header.ProtocolUDP, header.ProtocolTCP} {
		b := mustBuilder(t, proto, Sizes{slots: IMIX[:], name: "imix"})
		buf := make([]byte, 2048)
		for range 20000 {
			tu := Tuple{Src: put32(rng.Uint32()), Dst: put32(rng.Uint32()), SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32())}
			m := Mark{Stream: uint16(rng.Uint32()), Seq: rng.Uint32(), TxNs: rng.Uint64(), Flow: rng.Uint32()}
			round := rng.Uint32() % 3
			n := b.Build(buf[:0], &tu, round, &m)
			f := buf[:n]
			ip := header.IPv4(f[ipOff:])
			if !ip.IsChecksumValid() || ip.Checksum() != ip.CalculateChecksum() {
				t.Fatalf("IPv4 checksum %#04x, want %#04x", ip.Checksum(), ip.CalculateChecksum())
			}
			if proto == header.ProtocolUDP {
				u := header.UDP(f[l4Off:])
				if want := u.CalculateChecksum(tu.Src, tu.Dst); u.Checksum() != want {
					t.Fatalf("UDP checksum %#04x, want %#04x", u.Checksum(), want)
				}
			} else {
				tc := header.TCP(f[l4Off:])
				if want := tc.CalculateChecksum(tu.Src, tu.Dst); tc.Checksum() != want {
					t.Fatalf("TCP checksum %#04x, want %#04x", tc.Checksum(), want)
				}
			}
			// Restamp must equal a rebuild with the new stamp.
			m2 := m
			m2.TxNs = rng.Uint64()
			b.Restamp(f, m2.TxNs)
			ref := make([]byte, 2048)
			rn := b.Build(ref[:0], &tu, round, &m2)
			if string(ref[:rn]) != string(f) {
				t.Fatalf("restamp differs from rebuild:\n% x\n% x", f, ref[:rn])
			}
		}
	}
}

func TestBuildAllocatesNothing(t *testing.T) {
	spec := testSpec(100000)
	for _, proto := range []uint8{header.ProtocolUDP, header.ProtocolTCP} {
		b := mustBuilder(t, proto, Sizes{slots: IMIX[:], name: "imix"})
		cur := NewCursor(spec, 1, 3)
		buf := make([]byte, 2048)
		var seq uint32
		allocs := testing.AllocsPerRun(1000, func() {
			m := Mark{Stream: 1, Seq: seq, TxNs: uint64(Nanotime()), Flow: cur.Index}
			seq++
			n := b.Build(buf[:0], cur.Tuple(), cur.Round, &m)
			b.Restamp(buf[:n], 42)
			cur.Next()
		})
		if allocs != 0 {
			t.Fatalf("proto %d: %v allocations per frame", proto, allocs)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	spec := testSpec(100000)
	for _, c := range []struct {
		name  string
		proto uint8
		size  string
	}{{"udp-64", header.ProtocolUDP, "64"}, {"udp-1518", header.ProtocolUDP, "1518"}, {"udp-imix", header.ProtocolUDP, "imix"}, {"tcp-64", header.ProtocolTCP, "64"}} {
		b.Run(c.name, func(b *testing.B) {
			z, _ := ParseSizes(c.size)
			bl := mustBuilder(b, c.proto, z)
			cur := NewCursor(spec, 0, 1)
			buf := make([]byte, 2048)
			var seq uint32
			b.ReportAllocs()
			for b.Loop() {
				m := Mark{Stream: 1, Seq: seq, TxNs: 12345, Flow: cur.Index}
				seq++
				bl.Build(buf[:0], cur.Tuple(), cur.Round, &m)
				cur.Next()
			}
		})
	}
}

// BenchmarkBuildReference is the slow way the Builder replaces: copy the
// template, write the fields, and sum the headers and payload from scratch
// with the checksum package.
func BenchmarkBuildReference(b *testing.B) {
	spec := testSpec(100000)
	for _, size := range []string{"64", "1518"} {
		b.Run("udp-"+size, func(b *testing.B) {
			z, _ := ParseSizes(size)
			bl := mustBuilder(b, header.ProtocolUDP, z)
			buf := make([]byte, 2048)
			var i uint32
			b.ReportAllocs()
			for b.Loop() {
				tu := spec.Tuple(i % spec.Count)
				m := Mark{Stream: 1, Seq: i, TxNs: 12345, Flow: i % spec.Count}
				i++
				n := copy(buf, bl.tmpl[0].data)
				f := buf[:n]
				ip := header.IPv4(f[ipOff:])
				ip.SetID(uint16(m.Seq))
				ip.SetSrc(tu.Src)
				ip.SetDst(tu.Dst)
				ip.SetChecksum(0)
				ip.SetChecksum(ip.CalculateChecksum())
				u := header.UDP(f[l4Off:])
				u.SetSrcPort(tu.SrcPort)
				u.SetDstPort(tu.DstPort)
				m.Put(f[udpMark:])
				u.SetChecksum(0)
				u.SetChecksum(u.CalculateChecksum(tu.Src, tu.Dst))
			}
		})
	}
}
