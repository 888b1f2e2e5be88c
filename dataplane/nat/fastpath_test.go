package nat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"testing"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
)

// TestRewriteMatchesSetters holds the fast path's one-pass rewrite
// (rewrite, and rewriteNew of the source) to the reference it replaces,
// header.Parsed's DecTTL followed by SetSrc or SetDst: the same bytes and
// the same parse
// result, for random UDP (with and without a checksum), TCP and ICMP echo
// packets, addresses, ports and TTLs. Every result is also decoded by
// gopacket with its checksums checked.
func TestRewriteMatchesSetters(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	addr := func() string {
		return fmt.Sprintf("%d.%d.%d.%d", 1+rng.Intn(223), rng.Intn(256), rng.Intn(256), rng.Intn(256))
	}
	for i := 0; i < 2000; i++ {
		src, dst := addr(), addr()
		sport, dport := uint16(rng.Intn(65536)), uint16(rng.Intn(65536))
		var f []byte
		switch i % 4 {
		case 0:
			f = udp(src, sport, dst, dport)
		case 1:
			f = udp(src, sport, dst, dport)
			f[14+20+6], f[14+20+7] = 0, 0 // no UDP checksum (RFC 768)
		case 2:
			f = tcp(src, sport, dst, dport, "A")
		default:
			f = echo(src, dst, sport, i%8 == 3)
		}
		f[14+8] = uint8(2 + rng.Intn(254)) // TTL
		binaryFixIPChecksum(f[14:34])
		to := [4]byte{byte(rng.Intn(256)), byte(rng.Intn(256)), byte(rng.Intn(256)), byte(rng.Intn(256))}
		port := uint16(rng.Intn(65536))
		for _, dir := range []string{"src", "dst", "new"} {
			want, got := bytes.Clone(f), bytes.Clone(f)
			var pw, pg header.Parsed
			if r := header.Parse(want, &pw); r != drop.None {
				t.Fatalf("packet %d: parse: %v", i, r)
			}
			header.Parse(got, &pg)
			pw.DecTTL(want)
			switch dir {
			case "src":
				pw.SetSrc(want, to, port)
				rewrite(got, &pg, true, binary.BigEndian.Uint32(to[:]), port)
			case "new": // the fast path's layout, as these frames have
				if pg.L4Off != fastL4Off {
					t.Fatalf("packet %d: transport at %d, not the fast path's", i, pg.L4Off)
				}
				pw.SetSrc(want, to, port)
				rewriteNew(got, &pg, le32(&to), port)
			default:
				pw.SetDst(want, to, port)
				rewrite(got, &pg, false, binary.BigEndian.Uint32(to[:]), port)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("packet %d (%s): rewrite gave\n% x\nwant\n% x", i, dir, got, want)
			}
			if pg != pw {
				t.Fatalf("packet %d (%s): parse result %+v, want %+v", i, dir, pg, pw)
			}
			verifyFrame(t, got)
		}
	}
}

// binaryFixIPChecksum recomputes an IPv4 header's checksum from scratch.
func binaryFixIPChecksum(ip []byte) {
	ip[10], ip[11] = 0, 0
	s := ^uint16(sum16(ip, 0))
	ip[10], ip[11] = byte(s>>8), byte(s)
}
