package gen

import (
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkInfo is an interface of the current namespace.
type linkInfo struct {
	index int
	mac   net.HardwareAddr
}

func lookupLink(dev string) (linkInfo, error) {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return linkInfo{}, fmt.Errorf("interface %s: %w", dev, err)
	}
	a := l.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return linkInfo{}, fmt.Errorf("interface %s is down", dev)
	}
	return linkInfo{index: a.Index, mac: a.HardwareAddr}, nil
}

// resolveNextHop learns the MAC of the next hop from dev towards dst, in
// the current namespace: the route's gateway (or dst itself if on-link),
// looked up in the neighbour table; if it is not there, a datagram to the
// discard port makes the kernel resolve it (the answer, if any, is an ICMP
// error nobody reads).
func resolveNextHop(dev string, ifindex int, dst [4]byte) (net.HardwareAddr, error) {
	routes, err := netlink.RouteGet(net.IP(dst[:]))
	if err != nil || len(routes) == 0 {
		return nil, fmt.Errorf("no route to %v: %v", net.IP(dst[:]), err)
	}
	r := routes[0]
	if r.LinkIndex != ifindex {
		return nil, fmt.Errorf("route to %v leaves through ifindex %d, not %s", net.IP(dst[:]), r.LinkIndex, dev)
	}
	hop := net.IP(dst[:])
	if r.Gw != nil {
		hop = r.Gw
	}
	const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	deadline := time.Now().Add(3 * time.Second)
	for probe := 0; ; probe++ {
		neighs, err := netlink.NeighList(ifindex, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("neighbours of %s: %w", dev, err)
		}
		for _, n := range neighs {
			if n.IP.Equal(hop) && n.State&usable != 0 && len(n.HardwareAddr) == 6 {
				return n.HardwareAddr, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("next hop %v on %s did not resolve; give the DUT's MAC explicitly", hop, dev)
		}
		if probe%10 == 0 {
			if c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: hop, Port: 9}); err == nil {
				_, _ = c.Write([]byte{0})
				c.Close()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pin locks the calling goroutine to its OS thread and, if cpu >= 0,
// binds that thread to cpu; with rtPrio > 0 it also moves the thread to
// SCHED_FIFO at that priority. The worker keeps the thread for its life.
func pin(cpu, rtPrio int) error {
	runtime.LockOSThread()
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
	}
	if rtPrio > 0 {
		// The kernel's RT throttling (sched_rt_runtime_us, 95% by
		// default) still leaves the CPU's other tasks a share.
		if err := unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: uint32(rtPrio)}, 0); err != nil {
			return fmt.Errorf("SCHED_FIFO priority %d: %w", rtPrio, err)
		}
	}
	return nil
}
