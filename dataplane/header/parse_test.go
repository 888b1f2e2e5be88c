package header

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/drop"
)

// fixIPv4 recomputes the header checksum of the IPv4 header at off.
func fixIPv4(b []byte, off int) {
	ip := IPv4(b[off:])
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())
}

// fixICMP recomputes the checksum of the ICMP message at off..end.
func fixICMP(b []byte, off, end int) {
	m := ICMPv4(b[off:end])
	m.SetChecksum(0)
	m.SetChecksum(m.CalculateChecksum())
}

// variant clones frame, applies edit, then recomputes the checksums named
// in fix so that only the intended defect remains.
func variant(frame []byte, edit func(b []byte), fix ...func(b []byte)) []byte {
	b := bytes.Clone(frame)
	edit(b)
	for _, f := range fix {
		f(b)
	}
	return b
}

var (
	fixOuter = func(b []byte) { fixIPv4(b, 14) }
	// For the untagged ICMP goldens: the ICMP message starts at 34 and the
	// frame has no padding.
	fixOuterICMP = func(b []byte) { fixICMP(b, 34, len(b)) }
	fixInner     = func(b []byte) { fixIPv4(b, 42) }
)

func be16put(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }

// parsed returns a copy of frame, which must parse as a translatable
// packet, and its parse: the set-up of every test and benchmark that
// rewrites a golden frame.
func parsed(tb testing.TB, frame []byte) ([]byte, *Parsed) {
	tb.Helper()
	f := bytes.Clone(frame)
	return f, parseAs(tb, f, drop.None)
}

// parseAs parses frame and fails the test unless Parse returns want.
func parseAs(tb testing.TB, frame []byte, want drop.Reason) *Parsed {
	tb.Helper()
	p := new(Parsed)
	if r := Parse(frame, p); r != want {
		tb.Fatalf("Parse = %v, want %v", r, want)
	}
	return p
}

// setTotalLen cuts the IPv4 packet at 14 to n bytes (header included) and
// shortens the frame to match.
func setTotalLen(n int) func(b []byte) {
	return func(b []byte) { be16put(b[16:], uint16(n)) }
}

type reasonCase struct {
	name   string
	frame  []byte
	reason drop.Reason
}

