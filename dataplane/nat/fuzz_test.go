package nat

import (
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// fixChecksums makes a mutated frame's checksums valid again wherever its
// lengths allow, so that the fuzzer explores translation, not only the
// parser's checksum rejections, and so that "every emitted frame has valid
// checksums" is a property the engine must keep rather than inherit.
func fixChecksums(f []byte) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || tl < ihl || tl > len(ip) {
		return
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum16(ip[:ihl], 0)))
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return // fragment: transport checksum spans fragments
	}
	l4 := ip[ihl:tl]
	switch ip[9] {
	case 6:
		if len(l4) >= 20 {
			l4[16], l4[17] = 0, 0
			binary.BigEndian.PutUint16(l4[16:], ^uint16(sum16(l4, pseudo(ip[12:16], ip[16:20], 6, len(l4)))))
		}
	case 17:
		if len(l4) >= 8 && binary.BigEndian.Uint16(l4[6:]) != 0 {
			l4[6], l4[7] = 0, 0
			c := ^uint16(sum16(l4, pseudo(ip[12:16], ip[16:20], 17, len(l4))))
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(l4[6:], c)
		}
	case 1:
		if len(l4) >= 8 {
			if (l4[0] == 3 || l4[0] == 11 || l4[0] == 12) && len(l4) >= 28 {
				in := l4[8:]
				iihl := int(in[0]&0x0f) * 4
				if iihl >= 20 && iihl <= len(in) {
					in[10], in[11] = 0, 0
					binary.BigEndian.PutUint16(in[10:], ^uint16(sum16(in[:iihl], 0)))
				}
			}
			l4[2], l4[3] = 0, 0
			binary.BigEndian.PutUint16(l4[2:], ^uint16(sum16(l4, 0)))
		}
	}
}

// FuzzEngine feeds random and mutated frames to a worker, from either
// side, after a few sessions exist (dynamic, forwarded, static, hairpin).
// The engine must never panic, must account for every frame, must not
// leak frames or allocate, and every frame it emits must decode and carry
// valid IPv4, TCP/UDP, ICMP and embedded-header checksums.
func FuzzEngine(f *testing.F) {
	seeds := [][]byte{
		udp("10.0.0.2", 5000, "198.18.0.2", 7000),
		udp("198.18.0.2", 7000, "198.18.0.100", 5000),
		tcp("10.0.0.2", 6000, "198.18.0.2", 80, "S"),
		tcp("198.18.0.2", 80, "198.18.0.100", 6000, "SA"),
		tcp("198.18.0.9", 1234, "198.18.0.100", 8080, "S"),
		echo("10.0.0.2", "198.18.0.2", 42, false),
		echo("198.18.0.2", "198.18.0.100", 42, true),
		echo("198.18.0.9", "198.18.0.160", 7, false),
		udp("10.0.0.3", 1, "198.18.0.100", 5000), // hairpin
		icmpError("198.18.0.2", "198.18.0.100", 3, 3, udp("198.18.0.100", 5000, "198.18.0.2", 7000), false),
		icmpError("10.0.0.50", "198.18.0.9", 3, 3, tcp("198.18.0.9", 1234, "10.0.0.50", 80, "S"), true),
		pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, ttl: 1, sport: 1, dport: 2}),
		pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, rawL4: make([]byte, 40), fragOff: 64, ipID: 9}),
		pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, mf: true, payload: make([]byte, 56), ipID: 9}),
		bigUDP(false, 1400),
		// Hostile input (issue 11): bare segments to a rule, errors that
		// must not be answered or that come from the wrong host, orphan
		// fragments with TTL 1, a link-layer broadcast with TTL 1.
		tcp("198.18.0.9", 1234, "198.18.0.100", 6000, "A"),
		tcp("198.18.0.9", 1234, "198.18.0.100", 6000, "R"),
		pkt("198.18.0.2", "198.18.0.100", l4spec{proto: layers.IPProtocolICMPv4, icmpType: 3, icmpCode: 3, ttl: 1,
			inner: ipPacket(udp("198.18.0.100", 5000, "198.18.0.2", 7000))[:28]}),
		icmpError("10.0.0.3", "198.18.0.2", 3, 4, tcp("198.18.0.2", 80, "10.0.0.2", 6000, "SA"), false),
		pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, rawL4: make([]byte, 40), fragOff: 64, ipID: 9, ttl: 1}),
		pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 1, dport: 2, ttl: 1,
			dstMAC: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}),
	}
	for i, s := range seeds {
		f.Add(s, i%2 == 1)
	}
	f.Fuzz(func(t *testing.T, frame []byte, fromOutside bool) {
		h := mtuHarness(t, 1000) // small outside MTU: exercise fragmentation
		// Sessions for mutations to hit.
		for _, s := range [][]byte{seeds[0], seeds[2], seeds[5]} {
			h.inject(Inside, s)
		}
		h.inject(Outside, seeds[4])
		h.ports[Inside].Drain()
		h.ports[Outside].Drain()

		f := append([]byte(nil), frame...)
		fixChecksums(f)
		side := Inside
		if fromOutside {
			side = Outside
		}
		before := h.counters()
		if !h.ports[side].Inject(f) {
			return // empty or oversized for a frame: memport refuses it
		}
		h.w.Poll()
		h.w.Poll() // release anything held for a neighbour or fragment
		for _, s := range []Side{Inside, Outside} {
			for _, out := range h.ports[s].Drain() {
				verifyFrame(t, out)
			}
		}
		after := h.counters()
		rx := after[RxPackets+Counter(side)] - before[RxPackets+Counter(side)]
		if rx != 1 {
			t.Fatalf("frame received %d times", rx)
		}
		var drops, tx, held uint64
		for r := dropBase; r < NumCounters; r++ {
			drops += after[r] - before[r]
		}
		for s := Side(0); s < NumSides; s++ {
			tx += after[TxPackets+Counter(s)] - before[TxPackets+Counter(s)]
		}
		held = uint64(h.w.frag.n + h.w.pend.n)
		made := after[FragmentsMade] - before[FragmentsMade]
		if made > 0 {
			made-- // the first fragment is the received frame itself
		}
		icmp := after[ICMPErrorsSent] - before[ICMPErrorsSent]
		if 1+made+icmp != tx+drops+held {
			t.Fatalf("1 frame in (+%d fragments made, %d ICMP errors): tx %d + drops %d + held %d", made, icmp, tx, drops, held)
		}
		if held == 0 {
			h.checkNoLeaks()
		}
		// The same frame again (now meeting whatever state the first
		// copy created) must not allocate either.
		allocs := testing.AllocsPerRun(1, func() {
			h.ports[side].Inject(f)
			h.w.Poll()
		})
		if allocs != 0 {
			t.Fatalf("%v allocations processing the frame", allocs)
		}
	})
}
