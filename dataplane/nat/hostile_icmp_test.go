package nat

import (
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/drop"
)

// Hostile input (issue 11): ICMP errors the NAT must not send or
// translate.

// Defect 7: no ICMP error about an ICMP error, a later fragment, a
// link-layer broadcast (RFC 1122 3.2.2, RFC 1812 4.3.2.7).
func TestNoICMPErrorAboutForbiddenPackets(t *testing.T) {
	h := newHarness(t, testConfig())
	sent, ext := h.oneRaw(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)

	forbidden := func(name string, side Side, f []byte) {
		t.Helper()
		before := h.counters()
		h.noneOut(side, f)
		after := h.counters()
		if after.Drops(drop.ErrorForbidden) != before.Drops(drop.ErrorForbidden)+1 {
			t.Fatalf("%s: not counted as icmp_error_forbidden (drops %v)", name, h.drops())
		}
		if after[ICMPErrorsSent] != before[ICMPErrorsSent] {
			t.Fatalf("%s: an ICMP error was sent", name)
		}
	}
	// An ICMP error with TTL 1, from outside about our packet, and from
	// inside about anything.
	errOut := pkt("198.18.0.2", ext.src, l4spec{proto: layers.IPProtocolICMPv4, icmpType: uint8(icmpUnreach), icmpCode: uint8(codePort),
		inner: ipPacket(sent)[:28], ttl: 1, srcMAC: macGateway, dstMAC: macNATOut})
	forbidden("error with TTL 1 from outside", Outside, errOut)
	errIn := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolICMPv4, icmpType: uint8(icmpUnreach), icmpCode: uint8(codePort),
		inner: ipPacket(udp("198.18.0.2", 7000, "10.0.0.2", 5000))[:28], ttl: 1})
	forbidden("error with TTL 1 from inside", Inside, errIn)

	// A later fragment with TTL 1, whose first fragment was translated.
	frags := fragments(bigUDP(false, 1000), 400)
	h.inject(Inside, frags[0])
	if n := len(h.ports[Outside].Drain()); n != 1 {
		t.Fatalf("first fragment: %d out", n)
	}
	late := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, rawL4: ipPacket(frags[1])[20:], fragOff: 400, mf: true, ipID: 0x4242, ttl: 1})
	forbidden("later fragment with TTL 1", Inside, late)
	// The same, held before its first fragment came.
	frags2 := fragments(pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, payload: make([]byte, 1000), ipID: 0x77}), 400)
	late2 := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, rawL4: ipPacket(frags2[2])[20:], fragOff: 800, ipID: 0x77, ttl: 1})
	h.noneOut(Inside, late2)
	before := h.counters()
	h.inject(Inside, frags2[0])
	if n := len(h.ports[Outside].Drain()); n != 1 {
		t.Fatalf("first fragment with one held: %d out", n)
	}
	if len(h.ports[Inside].Drain()) != 0 || h.counters().Drops(drop.ErrorForbidden) != before.Drops(drop.ErrorForbidden)+1 {
		t.Fatalf("held later fragment with TTL 1 answered, or not counted (drops %v)", h.drops())
	}

	// A link-layer broadcast with TTL 1.
	bcast := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, ttl: 1,
		dstMAC: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
	forbidden("link-layer broadcast with TTL 1", Inside, bcast)

	// An ordinary packet with TTL 1 is still answered.
	_, same := h.send(Inside, pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, ttl: 1}))
	if len(same) != 1 || eps(same[0]).icmpType != uint16(icmpTimeExc) {
		t.Fatalf("TTL 1 UDP: %d frames back", len(same))
	}
	h.checkNoLeaks()
}

// Defect 7: no Fragmentation Needed about a packet sent as a link-layer
// broadcast, and no exhaustion reply either.
func TestNoFragNeededOrExhaustionReplyToBroadcast(t *testing.T) {
	c := testConfig()
	c.OnExhaustion = ReplyHostUnreachable
	c.Limits.SessionsPerSubscriber = 1
	h := newHarness(t, c)
	bc := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// (The DF packet gets its session before it is found too big.)
	big := pkt("10.0.0.3", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, df: true, payload: make([]byte, 1600), dstMAC: bc})
	h.none(Inside, big, drop.ErrorForbidden)
	h.one(Inside, udp("10.0.0.2", 1, "198.18.0.2", 9), Outside)
	over := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 2, dport: 9, dstMAC: bc})
	h.none(Inside, over, drop.SubscriberSessions)
	if h.counters()[ICMPErrorsSent] != 0 {
		t.Fatal("an ICMP error answered a link-layer broadcast")
	}
}

// Defect 8: an outbound ICMP error leaves only if its sender is the inside
// host of the session it quotes.
func TestOutboundErrorFromOtherHostDropped(t *testing.T) {
	h := newHarness(t, forwardConfig())
	// A client reaches the forwarded UDP server 10.0.0.51.
	delivered, _ := h.oneRaw(Outside, udp("198.18.0.2", 6000, "198.18.0.100", 5353), Inside)
	// Another subscriber forges the server's port unreachable.
	forged := icmpError("10.0.0.2", "198.18.0.2", uint8(icmpUnreach), uint8(codePort), delivered, false)
	h.none(Inside, forged, drop.ErrorWrongSender)

	// A dynamic session of subscriber A; subscriber B forges a
	// fragmentation-needed error about A's flow.
	out := eps(h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "S"), Outside))
	reply := h.one(Outside, tcp("198.18.0.2", 80, out.src, out.sport, "SA"), Inside)
	q := reply.Data()
	forgedB := icmpError("10.0.0.3", "198.18.0.2", uint8(icmpUnreach), uint8(codeFragNeed), q, false)
	h.none(Inside, forgedB, drop.ErrorWrongSender)
	// A's own error goes out, with A's external address.
	own := eps(h.one(Inside, icmpError("10.0.0.2", "198.18.0.2", uint8(icmpUnreach), uint8(codeFragNeed), q, false), Outside))
	if own.src != out.src {
		t.Fatalf("A's own error left as %v", own)
	}
	h.checkNoLeaks()
}
