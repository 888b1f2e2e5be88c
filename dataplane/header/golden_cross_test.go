package header

import (
	"bytes"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/drop"
)

var (
	inside   = [4]byte{10, 0, 0, 2}
	inside2  = [4]byte{192, 168, 1, 10}
	external = [4]byte{203, 0, 113, 5}
)

type goldenCase struct {
	name   string
	frame  []byte
	reason drop.Reason
	want   Parsed
	// translate, when set, is the NAT rewrite; after is the expected frame.
	translate func(p *Parsed, f []byte)
	after     []byte
}

var goldenCases = []goldenCase{
	{
		name: "tcp-syn", frame: goldenTCPSYN,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 64, Proto: ProtocolTCP, DF: true, IPID: 0x1c46, TotalLen: 44,
			Src: inside2, Dst: [4]byte{93, 184, 216, 34},
			L3Off: 14, L4Off: 34, End: 58,
			L4: L4TCP, SrcPort: 40000, DstPort: 443, TCPFlags: TCPFlagSYN,
		},
		translate: func(p *Parsed, f []byte) { p.SetSrc(f, external, 1024) },
		after:     goldenTCPSYNSNAT,
	},
	{
		name: "udp", frame: goldenUDP,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 64, Proto: ProtocolUDP, IPID: 1, TotalLen: 32,
			Src: inside, Dst: [4]byte{8, 8, 8, 8},
			L3Off: 14, L4Off: 34, End: 46,
			L4: L4UDP, SrcPort: 5353, DstPort: 53,
		},
		translate: func(p *Parsed, f []byte) { p.SetSrc(f, external, 2000) },
		after:     goldenUDPSNAT,
	},
	{
		name: "udp-no-checksum", frame: goldenUDPNoCsum,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 64, Proto: ProtocolUDP, IPID: 1, TotalLen: 32,
			Src: inside, Dst: [4]byte{8, 8, 8, 8},
			L3Off: 14, L4Off: 34, End: 46,
			L4: L4UDP, SrcPort: 5353, DstPort: 53,
		},
		translate: func(p *Parsed, f []byte) { p.SetSrc(f, external, 2000) },
		after:     goldenUDPNoCsumSNAT,
	},
	{
		name: "icmp-echo", frame: goldenEcho,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 64, Proto: ProtocolICMP, IPID: 2, TotalLen: 36,
			Src: inside, Dst: [4]byte{1, 1, 1, 1},
			L3Off: 14, L4Off: 34, End: 50,
			L4: L4ICMPQuery, SrcPort: 0x1234, DstPort: 0x1234, ICMPType: ICMPv4Echo,
		},
		translate: func(p *Parsed, f []byte) { p.SetSrc(f, external, 0x0400) },
		after:     goldenEchoSNAT,
	},
	{
		name: "icmp-port-unreachable", frame: goldenPortUnreach,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 64, Proto: ProtocolICMP, IPID: 3, TotalLen: 60,
			Src: [4]byte{8, 8, 8, 8}, Dst: external,
			L3Off: 14, L4Off: 34, End: 74,
			L4: L4ICMPError, ICMPType: ICMPv4DstUnreachable, ICMPCode: ICMPv4PortUnreachable,
			InnerProto: ProtocolUDP, InnerSrc: external, InnerDst: [4]byte{8, 8, 8, 8},
			InnerSrcPort: 2000, InnerDstPort: 53, InnerL3Off: 42, InnerL4Off: 62,
		},
		translate: func(p *Parsed, f []byte) {
			p.SetDst(f, inside, 0)
			p.SetInnerSrc(f, inside, 5353)
		},
		after: goldenPortUnreachDNAT,
	},
	{
		name: "ip-options", frame: goldenIPOptions,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 1, Proto: ProtocolUDP, IPID: 4, TotalLen: 34,
			Src: inside, Dst: [4]byte{224, 0, 0, 22},
			L3Off: 14, L4Off: 38, End: 48,
			L4: L4UDP, SrcPort: 1000, DstPort: 2000,
		},
	},
	{
		name: "vlan", frame: goldenVLAN,
		want: Parsed{
			EtherType: EtherTypeIPv4, HasVLAN: true, VLANTCI: 0x6064,
			TTL: 128, Proto: ProtocolTCP, IPID: 5, TotalLen: 45,
			Src: [4]byte{172, 16, 0, 9}, Dst: [4]byte{198, 51, 100, 7},
			L3Off: 18, L4Off: 38, End: 63,
			L4: L4TCP, SrcPort: 51000, DstPort: 80, TCPFlags: TCPFlagPSH | TCPFlagACK,
		},
		translate: func(p *Parsed, f []byte) { p.SetDst(f, inside2, 8080) },
		after:     goldenVLANDNAT,
	},
	{
		name: "first-fragment", frame: goldenFirstFrag,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 64, Proto: ProtocolUDP, MF: true, IPID: 0x0abc, TotalLen: 44,
			Src: inside, Dst: [4]byte{8, 8, 4, 4},
			L3Off: 14, L4Off: 34, End: 58,
			L4: L4UDP, SrcPort: 4000, DstPort: 4001,
		},
	},
	{
		name: "non-first-fragment", frame: goldenNextFrag, reason: drop.NonFirstFragment,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 64, Proto: ProtocolUDP, FragOff: 24, IPID: 0x0abc, TotalLen: 36,
			Src: inside, Dst: [4]byte{8, 8, 4, 4},
			L3Off: 14, L4Off: 34, End: 50,
		},
	},
	{
		name: "icmp-frag-needed", frame: goldenFragNeeded,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 250, Proto: ProtocolICMP, IPID: 0x7777, TotalLen: 72,
			Src: [4]byte{198, 51, 100, 1}, Dst: external,
			L3Off: 14, L4Off: 34, End: 86,
			L4: L4ICMPError, ICMPType: ICMPv4DstUnreachable, ICMPCode: ICMPv4FragNeeded,
			InnerProto: ProtocolTCP, InnerSrc: external, InnerDst: [4]byte{93, 184, 216, 34},
			InnerSrcPort: 1024, InnerDstPort: 443, InnerL3Off: 42, InnerL4Off: 62,
		},
		translate: func(p *Parsed, f []byte) {
			p.SetDst(f, inside2, 0)
			p.SetInnerSrc(f, inside2, 40000)
		},
		after: goldenFragNeededDNAT,
	},
	{
		name: "icmp-time-exceeded-echo", frame: goldenTimeExceeded,
		want: Parsed{
			EtherType: EtherTypeIPv4, TTL: 255, Proto: ProtocolICMP, IPID: 9, TotalLen: 56,
			Src: [4]byte{198, 51, 100, 1}, Dst: external,
			L3Off: 14, L4Off: 34, End: 70,
			L4: L4ICMPError, ICMPType: ICMPv4TimeExceeded, ICMPCode: ICMPv4TTLExceeded,
			InnerProto: ProtocolICMP, InnerSrc: external, InnerDst: [4]byte{1, 1, 1, 1},
			InnerSrcPort: 0x0400, InnerDstPort: 0x0400, InnerL3Off: 42, InnerL4Off: 62,
		},
		translate: func(p *Parsed, f []byte) {
			p.SetDst(f, inside, 0)
			p.SetInnerSrc(f, inside, 0x1234)
		},
		after: goldenTimeExceededDNAT,
	},
	{
		name: "arp", frame: goldenARP, reason: drop.NotIPv4,
		want: Parsed{EtherType: EtherTypeARP, L3Off: 14},
	},
}

