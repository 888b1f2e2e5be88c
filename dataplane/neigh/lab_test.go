package neigh

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/fwd"
)

// These tests run the Table against a real kernel in bench/lab's NAT
// topology:
//
//	in1 10.0.0.2, in2 10.0.0.3 ── br0 ── nat-in 10.0.0.1 [nat] nat-out 198.18.0.1 ── 198.18.0.2 [out]
//
// They never send traffic from the test except where a test says so (a
// ping to make the kernel learn a neighbour by itself); resolution of
// misses is the Table's own doing.

type natLab struct {
	*lab.NAT
	t *testing.T
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	l := &natLab{NAT: lab.RequireNAT(t), t: t}
	// Make ARP give up after ~0.6 s instead of 3 s, so Failed shows up
	// quickly (2 broadcast probes, 300 ms apart).
	for _, dev := range []string{lab.NATInside, lab.NATOutside} {
		l.run(l.Box, "sysctl", "-q", "-w", "net.ipv4.neigh."+dev+".mcast_solicit=2", "net.ipv4.neigh."+dev+".retrans_time_ms=300")
	}
	return l
}

func (l *natLab) run(ns string, argv ...string) string {
	l.t.Helper()
	out, err := lab.Exec(ns, argv...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

func (l *natLab) mac(ns, dev string) [6]byte {
	l.t.Helper()
	return [6]byte(lab.MustLink(l.t, ns, dev).MAC)
}

// table starts a Table inside the nat namespace.
func (l *natLab) table(cfg Config) *Table {
	l.t.Helper()
	if cfg.Inside == (Link{}) {
		cfg.Inside = Link{Name: lab.NATInside}
	}
	if cfg.Outside == (Link{}) {
		cfg.Outside = Link{Name: lab.NATOutside}
	}
	var tb *Table
	err := lab.Do(l.Box, func() error {
		var err error
		tb, err = New(context.Background(), cfg)
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(tb.Close)
	return tb
}

// await polls Resolve until it returns want (and, for Resolved, mac), or
// fails the test after timeout with what it saw last.
func await(t *testing.T, tb *Table, side fwd.Side, dst string, want fwd.Resolution, mac [6]byte, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var gotMAC [6]byte
	var got fwd.Resolution
	for time.Since(start) < timeout {
		gotMAC, got = tb.Resolve(side, ip4(dst))
		if got == want && (want != fwd.Resolved || gotMAC == mac) {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("Resolve(%v, %s) = %x, %v after %v; want %x, %v\nstats %+v", side, dst, gotMAC, res2s(got), timeout, mac, res2s(want), tb.Stats())
	return 0
}

func TestLabResolvesLearnedNeighbours(t *testing.T) {
	l := newNATLab(t)
	outMAC := l.mac(l.Out, lab.HostDev)
	in1MAC := l.mac(l.In1, lab.HostDev)
	in2MAC := l.mac(l.In2, lab.HostDev)

	// One Table before the kernel learns anything (it must follow the
	// notifications), one after (it must pick them up from the dump).
	before := l.table(Config{RefreshInterval: -1})
	for _, dst := range []string{"198.18.0.2", "10.0.0.2", "10.0.0.3"} {
		l.run(l.Box, "ping", "-c", "1", "-W", "2", dst)
	}
	after := l.table(Config{RefreshInterval: -1})
	// A gateway route: its next hop is the outside server.
	l.run(l.Box, "ip", "route", "add", "198.18.99.0/24", "via", "198.18.0.2")

	for name, tb := range map[string]*Table{"before": before, "after": after} {
		t.Run(name, func(t *testing.T) {
			await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, outMAC, 2*time.Second)
			await(t, tb, fwd.Inside, "10.0.0.2", fwd.Resolved, in1MAC, 2*time.Second)
			await(t, tb, fwd.Inside, "10.0.0.3", fwd.Resolved, in2MAC, 2*time.Second)
			await(t, tb, fwd.Outside, "198.18.99.7", fwd.Resolved, outMAC, 2*time.Second)
			// Routes serve only their own side.
			await(t, tb, fwd.Inside, "198.18.0.2", fwd.Unreachable, [6]byte{}, time.Second)
			await(t, tb, fwd.Outside, "10.0.0.2", fwd.Unreachable, [6]byte{}, time.Second)
			st := tb.Stats()
			if st.Requested != 0 {
				t.Errorf("resolved learned neighbours but requested %d resolutions", st.Requested)
			}
			if st.Entries[fwd.Inside] < 2 || st.Entries[fwd.Outside] < 1 || st.Routes[fwd.Outside] < 2 {
				t.Errorf("stats %+v", st)
			}
			snap := tb.Snapshot()
			in, out := l.linkIndex(lab.NATInside), l.linkIndex(lab.NATOutside)
			if snap.Links[fwd.Inside] != (LinkState{in, true}) || snap.Links[fwd.Outside] != (LinkState{out, true}) {
				t.Errorf("links %+v, want inside %d outside %d up", snap.Links, in, out)
			}
		})
	}
}

func (l *natLab) linkIndex(dev string) int {
	l.t.Helper()
	return lab.MustLink(l.t, l.Box, dev).Index
}

func TestLabMissResolvesWithoutTraffic(t *testing.T) {
	l := newNATLab(t)
	tb := l.table(Config{})
	outMAC := l.mac(l.Out, lab.HostDev)
	in2MAC := l.mac(l.In2, lab.HostDev)
	if out := l.run(l.Box, "ip", "neigh", "show"); strings.TrimSpace(out) != "" {
		t.Fatalf("kernel already knows neighbours:\n%s", out)
	}
	if _, res := tb.Resolve(fwd.Outside, ip4("198.18.0.2")); res != fwd.Pending {
		t.Fatalf("first Resolve of an unknown neighbour: %v, want pending", res2s(res))
	}
	took := await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, outMAC, 2*time.Second)
	t.Logf("198.18.0.2 resolved %v after the first miss", took)
	// Through a gateway route the gateway is resolved.
	l.run(l.Box, "ip", "route", "add", "198.19.7.0/24", "via", "198.18.0.2")
	await(t, tb, fwd.Outside, "198.19.7.1", fwd.Resolved, outMAC, 2*time.Second)
	await(t, tb, fwd.Inside, "10.0.0.3", fwd.Resolved, in2MAC, 2*time.Second)

	st := tb.Stats()
	if st.Requested < 2 || st.Completed < 2 || st.Failed != 0 {
		t.Fatalf("stats %+v, want ≥2 requested and completed", st)
	}
	// The kernel entries our requests created are ordinary, garbage-
	// collectable ones (not PERMANENT).
	shown := l.run(l.Box, "ip", "neigh", "show", "198.18.0.2")
	if !strings.Contains(shown, "lladdr "+net.HardwareAddr(outMAC[:]).String()) || strings.Contains(shown, "PERMANENT") {
		t.Fatalf("kernel entry: %q", shown)
	}
}

func TestLabChangesWhileRunning(t *testing.T) {
	l := newNATLab(t)
	tb := l.table(Config{})
	outMAC := l.mac(l.Out, lab.HostDev)
	l.run(l.Box, "ping", "-c", "1", "-W", "2", "198.18.0.2")
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, outMAC, 2*time.Second)

	// Route added, then removed.
	await(t, tb, fwd.Outside, "198.19.1.1", fwd.Unreachable, [6]byte{}, time.Second)
	l.run(l.Box, "ip", "route", "add", "198.19.1.0/24", "via", "198.18.0.2")
	await(t, tb, fwd.Outside, "198.19.1.1", fwd.Resolved, outMAC, 2*time.Second)
	// A default route; a more specific blackhole still wins over it.
	l.run(l.Box, "ip", "route", "add", "default", "via", "198.18.0.2")
	l.run(l.Box, "ip", "route", "add", "blackhole", "198.19.66.0/24")
	await(t, tb, fwd.Outside, "192.0.2.55", fwd.Resolved, outMAC, 2*time.Second)
	await(t, tb, fwd.Outside, "198.19.66.1", fwd.Unreachable, [6]byte{}, 2*time.Second)
	l.run(l.Box, "ip", "route", "del", "default")
	l.run(l.Box, "ip", "route", "del", "198.19.1.0/24")
	await(t, tb, fwd.Outside, "198.19.1.1", fwd.Unreachable, [6]byte{}, 2*time.Second)
	await(t, tb, fwd.Outside, "192.0.2.55", fwd.Unreachable, [6]byte{}, 2*time.Second)

	// Neighbour changed by hand, then deleted: the Table follows, and the
	// deletion leads to a fresh resolution of the real address.
	fake := [6]byte{0x02, 0x00, 0x5e, 0x00, 0x53, 0x42}
	l.run(l.Box, "ip", "neigh", "replace", "198.18.0.2", "lladdr", net.HardwareAddr(fake[:]).String(), "dev", lab.NATOutside, "nud", "reachable")
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, fake, 2*time.Second)
	l.run(l.Box, "ip", "neigh", "del", "198.18.0.2", "dev", lab.NATOutside)
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, outMAC, 3*time.Second)

	// Interface down: the kernel flushes its routes (without telling
	// anyone); up again, they come back.
	l.run(l.Box, "ip", "link", "set", lab.NATOutside, "down")
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Unreachable, [6]byte{}, 2*time.Second)
	l.run(l.Box, "ip", "link", "set", lab.NATOutside, "up")
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, outMAC, 3*time.Second)

	if st := tb.Stats(); st.Snapshots < 8 {
		t.Fatalf("only %d snapshots for all these changes", st.Snapshots)
	}
}

