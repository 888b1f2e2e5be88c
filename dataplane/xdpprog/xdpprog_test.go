package xdpprog

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/asavie/xdp"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/bench/lab"
)

func pingOK(t *testing.T, ns, dst string) {
	t.Helper()
	if out, err := lab.Exec(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst); err != nil {
		t.Fatalf("ping %s from %s failed: %v\n%s", dst, ns, err, out)
	}
}

func pingFails(t *testing.T, ns, dst string) {
	t.Helper()
	if out, err := lab.Exec(ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", dst); err == nil {
		t.Fatalf("ping %s from %s succeeded, want failure\n%s", dst, ns, out)
	}
}

// attachBoth loads the program and attaches it to the box's outside and
// inside links; the program is closed when the test ends.
func attachBoth(t *testing.T, n *lab.NAT) (p *Program, out, in lab.LinkInfo, ao, ai *Attachment) {
	t.Helper()
	out = lab.MustLink(t, n.Box, lab.NATOutside)
	in = lab.MustLink(t, n.Box, lab.NATInside)
	var err error
	p, err = Load()
	must(t, err)
	t.Cleanup(func() { p.Close() })
	inBox(t, n, func() error {
		var err error
		if ao, err = p.Attach(out.Index, RoleOutside); err != nil {
			return err
		}
		ai, err = p.Attach(in.Index, RoleInside)
		return err
	})
	return p, out, in, ao, ai
}

// inBox runs f in the NAT box's namespace and fails the test on error.
func inBox(t *testing.T, n *lab.NAT, f func() error) {
	t.Helper()
	if err := lab.Do(n.Box, f); err != nil {
		t.Fatal(err)
	}
}

func counters(t *testing.T, a *Attachment) Counters {
	t.Helper()
	c, err := a.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func xdpProgID(t *testing.T, n *lab.NAT, dev string) uint32 {
	t.Helper()
	var id uint32
	inBox(t, n, func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			id = x.ProgId
		}
		return nil
	})
	return id
}

func TestPassRedirectAndFallback(t *testing.T) {
	n := lab.RequireNAT(t)
	p, out, _, ao, ai := attachBoth(t, n)
	// Treat the box's own outside address as "public" so that ping from
	// the server exercises the redirect path.
	must(t, p.SetPublicAddrs([]netip.Addr{netip.MustParseAddr("198.18.0.1")}))
	must(t, p.SetLocalAddrs([]netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("198.18.0.1")}))
	must(t, p.SetInsidePrefixes([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}))

	// Inside: ARP and ping to the box's own address are passed.
	pingOK(t, n.In1, "10.0.0.1")
	if c := counters(t, ai); c.Passed == 0 || c.Redirected != 0 || c.RedirectFailed != 0 {
		t.Fatalf("inside counters after ping to the box: %+v", c)
	}
	// Inside traffic for the outside world is NAT traffic; with no socket
	// bound it falls back to the kernel (which does not forward: fail).
	pingFails(t, n.In1, "198.18.0.2")
	if c := counters(t, ai); c.RedirectFailed == 0 {
		t.Fatalf("inside counters after NAT-bound ping without XSK: %+v", c)
	}

	// Outside: ping to a public address with no XSK bound still works,
	// through the XDP_PASS fallback of bpf_redirect_map.
	pingOK(t, n.Out, "198.18.0.1")
	c0 := counters(t, ao)
	if c0.RedirectFailed == 0 || c0.Redirected != 0 {
		t.Fatalf("outside counters with no XSK bound: %+v", c0)
	}

	// Bind a socket to queue 0 and register it: the box's stack no longer
	// sees the echo requests.
	var sock *xdp.Socket
	inBox(t, n, func() error {
		var err error
		sock, err = xdp.NewSocket(out.Index, 0, nil)
		if err != nil {
			return err
		}
		return ao.Register(0, sock.FD())
	})
	pingFails(t, n.Out, "198.18.0.1")
	c1 := counters(t, ao)
	if c1.Redirected == 0 {
		t.Fatalf("outside counters with XSK bound: %+v", c1)
	}
	// Unregistering the queue hands its traffic back to the kernel. (That
	// closing a socket does the same is tested in dataplane/afxdp,
	// TestCloseReturnsTrafficToKernel, with our native socket: asavie's
	// Close leaks the ring mappings and so keeps the socket in the map.)
	must(t, ao.Unregister(0))
	pingOK(t, n.Out, "198.18.0.1")
	must(t, sock.Close())

	must(t, ao.Detach())
	must(t, ai.Detach())
	if id := xdpProgID(t, n, lab.NATOutside); id != 0 {
		t.Fatalf("program %d still attached after Detach", id)
	}
	if id := xdpProgID(t, n, lab.NATInside); id != 0 {
		t.Fatalf("program %d still attached after Detach", id)
	}
	pingOK(t, n.Out, "198.18.0.1")
}