func TestGoldenParse(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			p := parseAs(t, c.frame, c.reason)
			if *p != c.want {
				t.Fatalf("Parse filled\n%+v\nwant\n%+v", *p, c.want)
			}
			crossCheck(t, c.frame, p)
		})
	}
}

func TestGoldenTranslate(t *testing.T) {
	for _, c := range goldenCases {
		if c.translate == nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			f, p := parsed(t, c.frame)
			c.translate(p, f)
			if !bytes.Equal(f, c.after) {
				t.Fatalf("after translation\n% x\nwant\n% x", f, c.after)
			}
			// The frame still parses, to what p now says.
			q := parseAs(t, f, drop.None)
			if *q != *p {
				t.Fatalf("Parsed out of step with the frame:\n%+v\nre-parse\n%+v", *p, *q)
			}
			crossCheck(t, f, q)
		})
	}
}

// TestGoldenFragmentsTranslate rewrites the source of both fragments and
// checks that the reassembled datagram's UDP checksum verifies: the first
// fragment carries the checksum for the whole datagram, and the non-first
// fragment only needs its IPv4 header fixed.
func TestGoldenFragmentsTranslate(t *testing.T) {
	f1, f2 := bytes.Clone(goldenFirstFrag), bytes.Clone(goldenNextFrag)
	p1, p2 := parseAs(t, f1, drop.None), parseAs(t, f2, drop.NonFirstFragment)
	p1.SetSrc(f1, external, 2000)
	p2.SetSrc(f2, external, 9999) // port ignored: no transport header here
	for i, f := range [][]byte{f1, f2} {
		var p Parsed
		Parse(f, &p)
		if !p.IPv4(f).IsChecksumValid() || p.Src != external {
			t.Fatalf("fragment %d: header checksum or source wrong after rewrite", i+1)
		}
	}
	dgram := cat(p1.IPv4(f1).Payload(), p2.IPv4(f2).Payload())
	u := UDP(dgram)
	if int(u.Length()) != len(dgram) || u.SrcPort() != 2000 {
		t.Fatalf("reassembled datagram: length %d (have %d), src port %d", u.Length(), len(dgram), u.SrcPort())
	}
	if !u.IsChecksumValid(external, [4]byte{8, 8, 4, 4}) {
		t.Fatal("reassembled datagram's checksum does not verify after rewriting the fragments")
	}
	if !bytes.Equal(f2[p2.L4Off:p2.End], goldenNextFrag[p2.L4Off:p2.End]) {
		t.Fatal("non-first fragment's payload changed")
	}
}