func TestLabInterfaceRecreated(t *testing.T) {
	l := newNATLab(t)
	tb := l.table(Config{})
	outMAC := l.mac(l.Out, lab.HostDev)
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, outMAC, 2*time.Second)
	oldIdx := tb.Snapshot().Links[fwd.Outside].Index

	// Replace the outside veth pair by a new one with the same names.
	l.run(l.Box, "ip", "link", "del", lab.NATOutside)
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Unreachable, [6]byte{}, 2*time.Second)
	if err := l.AddVeth(lab.Veth{NS: l.Box, Name: lab.NATOutside, PeerNS: l.Out, PeerName: lab.HostDev}); err != nil {
		t.Fatal(err)
	}
	l.run(l.Box, "ip", "addr", "add", "198.18.0.1/24", "dev", lab.NATOutside)
	l.run(l.Out, "ip", "addr", "add", "198.18.0.2/24", "dev", lab.HostDev)
	newMAC := l.mac(l.Out, lab.HostDev)
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, newMAC, 3*time.Second)
	if idx := tb.Snapshot().Links[fwd.Outside].Index; idx == oldIdx || idx != l.linkIndex(lab.NATOutside) {
		t.Fatalf("outside ifindex %d (old %d, now %d)", idx, oldIdx, l.linkIndex(lab.NATOutside))
	}
}

