package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// rootLinks lists the interface names of the root namespace (this test
// process runs there).
func rootLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			left = append(left, e.Name())
		}
	}
	return left
}

func ping(t *testing.T, ns, dst string) {
	t.Helper()
	if out, err := Exec(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst); err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", dst, ns, err, out)
	}
}

func TestNATLab(t *testing.T) {
	Require(t)
	before := rootLinks(t)
	n, err := NewNAT(WithNATAddrs(netip.MustParsePrefix("198.18.0.10/24")))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	ping(t, n.In1, "10.0.0.1")
	ping(t, n.In2, "10.0.0.1")
	ping(t, n.In1, "10.0.0.3") // across the bridge
	ping(t, n.Out, "198.18.0.1")
	ping(t, n.Out, "198.18.0.10")
	// The NAT box does not forward by default, and the server has no route
	// back to the inside: un-NATed traffic must fail both ways.
	if out, err := Exec(n.In1, "ping", "-c", "1", "-W", "1", "198.18.0.2"); err == nil {
		t.Fatalf("in1 reached the outside server without NAT:\n%s", out)
	}
	if out, err := Exec(n.Out, "ip", "route", "get", "10.0.0.2"); err == nil {
		t.Fatalf("out has a route to the inside:\n%s", out)
	}
	if v, err := Exec(n.Box, "sysctl", "-n", "net.ipv4.ip_forward"); err != nil || strings.TrimSpace(v) != "0" {
		t.Fatalf("ip_forward in nat = %q, %v; want 0", v, err)
	}
	// Offload policy applied to a sender.
	if out, err := Exec(n.In1, "ethtool", "-k", HostDev); err != nil || !strings.Contains(out, "tx-checksumming: off") {
		t.Fatalf("tx checksum offload still on in in1: %v\n%s", err, out)
	}
	li, err := Link(n.Box, NATInside)
	if err != nil {
		t.Fatal(err)
	}
	if li.Index <= 0 || len(li.MAC) != 6 {
		t.Fatalf("bad link info %+v", li)
	}
	if !slices.Equal(before, rootLinks(t)) {
		t.Fatalf("lab changed the root namespace's links: before %v, during %v", before, rootLinks(t))
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, n.Prefix); len(left) > 0 {
		t.Fatalf("namespaces left after Close: %v", left)
	}
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Fatalf("root namespace links changed: before %v after %v", before, after)
	}
}

func TestBenchLabQueuesAndForwarding(t *testing.T) {
	b := RequireBench(t, WithQueues(2), WithIPForward(), WithReturnRoute())
	for _, c := range []struct{ ns, dev string }{{b.DUT, DUTInside}, {b.DUT, DUTOutside}, {b.Gen, HostDev}, {b.Sink, HostDev}} {
		out, err := Exec(c.ns, "ls", "/sys/class/net/"+c.dev+"/queues")
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{"rx-0", "rx-1", "tx-0", "tx-1"} {
			if !strings.Contains(out, q) {
				t.Fatalf("%s in %s lacks queue %s: %s", c.dev, c.ns, q, out)
			}
		}
	}
	// With forwarding on and a return route, the kernel routes gen <-> sink.
	ping(t, b.Gen, "198.18.0.2")
	rx, _, err := LinkStats(b.Sink, HostDev)
	if err != nil || rx == 0 {
		t.Fatalf("sink rx counter = %d, %v", rx, err)
	}
}

func TestDoEntersAndRestores(t *testing.T) {
	n := RequireNAT(t)
	var inside bool
	err := Do(n.Box, func() error {
		_, err := net.InterfaceByName(NATInside)
		inside = err == nil
		return nil
	})
	if err != nil || !inside {
		t.Fatalf("Do did not enter the nat namespace: %v", err)
	}
	if _, err := net.InterfaceByName(NATInside); err == nil {
		t.Fatal("nat-in visible from the root namespace after Do")
	}
	want := fmt.Errorf("sentinel")
	if err := Do(n.Box, func() error { return want }); err != want {
		t.Fatalf("Do returned %v, want f's error", err)
	}
}

func TestSweepStale(t *testing.T) {
	Require(t)
	// Find a pid that is certainly not running.
	dead := 0
	for p := 4194000; p < 4194300; p++ {
		if err := syscall.Kill(p, 0); err == syscall.ESRCH {
			dead = p
			break
		}
	}
	if dead == 0 {
		t.Fatal("no free pid found")
	}
	stale := fmt.Sprintf("xn%dx1-stale", dead)
	live := fmt.Sprintf("xn%dx999-live", os.Getpid())
	for _, name := range []string{stale, live} {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	defer deleteNamespace(live)
	defer deleteNamespace(stale)
	if err := SweepStale(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, stale); len(left) != 0 {
		t.Fatalf("stale namespace of dead pid %d not swept", dead)
	}
	if left := leftovers(t, live); len(left) != 1 {
		t.Fatal("namespace of a live process was swept")
	}
}

func TestAddressGuard(t *testing.T) {
	for _, c := range []struct {
		a  string
		ok bool
	}{{"10.1.2.3", true}, {"198.18.0.1", true}, {"198.19.255.1", true}, {"198.20.0.1", false}, {"192.168.1.1", false}, {"8.8.8.8", false}} {
		if got := labAddr(netip.MustParseAddr(c.a)); got != c.ok {
			t.Errorf("labAddr(%s) = %v, want %v", c.a, got, c.ok)
		}
	}
	if err := addAddr("none", "none", netip.MustParsePrefix("192.168.0.1/24")); err == nil {
		t.Fatal("addAddr accepted a non-lab address")
	}
}
