package nat

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/drop"
)

const (
	icmpUnreach  = layers.ICMPv4TypeDestinationUnreachable
	icmpTimeExc  = layers.ICMPv4TypeTimeExceeded
	codePort     = layers.ICMPv4CodePort
	codeFragNeed = layers.ICMPv4CodeFragmentationNeeded
)

// oneRaw is harness.one for a test that needs the frame itself, to quote it
// in an ICMP error: it injects frame on side, expects exactly one frame out
// on want, and returns its bytes, verified, and its endpoints.
func (h *harness) oneRaw(side Side, frame []byte, want Side) ([]byte, endpoints) {
	h.t.Helper()
	h.inject(side, frame)
	got, rest := h.ports[want].Drain(), h.ports[1-want].Drain()
	if len(got) != 1 || len(rest) != 0 {
		h.t.Fatalf("want one frame out on %v, got %d there and %d on %v (drops %v)", want, len(got), len(rest), 1-want, h.drops())
	}
	return got[0], eps(verifyFrame(h.t, got[0]))
}

func TestRFC5508_REQ4_InboundErrorTranslated(t *testing.T) {
	for _, full := range []bool{false, true} {
		h := newHarness(t, testConfig())
		outFrame := udp("10.0.0.2", 5000, "198.18.0.2", 7000)
		sent, ext := h.oneRaw(Inside, outFrame, Outside)
		// The server answers port unreachable, quoting what we sent.
		errFrame := icmpError("198.18.0.2", ext.src, icmpUnreach, codePort, sent, full)
		pk := h.one(Outside, errFrame, Inside)
		outer := eps(pk)
		if outer.dst != "10.0.0.2" || outer.src != "198.18.0.2" {
			t.Fatalf("error delivered as %v", outer)
		}
		in := innerOf(t, pk)
		if in.src != "10.0.0.2" || in.sport != 5000 || in.dst != "198.18.0.2" || in.dport != 7000 {
			t.Fatalf("embedded packet reads %v, want the original 10.0.0.2:5000 -> 198.18.0.2:7000", in)
		}
		ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ic.TypeCode.Type() != icmpUnreach || ic.TypeCode.Code() != codePort {
			t.Fatalf("type/code changed to %v", ic.TypeCode)
		}
		if full {
			// With the whole datagram quoted, the embedded UDP checksum
			// is fixed too and must verify against the embedded addresses.
			q := ic.Payload
			ihl := int(q[0]&0x0f) * 4
			l4 := q[ihl:]
			if sum16(l4, pseudo(q[12:16], q[16:20], 17, len(l4))) != 0xffff {
				t.Fatal("embedded UDP checksum does not verify after translation")
			}
		}
	}
}

func TestRFC5508_REQ4_InboundFragNeededKeepsMTU(t *testing.T) {
	h := newHarness(t, testConfig())
	sent, ext := h.oneRaw(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "S"), Outside)
	f := icmpError("198.18.0.9", ext.src, icmpUnreach, codeFragNeed, sent, false)
	binary.BigEndian.PutUint16(f[14+20+6:], 1400) // next-hop MTU
	// Recompute the ICMP checksum after setting the MTU.
	f[14+20+2], f[14+20+3] = 0, 0
	c := ^uint16(sum16(f[14+20:], 0))
	binary.BigEndian.PutUint16(f[14+20+2:], c)
	pk := h.one(Outside, f, Inside)
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if mtu := binary.BigEndian.Uint16(ic.Contents[6:]); mtu != 1400 {
		t.Fatalf("next-hop MTU %d, want 1400", mtu)
	}
	if in := innerOf(t, pk); in.src != "10.0.0.2" || in.sport != 5000 {
		t.Fatalf("embedded %v", in)
	}
}

func TestRFC5508_REQ5_OutboundErrorTranslated(t *testing.T) {
	h := newHarness(t, forwardConfig())
	// An outside client reaches a forwarded UDP server, whose host answers
	// port unreachable.
	inFrame := udp("198.18.0.2", 6000, "198.18.0.100", 5353)
	delivered, _ := h.oneRaw(Outside, inFrame, Inside)
	errFrame := icmpError("10.0.0.51", "198.18.0.2", icmpUnreach, codePort, delivered, false)
	pk := h.one(Inside, errFrame, Outside)
	outer := eps(pk)
	if outer.src != "198.18.0.100" || outer.dst != "198.18.0.2" {
		t.Fatalf("outer header %v", outer)
	}
	in := innerOf(t, pk)
	if in.src != "198.18.0.2" || in.sport != 6000 || in.dst != "198.18.0.100" || in.dport != 5353 {
		t.Fatalf("embedded packet reads %v, want what the client sent", in)
	}
}

