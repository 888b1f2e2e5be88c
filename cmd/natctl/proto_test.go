package main

import (
	"strings"
	"testing"
	"time"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// TestProtoNames checks natctl's protocol words, which come from the
// engine's one table of names (nat.Proto): what --proto reads, what the
// outputs print, and how a drop sample names an IP protocol number.
func TestProtoNames(t *testing.T) {
	for _, c := range []struct {
		in   string
		icmp bool
		want xnatv1.Protocol
		err  string
	}{
		{"tcp", false, xnatv1.Protocol_PROTOCOL_TCP, ""},
		{"UDP", false, xnatv1.Protocol_PROTOCOL_UDP, ""},
		{"icmp", true, xnatv1.Protocol_PROTOCOL_ICMP, ""},
		{"icmp", false, 0, `protocol "icmp": want tcp or udp`},
		{"sctp", true, 0, `protocol "sctp": want tcp, udp or icmp`},
		{"", false, 0, `protocol "": want tcp or udp`},
	} {
		got, err := parseProto(c.in, c.icmp)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseProto(%q, %v) = %v, %v; want error %q", c.in, c.icmp, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseProto(%q, %v) = %v, %v; want %v", c.in, c.icmp, got, err, c.want)
		}
		if n := protoName(got); n != strings.ToLower(c.in) {
			t.Errorf("protoName(%v) = %q, want %q", got, n, strings.ToLower(c.in))
		}
	}
	if n := protoName(xnatv1.Protocol_PROTOCOL_UNSPECIFIED); n != "" {
		t.Errorf("protoName(unspecified) = %q, want empty", n)
	}
	if strings.Join(protoWords, ",") != "tcp,udp,icmp" {
		t.Errorf("completions %v", protoWords)
	}
	at := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	for proto, want := range map[uint32]string{1: "icmp", 6: "tcp", 17: "udp", 47: "proto 47", 262: "proto 262"} {
		if got := sampleText(at, "inside", proto, "10.0.0.2", "198.18.0.2"); !strings.HasPrefix(got, "06:00:00 "+want+" ") {
			t.Errorf("sampleText(proto %d) = %q, want the name %q", proto, got, want)
		}
	}
}
