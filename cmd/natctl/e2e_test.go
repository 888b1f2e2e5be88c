package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/internal/wait"
	"github.com/xnat/xnat/mgmt/events"
)

func wantRun(t *testing.T, r result, code int, outHas, errHas string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.out, outHas) || !strings.Contains(r.err, errHas) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout containing %q, stderr containing %q",
			r.code, r.out, r.err, code, outHas, errHas)
	}
}

func TestRulesAndPoolsEndToEnd(t *testing.T) {
	e := newTestEnv(t)
	wantRun(t, e.admin_(t, "rules", "add", "forward", "udp", "198.18.0.100:5353", "10.0.0.53:53"), 0, "added forward udp 198.18.0.100:5353 -> 10.0.0.53:53", "")
	// Idempotent.
	wantRun(t, e.admin_(t, "rules", "add", "forward", "udp", "198.18.0.100:5353", "10.0.0.53:53"), 0, "added forward", "")
	wantRun(t, e.admin_(t, "rules", "add", "forward", "udp", "198.18.0.100:5353", "10.0.0.54:53"), 4, "",
		"natctl: conflict: add forward udp 198.18.0.100:5353 -> 10.0.0.54:53: udp 198.18.0.100:5353 is already forwarded to 10.0.0.53:53")
	wantRun(t, e.admin_(t, "rules", "add", "static", "10.0.0.61", "198.18.0.161"), 0, "added static 10.0.0.61 <-> 198.18.0.161", "")
	wantRun(t, e.admin_(t, "rules", "add", "static", "192.168.0.1", "198.18.0.162"), 4, "", "natctl: invalid: add static 192.168.0.1 <-> 198.18.0.162: static_mappings[2].inside: inside 192.168.0.1 is not in an inside prefix")
	wantRun(t, e.admin_(t, "pools", "add", "edge", "198.18.1.0/29", "198.18.2.1"), 0, "added pool edge 198.18.1.0/29 198.18.2.1", "")
	wantRun(t, e.admin_(t, "pools", "add", "bad", "198.18.1.5/29"), 4, "", "198.18.1.5/29 has host bits set (did you mean 198.18.1.0/29?)")

	r := e.readonly(t, "rules", "list", "-o", "json")
	var rules []ruleJSON
	if err := json.Unmarshal([]byte(r.out), &rules); err != nil || len(rules) != 4 {
		t.Fatalf("rules: %v %s", err, r.out)
	}
	r = e.readonly(t, "pools", "-o", "json")
	var pools []poolJSON
	if err := json.Unmarshal([]byte(r.out), &pools); err != nil || len(pools) != 2 || strings.Join(pools[1].Prefixes, " ") != "198.18.1.0/29 198.18.2.1" {
		t.Fatalf("pools: %v %s", err, r.out)
	}

	wantRun(t, e.admin_(t, "rules", "del", "forward", "udp", "198.18.0.100:5353"), 0, "deleted forward udp 198.18.0.100:5353", "")
	wantRun(t, e.admin_(t, "rules", "del", "forward", "udp", "198.18.0.100:5353"), 4, "", "natctl: not found: delete forward udp 198.18.0.100:5353: no udp port forward on 198.18.0.100:5353")
	wantRun(t, e.admin_(t, "rules", "delete", "static", "10.0.0.61"), 0, "deleted static 10.0.0.61", "")
	wantRun(t, e.admin_(t, "pools", "del", "edge"), 0, "deleted pool edge", "")
	wantRun(t, e.admin_(t, "pools", "del", "main"), 0, "deleted pool main", "") // the forward and the static mapping remain
	wantRun(t, e.readonly(t, "pools"), 0, "NAME  PREFIXES\n", "")

	// The read-only socket refuses every change, and says where to go.
	for _, args := range [][]string{
		{"rules", "add", "static", "10.0.0.62", "198.18.0.162"},
		{"rules", "del", "static", "10.0.0.60"},
		{"pools", "add", "x", "198.18.3.0/30"},
		{"pools", "del", "main"},
		{"sessions", "flush", "--all"},
		{"sessions", "delete", "1", "1"},
		{"reload"},
	} {
		wantRun(t, e.readonly(t, args...), 4, "", "natctl: permission denied: this connection (read-only socket "+e.ro+") is read-only and")
		wantRun(t, e.readonly(t, args...), 4, "", "; use the admin socket "+e.admin)
	}
}