func TestLabNonexistentHostFails(t *testing.T) {
	l := newNATLab(t)
	tb := l.table(Config{PendingTimeout: 3 * time.Second, RetryFailed: 500 * time.Millisecond})
	if _, res := tb.Resolve(fwd.Outside, ip4("198.18.0.77")); res != fwd.Pending {
		t.Fatalf("first Resolve: %v", res2s(res))
	}
	took := await(t, tb, fwd.Outside, "198.18.0.77", fwd.Failed, [6]byte{}, 3*time.Second)
	t.Logf("198.18.0.77 failed after %v", took)
	if st := tb.Stats(); st.Failed < 1 || st.Completed != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The host appears. After the retry delay the next packet makes the
	// kernel probe again, and it resolves.
	l.run(l.Out, "ip", "addr", "add", "198.18.0.77/24", "dev", lab.HostDev)
	await(t, tb, fwd.Outside, "198.18.0.77", fwd.Resolved, l.mac(l.Out, lab.HostDev), 3*time.Second)
	if st := tb.Stats(); st.Requested < 2 || st.Completed < 1 {
		t.Fatalf("stats after retry %+v", st)
	}
}

func TestLabNoRoute(t *testing.T) {
	l := newNATLab(t)
	tb := l.table(Config{})
	for _, c := range []struct {
		side fwd.Side
		dst  string
	}{{fwd.Outside, "192.0.2.1"}, {fwd.Inside, "192.0.2.1"}, {fwd.Inside, "198.18.0.2"}, {fwd.Outside, "10.0.0.2"}} {
		if _, res := tb.Resolve(c.side, ip4(c.dst)); res != fwd.Unreachable {
			t.Errorf("Resolve(%v, %s) = %v, want unreachable", c.side, c.dst, res2s(res))
		}
	}
	if st := tb.Stats(); st.Requested != 0 {
		t.Fatalf("unroutable destinations caused %d requests", st.Requested)
	}
}