func TestGoldenARPView(t *testing.T) {
	var p Parsed
	if r := Parse(goldenARP, &p); r != drop.NotIPv4 {
		t.Fatalf("Parse = %v", r)
	}
	a := ARP(goldenARP[p.L3Off:])
	if !a.IsValid() {
		t.Fatal("valid ARP request reported invalid")
	}
	pkt := gopacket.NewPacket(goldenARP, layers.LayerTypeEthernet, gopacket.Default)
	ga, ok := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
	if !ok {
		t.Fatalf("gopacket found no ARP: %v", pkt)
	}
	if a.Op() != ga.Operation || a.SenderIP() != [4]byte(ga.SourceProtAddress) || a.TargetIP() != [4]byte(ga.DstProtAddress) ||
		a.SenderMAC() != [6]byte(ga.SourceHwAddress) || a.TargetMAC() != [6]byte(ga.DstHwAddress) {
		t.Fatalf("ARP view disagrees with gopacket: %+v", ga)
	}
	// Encode writes the same packet back.
	b := make([]byte, ARPLen)
	ARP(b).Encode(ARPRequest, a.SenderMAC(), a.SenderIP(), a.TargetMAC(), a.TargetIP())
	if !bytes.Equal(b, goldenARP[14:14+ARPLen]) {
		t.Fatalf("Encode wrote % x", b)
	}
	for _, bad := range [][]byte{goldenARP[14:40], cat([]byte{0, 6}, goldenARP[16:])} {
		if ARP(bad).IsValid() {
			t.Errorf("ARP % x reported valid", bad)
		}
	}
}

func ip4(ip net.IP) [4]byte { return [4]byte(ip.To4()) }