func TestSessionsEndToEnd(t *testing.T) {
	e := newTestEnv(t)
	e.traffic(t)
	for i := 0; i < 20; i++ {
		in := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.5"), uint16(20000+i))
		if err := e.core.Open(nat.UDP, in, netip.MustParseAddrPort("203.0.113.9:53")); err != nil {
			t.Fatal(err)
		}
	}
	r := e.readonly(t, "sessions", "-o", "json")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) != 23 {
		t.Fatalf("exit %d, %d lines", r.code, len(lines))
	}
	var s sessionJSON
	for _, l := range lines {
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatal(err)
		}
		if s.Inside == "10.0.0.5:20007" {
			break
		}
	}
	wantRun(t, e.readonly(t, "sessions", "--inside", "10.0.0.5:20007"), 0, "10.0.0.5:20007", "")
	wantRun(t, e.readonly(t, "sessions", "--inside", "10.0.0.5", "--port", "20007"), 0, "1 sessions\n", "")
	wantRun(t, e.readonly(t, "sessions", "--outside", s.Outside), 0, "1 sessions\n", "")
	wantRun(t, e.readonly(t, "sessions", "--remote", "192.0.2.1"), 0, "no sessions\n", "")
	wantRun(t, e.admin_(t, "sessions", "delete", itoa(s.ID), itoa(s.Generation)), 0, "deleted session", "")
	wantRun(t, e.admin_(t, "sessions", "delete", itoa(s.ID), itoa(s.Generation)), 4, "", "natctl: not found: session")
	wantRun(t, e.admin_(t, "sessions", "flush"), 2, "", "sessions flush without a filter deletes every session: add --all")
	wantRun(t, e.admin_(t, "sessions", "flush", "--proto", "udp", "--inside", "10.0.0.5"), 0, "deleted 19 sessions", "")
	wantRun(t, e.admin_(t, "sessions", "flush", "--all", "-o", "json"), 0, `"deleted": 3`, "")
	wantRun(t, e.readonly(t, "sessions"), 0, "no sessions\n", "")
}

func itoa[T uint32 | uint64](v T) string { return strconv.FormatUint(uint64(v), 10) }

func TestStatsWatch(t *testing.T) {
	e := newTestEnv(t)
	e.traffic(t)
	// The test core's clock stands still; rates need it to move.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				e.core.Clock.Advance(100 * time.Millisecond)
			}
		}
	}()
	// Not a terminal: successive blocks; the second has rates.
	r := e.readonly(t, "stats", "--watch", "--interval", "100ms", "--count", "2")
	if r.code != 0 || strings.Count(r.out, "Time:") != 2 || strings.Count(r.out, "Rates:") != 1 || strings.Contains(r.out, "\x1b[") {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", r.code, r.err, r.out)
	}
	// A terminal: each block clears the screen and starts at home.
	r = natctl(t, map[string]string{"TTY": "1"}, "--socket", e.ro, "stats", "-w", "--interval", "100ms", "--count", "2")
	if r.code != 0 || strings.Count(r.out, "\x1b[H\x1b[2J") != 2 {
		t.Fatalf("tty watch: exit %d, %q", r.code, r.out)
	}
	// JSON: one object per line; rates from the second on.
	r = e.readonly(t, "stats", "-w", "--interval", "100ms", "--count", "3", "-o", "json")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("json watch: exit %d, %q", r.code, r.out)
	}
	var last statsJSON
	if err := json.Unmarshal([]byte(lines[2]), &last); err != nil || last.Rates == nil {
		t.Errorf("third update has no rates: %v %s", err, lines[2])
	}
	wantRun(t, e.readonly(t, "stats", "-w", "--interval", "10ms", "--count", "1"), 4, "", "natctl: invalid: interval 10ms is out of range 100ms..1h0m0s")
}

