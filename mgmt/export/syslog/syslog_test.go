package syslog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt/export"
)

func TestMessageFormat(t *testing.T) {
	r, _ := export.FromEvent(&nat.Event{Type: nat.BlockAllocated, UnixNano: 1796392920456_000000,
		InsideAddr: [4]byte{10, 0, 0, 7}, OutsideAddr: [4]byte{198, 18, 0, 7}, OutsidePort: 39936, PortEnd: 40447})
	got := string(AppendMessage(nil, "<134>", "cgn1", &r))
	want := "<134>1 2026-12-04T14:02:00.456Z cgn1 xnat - NAT - event=block_allocated natEvent=16 sourceIPv4Address=10.0.0.7 " +
		"postNATSourceIPv4Address=198.18.0.7 portRangeStart=39936 portRangeEnd=40447 portRangeStepSize=1 portRangeNumPorts=512"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	r, _ = export.FromEvent(&nat.Event{Type: nat.SessionDeleted, Proto: nat.TCP, UnixNano: 1796392920123_000000,
		InsideAddr: [4]byte{10, 0, 0, 7}, InsidePort: 5555, OutsideAddr: [4]byte{198, 18, 0, 7}, OutsidePort: 40001})
	got = string(AppendMessage(nil, "<134>", "cgn1", &r))
	want = "<134>1 2026-12-04T14:02:00.123Z cgn1 xnat - NAT - event=session_deleted natEvent=5 protocolIdentifier=6 sourceIPv4Address=10.0.0.7 " +
		"sourceTransportPort=5555 postNATSourceIPv4Address=198.18.0.7 postNAPTSourceTransportPort=40001 destinationIPv4Address=0.0.0.0 destinationTransportPort=0"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestTCPFramingAndQueue runs a Queue over TCP: octet-counted frames
// arrive whole, and events offered to a full queue are counted dropped,
// never blocking Offer.
func TestTCPFramingAndQueue(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	enc, err := New(Options{Server: ln.Addr().String(), Transport: export.TCP, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	q := export.NewQueue("syslog", enc, 4, nil)
	evs := make([]nat.Event, 10)
	for i := range evs {
		evs[i] = nat.Event{Type: nat.AddressBound, UnixNano: 1796392920000_000000, InsideAddr: [4]byte{10, 0, 0, byte(i)}, OutsideAddr: [4]byte{198, 18, 0, 1}}
	}
	q.Offer(evs) // 4 fit, 6 dropped
	if s := q.Stats(); s.Dropped != 6 {
		t.Fatalf("dropped %d, want 6", s.Dropped)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i < 4; i++ {
		// RFC 6587 octet counting: "LEN SP MSG".
		count, err := br.ReadString(' ')
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if _, err := fmt.Sscanf(count, "%d ", &n); err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(msg), "<134>1 ") || !strings.Contains(string(msg), "event=address_bound natEvent=14 sourceIPv4Address=10.0.0.") {
			t.Fatalf("message %q", msg)
		}
	}
	cancel()
	<-done
	if s := q.Stats(); s.Sent != 4 || !s.Up || s.Messages != 4 {
		t.Fatalf("stats %+v", s)
	}
}