// crossCheck decodes frame with gopacket and checks that it agrees with p
// on every field both know, and that every checksum present verifies.
func crossCheck(t *testing.T, frame []byte, p *Parsed) {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	// gopacket goes on to decode application payloads by port (DNS on 53,
	// and so on); only an error at or below the transport layer matters.
	if el := pkt.ErrorLayer(); el != nil && pkt.TransportLayer() == nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if p.HasVLAN {
		q, ok := pkt.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
		if !ok || q.VLANIdentifier != p.VLANID() || q.Priority != uint8(p.VLANTCI>>13) || uint16(q.Type) != p.EtherType {
			t.Fatalf("VLAN: gopacket %+v, parsed TCI %#04x type %#04x", q, p.VLANTCI, p.EtherType)
		}
		if v := p.VLAN(frame); v.ID() != q.VLANIdentifier || v.PCP() != q.Priority {
			t.Fatal("VLAN view disagrees with gopacket")
		}
	} else if uint16(eth.EthernetType) != p.EtherType {
		t.Fatalf("EtherType: gopacket %#04x, parsed %#04x", uint16(eth.EthernetType), p.EtherType)
	}
	if e := p.Ethernet(frame); e.Dst() != [6]byte(eth.DstMAC) || e.Src() != [6]byte(eth.SrcMAC) {
		t.Fatal("Ethernet view disagrees with gopacket")
	}
	if p.EtherType != EtherTypeIPv4 {
		return
	}
	ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		t.Fatal("gopacket found no IPv4 layer")
	}
	if ip4(ip.SrcIP) != p.Src || ip4(ip.DstIP) != p.Dst || uint8(ip.Protocol) != p.Proto || ip.TTL != p.TTL ||
		ip.Id != p.IPID || ip.Length != p.TotalLen || ip.FragOffset*8 != p.FragOff ||
		(ip.Flags&layers.IPv4DontFragment != 0) != p.DF || (ip.Flags&layers.IPv4MoreFragments != 0) != p.MF ||
		int(ip.IHL)*4 != p.L4Off-p.L3Off || p.End != p.L3Off+int(ip.Length) {
		t.Fatalf("IPv4 disagrees: gopacket %+v\nparsed %+v", ip, p)
	}
	if _, v := ip.VerifyChecksum(); !v.Valid {
		t.Fatalf("IPv4 header checksum %#04x, want %#04x", v.Actual, v.Correct)
	}
	if v := p.IPv4(frame); !v.IsChecksumValid() || v.CalculateChecksum() != ip.Checksum {
		t.Fatal("IPv4 view checksum disagrees with gopacket")
	}
	switch p.L4 {
	case L4TCP:
		tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			t.Fatal("gopacket found no TCP layer")
		}
		if uint16(tcp.SrcPort) != p.SrcPort || uint16(tcp.DstPort) != p.DstPort || gopacketFlags(tcp) != p.TCPFlags ||
			int(tcp.DataOffset)*4 != p.TCP(frame).DataOffset() {
			t.Fatalf("TCP disagrees: gopacket %+v\nparsed %+v", tcp, p)
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		if _, v := tcp.VerifyChecksum(); !v.Valid {
			t.Fatalf("TCP checksum %#04x, want %#04x", v.Actual, v.Correct)
		}
		if v := p.TCP(frame); !v.IsChecksumValid(p.Src, p.Dst) || v.CalculateChecksum(p.Src, p.Dst) != tcp.Checksum {
			t.Fatal("TCP view checksum disagrees with gopacket")
		}
	case L4UDP:
		var udp layers.UDP
		if p.MF {
			// gopacket stops at a Fragment layer; decode the header itself.
			if err := udp.DecodeFromBytes(ip.Payload, gopacket.NilDecodeFeedback); err != nil {
				t.Fatal(err)
			}
		} else {
			l, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if !ok {
				t.Fatal("gopacket found no UDP layer")
			}
			udp = *l
			if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
				t.Fatal(err)
			}
			if _, v := udp.VerifyChecksum(); !v.Valid {
				t.Fatalf("UDP checksum %#04x, want %#04x", v.Actual, v.Correct)
			}
			if v := p.UDP(frame); !v.IsChecksumValid(p.Src, p.Dst) ||
				(v.HasChecksum() && v.CalculateChecksum(p.Src, p.Dst) != udp.Checksum) {
				t.Fatal("UDP view checksum disagrees with gopacket")
			}
		}
		if uint16(udp.SrcPort) != p.SrcPort || uint16(udp.DstPort) != p.DstPort || udp.Length != p.UDP(frame).Length() {
			t.Fatalf("UDP disagrees: gopacket %+v\nparsed %+v", udp, p)
		}
	case L4ICMPQuery, L4ICMPError:
		ic, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if !ok {
			t.Fatal("gopacket found no ICMPv4 layer")
		}
		if ic.TypeCode.Type() != p.ICMPType || ic.TypeCode.Code() != p.ICMPCode {
			t.Fatalf("ICMP type/code: gopacket %v, parsed %d/%d", ic.TypeCode, p.ICMPType, p.ICMPCode)
		}
		if _, v := ic.VerifyChecksum(); !v.Valid {
			t.Fatalf("ICMP checksum %#04x, want %#04x", v.Actual, v.Correct)
		}
		m := p.ICMPv4(frame)
		if !m.IsChecksumValid() || m.CalculateChecksum() != ic.Checksum {
			t.Fatal("ICMP view checksum disagrees with gopacket")
		}
		if p.L4 == L4ICMPQuery {
			if ic.Id != p.SrcPort || ic.Id != p.DstPort || ic.Seq != m.Seq() {
				t.Fatalf("ICMP id: gopacket %d, parsed %d/%d", ic.Id, p.SrcPort, p.DstPort)
			}
			return
		}
		if p.ICMPCode == ICMPv4FragNeeded && m.MTU() != ic.Seq {
			t.Fatalf("next-hop MTU: view %d, gopacket %d", m.MTU(), ic.Seq)
		}
		crossCheckInner(t, ic.Payload, frame, p)
	case L4None:
		if p.FragOff != 0 && pkt.Layer(gopacket.LayerTypeFragment) == nil {
			t.Fatal("gopacket does not see a fragment")
		}
	}
}

