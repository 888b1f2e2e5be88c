package gen

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/internal/wait"
)

func testHostile(t *testing.T) *Hostile {
	t.Helper()
	h, err := NewHostile(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}, netip.MustParsePrefix("198.19.0.0/16"), 42)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// icmpValid verifies an ICMP message's checksum: the one's complement sum
// over the whole message, checksum included, is all ones (RFC 792).
func icmpValid(t *testing.T, pkt gopacket.Packet) *layers.ICMPv4 {
	t.Helper()
	ic, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !ok {
		t.Fatal("no ICMP layer")
	}
	msg := append(append([]byte(nil), ic.Contents...), ic.Payload...)
	if s := checksum.Checksum(msg, 0); s != 0xffff {
		t.Fatalf("ICMP checksum does not verify (sum %#04x)", s)
	}
	return ic
}

// TestHostileFrames decodes one frame of every kind with gopacket and
// checks its fields and checksums: the floods must be made of well-formed
// packets, so that what natd drops is dropped for what the attack is, not
// for a bad checksum.
func TestHostileFrames(t *testing.T) {
	h := testHostile(t)
	src := netip.MustParseAddrPort("198.19.1.2:40001")
	dst := netip.MustParseAddrPort("198.18.0.100:8080")
	for _, fl := range []string{FlagACK, FlagRST, FlagRSTACK, FlagFIN, FlagSYN} {
		pkt := checkValid(t, h.TCPSegment(src, dst, fl, 1))
		tc := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip.TTL != 1 || uint16(tc.DstPort) != 8080 || uint16(tc.SrcPort) != 40001 {
			t.Fatalf("%s: TTL %d ports %d->%d", fl, ip.TTL, tc.SrcPort, tc.DstPort)
		}
		got := map[string]bool{FlagACK: tc.ACK && !tc.RST && !tc.FIN && !tc.SYN, FlagRST: tc.RST && !tc.ACK,
			FlagRSTACK: tc.RST && tc.ACK, FlagFIN: tc.FIN && tc.ACK, FlagSYN: tc.SYN && !tc.ACK}
		if !got[fl] {
			t.Fatalf("%s: flags %+v", fl, tc)
		}
	}
	if pkt := checkValid(t, h.UDPDatagram(src, dst, 64)); pkt.Layer(layers.LayerTypeUDP) == nil {
		t.Fatal("no UDP layer")
	}
	h.Ports = [2]uint16{50000, 50001}
	for range 100 {
		if p := h.Port(); p < 50000 || p > 50001 {
			t.Fatalf("port %d outside %v", p, h.Ports)
		}
		if a := h.Source(); !h.Sources.Contains(a) || a == h.Sources.Addr() {
			t.Fatalf("source %v", a)
		}
	}
	pkt := checkValid(t, h.EchoRequest(src.Addr(), dst.Addr(), 1))
	if ic := icmpValid(t, pkt); ic.TypeCode.Type() != layers.ICMPv4TypeEchoRequest || ic.Id < 50000 {
		t.Fatalf("echo %v id %d", ic.TypeCode, ic.Id)
	}

	for _, proto := range []layers.IPProtocol{layers.IPProtocolUDP, layers.IPProtocolTCP} {
		q := Quoted{Proto: proto, Outside: dst, Remote: netip.MustParseAddrPort("198.18.0.2:9500")}
		pkt := checkValid(t, h.ICMPError(src.Addr(), q, 11, 0, 1))
		ic := icmpValid(t, pkt)
		if ic.TypeCode != layers.CreateICMPv4TypeCode(11, 0) {
			t.Fatalf("type %v", ic.TypeCode)
		}
		// RFC 792: the quoted IPv4 header and the first 8 bytes of its
		// payload, the ports first.
		inner := ic.Payload
		if len(inner) != 28 {
			t.Fatalf("quoted %d bytes", len(inner))
		}
		var in layers.IPv4
		if err := in.DecodeFromBytes(inner, gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		if _, v := in.VerifyChecksum(); !v.Valid {
			t.Fatalf("quoted IPv4 checksum %#04x, want %#04x", v.Actual, v.Correct)
		}
		if in.Protocol != proto || netip.AddrFrom4([4]byte(in.SrcIP.To4())) != dst.Addr() ||
			uint16(inner[20])<<8|uint16(inner[21]) != 8080 || uint16(inner[22])<<8|uint16(inner[23]) != 9500 {
			t.Fatalf("quoted %v %v ports % x", in.Protocol, in.SrcIP, inner[20:24])
		}
	}

	for _, c := range []struct {
		off  uint16
		more bool
	}{{0, true}, {4, false}, {100, false}} {
		pkt := checkValid(t, h.Fragment(src, dst, 7, c.off, c.more, 64, 1))
		ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip.FragOffset != c.off || ip.Id != 7 || (ip.Flags&layers.IPv4MoreFragments != 0) != c.more || len(ip.Payload) != 64 {
			t.Fatalf("fragment %+v: offset %d id %d flags %v payload %d", c, ip.FragOffset, ip.Id, ip.Flags, len(ip.Payload))
		}
	}
	pkt = checkValid(t, h.TinyTCPFragment(src, dst, 9, 64))
	if ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip.Protocol != layers.IPProtocolTCP || len(ip.Payload) != 8 ||
		ip.Flags&layers.IPv4MoreFragments == 0 {
		t.Fatalf("tiny fragment: %+v", ip)
	}
}

// TestSendFramesLab replays frames from one end of a veth pair and counts
// them at the other: SendFrames sends what it says it sent, and stops at
// Count.
func TestSendFramesLab(t *testing.T) {
	b := routedBench(t)
	gen := lab.MustLink(t, b.Gen, lab.HostDev)
	dut := lab.MustLink(t, b.DUT, lab.DUTInside)
	h, err := NewHostile(gen.MAC, dut.MAC, netip.MustParsePrefix("10.1.0.0/16"), 1)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for range 16 {
		frames = append(frames, h.UDPDatagram(netip.AddrPortFrom(h.Source(), h.Port()), netip.MustParseAddrPort("198.19.0.1:9"), 64))
	}
	rx0, _, err := lab.LinkStats(b.DUT, lab.DUTInside)
	if err != nil {
		t.Fatal(err)
	}
	res, err := SendFrames(context.Background(), SendConfig{Netns: b.Gen, Dev: lab.HostDev, Frames: frames, Duration: 10 * time.Second, Count: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 5000 {
		t.Fatalf("sent %d of 5000 (%d unsent)", res.Sent, res.Unsent)
	}
	var rx1 uint64
	if !wait.For(5*time.Second, func() bool { rx1, _, _ = lab.LinkStats(b.DUT, lab.DUTInside); return rx1-rx0 >= 5000 }) {
		t.Fatalf("the DUT received %d of 5000", rx1-rx0)
	}
	t.Logf("sent %d frames in %.3f s", res.Sent, res.Seconds)
}