func TestRFC5508_REQ4_ErrorAboutEcho(t *testing.T) {
	h := newHarness(t, testConfig())
	sent, ext := h.oneRaw(Inside, echo("10.0.0.2", "198.18.0.2", 777, false), Outside)
	pk := h.one(Outside, icmpError("198.18.0.5", ext.src, icmpTimeExc, 0, sent, false), Inside)
	if in := innerOf(t, pk); in.src != "10.0.0.2" || in.icmpID != 777 {
		t.Fatalf("embedded echo reads %v id %d", in, in.icmpID)
	}
}

func TestRFC5508_REQ3_BadChecksumsDropped(t *testing.T) {
	h := newHarness(t, testConfig())
	sent, ext := h.oneRaw(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)

	bad := icmpError("198.18.0.2", ext.src, icmpUnreach, codePort, sent, false)
	bad[14+20+2] ^= 0x55 // ICMP checksum
	h.none(Outside, bad, drop.BadICMPChecksum)

	// A bad embedded IPv4 header checksum, with the ICMP checksum valid.
	q := append([]byte(nil), sent...)
	q[14+10] ^= 0x55
	h.none(Outside, icmpError("198.18.0.2", ext.src, icmpUnreach, codePort, q, false), drop.BadEmbeddedPacket)
}

func TestRFC5508_REQ4_NoMappingDropped(t *testing.T) {
	h := newHarness(t, testConfig())
	fake := udp("198.18.0.100", 1234, "198.18.0.2", 7000)
	h.none(Outside, icmpError("198.18.0.2", "198.18.0.100", icmpUnreach, codePort, fake, false), drop.NoSession)
}

func TestRFC5508_REQ6_RFC4787_REQ12_ErrorsDoNotRefreshOrDelete(t *testing.T) {
	h := newHarness(t, testConfig())
	sent, ext := h.oneRaw(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)
	h.clock.Advance(200 * time.Second)
	h.one(Outside, icmpError("198.18.0.2", ext.src, icmpUnreach, codePort, sent, false), Inside)
	if h.sessionCount() != 1 {
		t.Fatal("ICMP error deleted the session")
	}
	// Not refreshed: it still expires 300 s after the UDP packet.
	h.expectExpiry(t, 100*time.Second)
}

func TestTTLExpiredSendsTimeExceeded(t *testing.T) {
	h := newHarness(t, testConfig())
	f := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, ttl: 1, payload: []byte("x")})
	before := h.counters().Drops(drop.TTLExpired)
	_, same := h.send(Inside, f)
	if len(same) != 1 {
		t.Fatalf("%d frames back inside", len(same))
	}
	e := eps(same[0])
	if e.src != "10.0.0.1" || e.dst != "10.0.0.2" || e.icmpType != uint16(icmpTimeExc) {
		t.Fatalf("time exceeded %v type %d", e, e.icmpType)
	}
	if in := innerOf(t, same[0]); in.src != "10.0.0.2" || in.sport != 5000 {
		t.Fatalf("quoted %v", in)
	}
	if eth := ethOf(same[0]); [6]byte(eth.DstMAC) != macInsideHost || [6]byte(eth.SrcMAC) != macNATIn {
		t.Fatalf("reply MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	if h.counters().Drops(drop.TTLExpired) != before+1 {
		t.Fatal("TTL drop not counted")
	}
	if h.sessionCount() != 0 {
		t.Fatal("an expiring packet created a session")
	}
}

// sendCountingReturns sends frame n times on side and returns how many
// frames came back out on that side: the ICMP errors it drew.
func (h *harness) sendCountingReturns(side Side, frame []byte, n int) int {
	h.t.Helper()
	back := 0
	for range n {
		_, same := h.send(side, frame)
		back += len(same)
	}
	return back
}

func TestICMPErrorRateLimited(t *testing.T) {
	c := testConfig()
	c.Limits.ICMPErrorsPerSecond = 5
	h := newHarness(t, c)
	f := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, ttl: 1})
	if sent := h.sendCountingReturns(Inside, f, 20); sent != 5 {
		t.Fatalf("%d time-exceeded errors sent in one instant, limit 5/s", sent)
	}
	h.clock.Advance(time.Second)
	_, same := h.send(Inside, f)
	if len(same) != 1 {
		t.Fatal("bucket did not refill")
	}
	if got := h.counters()[ICMPErrorsSuppressed]; got != 15 {
		t.Fatalf("suppressed %d, want 15", got)
	}
}
