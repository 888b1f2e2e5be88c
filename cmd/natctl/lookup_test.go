package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xnat/xnat/dataplane/nat"
)

// TestLookupEndToEnd runs natctl lookup against the test core on the
// read-only socket: the flows seen are traced back to their subscriber.
func TestLookupEndToEnd(t *testing.T) {
	e := newTestEnv(t)
	if err := e.core.Open(nat.UDP, netip.MustParseAddrPort("10.0.0.5:20000"), netip.MustParseAddrPort("203.0.113.11:53")); err != nil {
		t.Fatal(err)
	}
	ss, _ := e.core.Engine.Sessions(nat.SessionFilter{InsideAddr: netip.MustParseAddr("10.0.0.5")}, 0, 10)
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	out := ss[0].Outside.String()
	wantRun(t, e.readonly(t, "lookup", "outside", out), 0, "10.0.0.5:20000", "")
	wantRun(t, e.readonly(t, "lookup", "outside", out, "--proto", "udp", "-o", "json"), 0, `"subscriber": "10.0.0.5"`, "")
	wantRun(t, e.readonly(t, "lookup", "outside", out, "--proto", "tcp"), 4, "", "nobody holds")
	wantRun(t, e.readonly(t, "lookup", "outside", out, "--at", "2026-01-01T00:00:00Z"), 0, "note: live state says who holds the port now", "")
	wantRun(t, e.readonly(t, "lookup", "outside", "198.18.0.160:53"), 0, "static", "")
	wantRun(t, e.readonly(t, "lookup", "inside", "10.0.0.5"), 0, "paired with 198.18.0.100, 1 sessions, 1 ports", "")
	wantRun(t, e.readonly(t, "lookup", "inside", "10.0.0.77"), 4, "", "holds nothing")
	wantRun(t, e.readonly(t, "lookup", "outside", "198.18.0.100"), 2, "", "address:port")
}

const detYAML = `interfaces:
  inside: {name: in0}
  outside: {name: out0}
nat:
  inside_prefixes: [10.0.0.0/22, 10.1.0.0/24]
  pools:
    - name: cgn
      addresses: [198.18.0.0/27, 198.18.1.0/29]
  port_allocation: deterministic
  ports_per_subscriber: 2000
`

// TestDetmapOffline computes the deterministic table from a file, with no
// natd: whole table, one subscriber, one public port, and the refusal of a
// pool too small.
func TestDetmapOffline(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "natd.yaml")
	if err := os.WriteFile(f, []byte(detYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	r := natctl(t, nil, "detmap", "--config", f, "-o", "csv")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 1281 || lines[0] != "subscriber,outside,port_min,port_max" || lines[1] != "10.0.0.0,198.18.0.0,1024,3023" ||
		lines[1025] != "10.1.0.0,198.18.1.0,1024,3023" || lines[1280] != "10.1.0.255,198.18.1.7,63024,65023" {
		t.Fatalf("%d lines: %q %q %q", len(lines), lines[1], lines[1025], lines[len(lines)-1])
	}
	wantRun(t, natctl(t, nil, "detmap", "--config", f, "--outside", "198.18.0.1:5000"), 0, "10.0.0.33        198.18.0.1       3024-5023", "")
	wantRun(t, natctl(t, nil, "detmap", "--config", f, "--inside", "10.0.0.33", "-o", "json"), 0, `[{"subscriber":"10.0.0.33","outside":"198.18.0.1","port_min":3024,"port_max":5023}]`, "")
	wantRun(t, natctl(t, nil, "detmap", "--config", f, "--outside", "198.18.0.1:65500"), 1, "", "belongs to no subscriber")
	short := strings.Replace(detYAML, "198.18.1.0/29", "198.18.1.0/30", 1)
	if err := os.WriteFile(f, []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	wantRun(t, natctl(t, nil, "detmap", "--config", f), 1, "", "1280 subscribers need 40 addresses")
	wantRun(t, natctl(t, nil, "detmap"), 2, "", "--config")
}
