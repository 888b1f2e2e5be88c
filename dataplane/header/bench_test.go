package header

import (
	"testing"

	"github.com/xnat/xnat/dataplane/drop"
)

// udp64 builds a 64-byte Ethernet/IPv4/UDP frame (22 data bytes) with valid
// checksums.
func udp64() []byte {
	f := make([]byte, 64)
	copy(f, ethHdr)
	Ethernet(f).SetType(EtherTypeIPv4)
	IPv4(f[14:]).Encode(&IPv4Fields{TotalLen: 50, ID: 7, TTL: 64, Protocol: ProtocolUDP, Src: inside, Dst: [4]byte{8, 8, 8, 8}})
	u := UDP(f[34:])
	u.SetSrcPort(5353)
	u.SetDstPort(53)
	u.SetLength(30)
	for i := range u[8:] {
		u[8+i] = byte(i)
	}
	u.SetChecksum(u.CalculateChecksum(inside, [4]byte{8, 8, 8, 8}))
	return f
}

func TestUDP64Frame(t *testing.T) {
	f := udp64()
	var p Parsed
	if r := Parse(f, &p); r != drop.None || len(f) != 64 || p.End != 64 {
		t.Fatalf("udp64: %v, %d bytes, End %d", r, len(f), p.End)
	}
	crossCheck(t, f, &p)
}

func BenchmarkParse(b *testing.B) {
	frames := []struct {
		name  string
		frame []byte
	}{
		{"udp-64B", udp64()},
		{"tcp-syn", goldenTCPSYN},
		{"icmp-echo", goldenEcho},
		{"icmp-error-udp", goldenPortUnreach},
		{"icmp-error-tcp-86B", goldenFragNeeded},
	}
	for _, c := range frames {
		b.Run(c.name, func(b *testing.B) {
			var p Parsed
			b.ReportAllocs()
			b.SetBytes(int64(len(c.frame)))
			for b.Loop() {
				if Parse(c.frame, &p) != drop.None {
					b.Fatal("parse failed")
				}
			}
		})
	}
}

// BenchmarkRewrite measures the NAT rewrites on a parsed frame: address and
// port with every checksum fixed incrementally. Each iteration rewrites
// there and back, so the frame stays valid; ns/op covers two rewrites.
func BenchmarkRewrite(b *testing.B) {
	b.Run("tcp-snat", func(b *testing.B) {
		f, p := parsed(b, goldenTCPSYN)
		b.ReportAllocs()
		for b.Loop() {
			p.SetSrc(f, external, 1024)
			p.SetSrc(f, inside2, 40000)
		}
	})
	b.Run("udp-snat", func(b *testing.B) {
		f, p := parsed(b, udp64())
		b.ReportAllocs()
		for b.Loop() {
			p.SetSrc(f, external, 2000)
			p.SetSrc(f, inside, 5353)
		}
	})
	b.Run("icmp-error-dnat", func(b *testing.B) {
		f, p := parsed(b, goldenFragNeeded)
		b.ReportAllocs()
		for b.Loop() {
			p.SetDst(f, inside2, 0)
			p.SetInnerSrc(f, inside2, 40000)
			p.SetDst(f, external, 0)
			p.SetInnerSrc(f, external, 1024)
		}
	})
}
