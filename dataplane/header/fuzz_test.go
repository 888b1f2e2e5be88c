package header

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/drop"
)

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// l3Reasons are the results for which Parse filled the L3 fields.
var l3Reasons = map[drop.Reason]bool{
	drop.None: true, drop.NonFirstFragment: true, drop.UnsupportedProtocol: true,
	drop.BadL4Header: true, drop.BadICMPChecksum: true, drop.BadEmbeddedPacket: true,
	drop.UnsupportedICMP: true,
}

// checkConsistent re-derives, independently of Parse and from the raw
// bytes, everything p claims, and fails if any claim is inconsistent with
// the frame: an accepted packet's lengths never lie.
func checkConsistent(t *testing.T, frame []byte, p *Parsed, r drop.Reason) {
	t.Helper()
	if len(frame) < 14 {
		if r != drop.Truncated || *p != (Parsed{}) {
			t.Fatalf("short frame: %v %+v", r, p)
		}
		return
	}
	// Link layer.
	et, l3 := be16(frame[12:]), 14
	if et == EtherTypeVLAN || et == EtherTypeQinQ {
		if len(frame) < 18 {
			if r != drop.Truncated {
				t.Fatalf("short tagged frame: %v", r)
			}
			return
		}
		if !p.HasVLAN || p.VLANTCI != be16(frame[14:]) {
			t.Fatalf("VLAN tag not reported: %+v", p)
		}
		et, l3 = be16(frame[16:]), 18
	} else if p.HasVLAN {
		t.Fatal("VLAN reported on an untagged frame")
	}
	if p.EtherType != et || p.L3Off != l3 {
		t.Fatalf("EtherType %#04x L3Off %d, bytes say %#04x %d", p.EtherType, p.L3Off, et, l3)
	}
	if et != EtherTypeIPv4 {
		if r != drop.NotIPv4 || p.End != 0 {
			t.Fatalf("EtherType %#04x: %v", et, r)
		}
		return
	}
	if (p.End != 0) != l3Reasons[r] {
		t.Fatalf("result %v with End %d", r, p.End)
	}
	if r != drop.None && (p.L4 != L4None || p.SrcPort != 0 || p.DstPort != 0 || p.InnerL3Off != 0) {
		t.Fatalf("result %v with transport fields %+v", r, p)
	}
	if p.End == 0 {
		if p.L4Off != 0 || p.TotalLen != 0 || p.Src != [4]byte{} {
			t.Fatalf("result %v with L3 fields %+v", r, p)
		}
		return
	}

	// Network layer.
	ip := frame[l3:]
	hl := int(ip[0]&0x0F) * 4
	tl := int(be16(ip[2:]))
	if ip[0]>>4 != 4 || hl < 20 || tl < hl || l3+tl > len(frame) {
		t.Fatalf("accepted an IPv4 header whose lengths lie: % x", ip[:20])
	}
	if p.L4Off != l3+hl || p.End != l3+tl || int(p.TotalLen) != tl {
		t.Fatalf("offsets %d/%d/%d, bytes say %d/%d", p.L4Off, p.End, p.TotalLen, l3+hl, l3+tl)
	}
	if checksum.Checksum(ip[:hl], 0) != 0xFFFF {
		t.Fatal("accepted a bad header checksum")
	}
	ff := be16(ip[6:])
	if p.TTL != ip[8] || p.Proto != ip[9] || p.IPID != be16(ip[4:]) || p.Src != [4]byte(ip[12:16]) ||
		p.Dst != [4]byte(ip[16:20]) || p.DF != (ff&0x4000 != 0) || p.MF != (ff&0x2000 != 0) ||
		p.FragOff != (ff&0x1FFF)*8 {
		t.Fatalf("L3 fields disagree with the bytes: %+v", p)
	}
	if (r == drop.NonFirstFragment) != (p.FragOff != 0 && r != drop.UnsupportedProtocol) {
		t.Fatalf("result %v with fragment offset %d", r, p.FragOff)
	}
	if r != drop.None {
		return
	}

	// Transport layer of an accepted packet.
	l4 := frame[p.L4Off:p.End]
	switch p.Proto {
	case ProtocolTCP:
		if p.L4 != L4TCP || len(l4) < 20 {
			t.Fatalf("TCP: L4 %v, %d bytes", p.L4, len(l4))
		}
		if off := int(l4[12]>>4) * 4; off < 20 || off > len(l4) {
			t.Fatalf("accepted TCP data offset %d in %d bytes", off, len(l4))
		}
		if p.SrcPort != be16(l4) || p.DstPort != be16(l4[2:]) || p.TCPFlags != l4[13] {
			t.Fatal("TCP fields disagree with the bytes")
		}
		v := p.TCP(frame)
		_, _, _, _, _ = v.Seq(), v.Ack(), v.Window(), v.UrgentPointer(), v.Checksum()
		_, _ = v.Options(), v.Payload()
		_ = v.CalculateChecksum(p.Src, p.Dst)
	case ProtocolUDP:
		if p.L4 != L4UDP || len(l4) < 8 {
			t.Fatalf("UDP: L4 %v, %d bytes", p.L4, len(l4))
		}
		n := int(be16(l4[4:]))
		if n < 8 || (!p.MF && n > len(l4)) {
			t.Fatalf("accepted UDP length %d in %d bytes", n, len(l4))
		}
		if p.SrcPort != be16(l4) || p.DstPort != be16(l4[2:]) {
			t.Fatal("UDP ports disagree with the bytes")
		}
		if !p.MF {
			v := p.UDP(frame)
			_, _ = v.Payload(), v.CalculateChecksum(p.Src, p.Dst)
			_ = v.IsChecksumValid(p.Src, p.Dst)
		}
	case ProtocolICMP:
		if len(l4) < 8 {
			t.Fatalf("ICMP in %d bytes", len(l4))
		}
		if !p.MF && checksum.Checksum(l4, 0) != 0xFFFF {
			t.Fatal("accepted a bad ICMP checksum")
		}
		if p.ICMPType != l4[0] || p.ICMPCode != l4[1] {
			t.Fatal("ICMP type/code disagree with the bytes")
		}
		v := p.ICMPv4(frame)
		_, _, _, _ = v.Seq(), v.MTU(), v.Pointer(), v.Payload()
		switch p.L4 {
		case L4ICMPQuery:
			if !ICMPv4IsQuery(l4[0]) || p.SrcPort != be16(l4[4:]) || p.DstPort != p.SrcPort {
				t.Fatal("ICMP query fields disagree with the bytes")
			}
			if (l4[0] == ICMPv4Timestamp || l4[0] == ICMPv4TimestampReply) && len(l4) < 20 {
				t.Fatal("accepted a short timestamp message")
			}
		case L4ICMPError:
			checkInnerConsistent(t, frame, p)
		default:
			t.Fatalf("ICMP with L4 %v", p.L4)
		}
	default:
		t.Fatalf("accepted protocol %d", p.Proto)
	}
}

