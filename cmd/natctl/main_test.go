package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// now is natctl's clock in tests: the test core's clock (StartTime + 1h)
// plus 30 s, so that idle times are fixed.
var now = mgmttest.StartTime.Add(time.Hour + 30*time.Second)

type testEnv struct {
	core  *mgmttest.Core
	admin string
	ro    string
}

// newTestEnv serves a test core with one forward and one static mapping.
func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	core := mgmttest.Start(t, mgmttest.Options{})
	if err := core.AddPortForward(nat.PortForward{Proto: nat.TCP, Outside: netip.MustParseAddrPort("198.18.0.100:8080"), Inside: netip.MustParseAddrPort("10.0.0.50:80")}); err != nil {
		t.Fatal(err)
	}
	if err := core.AddStaticMapping(nat.StaticMapping{Inside: netip.MustParseAddr("10.0.0.60"), Outside: netip.MustParseAddr("198.18.0.160")}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &testEnv{core: core, admin: filepath.Join(dir, "natd.sock"), ro: filepath.Join(dir, "natd-ro.sock")}
	mgmttest.Server(t, core, mgmt.ServerOptions{
		SocketPath: e.admin, ReadOnlySocketPath: e.ro,
		Logger: slog.New(slog.DiscardHandler),
		Now:    func() time.Time { return mgmttest.StartTime.Add(90 * time.Minute) },
	})
	return e
}

// traffic makes three sessions whose endpoints do not depend on random
// port allocation: two through the static mapping, one through the
// forward.
func (e *testEnv) traffic(t *testing.T) {
	t.Helper()
	for _, f := range []func() error{
		func() error {
			return e.core.Inbound(nat.UDP, netip.MustParseAddrPort("203.0.113.9:5353"), netip.MustParseAddrPort("198.18.0.160:53"))
		},
		func() error {
			return e.core.Inbound(nat.TCP, netip.MustParseAddrPort("203.0.113.10:40000"), netip.MustParseAddrPort("198.18.0.100:8080"))
		},
		func() error {
			return e.core.Open(nat.TCP, netip.MustParseAddrPort("10.0.0.60:33000"), netip.MustParseAddrPort("203.0.113.11:443"))
		},
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	// A stray packet, to have a drop reason.
	e.core.Send(nat.Outside, mgmttest.Frame(nat.Outside, nat.UDP, netip.MustParseAddrPort("203.0.113.9:53"), netip.MustParseAddrPort("198.18.0.100:9")))
}

type result struct {
	out, err string
	code     int
}

// natctl runs natctl in-process against socket with args.
func natctl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut, func(k string) string { return env[k] })
	a.now = func() time.Time { return now }
	a.isTTY = func() bool { return env["TTY"] == "1" }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, a)
	return result{out.String(), errOut.String(), code}
}

func (e *testEnv) admin_(t *testing.T, args ...string) result {
	t.Helper()
	return natctl(t, nil, append([]string{"--socket", e.admin}, args...)...)
}

func (e *testEnv) readonly(t *testing.T, args ...string) result {
	t.Helper()
	return natctl(t, nil, append([]string{"--socket", e.ro}, args...)...)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func TestGoldenOutput(t *testing.T) {
	e := newTestEnv(t)
	e.traffic(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"status", []string{"status"}},
		{"status_json", []string{"status", "-o", "json"}},
		{"stats", []string{"stats"}},
		{"stats_json", []string{"stats", "-o", "json"}},
		{"sessions", []string{"sessions"}},
		{"sessions_wide", []string{"sessions", "-o", "wide"}},
		{"sessions_json", []string{"sessions", "-o", "json"}},
		{"sessions_filtered", []string{"sessions", "--proto", "tcp", "--outside", "198.18.0.100"}},
		{"rules", []string{"rules", "list"}},
		{"rules_json", []string{"rules", "-o", "json"}},
		{"pools", []string{"pools", "list"}},
		{"pools_json", []string{"pools", "-o", "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.readonly(t, tc.args...)
			if r.code != 0 || r.err != "" {
				t.Fatalf("exit %d: %s", r.code, r.err)
			}
			if strings.HasSuffix(tc.name, "json") && !json.Valid([]byte(r.out)) && !validJSONLines(r.out) {
				t.Errorf("not JSON:\n%s", r.out)
			}
			golden(t, tc.name, r.out)
		})
	}
}

func validJSONLines(s string) bool {
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if !json.Valid([]byte(l)) {
			return false
		}
	}
	return true
}

// TestPoolsListDraining: after a static mapping and a port forward are
// deleted while their sessions live, `pools list` shows their addresses
// draining with the sessions they still hold (issue 11, defects 3 and 4).
func TestPoolsListDraining(t *testing.T) {
	e := newTestEnv(t)
	e.traffic(t)
	if err := e.core.AddPortForward(nat.PortForward{Proto: nat.TCP, Outside: netip.MustParseAddrPort("198.18.0.200:22"), Inside: netip.MustParseAddrPort("10.0.0.52:22")}); err != nil {
		t.Fatal(err)
	}
	if err := e.core.Inbound(nat.TCP, netip.MustParseAddrPort("203.0.113.12:50000"), netip.MustParseAddrPort("198.18.0.200:22")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"rules", "del", "static", "10.0.0.60"}, {"rules", "del", "forward", "tcp", "198.18.0.200:22"}} {
		if r := e.admin_(t, args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.err)
		}
	}
	r := e.readonly(t, "pools", "list")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	golden(t, "pools_draining", r.out)
	r = e.readonly(t, "pools", "-o", "json")
	var pools []poolJSON
	if err := json.Unmarshal([]byte(r.out), &pools); err != nil {
		t.Fatalf("%v:\n%s", err, r.out)
	}
	got := map[string]uint64{}
	for _, p := range pools {
		for _, a := range p.Draining {
			if !a.Draining {
				t.Errorf("%s listed under %s but not draining", a.Addr, p.Name)
			}
			got[a.Addr] = a.RuleSessions
		}
	}
	// The static mapping opened two sessions (one inbound, one outbound),
	// the forward one.
	if got["198.18.0.160"] != 2 || got["198.18.0.200"] != 1 || len(got) != 2 {
		t.Fatalf("draining addresses %v", got)
	}
}