// reasonCases reaches every return statement of Parse. The coverage report
// (go test -cover) shows parse.go's Parse path fully covered by it.
var reasonCases = []reasonCase{
	// Link layer.
	{"empty", nil, drop.Truncated},
	{"short-ethernet", goldenUDP[:13], drop.Truncated},
	{"short-vlan", goldenVLAN[:17], drop.Truncated},
	{"arp", goldenARP, drop.NotIPv4},
	{"ipv6", variant(goldenUDP, func(b []byte) { be16put(b[12:], EtherTypeIPv6) }), drop.NotIPv4},
	{"vlan-arp", variant(goldenVLAN, func(b []byte) { be16put(b[16:], EtherTypeARP) }), drop.NotIPv4},
	{"stacked-vlan", variant(goldenVLAN, func(b []byte) {
		be16put(b[12:], EtherTypeQinQ)
		be16put(b[16:], EtherTypeVLAN)
	}), drop.NotIPv4},
	{"qinq-single-tag", variant(goldenVLAN, func(b []byte) { be16put(b[12:], EtherTypeQinQ) }), drop.None},

	// IPv4 header.
	{"short-ipv4", goldenUDP[:14+19], drop.Truncated},
	{"version-6", variant(goldenUDP, func(b []byte) { b[14] = 0x65 }, fixOuter), drop.BadVersion},
	{"ihl-4", variant(goldenUDP, func(b []byte) { b[14] = 0x44 }), drop.BadIHL},
	{"ihl-beyond-frame", variant(goldenUDP, func(b []byte) { b[14] = 0x4f }), drop.BadIHL},
	{"total-length-below-ihl", variant(goldenUDP, setTotalLen(19), fixOuter), drop.BadTotalLength},
	{"total-length-below-options", variant(goldenIPOptions, setTotalLen(23), fixOuter), drop.BadTotalLength},
	{"total-length-beyond-frame", variant(goldenUDP, setTotalLen(47), fixOuter), drop.BadTotalLength},
	{"header-checksum", variant(goldenUDP, func(b []byte) { b[22]-- }), drop.BadHeaderChecksum},
	{"options-checksum", variant(goldenIPOptions, func(b []byte) { b[35] = 1 }), drop.BadHeaderChecksum},
	{"gre", variant(goldenUDP, func(b []byte) { b[23] = 47 }, fixOuter), drop.UnsupportedProtocol},
	{"gre-fragment", variant(goldenNextFrag, func(b []byte) { b[23] = 47 }, fixOuter), drop.UnsupportedProtocol},
	{"non-first-fragment", goldenNextFrag, drop.NonFirstFragment},
	{"header-only", variant(goldenUDP, setTotalLen(20), fixOuter), drop.BadL4Header},

	// TCP.
	{"tcp-truncated", variant(goldenTCPSYN, setTotalLen(20+19), fixOuter), drop.BadL4Header},
	{"tcp-data-offset-4", variant(goldenTCPSYN, func(b []byte) { b[46] = 0x42 }), drop.BadL4Header},
	{"tcp-data-offset-beyond", variant(goldenTCPSYN, func(b []byte) { b[46] = 0x72 }), drop.BadL4Header},
	{"tcp-data-offset-15", variant(goldenTCPSYN, func(b []byte) { b[46] = 0xf2 }), drop.BadL4Header},
	{"tcp-options-exact", variant(goldenTCPSYN, setTotalLen(20+24), fixOuter), drop.None},

	// UDP.
	{"udp-truncated", variant(goldenUDP, setTotalLen(20+7), fixOuter), drop.BadL4Header},
	{"udp-length-7", variant(goldenUDP, func(b []byte) { be16put(b[38:], 7) }), drop.BadL4Header},
	{"udp-length-beyond", variant(goldenUDP, func(b []byte) { be16put(b[38:], 13) }), drop.BadL4Header},
	{"udp-length-short", variant(goldenUDP, func(b []byte) { be16put(b[38:], 8) }), drop.None},
	{"udp-first-fragment-length-7", variant(goldenFirstFrag, func(b []byte) { be16put(b[38:], 7) }), drop.BadL4Header},

	// ICMP.
	{"icmp-truncated", variant(goldenEcho, setTotalLen(20+7), fixOuter), drop.BadL4Header},
	{"icmp-checksum", variant(goldenEcho, func(b []byte) { b[45]++ }), drop.BadICMPChecksum},
	{"icmp-redirect", variant(goldenPortUnreach, func(b []byte) { b[34] = ICMPv4Redirect }, fixOuterICMP), drop.UnsupportedICMP},
	{"icmp-source-quench", variant(goldenPortUnreach, func(b []byte) { b[34] = ICMPv4SourceQuench }, fixOuterICMP), drop.UnsupportedICMP},
	// A 20-byte timestamp request: the Ethernet padding becomes its
	// timestamps.
	{"icmp-timestamp", variant(goldenEcho, func(b []byte) {
		b[34] = ICMPv4Timestamp
		be16put(b[16:], 20+20)
	}, fixOuter, func(b []byte) { fixICMP(b, 34, 14+40) }), drop.None},
	{"icmp-timestamp-short", variant(goldenEcho, func(b []byte) {
		b[34] = ICMPv4Timestamp
		be16put(b[16:], 20+19)
	}, fixOuter, func(b []byte) { fixICMP(b, 34, 14+39) }), drop.BadL4Header},
	// A first fragment of a big echo: the checksum cannot be verified,
	// even a wrong one is accepted.
	{"icmp-echo-first-fragment", variant(goldenEcho, func(b []byte) {
		b[20] |= 0x20
		b[45]++
	}, fixOuter), drop.None},
	{"icmp-error-fragmented", variant(goldenPortUnreach, func(b []byte) { b[20] |= 0x20 }, fixOuter), drop.UnsupportedICMP},

	// ICMP errors: the embedded packet.
	{"embedded-short", variant(goldenPortUnreach, setTotalLen(20+8+19), fixOuter, func(b []byte) { fixICMP(b, 34, 14+47) }), drop.BadEmbeddedPacket},
	{"embedded-no-l4", variant(goldenPortUnreach, setTotalLen(20+8+20+7), fixOuter, func(b []byte) { fixICMP(b, 34, 14+55) }), drop.BadEmbeddedPacket},
	{"embedded-l4-8-bytes", variant(goldenPortUnreach, setTotalLen(20+8+20+8), fixOuter, func(b []byte) { fixICMP(b, 34, 14+56) }), drop.None},
	{"embedded-version-6", variant(goldenPortUnreach, func(b []byte) { b[42] = 0x65 }, fixInner, fixOuterICMP), drop.BadEmbeddedPacket},
	{"embedded-ihl-4", variant(goldenPortUnreach, func(b []byte) { b[42] = 0x44 }, fixOuterICMP), drop.BadEmbeddedPacket},
	{"embedded-ihl-beyond", variant(goldenPortUnreach, func(b []byte) { b[42] = 0x47 }, fixOuterICMP), drop.BadEmbeddedPacket},
	{"embedded-checksum", variant(goldenPortUnreach, func(b []byte) { b[50]++ }, fixOuterICMP), drop.BadEmbeddedPacket},
	{"embedded-total-length", variant(goldenPortUnreach, func(b []byte) { be16put(b[44:], 27) }, fixInner, fixOuterICMP), drop.BadEmbeddedPacket},
	{"embedded-fragment", variant(goldenPortUnreach, func(b []byte) { be16put(b[48:], 3) }, fixInner, fixOuterICMP), drop.UnsupportedICMP},
	{"embedded-gre", variant(goldenPortUnreach, func(b []byte) { b[51] = 47 }, fixInner, fixOuterICMP), drop.UnsupportedProtocol},
	{"embedded-icmp-error", variant(goldenTimeExceeded, func(b []byte) { b[62] = ICMPv4DstUnreachable }, fixOuterICMP), drop.BadEmbeddedPacket},
	{"embedded-first-fragment", variant(goldenPortUnreach, func(b []byte) { b[48] |= 0x20 }, fixInner, fixOuterICMP), drop.None},
}