func checkInnerConsistent(t *testing.T, frame []byte, p *Parsed) {
	t.Helper()
	l4 := frame[p.L4Off:p.End]
	if !ICMPv4IsError(l4[0]) || p.MF {
		t.Fatalf("accepted ICMP error type %d, MF %v", l4[0], p.MF)
	}
	if p.InnerL3Off != p.L4Off+8 {
		t.Fatalf("InnerL3Off %d, L4Off %d", p.InnerL3Off, p.L4Off)
	}
	in := frame[p.InnerL3Off:p.End]
	if len(in) < 20 {
		t.Fatalf("embedded header in %d bytes", len(in))
	}
	hl := int(in[0]&0x0F) * 4
	if in[0]>>4 != 4 || hl < 20 || p.InnerL4Off != p.InnerL3Off+hl || p.InnerL4Off+8 > p.End ||
		int(be16(in[2:])) < hl+8 || be16(in[6:])&0x1FFF != 0 {
		t.Fatalf("accepted an embedded header whose lengths lie: % x", in[:20])
	}
	if checksum.Checksum(in[:hl], 0) != 0xFFFF {
		t.Fatal("accepted a bad embedded header checksum")
	}
	il4 := frame[p.InnerL4Off:p.End]
	if p.InnerProto != in[9] || p.InnerSrc != [4]byte(in[12:16]) || p.InnerDst != [4]byte(in[16:20]) {
		t.Fatal("embedded L3 fields disagree with the bytes")
	}
	switch p.InnerProto {
	case ProtocolTCP, ProtocolUDP:
		if p.InnerSrcPort != be16(il4) || p.InnerDstPort != be16(il4[2:]) {
			t.Fatal("embedded ports disagree with the bytes")
		}
	case ProtocolICMP:
		if !ICMPv4IsQuery(il4[0]) || p.InnerSrcPort != be16(il4[4:]) || p.InnerDstPort != p.InnerSrcPort {
			t.Fatal("embedded ICMP fields disagree with the bytes")
		}
	default:
		t.Fatalf("accepted embedded protocol %d", p.InnerProto)
	}
	v := p.InnerIPv4(frame)
	_, _, _ = v.Options(), v.IsChecksumValid(), v.CalculateChecksum()
}

