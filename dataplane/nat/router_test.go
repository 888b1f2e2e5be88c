package nat

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/drop"
)

func mtuHarness(t *testing.T, outMTU int) *harness {
	h := newHarness(t, testConfig())
	if err := h.eng.SetLinks(testLinks(outMTU)); err != nil {
		t.Fatal(err)
	}
	return h
}

func bigUDP(df bool, n int) []byte {
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i)
	}
	return pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, df: df, payload: payload, ipID: 0x4242})
}

func TestRFC4787_REQ13_FragNeededWhenDF(t *testing.T) {
	h := mtuHarness(t, 1000)
	f := bigUDP(true, 1200)
	before := h.counters().Drops(drop.FragNeeded)
	out, same := h.send(Inside, f)
	if len(out) != 0 || len(same) != 1 {
		t.Fatalf("%d out, %d back", len(out), len(same))
	}
	ic := same[0].Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ic.TypeCode.Type() != layers.ICMPv4TypeDestinationUnreachable || ic.TypeCode.Code() != layers.ICMPv4CodeFragmentationNeeded {
		t.Fatalf("got %v", ic.TypeCode)
	}
	if mtu := binary.BigEndian.Uint16(ic.Contents[6:]); mtu != 1000 {
		t.Fatalf("next-hop MTU %d, want 1000", mtu)
	}
	// The quote is the packet as the host sent it, untranslated.
	if in := innerOf(t, same[0]); in.src != "10.0.0.2" || in.sport != 5000 {
		t.Fatalf("quoted %v", in)
	}
	if len(ic.Payload) > 576-28 {
		t.Fatalf("error quotes %d bytes, more than fits in 576", len(ic.Payload))
	}
	if h.counters().Drops(drop.FragNeeded) != before+1 {
		t.Fatal("drop not counted")
	}
}

func TestRFC4787_REQ13a_FragmentsWhenNotDF(t *testing.T) {
	h := mtuHarness(t, 576)
	f := bigUDP(false, 1400)
	h.inject(Inside, f)
	frames := h.ports[Outside].Drain()
	if len(frames) != 3 {
		t.Fatalf("%d fragments, want 3", len(frames))
	}
	// Reassemble and compare with the translated datagram.
	var payload []byte
	prevOff := -1
	for i, fr := range frames {
		pk := verifyFrame(t, fr)
		ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if int(ip.Length) > 576 {
			t.Fatalf("fragment %d is %d bytes, MTU 576", i, ip.Length)
		}
		off := int(ip.FragOffset) * 8
		if off <= prevOff {
			t.Fatalf("fragments out of order (REQ-13a): offset %d after %d", off, prevOff)
		}
		prevOff = off
		if ip.Id != 0x4242 || ip.SrcIP.String() != "198.18.0.100" {
			t.Fatalf("fragment %d: id %x src %v", i, ip.Id, ip.SrcIP)
		}
		more := ip.Flags&layers.IPv4MoreFragments != 0
		if more != (i < len(frames)-1) {
			t.Fatalf("fragment %d: MF=%v", i, more)
		}
		if len(payload) != off {
			t.Fatalf("fragment %d at offset %d, expected %d", i, off, len(payload))
		}
		payload = append(payload, ip.Payload...)
	}
	// The reassembled UDP datagram verifies against the translated addresses.
	if sum16(payload, pseudo([]byte{198, 18, 0, 100}, []byte{198, 18, 0, 2}, 17, len(payload))) != 0xffff {
		t.Fatal("reassembled UDP checksum does not verify")
	}
	if !bytes.Equal(payload[8:], ipPacket(f)[28:]) {
		t.Fatal("reassembled payload differs")
	}
	h.checkNoLeaks()
}

// fragments splits the IP payload of frame into IPv4 fragments of at most
// size payload bytes.
func fragments(frame []byte, size int) [][]byte {
	ipp := ipPacket(frame)
	src, dst := ipp[12:16], ipp[16:20]
	l4 := ipp[20:]
	var out [][]byte
	for off := 0; off < len(l4); off += size {
		end := min(off+size, len(l4))
		out = append(out, pkt(net4(src), net4(dst), l4spec{
			proto: layers.IPProtocol(ipp[9]), rawL4: l4[off:end], fragOff: uint16(off), mf: end < len(l4),
			ipID: binary.BigEndian.Uint16(ipp[4:]),
		}))
	}
	return out
}