func TestStaleProgramReplaced(t *testing.T) {
	n := lab.RequireNAT(t)
	li := lab.MustLink(t, n.Box, lab.NATInside)
	p1, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var a1 *Attachment
	inBox(t, n, func() error { a1, err = p1.Attach(li.Index, RoleInside); return err })
	staleID := xdpProgID(t, n, lab.NATInside)
	// A killed process: its fds are gone but the program stays attached.
	a1.coll.Close()
	p1.closeMaps()
	if id := xdpProgID(t, n, lab.NATInside); id != staleID || id == 0 {
		t.Fatalf("stale program not attached (id %d, want %d)", id, staleID)
	}

	p2, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	var a2 *Attachment
	inBox(t, n, func() error { a2, err = p2.Attach(li.Index, RoleInside); return err })
	if id := xdpProgID(t, n, lab.NATInside); id == staleID || id != a2.progID {
		t.Fatalf("attached program %d, want our new %d (stale %d)", id, a2.progID, staleID)
	}
	pingOK(t, n.In1, "10.0.0.1")
	inBox(t, n, a2.Detach)
	if id := xdpProgID(t, n, lab.NATInside); id != 0 {
		t.Fatalf("program %d left after Detach", id)
	}
}

func TestForeignProgramRefused(t *testing.T) {
	n := lab.RequireNAT(t)
	li := lab.MustLink(t, n.Box, lab.NATInside)
	foreign, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "foreign", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 2, asm.DWord), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	inBox(t, n, func() error {
		l, err := netlink.LinkByIndex(li.Index)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, foreign.FD(), unix.XDP_FLAGS_DRV_MODE)
	})
	before := xdpProgID(t, n, lab.NATInside)
	p, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	inBox(t, n, func() error {
		_, err := p.Attach(li.Index, RoleInside)
		if !errors.Is(err, ErrForeignProgram) {
			t.Errorf("Attach over a foreign program: %v, want ErrForeignProgram", err)
		}
		return nil
	})
	if after := xdpProgID(t, n, lab.NATInside); after != before {
		t.Fatalf("foreign program %d replaced by %d", before, after)
	}
}

func TestReplaceAddressSets(t *testing.T) {
	lab.Require(t)
	p, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		slices.SortFunc(out, netip.Addr.Compare)
		return out
	}
	must(t, p.SetPublicAddrs(a("198.18.1.1", "198.18.1.2")))
	must(t, p.SetPublicAddrs(a("198.18.1.2", "198.18.1.3")))
	got, err := p.PublicAddrs()
	must(t, err)
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, a("198.18.1.2", "198.18.1.3")) {
		t.Fatalf("public addrs = %v", got)
	}
	if err := p.SetLocalAddrs([]netip.Addr{netip.MustParseAddr("::1")}); err == nil {
		t.Fatal("IPv6 local address accepted")
	}
	must(t, p.SetInsidePrefixes([]netip.Prefix{netip.MustParsePrefix("10.1.2.3/16"), netip.MustParsePrefix("10.2.0.0/24")}))
	must(t, p.SetInsidePrefixes([]netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")}))
	var k xnatLpmV4
	var v uint8
	var keys []xnatLpmV4
	it := p.inside.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	must(t, it.Err())
	want := xnatLpmV4{Prefixlen: 24, Addr: be32(netip.MustParseAddr("10.2.0.0"))}
	if len(keys) != 1 || keys[0] != want {
		t.Fatalf("inside prefixes = %+v, want [%+v]", keys, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