func addSeeds(f *testing.F, add func(frame []byte)) {
	for _, c := range goldenCases {
		add(c.frame)
	}
	for _, c := range reasonCases {
		add(c.frame)
	}
}

func FuzzParse(f *testing.F) {
	addSeeds(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		var p Parsed
		r := Parse(frame, &p)
		if r >= drop.NumReasons {
			t.Fatalf("Parse returned %d", r)
		}
		if !bytes.Equal(frame, orig) {
			t.Fatal("Parse modified the frame")
		}
		checkConsistent(t, frame, &p, r)
		// Never reads past the IPv4 total length: whatever follows it,
		// or nothing at all, the answer is the same.
		end := p.End
		if end == 0 {
			if r != drop.NotIPv4 {
				return
			}
			end = len(frame) // L2-only answer: appended bytes change nothing
		}
		for _, tail := range [][]byte{nil, {0xFF}, bytes.Repeat([]byte{0x5A}, 64)} {
			g := cat(frame[:end], tail)
			var q Parsed
			if r2 := Parse(g, &q); r2 != r || q != p {
				t.Fatalf("bytes past End changed the result: %v %+v, was %v %+v", r2, q, r, p)
			}
		}
	})
}

// canonicalize replaces every checksum of a parsed packet by its value
// computed from scratch, where it can be computed: IPv4 header, TCP or UDP
// (present and unfragmented), and for ICMP errors the embedded header, the
// embedded transport checksum when the whole embedded packet is quoted, and
// then the ICMP checksum. It reports what it could make verifiable.
type verifiable struct {
	l4, innerL4 bool
}

func canonicalize(frame []byte, p *Parsed) verifiable {
	var v verifiable
	ip := p.IPv4(frame)
	ip.SetChecksum(ip.CalculateChecksum())
	switch p.L4 {
	case L4TCP:
		if !p.MF {
			t := p.TCP(frame)
			t.SetChecksum(t.CalculateChecksum(p.Src, p.Dst))
			v.l4 = true
		}
	case L4UDP:
		if u := p.UDP(frame); !p.MF && u.HasChecksum() {
			u.SetChecksum(u.CalculateChecksum(p.Src, p.Dst))
			v.l4 = true
		}
	case L4ICMPQuery:
		if !p.MF {
			m := p.ICMPv4(frame)
			m.SetChecksum(m.CalculateChecksum())
			v.l4 = true
		}
	case L4ICMPError:
		in := p.InnerIPv4(frame)
		in.SetChecksum(in.CalculateChecksum())
		l4 := p.InnerL4(frame)
		complete := int(in.TotalLen()) == p.End-p.InnerL3Off && !in.MF()
		if complete {
			switch p.InnerProto {
			case ProtocolTCP:
				if len(l4) >= TCPMinHeaderLen {
					TCP(l4).SetChecksum(TCP(l4).CalculateChecksum(p.InnerSrc, p.InnerDst))
					v.innerL4 = true
				}
			case ProtocolUDP:
				if u := UDP(l4); int(u.Length()) == len(l4) && u.HasChecksum() {
					u.SetChecksum(u.CalculateChecksum(p.InnerSrc, p.InnerDst))
					v.innerL4 = true
				}
			case ProtocolICMP:
				ICMPv4(l4).SetChecksum(ICMPv4(l4).CalculateChecksum())
				v.innerL4 = true
			}
		}
		m := p.ICMPv4(frame)
		m.SetChecksum(m.CalculateChecksum())
		v.l4 = true
	}
	return v
}