func net4(b []byte) string { return netip.AddrFrom4([4]byte(b)).String() }

func reassemble(t *testing.T, frames [][]byte) (src, dst string, l4 []byte) {
	t.Helper()
	type piece struct {
		off  int
		data []byte
	}
	var ps []piece
	for _, fr := range frames {
		ip := verifyFrame(t, fr).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		src, dst = ip.SrcIP.String(), ip.DstIP.String()
		ps = append(ps, piece{int(ip.FragOffset) * 8, ip.Payload})
	}
	for len(ps) > 0 {
		found := false
		for i, p := range ps {
			if p.off == len(l4) {
				l4 = append(l4, p.data...)
				ps = append(ps[:i], ps[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			t.Fatal("fragments do not reassemble")
		}
	}
	return
}

func TestRFC4787_REQ14_FragmentsInOrder(t *testing.T) {
	h := newHarness(t, testConfig())
	frags := fragments(bigUDP(false, 1000), 400)
	h.inject(Inside, frags...)
	got := h.ports[Outside].Drain()
	if len(got) != len(frags) {
		t.Fatalf("%d of %d fragments forwarded (drops %v)", len(got), len(frags), h.drops())
	}
	src, dst, l4 := reassemble(t, got)
	if src != "198.18.0.100" || dst != "198.18.0.2" {
		t.Fatalf("fragments went %s -> %s", src, dst)
	}
	if sum16(l4, pseudo([]byte{198, 18, 0, 100}, []byte{198, 18, 0, 2}, 17, len(l4))) != 0xffff {
		t.Fatal("reassembled datagram checksum")
	}
	// The reply, fragmented too, comes back.
	reply := pkt("198.18.0.2", "198.18.0.100", l4spec{proto: layers.IPProtocolUDP, sport: 7000, dport: 5000, payload: make([]byte, 900), ipID: 7})
	h.inject(Outside, fragments(reply, 296)...)
	back := h.ports[Inside].Drain()
	_, dst, l4 = reassemble(t, back)
	if dst != "10.0.0.2" || binary.BigEndian.Uint16(l4[2:]) != 5000 {
		t.Fatalf("reply fragments reached %s port %d", dst, binary.BigEndian.Uint16(l4[2:]))
	}
}

func TestRFC4787_REQ14_FragmentsOutOfOrder(t *testing.T) {
	h := newHarness(t, testConfig())
	frags := fragments(bigUDP(false, 1000), 400)
	// Later fragments first: they wait for the first.
	h.inject(Inside, frags[2], frags[1])
	if n := len(h.ports[Outside].Drain()); n != 0 {
		t.Fatalf("%d fragments forwarded before the first arrived", n)
	}
	if h.counters()[FragmentsHeld] != 2 {
		t.Fatalf("held %d", h.counters()[FragmentsHeld])
	}
	h.inject(Inside, frags[0])
	got := h.ports[Outside].Drain()
	if len(got) != 3 {
		t.Fatalf("%d fragments after the first arrived", len(got))
	}
	if src, _, _ := reassemble(t, got); src != "198.18.0.100" {
		t.Fatalf("src %s", src)
	}
	h.checkNoLeaks()
}

func TestRFC4787_REQ14a_FragmentCacheBounded(t *testing.T) {
	c := testConfig()
	c.Limits.HeldFragments = 8
	h := newHarness(t, c)
	// A flood of orphan non-first fragments.
	for i := 0; i < 50; i++ {
		f := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, rawL4: make([]byte, 64), fragOff: 512, ipID: uint16(i)})
		h.ports[Inside].Inject(f)
	}
	h.w.Poll()
	if got := h.counters().Drops(drop.FragCacheFull); got != 42 {
		t.Fatalf("%d refused, want 42 beyond the 8 held", got)
	}
	// Unfragmented traffic is unaffected.
	h.one(Inside, udp("10.0.0.2", 1, "198.18.0.2", 9), Outside)
	// Held fragments time out.
	h.clock.Advance(2 * time.Second)
	h.w.Poll()
	if got := h.counters().Drops(drop.FragTimeout); got != 8 {
		t.Fatalf("%d timed out, want 8", got)
	}
	h.checkNoLeaks()
}

func TestRFC6888_REQ4_PortLimitPerSubscriber(t *testing.T) {
	c := testConfig()
	c.Limits.PortsPerSubscriber = 3
	h := newHarness(t, c)
	for i := 0; i < 3; i++ {
		h.one(Inside, udp("10.0.0.2", uint16(1000+i), "198.18.0.2", 9), Outside)
	}
	h.none(Inside, udp("10.0.0.2", 2000, "198.18.0.2", 9), drop.SubscriberPorts)
	// More sessions on an existing mapping need no new port.
	h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.3", 9), Outside)
	// Other subscribers are not affected.
	h.one(Inside, udp("10.0.0.3", 2000, "198.18.0.2", 9), Outside)
}

func TestRFC6888_REQ5_SessionLimitPerSubscriber(t *testing.T) {
	c := testConfig()
	c.Limits.SessionsPerSubscriber = 2
	h := newHarness(t, c)
	h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside)
	h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.3", 9), Outside)
	h.none(Inside, udp("10.0.0.2", 1000, "198.18.0.4", 9), drop.SubscriberSessions)
	// Existing sessions keep working (REQ-11: nothing evicted).
	h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside)
}