func TestParseReasons(t *testing.T) {
	for _, c := range reasonCases {
		t.Run(c.name, func(t *testing.T) {
			checkConsistent(t, c.frame, parseAs(t, c.frame, c.reason), c.reason)
		})
	}
}

// TestParseAllocatesNothing checks every return path: every golden and
// every defective variant.
func TestParseAllocatesNothing(t *testing.T) {
	var frames [][]byte
	for _, c := range reasonCases {
		frames = append(frames, c.frame)
	}
	for _, c := range goldenCases {
		frames = append(frames, c.frame)
	}
	seen := map[drop.Reason]bool{}
	var p Parsed
	for _, f := range frames {
		seen[Parse(f, &p)] = true
		if n := testing.AllocsPerRun(100, func() { Parse(f, &p) }); n != 0 {
			t.Errorf("Parse(% x) allocates %v times", f, n)
		}
	}
	for _, r := range []drop.Reason{
		drop.None, drop.Truncated, drop.NotIPv4, drop.BadVersion, drop.BadIHL, drop.BadTotalLength,
		drop.BadHeaderChecksum, drop.UnsupportedProtocol, drop.NonFirstFragment, drop.BadL4Header,
		drop.BadICMPChecksum, drop.BadEmbeddedPacket, drop.UnsupportedICMP,
	} {
		if !seen[r] {
			t.Errorf("no allocation test reaches %v", r)
		}
	}
}