func TestEventsEndToEnd(t *testing.T) {
	e := newTestEnv(t)
	var r result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r = e.readonly(t, "events", "--count", "3", "-o", "json")
	}()
	waitSubscribers(t, e, 1)
	e.traffic(t)
	wg.Wait()
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), r.out)
	}
	// The lines are event-log records (docs/events.md).
	var recs []events.Record
	for _, l := range lines {
		var rec events.Record
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		recs = append(recs, rec)
	}
	if recs[0].Type != "session_created" || recs[0].Inside != "10.0.0.60:53" || recs[0].Outside != "198.18.0.160:53" || recs[0].Protocol != "udp" {
		t.Errorf("first event %+v", recs[0])
	}
	// Text output, filtered by type. The first natctl's subscription
	// ends on the server's goroutine after natctl has exited: wait for
	// it to go, so that the count below is the second one's.
	waitSubscribers(t, e, 0)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r = e.readonly(t, "events", "--count", "1", "--type", "session_deleted")
	}()
	waitSubscribers(t, e, 1)
	wantRun(t, e.admin_(t, "sessions", "flush", "--all"), 0, "deleted 3 sessions", "")
	wg.Wait()
	wantRun(t, r, 0, "session_deleted", "")
	if !strings.Contains(r.out, "reason operator worker 0\n") {
		t.Errorf("text event: %q", r.out)
	}
	wantRun(t, e.readonly(t, "events", "--type", "nonsense"), 2, "", `--type "nonsense": want one of session_created, session_deleted`)
}

func TestExitCodesAndMessages(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()

	// natd not running: no socket, or a socket nobody listens on.
	missing := filepath.Join(dir, "natd.sock")
	wantRun(t, natctl(t, nil, "--socket", missing, "status"), 3, "",
		"natctl: cannot reach natd at "+missing+": is natd running? (no such file or directory)\n")
	dead := filepath.Join(dir, "dead.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dead, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	wantRun(t, natctl(t, nil, "--socket", dead, "sessions"), 3, "",
		"natctl: cannot reach natd at "+dead+": is natd running? (connection refused)\n")

	// $XNAT_SOCKET, and --socket over it.
	wantRun(t, natctl(t, map[string]string{"XNAT_SOCKET": e.ro}, "status"), 0, "Version:", "")
	wantRun(t, natctl(t, map[string]string{"XNAT_SOCKET": missing}, "--socket", e.ro, "status"), 0, "Version:", "")

	// Usage errors.
	for _, args := range [][]string{
		{"frobnicate"},
		{"status", "extra"},
		{"--bogus", "status"},
		{"-o", "yaml", "status"},
		{"rules", "add", "forward", "sctp", "198.18.0.100:1", "10.0.0.1:1"},
		{"rules", "add", "forward", "tcp", "198.18.0.100", "10.0.0.1:1"},
		{"rules", "add", "static", "10.0.0.1"},
		{"pools", "add", "p", "not-a-prefix"},
		{"sessions", "--inside", "10.0.0"},
		{"sessions", "delete", "x", "1"},
		{"--addr", "127.0.0.1:1", "status"},
		{"--cert", "c.pem", "status"},
	} {
		r := natctl(t, nil, append([]string{"--socket", e.ro}, args...)...)
		if r.code != 2 || !strings.HasPrefix(r.err, "natctl: ") || !strings.Contains(r.err, "Run 'natctl --help' for usage.") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.err)
		}
	}
	// Success.
	wantRun(t, e.admin_(t, "reload"), 4, "", "natctl: natd is unavailable: no configuration file to reload")
	cfg := e.core.Config()
	e.core.SetReload(&cfg, nil)
	wantRun(t, e.admin_(t, "reload"), 0, "configuration reloaded\n", "")
}

func TestCompletion(t *testing.T) {
	e := newTestEnv(t)
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		r := natctl(t, nil, "completion", sh)
		if r.code != 0 || len(r.out) < 100 {
			t.Errorf("completion %s: exit %d, %d bytes", sh, r.code, len(r.out))
		}
	}
	// Dynamic completion of pool names asks natd.
	r := natctl(t, nil, "--socket", e.ro, "__complete", "pools", "del", "")
	if r.code != 0 || !strings.HasPrefix(r.out, "main\n") {
		t.Errorf("pool completion: %d %q %q", r.code, r.out, r.err)
	}
}

// natctl must never print to stdout on failure, so that scripts reading
// -o json get either JSON or nothing.
func TestNoStdoutOnFailure(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	a := newApp(&out, &errOut, func(string) string { return "" })
	code := run(context.Background(), []string{"--socket", filepath.Join(dir, "x.sock"), "-o", "json", "status"}, a)
	if code != 3 || out.Len() != 0 {
		t.Errorf("exit %d, stdout %q", code, out.String())
	}
}

// waitSubscribers waits, with a generous deadline, until natd's event
// stream has n subscribers.
func waitSubscribers(t *testing.T, e *testEnv, n int) {
	t.Helper()
	wait.Until(t, strconv.Itoa(n)+" event subscribers", 20*time.Second, func() bool { return e.core.Events.Stats().Subscribers == n })
}
