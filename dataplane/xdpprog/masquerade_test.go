package xdpprog

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/asavie/xdp"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/internal/wait"
)

func TestPortBits(t *testing.T) {
	var b PortBits
	b.Add(61000, 65535)
	b.Add(443, 443)
	b.Add(0, 0)
	for p, want := range map[uint16]bool{0: true, 1: false, 442: false, 443: true, 444: false, 60999: false, 61000: true, 63000: true, 65535: true} {
		if b.Has(p) != want {
			t.Errorf("port %d: %v, want %v", p, !want, want)
		}
	}
}

// sendUDP sends one datagram from ns to dst.
func sendUDP(t *testing.T, ns string, dst netip.AddrPort) {
	t.Helper()
	must(t, lab.Do(ns, func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}))
}

// waitCounters waits (generously: the datagram may wait for ARP) until
// a's counters satisfy ok.
func waitCounters(t *testing.T, a *Attachment, what string, ok func(Counters) bool) {
	t.Helper()
	var c Counters
	if !wait.For(5*time.Second, func() bool {
		c = counters(t, a)
		return ok(c)
	}) {
		t.Fatalf("%s: counters %+v", what, c)
	}
}

// TestMasqueradeSplitsByPort: with the box's own outside address public
// and masquerade, and a socket bound, the program redirects only the NAT's
// ports and passes the box's own traffic (ping, a UDP port outside the
// owned set) to the kernel, from outside and from inside.
func TestMasqueradeSplitsByPort(t *testing.T) {
	n := lab.RequireNAT(t)
	p, out, in, ao, ai := attachBoth(t, n)
	box := netip.MustParseAddr("198.18.0.1")
	var sets [numOwn]PortBits
	sets[OwnUDP].Add(61000, 65535)
	sets[OwnTCP].Add(61000, 65535)
	sets[OwnICMP].Add(61000, 65535)
	must(t, p.SetOwnedPorts(&sets))
	must(t, p.SetMasqAddrs([]netip.Addr{box}))
	must(t, p.SetPublicAddrs([]netip.Addr{box}))
	must(t, p.SetLocalAddrs([]netip.Addr{netip.MustParseAddr("10.0.0.1"), box}))
	must(t, p.SetInsidePrefixes([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}))
	got, err := p.OwnedPorts()
	must(t, err)
	if !got[OwnUDP].Has(61000) || got[OwnUDP].Has(53) {
		t.Fatal("owned ports did not round-trip")
	}
	if m, err := p.MasqAddrs(); err != nil || !slices.Equal(m, []netip.Addr{box}) {
		t.Fatalf("masquerade addresses %v (%v)", m, err)
	}
	var socks [2]*xdp.Socket
	inBox(t, n, func() error {
		for i, a := range []*Attachment{ao, ai} {
			ifindex := out.Index
			if i == 1 {
				ifindex = in.Index
			}
			s, err := xdp.NewSocket(ifindex, 0, nil)
			if err != nil {
				return err
			}
			socks[i] = s
			if err := a.Register(0, s.FD()); err != nil {
				return err
			}
		}
		return nil
	})
	defer socks[0].Close()
	defer socks[1].Close()

	// The box's own: ping to it from both sides reaches the kernel.
	pingOK(t, n.Out, box.String())
	pingOK(t, n.In1, box.String())
	co, ci := counters(t, ao), counters(t, ai)
	if co.MasqLocal == 0 || co.Redirected != 0 || ci.MasqLocal == 0 || ci.Redirected != 0 {
		t.Fatalf("after pings to the box: outside %+v, inside %+v", co, ci)
	}
	// A port the NAT does not own: the kernel's.
	sendUDP(t, n.Out, netip.AddrPortFrom(box, 53))
	waitCounters(t, ao, "UDP to port 53 of the box", func(c Counters) bool { return c.Redirected == 0 && c.MasqLocal > co.MasqLocal })
	// A NAT port: natd's, from outside and (hairpin) from inside.
	sendUDP(t, n.Out, netip.AddrPortFrom(box, 61000))
	waitCounters(t, ao, "UDP to NAT port 61000 from outside", func(c Counters) bool { return c.Redirected == 1 })
	sendUDP(t, n.In1, netip.AddrPortFrom(box, 65535))
	waitCounters(t, ai, "UDP to NAT port 65535 from inside", func(c Counters) bool { return c.Redirected == 1 })
	// Without masquerade the same address is all natd's again.
	must(t, p.SetMasqAddrs(nil))
	pingFails(t, n.Out, box.String())
}