func TestParseResetsState(t *testing.T) {
	// A Parsed reused from a previous, richer packet must not keep stale
	// fields.
	var p Parsed
	Parse(goldenFragNeeded, &p)
	Parse(goldenARP, &p)
	if p != (Parsed{EtherType: EtherTypeARP, L3Off: 14}) {
		t.Fatalf("stale fields after re-Parse: %+v", p)
	}
}

func TestParseIgnoresPadding(t *testing.T) {
	for _, c := range goldenCases {
		var p Parsed
		r := Parse(c.frame, &p)
		if p.End == 0 {
			continue
		}
		padded := cat(c.frame[:p.End], bytes.Repeat([]byte{0xA5}, 100))
		var q Parsed
		if r2 := Parse(padded, &q); r2 != r || q != p {
			t.Errorf("%s: garbage padding changed the result: %v %+v", c.name, r2, q)
		}
		var e Parsed
		if r3 := Parse(c.frame[:p.End], &e); r3 != r || e != p {
			t.Errorf("%s: stripping the padding changed the result: %v %+v", c.name, r3, e)
		}
		if r == drop.None && p.End < len(c.frame) {
			var s Parsed
			if Parse(c.frame[:p.End-1], &s) != drop.BadTotalLength {
				t.Errorf("%s: a frame one byte short of its total length was not BadTotalLength", c.name)
			}
		}
	}
}

func TestDecTTL(t *testing.T) {
	f, p := parsed(t, goldenUDP)
	for ttl := 64; ttl > 1; ttl-- {
		if r := p.DecTTL(f); r != drop.None {
			t.Fatalf("DecTTL at %d = %v", ttl, r)
		}
		ip := p.IPv4(f)
		if int(ip.TTL()) != ttl-1 || p.TTL != ip.TTL() {
			t.Fatalf("TTL %d, Parsed %d, want %d", ip.TTL(), p.TTL, ttl-1)
		}
		if got, want := ip.Checksum(), ip.CalculateChecksum(); got != want {
			t.Fatalf("TTL %d: checksum %#04x, recompute %#04x", ttl-1, got, want)
		}
	}
	before := bytes.Clone(f)
	if r := p.DecTTL(f); r != drop.TTLExpired {
		t.Fatalf("DecTTL at TTL 1 = %v, want TTLExpired", r)
	}
	if !bytes.Equal(f, before) {
		t.Fatal("DecTTL modified a frame whose TTL expired")
	}
	f[22] = 0
	fixOuter(f)
	Parse(f, p)
	if r := p.DecTTL(f); r != drop.TTLExpired {
		t.Fatalf("DecTTL at TTL 0 = %v", r)
	}
	// Parse itself never judges the TTL.
	var q Parsed
	if r := Parse(goldenIPOptions, &q); r != drop.None || q.TTL != 1 {
		t.Fatalf("Parse of a TTL-1 packet = %v, TTL %d", r, q.TTL)
	}
	if n := testing.AllocsPerRun(100, func() { q.DecTTL(goldenIPOptions) }); n != 0 {
		t.Errorf("DecTTL allocates %v times on TTLExpired", n)
	}
}

func TestDecTTLFixAllTTLsAndProtocols(t *testing.T) {
	// Exhaustive over the (TTL, protocol) word: the incremental fix equals a
	// recomputation for every starting TTL, including results of 0x0000.
	h := IPv4(bytes.Clone(goldenUDP[14:34]))
	zero := 0
	for ttl := 2; ttl < 256; ttl++ {
		for proto := 0; proto < 256; proto++ {
			h.SetTTL(uint8(ttl))
			h.SetProtocol(uint8(proto))
			h.SetChecksum(0)
			h.SetChecksum(h.CalculateChecksum())
			h.DecTTLFix()
			if got, want := h.Checksum(), h.CalculateChecksum(); got != want {
				t.Fatalf("TTL %d proto %d: %#04x, recompute %#04x", ttl, proto, got, want)
			}
			if h.Checksum() == 0 {
				zero++
			}
		}
	}
	t.Logf("%d results were 0x0000", zero)
}