func TestRFC6888_REQ11_TableFullNoEviction(t *testing.T) {
	c := testConfig()
	c.Limits.MaxSessions = 4
	h := newHarness(t, c)
	for i := 0; i < 4; i++ {
		h.one(Inside, udp("10.0.0.2", uint16(1000+i), "198.18.0.2", 9), Outside)
	}
	h.none(Inside, udp("10.0.0.2", 2000, "198.18.0.2", 9), drop.TableFull)
	for i := 0; i < 4; i++ {
		h.one(Inside, udp("10.0.0.2", uint16(1000+i), "198.18.0.2", 9), Outside)
	}
}

func TestRFC6888_REQ11b_RFC5508_REQ8_ExhaustionICMP(t *testing.T) {
	for _, tc := range []struct {
		reply ExhaustionReply
		code  uint8
	}{{ReplyHostUnreachable, 1}, {ReplyAdminProhibited, 13}} {
		c := testConfig()
		c.Limits.SessionsPerSubscriber = 1
		c.OnExhaustion = tc.reply
		h := newHarness(t, c)
		h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside)
		out, same := h.send(Inside, udp("10.0.0.2", 1001, "198.18.0.2", 9))
		if len(out) != 0 || len(same) != 1 {
			t.Fatalf("%d out, %d back", len(out), len(same))
		}
		ic := same[0].Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if ic.TypeCode.Type() != 3 || ic.TypeCode.Code() != tc.code {
			t.Fatalf("got %v, want unreachable code %d", ic.TypeCode, tc.code)
		}
	}
}

func TestEventsOnExhaustion(t *testing.T) {
	c := testConfig()
	c.Limits.SessionsPerSubscriber = 1
	h := newHarness(t, c)
	h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside)
	h.none(Inside, udp("10.0.0.2", 1001, "198.18.0.2", 9), drop.SubscriberSessions)
	evs := withoutBlockEvents(h.eng.DrainEvents(nil))
	var types []EventType
	for _, e := range evs {
		types = append(types, e.Type)
	}
	want := []EventType{AddressBound, SessionCreated, QuotaExceeded}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
}

func TestRFC6888_REQ12_EventsAndDestinationLogging(t *testing.T) {
	for _, logDst := range []bool{false, true} {
		c := testConfig()
		c.LogDestinations = logDst
		h := newHarness(t, c)
		h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside)
		h.clock.Advance(301 * time.Second)
		h.housekeep()
		evs := h.eng.DrainEvents(nil)
		var created, deleted *Event
		for i := range evs {
			switch evs[i].Type {
			case SessionCreated:
				created = &evs[i]
			case SessionDeleted:
				deleted = &evs[i]
			}
		}
		if created == nil || deleted == nil {
			t.Fatalf("events %+v", evs)
		}
		for _, e := range []*Event{created, deleted} {
			if e.InsideAddr != [4]byte{10, 0, 0, 2} || e.InsidePort != 1000 || e.OutsideAddr != [4]byte{198, 18, 0, 100} || e.UnixNano == 0 {
				t.Fatalf("event %+v", e)
			}
			hasDst := e.RemoteAddr != [4]byte{}
			if hasDst != logDst {
				t.Fatalf("LogDestinations=%v but event remote %v", logDst, e.RemoteAddr)
			}
		}
		if deleted.UnixNano-created.UnixNano != int64(301*time.Second) {
			t.Fatalf("deletion stamped %v after creation", time.Duration(deleted.UnixNano-created.UnixNano))
		}
	}
}