// overflow changes every inside neighbour 10.0.0.10-249 rounds times
// in one burst, which overflows a Table's minimal receive buffer, and
// returns the MAC each address has in the end.
func (l *natLab) overflow(rounds int) map[string][6]byte {
	l.t.Helper()
	var b strings.Builder
	final := map[string][6]byte{}
	for round := range rounds {
		for h := 10; h < 250; h++ {
			addr := fmt.Sprintf("10.0.0.%d", h)
			mac := [6]byte{2, 0, 0, byte(round), 0, byte(h)}
			fmt.Fprintf(&b, "neigh replace %s lladdr %s dev %s nud stale\n", addr, net.HardwareAddr(mac[:]), lab.NATInside)
			final[addr] = mac
		}
	}
	cmd := lab.Command(l.Box, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("ip -batch: %v\n%s", err, out)
	}
	return final
}

func TestLabOverflowResyncs(t *testing.T) {
	l := newNATLab(t)
	// A tiny receive buffer: a burst of neighbour changes overflows it
	// (ENOBUFS), the subscription dies, and the Table must re-subscribe and
	// re-list to converge on the kernel's state.
	tb := l.table(Config{ReceiveBuffer: 1, RefreshInterval: -1})
	for addr, mac := range l.overflow(6) {
		await(t, tb, fwd.Inside, addr, fwd.Resolved, mac, 3*time.Second)
	}
	st := tb.Stats()
	t.Logf("stats after %d neighbour changes: %+v", 6*240, st)
	if st.Resyncs == 0 {
		t.Fatal("no resync: the burst did not overflow a minimal receive buffer, so this test proved nothing")
	}
}