// sameField reports whether an incrementally updated checksum field equals
// the one computed from scratch. The only allowed difference is data that
// sums to zero (all zero bytes, possible for a bare ICMP echo reply with
// identifier and sequence 0): from scratch the field is ~0 = 0xFFFF, and
// RFC 1624 Eqn. 3 gives the equivalent +0.
func sameField(got, want uint16) bool {
	return got == want || (want == 0xFFFF && got == 0)
}

// checkChecksums fails unless every checksum canonicalize made verifiable
// still equals its recomputation.
func checkChecksums(t *testing.T, frame []byte, p *Parsed, v verifiable) {
	t.Helper()
	ip := p.IPv4(frame)
	if ip.Checksum() != ip.CalculateChecksum() {
		t.Fatalf("IPv4 checksum %#04x, recompute %#04x", ip.Checksum(), ip.CalculateChecksum())
	}
	switch p.L4 {
	case L4TCP:
		if tc := p.TCP(frame); v.l4 && tc.Checksum() != tc.CalculateChecksum(p.Src, p.Dst) {
			t.Fatalf("TCP checksum %#04x, recompute %#04x", tc.Checksum(), tc.CalculateChecksum(p.Src, p.Dst))
		}
	case L4UDP:
		u := p.UDP(frame)
		if v.l4 && u.Checksum() != u.CalculateChecksum(p.Src, p.Dst) {
			t.Fatalf("UDP checksum %#04x, recompute %#04x", u.Checksum(), u.CalculateChecksum(p.Src, p.Dst))
		}
		if !v.l4 && !p.MF && u.HasChecksum() {
			t.Fatal("an absent UDP checksum appeared")
		}
	case L4ICMPQuery, L4ICMPError:
		if m := p.ICMPv4(frame); v.l4 && !sameField(m.Checksum(), m.CalculateChecksum()) {
			t.Fatalf("ICMP checksum %#04x, recompute %#04x", m.Checksum(), m.CalculateChecksum())
		}
	}
	if p.L4 != L4ICMPError {
		return
	}
	in := p.InnerIPv4(frame)
	if in.Checksum() != in.CalculateChecksum() {
		t.Fatalf("embedded IPv4 checksum %#04x, recompute %#04x", in.Checksum(), in.CalculateChecksum())
	}
	if !v.innerL4 {
		return
	}
	l4 := p.InnerL4(frame)
	var got, want uint16
	switch p.InnerProto {
	case ProtocolTCP:
		got, want = TCP(l4).Checksum(), TCP(l4).CalculateChecksum(p.InnerSrc, p.InnerDst)
	case ProtocolUDP:
		got, want = UDP(l4).Checksum(), UDP(l4).CalculateChecksum(p.InnerSrc, p.InnerDst)
	case ProtocolICMP:
		got, want = ICMPv4(l4).Checksum(), ICMPv4(l4).CalculateChecksum()
	}
	if !sameField(got, want) {
		t.Fatalf("embedded transport checksum %#04x, recompute %#04x", got, want)
	}
}