func TestViewSettersMatchRecompute(t *testing.T) {
	src, dst := [4]byte{192, 0, 2, 1}, [4]byte{198, 51, 100, 200}
	t.Run("ipv4", func(t *testing.T) {
		f := bytes.Clone(goldenIPOptions)
		ip := IPv4(f[14:38])
		ip.SetSrcFix(src)
		ip.SetDstFix(dst)
		ip.SetIDFix(0xbeef)
		if !ip.IsChecksumValid() || ip.Checksum() != ip.CalculateChecksum() || ip.Src() != src || ip.Dst() != dst || ip.ID() != 0xbeef {
			t.Fatal("IPv4 Fix setters broke the header checksum or the fields")
		}
	})
	t.Run("tcp", func(t *testing.T) {
		f, p := parsed(t, goldenVLAN)
		setPiecewise(f, p, ipv4Src, src, tcpSrcPort, 1)
		setPiecewise(f, p, ipv4Dst, dst, tcpDstPort, 65535)
		tc := p.TCP(f)
		if !tc.IsChecksumValid(src, dst) || tc.Checksum() != tc.CalculateChecksum(src, dst) || tc.SrcPort() != 1 || tc.DstPort() != 65535 {
			t.Fatal("piecewise updates broke the TCP checksum or the ports")
		}
	})
	t.Run("udp", func(t *testing.T) {
		for _, g := range [][]byte{goldenUDP, goldenUDPNoCsum} {
			f, p := parsed(t, g)
			u := p.UDP(f)
			had := u.HasChecksum()
			setPiecewise(f, p, ipv4Src, src, tcpSrcPort, 7)
			setPiecewise(f, p, ipv4Dst, dst, tcpDstPort, 8)
			if u.HasChecksum() != had {
				t.Fatalf("checksum presence changed from %v", had)
			}
			if !u.IsChecksumValid(src, dst) || (had && u.Checksum() != u.CalculateChecksum(src, dst)) || u.SrcPort() != 7 || u.DstPort() != 8 {
				t.Fatal("piecewise updates broke the UDP checksum or the ports")
			}
		}
	})
	t.Run("icmp", func(t *testing.T) {
		f, p := parsed(t, goldenEcho)
		m := p.ICMPv4(f)
		m.SetIdentFix(0xffff)
		if !m.IsChecksumValid() || m.Checksum() != m.CalculateChecksum() || m.Ident() != 0xffff {
			t.Fatal("ICMP SetIdentFix broke the checksum")
		}
	})
}

func TestUDPComputedZeroIsSentAsOnes(t *testing.T) {
	// Find a source port that makes the UDP sum negative zero, rewrite to
	// it, and check the field is 0xFFFF (RFC 768), not 0 ("no checksum").
	f, p := parsed(t, goldenUDP)
	u := p.UDP(f)
	// Sum of everything but the source port and the checksum field.
	s := checksum.PseudoHeaderSum(p.Src, p.Dst, ProtocolUDP, u.Length())
	s = checksum.Checksum(u[2:6], s)
	s = checksum.Checksum(u[8:u.Length()], s)
	port := 0xFFFF - s
	p.SetSrc(f, p.Src, port)
	if u.Checksum() != 0xFFFF {
		t.Fatalf("UDP checksum after rewrite = %#04x, want 0xffff", u.Checksum())
	}
	if u.CalculateChecksum(p.Src, p.Dst) != 0xFFFF || !u.IsChecksumValid(p.Src, p.Dst) {
		t.Fatal("recompute disagrees")
	}
}

func TestEncodeIPv4(t *testing.T) {
	// Encode the header of goldenEcho and compare.
	b := make([]byte, 20)
	IPv4(b).Encode(&IPv4Fields{TotalLen: 36, ID: 2, TTL: 64, Protocol: ProtocolICMP, Src: inside, Dst: [4]byte{1, 1, 1, 1}})
	if !bytes.Equal(b, goldenEcho[14:34]) {
		t.Fatalf("Encode wrote % x\nwant        % x", b, goldenEcho[14:34])
	}
	IPv4(b).SetFlagsFragment(true, true, 1480)
	if ip := IPv4(b); !ip.DF() || !ip.MF() || ip.FragmentOffset() != 1480 {
		t.Fatal("SetFlagsFragment round trip")
	}
}

