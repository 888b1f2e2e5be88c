package ipfix

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/xnat/xnat/mgmt/export"
)

var at = time.Date(2026, 12, 4, 14, 2, 0, 0, time.UTC) // 0x6b12c7d8

func goldenRecords() []export.Record {
	return []export.Record{
		{Kind: export.KindSession, TimeMs: 1796392920123, NATEvent: export.NAT44SessionCreate, Proto: 17,
			Src: [4]byte{10, 0, 0, 7}, SrcPort: 5555, PostSrc: [4]byte{198, 18, 0, 7}, PostSrcPort: 40001,
			Dst: [4]byte{198, 18, 0, 2}, DstPort: 53},
		{Kind: export.KindBlock, TimeMs: 1796392920456, NATEvent: export.PortBlockAllocation,
			Src: [4]byte{10, 0, 0, 7}, PostSrc: [4]byte{198, 18, 0, 7}, PortStart: 39936, PortEnd: 40447},
	}
}

// TestMessageGolden checks one message, templates included, against bytes
// written out by hand from RFC 7011 section 3 and the IANA element IDs.
func TestMessageGolden(t *testing.T) {
	got, n := appendMessage(nil, at, 7, 42, true, goldenRecords(), maxUDPMessage)
	if n != 2 {
		t.Fatalf("%d records in the message, want 2", n)
	}
	want := []byte{
		// Message header (RFC 7011 section 3.1)
		0x00, 0x0a, // version 10
		0x00, 0xf5, // length 245
		0x6b, 0x12, 0xc7, 0xd8, // export time 2026-12-04T14:02:00Z
		0x00, 0x00, 0x00, 0x07, // sequence number: 7 data records before
		0x00, 0x00, 0x00, 0x2a, // observation domain 42
		// Template set (set ID 2), 168 bytes
		0x00, 0x02, 0x00, 0xa8,
		// template 256, NAT44 session: 9 fields
		0x01, 0x00, 0x00, 0x09,
		0x01, 0x43, 0x00, 0x08, // observationTimeMilliseconds (323), 8
		0x00, 0xe6, 0x00, 0x01, // natEvent (230), 1
		0x00, 0x04, 0x00, 0x01, // protocolIdentifier (4), 1
		0x00, 0x08, 0x00, 0x04, // sourceIPv4Address (8), 4
		0x00, 0x07, 0x00, 0x02, // sourceTransportPort (7), 2
		0x00, 0xe1, 0x00, 0x04, // postNATSourceIPv4Address (225), 4
		0x00, 0xe3, 0x00, 0x02, // postNAPTSourceTransportPort (227), 2
		0x00, 0x0c, 0x00, 0x04, // destinationIPv4Address (12), 4
		0x00, 0x0b, 0x00, 0x02, // destinationTransportPort (11), 2
		// template 257, address binding: 4 fields
		0x01, 0x01, 0x00, 0x04,
		0x01, 0x43, 0x00, 0x08, 0x00, 0xe6, 0x00, 0x01,
		0x00, 0x08, 0x00, 0x04, 0x00, 0xe1, 0x00, 0x04,
		// template 258, port block: 8 fields
		0x01, 0x02, 0x00, 0x08,
		0x01, 0x43, 0x00, 0x08, 0x00, 0xe6, 0x00, 0x01,
		0x00, 0x08, 0x00, 0x04, 0x00, 0xe1, 0x00, 0x04,
		0x01, 0x69, 0x00, 0x02, // portRangeStart (361), 2
		0x01, 0x6a, 0x00, 0x02, // portRangeEnd (362), 2
		0x01, 0x6b, 0x00, 0x02, // portRangeStepSize (363), 2
		0x01, 0x6c, 0x00, 0x02, // portRangeNumPorts (364), 2
		// template 259, addresses exhausted: 4 fields
		0x01, 0x03, 0x00, 0x04,
		0x01, 0x43, 0x00, 0x08, 0x00, 0xe6, 0x00, 0x01,
		0x00, 0x04, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04,
		// template 260, ports exhausted: 5 fields
		0x01, 0x04, 0x00, 0x05,
		0x01, 0x43, 0x00, 0x08, 0x00, 0xe6, 0x00, 0x01,
		0x00, 0x04, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04, 0x00, 0xe1, 0x00, 0x04,
		// template 261, quota exceeded: 5 fields
		0x01, 0x05, 0x00, 0x05,
		0x01, 0x43, 0x00, 0x08, 0x00, 0xe6, 0x00, 0x01,
		0x01, 0xd2, 0x00, 0x04, // natQuotaExceededEvent (466), 4
		0x00, 0x08, 0x00, 0x04,
		0x01, 0xd9, 0x00, 0x04, // maxEntriesPerUser (473), 4
		// Data set for template 256, 32 bytes
		0x01, 0x00, 0x00, 0x20,
		0x00, 0x00, 0x01, 0xa2, 0x41, 0x5c, 0xa4, 0x3b, // 1796392920123 ms
		0x04,                   // natEvent 4: NAT44 session create
		0x11,                   // UDP
		0x0a, 0x00, 0x00, 0x07, // 10.0.0.7
		0x15, 0xb3, // 5555
		0xc6, 0x12, 0x00, 0x07, // 198.18.0.7
		0x9c, 0x41, // 40001
		0xc6, 0x12, 0x00, 0x02, // 198.18.0.2
		0x00, 0x35, // 53
		// Data set for template 258, 29 bytes
		0x01, 0x02, 0x00, 0x1d,
		0x00, 0x00, 0x01, 0xa2, 0x41, 0x5c, 0xa5, 0x88, // 1796392920456 ms
		0x10,                   // natEvent 16: port block allocation
		0x0a, 0x00, 0x00, 0x07, // 10.0.0.7
		0xc6, 0x12, 0x00, 0x07, // 198.18.0.7
		0x9c, 0x00, // 39936
		0x9d, 0xff, // 40447
		0x00, 0x01, // step 1
		0x02, 0x00, // 512 ports
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("message differs:\ngot  % x\nwant % x", got, want)
	}
}