func crossCheckInner(t *testing.T, payload, frame []byte, p *Parsed) {
	t.Helper()
	var in layers.IPv4
	if err := in.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
		t.Fatalf("gopacket embedded IPv4: %v", err)
	}
	if ip4(in.SrcIP) != p.InnerSrc || ip4(in.DstIP) != p.InnerDst || uint8(in.Protocol) != p.InnerProto ||
		int(in.IHL)*4 != p.InnerL4Off-p.InnerL3Off || p.InnerL3Off != p.L4Off+8 {
		t.Fatalf("embedded IPv4 disagrees: gopacket %+v\nparsed %+v", in, p)
	}
	if _, v := in.VerifyChecksum(); !v.Valid {
		t.Fatalf("embedded IPv4 checksum %#04x, want %#04x", v.Actual, v.Correct)
	}
	l4 := p.InnerL4(frame)
	if !bytes.Equal(l4, in.Payload) {
		t.Fatal("InnerL4 is not what gopacket sees after the embedded header")
	}
	complete := int(in.Length) == len(payload)
	var sp, dp uint16
	switch p.InnerProto {
	case ProtocolUDP:
		var u layers.UDP
		if err := u.DecodeFromBytes(l4, gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		sp, dp = uint16(u.SrcPort), uint16(u.DstPort)
		if complete {
			if err := u.SetNetworkLayerForChecksum(&in); err != nil {
				t.Fatal(err)
			}
			if _, v := u.VerifyChecksum(); !v.Valid {
				t.Fatalf("embedded UDP checksum %#04x, want %#04x", v.Actual, v.Correct)
			}
		}
	case ProtocolTCP:
		if len(l4) < 20 {
			sp, dp = TCP(l4).SrcPort(), TCP(l4).DstPort()
			break
		}
		var tc layers.TCP
		if err := tc.DecodeFromBytes(l4, gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		sp, dp = uint16(tc.SrcPort), uint16(tc.DstPort)
		if complete {
			if err := tc.SetNetworkLayerForChecksum(&in); err != nil {
				t.Fatal(err)
			}
			if _, v := tc.VerifyChecksum(); !v.Valid {
				t.Fatalf("embedded TCP checksum %#04x, want %#04x", v.Actual, v.Correct)
			}
		}
	case ProtocolICMP:
		var ic layers.ICMPv4
		if err := ic.DecodeFromBytes(l4, gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		sp, dp = ic.Id, ic.Id
	}
	if sp != p.InnerSrcPort || dp != p.InnerDstPort {
		t.Fatalf("embedded ports: gopacket %d->%d, parsed %d->%d", sp, dp, p.InnerSrcPort, p.InnerDstPort)
	}
}

func gopacketFlags(t *layers.TCP) uint8 {
	var f uint8
	for _, b := range []struct {
		set  bool
		flag uint8
	}{
		{t.FIN, TCPFlagFIN}, {t.SYN, TCPFlagSYN}, {t.RST, TCPFlagRST}, {t.PSH, TCPFlagPSH},
		{t.ACK, TCPFlagACK}, {t.URG, TCPFlagURG}, {t.ECE, TCPFlagECE}, {t.CWR, TCPFlagCWR},
	} {
		if b.set {
			f |= b.flag
		}
	}
	return f
}
