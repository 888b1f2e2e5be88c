package gen

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/header"
)

// checkValid decodes f with gopacket and verifies every checksum.
func checkValid(t *testing.T, f []byte) gopacket.Packet {
	t.Helper()
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("decode: %v", el.Error())
	}
	ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if _, v := ip.VerifyChecksum(); !v.Valid {
		t.Fatalf("IPv4 checksum %#04x, want %#04x", v.Actual, v.Correct)
	}
	if u, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		_ = u.SetNetworkLayerForChecksum(ip)
		if _, v := u.VerifyChecksum(); !v.Valid {
			t.Fatalf("UDP checksum %#04x, want %#04x", v.Actual, v.Correct)
		}
	}
	if tc, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		_ = tc.SetNetworkLayerForChecksum(ip)
		if _, v := tc.VerifyChecksum(); !v.Valid {
			t.Fatalf("TCP checksum %#04x, want %#04x", v.Actual, v.Correct)
		}
	}
	return pkt
}

// forward imitates a router: TTL decremented with the checksum fixed.
func forward(t *testing.T, f []byte) {
	t.Helper()
	header.IPv4(f[ipOff:]).DecTTLFix()
}

func TestReflectUDP(t *testing.T) {
	spec := testSpec(1000)
	for _, size := range []string{"64", "imix"} {
		z, _ := ParseSizes(size)
		b := mustBuilder(t, header.ProtocolUDP, z)
		for flow := range uint32(12) {
			tu := spec.Tuple(flow * 31)
			m := Mark{Stream: 3, Seq: flow, TxNs: 99, Flow: flow * 31}
			f := make([]byte, 2048)
			f = f[:b.Build(f, &tu, flow, &m)]
			forward(t, f)
			var p header.Parsed
			got, ok := Classify(f, &p)
			if !ok || got != m {
				t.Fatalf("Classify: %v %+v", ok, got)
			}
			if r := Reflect(f, &p); r != Echo {
				t.Fatalf("Reflect = %d, want Echo", r)
			}
			pkt := checkValid(t, f)
			eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			u := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if [6]byte(eth.SrcMAC) != testDstMAC || [6]byte(eth.DstMAC) != testSrcMAC || ip.TTL != replyTTL ||
				[4]byte(ip.SrcIP.To4()) != tu.Dst || [4]byte(ip.DstIP.To4()) != tu.Src ||
				uint16(u.SrcPort) != tu.DstPort || uint16(u.DstPort) != tu.SrcPort {
				t.Fatalf("reply %v %v %v", eth, ip, u)
			}
			if ReadMark(u.Payload) != m {
				t.Fatal("mark changed")
			}
		}
	}
}

// TestTCPConversation plays a whole flow: SYN, SYN-ACK (reflector),
// handshake ACK (generator), the reflector seeing it, then data and its
// echo, checking flags, sequence numbers and checksums at every step.
func TestTCPConversation(t *testing.T) {
	spec := testSpec(1000)
	z, _ := ParseSizes("imix")
	b := mustBuilder(t, header.ProtocolTCP, z)
	const flow = 77
	tu := spec.Tuple(flow)
	isn := ClientISN(flow)
	buf := make([]byte, 2048)
	m := Mark{Stream: 1, Seq: 0, TxNs: 5, Flow: flow}
	f := buf[:b.Build(buf, &tu, 0, &m)]
	pay0 := uint32(len(f) - tcpMark)
	forward(t, f)
	var p header.Parsed
	if _, ok := Classify(f, &p); !ok {
		t.Fatal("SYN not classified")
	}
	if r := Reflect(f, &p); r != SynAck {
		t.Fatalf("SYN: Reflect = %d", r)
	}
	tc := checkValid(t, f).Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !tc.SYN || !tc.ACK || tc.Seq != ServerISN(isn) || tc.Ack != isn+1+pay0 {
		t.Fatalf("SYN-ACK: SYN %v ACK %v seq %d ack %d", tc.SYN, tc.ACK, tc.Seq, tc.Ack)
	}
	forward(t, f)
	if _, ok := Classify(f, &p); !ok {
		t.Fatal("SYN-ACK not classified")
	}
	n := HandshakeAck(f, &p)
	if n != 60 {
		t.Fatalf("HandshakeAck = %d", n)
	}
	f = f[:n]
	pkt := checkValid(t, f)
	tc = pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if tc.SYN || !tc.ACK || tc.PSH || len(tc.Payload) != 0 || ip.Length != 40 ||
		tc.Seq != isn+1+pay0 || tc.Ack != ServerISN(isn)+1 ||
		[4]byte(ip.SrcIP.To4()) != tu.Src || uint16(tc.SrcPort) != tu.SrcPort {
		t.Fatalf("handshake ACK: %+v len %d", tc, ip.Length)
	}
	// Round 1's data segment must continue exactly where the handshake
	// ACK left off.
	m1 := Mark{Stream: 1, Seq: 1, TxNs: 6, Flow: flow}
	d := make([]byte, 2048)
	d = d[:b.Build(d, &tu, 1, &m1)]
	dt := checkValid(t, d).Layer(layers.LayerTypeTCP).(*layers.TCP)
	if dt.Seq != tc.Seq || dt.Ack != tc.Ack {
		t.Fatalf("round 1 seq %d ack %d, handshake ACK seq %d ack %d", dt.Seq, dt.Ack, tc.Seq, tc.Ack)
	}
	// The reflector counts the pure ACK and does not answer it.
	forward(t, f)
	if _, ok := Classify(f, &p); ok {
		t.Fatal("a pure ACK has no Mark")
	}
	if r := Reflect(f, &p); r != HandshakeDone {
		t.Fatalf("pure ACK: Reflect = %d", r)
	}
	// Data is echoed: seq = our ack, ack = our seq + length.
	forward(t, d)
	if _, ok := Classify(d, &p); !ok {
		t.Fatal("data not classified")
	}
	if r := Reflect(d, &p); r != Echo {
		t.Fatalf("data: Reflect = %d", r)
	}
	et := checkValid(t, d).Layer(layers.LayerTypeTCP).(*layers.TCP)
	if et.SYN || !et.ACK || et.Seq != dt.Ack || et.Ack != dt.Seq+uint32(len(dt.Payload)) || ReadMark(et.Payload) != m1 {
		t.Fatalf("echo: seq %d ack %d", et.Seq, et.Ack)
	}
	// A SYN-ACK arriving at the reflector, a RST: no answer.
	for _, fl := range []uint8{header.TCPFlagSYN | header.TCPFlagACK, header.TCPFlagRST | header.TCPFlagACK} {
		x := make([]byte, 2048)
		x = x[:b.Build(x, &tu, 3, &m1)]
		tcp := header.TCP(x[l4Off:])
		x[l4Off+13] = fl
		tcp.SetChecksum(0)
		tcp.SetChecksum(tcp.CalculateChecksum(tu.Src, tu.Dst))
		if _, ok := Classify(x, &p); !ok {
			t.Fatal("not classified")
		}
		if r := Reflect(x, &p); r != NoReply {
			t.Fatalf("flags %#x: Reflect = %d, want NoReply", fl, r)
		}
	}
}