// TestMessagesSplitAndNumbered: records that do not fit one UDP message go
// in the next, and sequence numbers count the data records sent before.
func TestMessagesSplitAndNumbered(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	now := at
	e, err := New(Options{Collector: pc.LocalAddr().String(), ObservationDomain: 9, TemplateRefresh: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var recs []export.Record
	for i := 0; i < 100; i++ {
		recs = append(recs, goldenRecords()[0])
	}
	if n, err := e.Send(recs); n != 100 || err != nil {
		t.Fatalf("sent %d: %v", n, err)
	}
	now = now.Add(61 * time.Second)
	if err := e.Tick(now); err != nil {
		t.Fatal(err)
	}
	// 1400-byte messages: the first has the templates and 1216/32 = 38
	// records... count what arrives instead of assuming.
	total, seqs, templ := 0, []uint32{}, 0
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for total < 100 || templ < 2 {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d records, %d template sets: %v", total, templ, err)
		}
		m := buf[:n]
		if binary.BigEndian.Uint16(m) != 10 || int(binary.BigEndian.Uint16(m[2:])) != n || n > maxUDPMessage {
			t.Fatalf("bad header % x (datagram of %d)", m[:16], n)
		}
		seqs = append(seqs, binary.BigEndian.Uint32(m[8:]))
		if binary.BigEndian.Uint32(m[12:]) != 9 {
			t.Fatal("observation domain")
		}
		for off := headerLen; off < n; {
			id, l := binary.BigEndian.Uint16(m[off:]), int(binary.BigEndian.Uint16(m[off+2:]))
			switch id {
			case templateSetID:
				templ++
			case TemplateID(export.KindSession):
				total += (l - setHeaderLen) / 28
			default:
				t.Fatalf("unexpected set %d", id)
			}
			off += l
		}
		if seqs[len(seqs)-1] != uint32(total-countLast(m)) {
			t.Fatalf("message %d: sequence %d, %d records before it", len(seqs), seqs[len(seqs)-1], total-countLast(m))
		}
	}
	if total != 100 || templ != 2 || len(seqs) < 3 {
		t.Fatalf("%d records, %d template sets, %d messages", total, templ, len(seqs))
	}
	s := fmt.Sprint(e.Templates(), e.Messages())
	if s != fmt.Sprint(2*numTemplateRec, len(seqs)) {
		t.Fatalf("templates, messages = %s", s)
	}
}

// countLast counts the session records in message m.
func countLast(m []byte) int {
	c := 0
	for off := headerLen; off < len(m); {
		id, l := binary.BigEndian.Uint16(m[off:]), int(binary.BigEndian.Uint16(m[off+2:]))
		if id == TemplateID(export.KindSession) {
			c += (l - setHeaderLen) / 28
		}
		off += l
	}
	return c
}

// TestTCPTemplatesPerConnection: over TCP the templates go once at the
// start of each connection, and a broken stream is redialled.
func TestTCPTemplatesPerConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e, err := New(Options{Collector: ln.Addr().String(), Transport: export.TCP, ObservationDomain: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// readMessage reads one message and reports whether it has templates.
	readMessage := func(c net.Conn) bool {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		h := make([]byte, headerLen)
		if _, err := io.ReadFull(c, h); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, int(binary.BigEndian.Uint16(h[2:]))-headerLen)
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		return binary.BigEndian.Uint16(body) == templateSetID
	}
	recs := goldenRecords()
	if _, err := e.Send(recs); err != nil {
		t.Fatal(err)
	}
	c1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if !readMessage(c1) {
		t.Fatal("first message on the connection has no templates")
	}
	if _, err := e.Send(recs); err != nil {
		t.Fatal(err)
	}
	if readMessage(c1) {
		t.Fatal("templates sent again on the same TCP connection")
	}
	// The collector goes away; the exporter redials and starts over
	// with the templates.
	c1.Close()
	deadline := time.Now().Add(20 * time.Second)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	var c2 net.Conn
	for c2 == nil {
		if time.Now().After(deadline) {
			t.Fatal("the exporter did not reconnect")
		}
		e.Send(recs) // fails until the broken stream is noticed and redialled
		select {
		case c2 = <-accepted:
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer c2.Close()
	if !readMessage(c2) {
		t.Fatal("first message on the new connection has no templates")
	}
}