func TestRewritesAllocateNothing(t *testing.T) {
	f, p := parsed(t, goldenFragNeeded)
	if n := testing.AllocsPerRun(100, func() {
		p.SetDst(f, inside2, 0)
		p.SetInnerSrc(f, inside2, 40000)
		p.SetDst(f, external, 0)
		p.SetInnerSrc(f, external, 1024)
	}); n != 0 {
		t.Errorf("ICMP error rewrite allocates %v times", n)
	}
	g := bytes.Clone(goldenTCPSYN)
	Parse(g, p)
	if n := testing.AllocsPerRun(100, func() {
		p.SetSrc(g, external, 1024)
		p.SetSrc(g, inside2, 40000)
		p.DecTTL(g)
	}); n != 0 {
		t.Errorf("TCP rewrite allocates %v times", n)
	}
}

// TestBuildWithSetters writes headers field by field with the plain setters
// and compares with the golden bytes.
func TestBuildWithSetters(t *testing.T) {
	b := make([]byte, len(goldenVLAN))
	copy(b[18:], goldenVLAN[18:])
	e := Ethernet(b)
	e.SetDst([6]byte(goldenVLAN[0:6]))
	e.SetSrc([6]byte(goldenVLAN[6:12]))
	e.SetType(EtherTypeVLAN)
	v := VLAN(b[14:18])
	v.SetTCI(0xF000 | 0x0FFF)
	v.SetID(100 | 0xF000) // high bits ignored, PCP and DEI kept
	if v.ID() != 100 || v.PCP() != 7 || !v.DEI() {
		t.Fatalf("SetID: TCI %#04x", v.TCI())
	}
	v.SetTCI(3<<13 | 100)
	v.SetEtherType(EtherTypeIPv4)
	if !bytes.Equal(b, goldenVLAN) || e.Type() != EtherTypeVLAN || v.DEI() {
		t.Fatalf("built\n% x\nwant\n% x", b, goldenVLAN)
	}

	// The ICMP header of goldenFragNeeded.
	m := ICMPv4(bytes.Clone(goldenFragNeeded[34:86]))
	copy(m[:8], make([]byte, 8))
	m.SetType(ICMPv4DstUnreachable)
	m.SetCode(ICMPv4FragNeeded)
	m.SetRest(0xdeadbeef)
	m.SetRest(0)
	m.SetMTU(1400)
	m.SetChecksum(m.CalculateChecksum())
	if !bytes.Equal(m, goldenFragNeeded[34:86]) {
		t.Fatalf("built ICMP\n% x\nwant\n% x", m, goldenFragNeeded[34:86])
	}
	e2 := ICMPv4(bytes.Clone(goldenEcho[34:50]))
	e2.SetSeq(7)
	if e2.Seq() != 7 || e2.Ident() != 0x1234 {
		t.Fatal("SetSeq")
	}

	ip := IPv4(bytes.Clone(goldenUDP[14:46]))
	if ip.Version() != 4 || ip.TOS() != 0 || len(ip.Options()) != 0 || len(ip.Payload()) != 12 {
		t.Fatal("IPv4 accessors")
	}
	want := checksum.PseudoHeaderSum(inside, [4]byte{8, 8, 8, 8}, ProtocolUDP, 12)
	if ip.PseudoHeaderSum() != want {
		t.Fatalf("PseudoHeaderSum %#04x, want %#04x", ip.PseudoHeaderSum(), want)
	}
	ip.SetTOS(0xb8)
	if ip.TOS() != 0xb8 {
		t.Fatal("SetTOS")
	}
	u := UDP(ip.Payload())
	u.SetLength(10)
	if len(u.Payload()) != 2 {
		t.Fatal("SetLength")
	}
}