// TestLabResubscribesInTheTablesNamespace starts the Table on the process's
// main thread while that thread is in the lab namespace and every other
// thread is not, then makes it re-subscribe (an overflow) and checks that
// it still hears the namespace's changes. The new subscriptions are opened
// by the control goroutine on another thread; a Table that took the main
// thread's namespace for the whole process's opened them in the root
// namespace and heard nothing after the re-list.
func TestLabResubscribesInTheTablesNamespace(t *testing.T) {
	l := newNATLab(t)
	var tb *Table
	var err error
	onMainThread(func() {
		err = lab.Do(l.Box, func() error {
			var err error
			tb, err = New(context.Background(), Config{Inside: Link{Name: lab.NATInside}, Outside: Link{Name: lab.NATOutside}, ReceiveBuffer: 1, RefreshInterval: -1})
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.Close)
	for addr, mac := range l.overflow(2) {
		await(t, tb, fwd.Inside, addr, fwd.Resolved, mac, 3*time.Second)
	}
	if st := tb.Stats(); st.Resyncs == 0 {
		t.Fatalf("no resync: the burst did not overflow a minimal receive buffer, so this test proved nothing: %+v", st)
	}
	// A change after the re-list reaches the Table only through the new
	// subscription.
	later := [6]byte{2, 0, 0, 0x99, 0, 9}
	l.run(l.Box, "ip", "neigh", "replace", "10.0.0.9", "lladdr", net.HardwareAddr(later[:]).String(), "dev", lab.NATInside, "nud", "stale")
	await(t, tb, fwd.Inside, "10.0.0.9", fwd.Resolved, later, 3*time.Second)
}

func TestLabRefreshKeepsNeighboursFresh(t *testing.T) {
	l := newNATLab(t)
	// A short reachable time (1.25-3.75 s, always above the 1 s delay
	// before the first probe) so the kernel ages an unused entry to STALE
	// within seconds.
	l.run(l.Box, "sysctl", "-q", "-w", "net.ipv4.neigh."+lab.NATOutside+".base_reachable_time_ms=2500", "net.ipv4.neigh."+lab.NATOutside+".delay_first_probe_time=1")
	tb := l.table(Config{RefreshInterval: 200 * time.Millisecond})
	// The kernel learns the neighbour by itself; the Table follows, and
	// nobody calls Resolve yet, so nothing marks it used.
	l.run(l.Box, "ping", "-c", "1", "-W", "2", "198.18.0.2")
	state := func() string {
		return l.run(l.Box, "ip", "neigh", "show", "198.18.0.2", "dev", lab.NATOutside)
	}
	waitState := func(want string, use bool, timeout time.Duration) {
		t.Helper()
		var shown string
		start := time.Now()
		for end := start.Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if use {
				tb.Resolve(fwd.Outside, ip4("198.18.0.2"))
			}
			if shown = state(); strings.Contains(shown, want) {
				t.Logf("%s after %v", want, time.Since(start))
				return
			}
		}
		t.Fatalf("kernel entry never reached %s: %q\nstats %+v", want, shown, tb.Stats())
	}
	// Unused, the entry ages to STALE and stays there.
	waitState("STALE", false, 6*time.Second)
	time.Sleep(600 * time.Millisecond)
	if shown := state(); !strings.Contains(shown, "STALE") {
		t.Fatalf("unused entry left STALE by itself: %q", shown)
	}
	if got := tb.Stats().Refreshed; got != 0 {
		t.Fatalf("unused neighbour refreshed %d times", got)
	}
	// Used by the dataplane, it is refreshed: STALE -> DELAY -> PROBE ->
	// REACHABLE through a unicast probe, as the kernel's own forwarding
	// would do.
	waitState("REACHABLE", true, 4*time.Second)
	if st := tb.Stats(); st.Refreshed == 0 {
		t.Fatalf("re-confirmed without a refresh: %+v", st)
	}
}

func TestLabConfigByIndexAndMissingInterface(t *testing.T) {
	l := newNATLab(t)
	outMAC := l.mac(l.Out, lab.HostDev)
	tb := l.table(Config{
		Inside:  Link{Index: l.linkIndex(lab.NATInside)},
		Outside: Link{Index: l.linkIndex(lab.NATOutside)},
	})
	await(t, tb, fwd.Outside, "198.18.0.2", fwd.Resolved, outMAC, 2*time.Second)

	err := lab.Do(l.Box, func() error {
		tb, err := New(context.Background(), Config{Inside: Link{Name: lab.NATInside}, Outside: Link{Name: "no-such-if"}})
		if err == nil {
			tb.Close()
		}
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "no-such-if") {
		t.Fatalf("New with a missing interface: %v", err)
	}
}