func TestFullEventRingDropsEventsNotPackets(t *testing.T) {
	c := testConfig()
	c.Limits.MaxSessions = 8192
	h := newHarness(t, c)
	n := h.eng.evCap + 100
	for i := 0; i < n; i++ {
		h.ports[Inside].Inject(udp("10.0.0.2", uint16(1000+i), "198.18.0.2", 9))
		if i%64 == 63 {
			h.w.Poll()
			h.ports[Outside].Drain()
		}
	}
	h.w.Poll()
	h.ports[Outside].Drain()
	ctr := h.counters()
	if ctr[TxPackets+Counter(Outside)] != uint64(n) {
		t.Fatalf("forwarded %d of %d", ctr[TxPackets+Counter(Outside)], n)
	}
	if ctr[EventsDropped] == 0 {
		t.Fatal("no events counted as dropped")
	}
}

func TestPendingNeighbour(t *testing.T) {
	c := testConfig()
	h := newHarness(t, c)
	h.neigh.setPending([4]byte{10, 0, 0, 2}, true)
	out := eps(h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside))
	// The reply waits for the inside host's MAC.
	h.inject(Outside, udp("198.18.0.2", 9, out.src, out.sport))
	if n := len(h.ports[Inside].Drain()); n != 0 {
		t.Fatalf("%d frames sent to an unresolved neighbour", n)
	}
	h.neigh.setPending([4]byte{10, 0, 0, 2}, false)
	h.w.Poll()
	if got := h.collect(Inside); len(got) != 1 || eps(got[0]).dst != "10.0.0.2" {
		t.Fatalf("held frame not released: %d", len(got))
	}
	// Overflow and timeout are counted: 256 frames wait (the default),
	// the rest are dropped.
	h.neigh.setPending([4]byte{10, 0, 0, 2}, true)
	for i := 0; i < 270; i++ {
		h.ports[Outside].Inject(udp("198.18.0.2", 9, out.src, out.sport))
	}
	for i := 0; i < 6; i++ {
		h.w.Poll()
	}
	if got := h.counters().Drops(drop.NeighPending); got != 14 {
		t.Fatalf("overflow drops %d, want 14", got)
	}
	h.clock.Advance(4 * time.Second)
	h.w.Poll()
	if got := h.counters().Drops(drop.NeighFailed); got != 256 {
		t.Fatalf("timed-out drops %d, want 256", got)
	}
	h.checkNoLeaks()
}

func TestEveryFrameAccounted(t *testing.T) {
	// rx = tx + drops + held, whatever the mix (ICMP errors the NAT sends
	// in place of a dropped frame count as both).
	h := newHarness(t, forwardConfig())
	frames := [][]byte{
		udp("10.0.0.2", 1, "198.18.0.2", 9),
		udp("192.0.2.1", 1, "198.18.0.2", 9),      // not inside
		tcp("10.0.0.2", 2, "198.18.0.2", 80, "S"), // ok
		pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, ttl: 1}),
		echo("10.0.0.2", "198.18.0.2", 1, true), // unsolicited reply
		{0x01, 0x02},                            // runt
	}
	arp := gopacket.NewSerializeBuffer()
	_ = gopacket.SerializeLayers(arp, gopacket.SerializeOptions{},
		&layers.Ethernet{SrcMAC: macInsideHost[:], DstMAC: macNATIn[:], EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			SourceHwAddress: macInsideHost[:], SourceProtAddress: []byte{10, 0, 0, 2}, DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 1}})
	frames = append(frames, arp.Bytes())
	h.inject(Inside, frames...)
	h.inject(Outside, udp("198.18.0.2", 9, "198.18.0.100", 1), udp("198.18.0.2", 9, "198.18.0.99", 1))
	h.ports[Inside].Drain()
	h.ports[Outside].Drain()
	c := h.counters()
	var drops uint64
	for r := drop.Reason(1); r < drop.NumReasons; r++ {
		drops += c.Drops(r)
	}
	rx := c[RxPackets] + c[RxPackets+1]
	tx := c[TxPackets] + c[TxPackets+1]
	if rx != tx+drops-c[ICMPErrorsSent] {
		t.Fatalf("rx %d != tx %d + drops %d - icmp %d (%v)", rx, tx, drops, c[ICMPErrorsSent], h.drops())
	}
	h.checkNoLeaks()
}