// FuzzSetters applies a fuzzer-chosen sequence of checksum-fixing setters
// to a parsed packet and checks, after every step, that each checksum equals
// a recomputation from scratch and that the frame still parses to what the
// Parsed says.
func FuzzSetters(f *testing.F) {
	addSeeds(f, func(b []byte) {
		f.Add(b, []byte{0, 10, 1, 2, 3, 0x12, 0x34, 1, 192, 168, 0, 1, 0xff, 0xff})
		f.Add(b, []byte{2, 10, 0, 0, 2, 0x14, 0xe9, 3, 1, 1, 1, 1, 0, 53, 4, 0, 0, 0, 0, 0, 0})
	})
	f.Fuzz(func(t *testing.T, frame []byte, ops []byte) {
		frame = bytes.Clone(frame)
		var p Parsed
		r := Parse(frame, &p)
		if r != drop.None && r != drop.NonFirstFragment {
			return
		}
		v := canonicalize(frame, &p)
		// Canonical checksums must not change what Parse says.
		var q Parsed
		if r2 := Parse(frame, &q); r2 != r || q != p {
			t.Fatalf("canonicalized frame parses as %v %+v", r2, q)
		}
		checkChecksums(t, frame, &p, v)

		for len(ops) >= 7 {
			op, addr, port := ops[0], [4]byte(ops[1:5]), be16(ops[5:7])
			ops = ops[7:]
			viaParsed := true
			switch op % 10 {
			case 0:
				p.SetSrc(frame, addr, port)
			case 1:
				p.SetDst(frame, addr, port)
			case 2:
				p.SetInnerSrc(frame, addr, port)
			case 3:
				p.SetInnerDst(frame, addr, port)
			case 4:
				p.DecTTL(frame)
			case 5:
				p.IPv4(frame).SetIDFix(port)
				viaParsed = false
			case 6: // SetSrc the slow way, one field at a time
				setPiecewise(frame, &p, ipv4Src, addr, tcpSrcPort, port)
				viaParsed = false
			case 7:
				setPiecewise(frame, &p, ipv4Dst, addr, tcpDstPort, port)
				viaParsed = false
			default:
				// Rewrite fields to the values they already have (the case
				// of RFC 1624 errata 4782): the checksums must not break.
				p.SetSrc(frame, p.Src, p.SrcPort)
				p.SetInnerDst(frame, p.InnerDst, p.InnerDstPort)
			}
			var q Parsed
			if r2 := Parse(frame, &q); r2 != r {
				t.Fatalf("after op %d the frame parses as %v, was %v", op%10, r2, r)
			}
			if viaParsed && q != p {
				t.Fatalf("after op %d Parsed is out of step:\n%+v\nre-parse\n%+v", op%10, p, q)
			}
			p = q
			checkChecksums(t, frame, &p, v)
		}
	})
}

// setPiecewise is the oracle for Parsed.SetSrc and SetDst: the same rewrite
// of the address at addrOff and the port at portOff, done one field and one
// RFC 1624 update at a time (address, then port), where the rewriter folds
// the transport checksum update into one. The IPv4 header checksum is fixed
// by the view setters. An ICMP query's identifier changes only with the
// source, as the tests have always done it.
func setPiecewise(frame []byte, p *Parsed, addrOff int, addr [4]byte, portOff int, port uint16) {
	ip := p.IPv4(frame)
	old := [4]byte(ip[addrOff:])
	if addrOff == ipv4Src {
		ip.SetSrcFix(addr)
	} else {
		ip.SetDstFix(addr)
	}
	var ck []byte
	update32, update16 := checksum.Update32, checksum.Update16
	switch p.L4 {
	case L4TCP:
		ck = frame[p.L4Off+tcpChecksum:]
	case L4UDP:
		ck = frame[p.L4Off+udpChecksum:]
		update32, update16 = checksum.UpdateUDP32, checksum.UpdateUDP16
	case L4ICMPQuery:
		if addrOff == ipv4Src {
			p.ICMPv4(frame).SetIdentFix(port)
		}
		return
	default:
		return
	}
	l4 := frame[p.L4Off:]
	c := update32(be16(ck), old, addr)
	c = update16(c, be16(l4[portOff:]), port)
	binary.BigEndian.PutUint16(ck, c)
	binary.BigEndian.PutUint16(l4[portOff:], port)
}