func TestClassifyRejects(t *testing.T) {
	var p header.Parsed
	arp := make([]byte, 60)
	header.Ethernet(arp).SetType(header.EtherTypeARP)
	if _, ok := Classify(arp, &p); ok {
		t.Fatal("ARP classified")
	}
	spec := testSpec(10)
	b := mustBuilder(t, header.ProtocolUDP, FixedSize(64))
	tu := spec.Tuple(1)
	f := make([]byte, 2048)
	f = f[:b.Build(f, &tu, 0, &Mark{Flow: 1})]
	f[ipOff+10] ^= 0xff // IPv4 checksum broken
	if _, ok := Classify(f, &p); ok {
		t.Fatal("bad IPv4 checksum classified")
	}
	if Reflect(f, &p) != NoReply {
		t.Fatal("reflected a frame Parse rejected")
	}
}

func TestRxPathAllocatesNothing(t *testing.T) {
	spec := testSpec(1000)
	b := mustBuilder(t, header.ProtocolTCP, FixedSize(64))
	rec := NewRecorder(8)
	mt := NewMappingTable(1000)
	tu := spec.Tuple(5)
	f := make([]byte, 2048)
	var p header.Parsed
	var seq uint32
	allocs := testing.AllocsPerRun(1000, func() {
		m := Mark{Stream: uint16(seq % 8), Seq: seq, TxNs: 1000, Flow: 5}
		seq++
		x := f[:b.Build(f, &tu, 0, &m)]
		got, _ := Classify(x, &p)
		rec.Observe(&got, len(x), 5000)
		mt.Observe(got.Flow, p.Src, p.SrcPort)
		Reflect(x, &p)
		Classify(x, &p)
		HandshakeAck(x, &p)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
}

func TestRecorder(t *testing.T) {
	r := NewRecorder(3)
	obs := func(stream uint16, seq uint32, lat int64) {
		now := int64(1_000_000)
		m := Mark{Stream: stream, Seq: seq, TxNs: uint64(now - lat)}
		if !r.Observe(&m, 60, now) {
			t.Fatalf("stream %d rejected", stream)
		}
	}
	// Stream 0: 0 1 2 4 3 5 (3 late), 7 (6 lost).
	for _, s := range []uint32{0, 1, 2, 4, 3, 5, 7} {
		obs(0, s, 1000)
	}
	// Stream 1 has reached 2^32-3 (set directly: 4 Gi frames are too
	// many for a test) and crosses the 32-bit wrap: 2^32-2, 2^32-1, 0,
	// 1, then 2^32-1 again (late, from before the wrap).
	r.maxSeq[1] = 1<<32 - 3
	for _, s := range []uint32{1<<32 - 2, 1<<32 - 1, 0, 1, 1<<32 - 1} {
		obs(1, s, 2000)
	}
	if rx, re, hi := r.Stream(0); rx != 7 || re != 1 || hi != 7 {
		t.Fatalf("stream 0: rx %d reordered %d max %d", rx, re, hi)
	}
	if rx, re, hi := r.Stream(1); rx != 5 || re != 1 || hi != 1<<32+1 {
		t.Fatalf("stream 1: rx %d reordered %d max %d", rx, re, hi)
	}
	if rx, _, hi := r.Stream(2); rx != 0 || hi != -1 {
		t.Fatalf("stream 2: rx %d max %d", rx, hi)
	}
	if r.Observe(&Mark{Stream: 3}, 60, 0) || r.BadStream != 1 {
		t.Fatal("stream 3 of 3 accepted")
	}
	late := Mark{Stream: 2, TxNs: 2000}
	r.Observe(&late, 60, 1000)
	if r.ClockSkew != 1 {
		t.Fatal("a stamp after the receive time was not counted as skew")
	}
	l := r.Latency()
	// 7 samples of 1000 ns, 5 of 2000 ns (0.1% resolution).
	if l.Samples != 12 || l.P50 < 999 || l.P50 > 1001 || l.P90 < 1998 || l.P90 > 2002 || l.Max < 1998 || l.Max > 2002 {
		t.Fatalf("latency %+v", l)
	}
	o := NewRecorder(3)
	m := Mark{Stream: 0, Seq: 100, TxNs: 0}
	o.Observe(&m, 60, 500)
	r.Merge(o)
	if rx, _, hi := r.Stream(0); rx != 8 || hi != 100 || r.Latency().Samples != 13 || r.Packets != 14 {
		t.Fatalf("merge: rx %d max %d samples %d packets %d", rx, hi, r.Latency().Samples, r.Packets)
	}
}

func TestMappingTable(t *testing.T) {
	mt := NewMappingTable(10)
	a := [4]byte{198, 18, 0, 1}
	if l, c := mt.Observe(3, a, 4000); !l || c {
		t.Fatal("first sighting not learned")
	}
	if l, c := mt.Observe(3, a, 4000); l || c {
		t.Fatal("same mapping counted again")
	}
	if l, c := mt.Observe(3, a, 4001); l || !c {
		t.Fatal("changed mapping not counted")
	}
	if got, port, ok := mt.Lookup(3); !ok || got != a || port != 4001 {
		t.Fatalf("lookup %v %d %v", got, port, ok)
	}
	if _, _, ok := mt.Lookup(4); ok {
		t.Fatal("unknown flow found")
	}
	if l, c := mt.Observe(10, a, 1); l || c {
		t.Fatal("flow beyond the table recorded")
	}
}

// l4Valid reports whether the parsed frame's IPv4 and TCP/UDP checksums
// verify.
func l4Valid(f []byte, p *header.Parsed) bool {
	if !p.IPv4(f).IsChecksumValid() {
		return false
	}
	switch p.L4 {
	case header.L4UDP:
		u := p.UDP(f)
		return int(u.Length()) == len(u) && u.IsChecksumValid(p.Src, p.Dst)
	case header.L4TCP:
		return p.TCP(f).IsChecksumValid(p.Src, p.Dst)
	}
	return false
}

// FuzzReflect feeds arbitrary frames to the receive path: Classify,
// Reflect and HandshakeAck never panic, and a frame whose checksums were
// valid leaves with valid checksums.
func FuzzReflect(f *testing.F) {
	spec := testSpec(1000)
	for _, proto := range []uint8{header.ProtocolUDP, header.ProtocolTCP} {
		z, _ := ParseSizes("imix")
		b := mustBuilder(f, proto, z)
		for i := range uint32(4) {
			tu := spec.Tuple(i * 97)
			buf := make([]byte, 2048)
			f.Add(buf[:b.Build(buf, &tu, i, &Mark{Stream: 1, Seq: i, TxNs: 7, Flow: i * 97})])
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var p header.Parsed
		frame := append([]byte(nil), in...)
		Classify(frame, &p) // fills p; L4 is set only for a frame Parse accepted
		valid := (p.L4 == header.L4UDP || p.L4 == header.L4TCP) && l4Valid(frame, &p)
		r := Reflect(frame, &p)
		if valid && (r == Echo || r == SynAck) {
			var q header.Parsed
			if header.Parse(frame, &q) != 0 || !l4Valid(frame, &q) {
				t.Fatalf("reflected frame invalid:\nin  % x\nout % x", in, frame)
			}
		}
		frame = append(frame[:0], in...)
		if header.Parse(frame, &p) == 0 {
			if n := HandshakeAck(frame, &p); n > 0 {
				var q header.Parsed
				if header.Parse(frame[:n], &q) != 0 || !l4Valid(frame[:n], &q) {
					t.Fatalf("handshake ACK invalid:\nin  % x\nout % x", in, frame[:n])
				}
			}
		}
	})
}
