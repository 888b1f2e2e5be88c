package main

import (
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/xdpprog"
)

// Interfaces that come and go. A PPPoE session, a USB modem or a VF reset
// deletes the interface and creates it again under the same name; the XDP
// program and its XSKMAP go with the old device. The AF_XDP ports notice
// (afxdp.Port.tryRecover: the socket is unbound) and, once an interface of
// the same name is up, bind a new socket on it and call Options.Register
// with the new ifindex. natd's register then attaches the XDP program to
// the new interface, once per side, before registering the socket. The
// engine, its sessions and the workers carry on: inside sessions survive,
// and the outage shows in xnat_worker_link_errors_total and in the log.

// roles maps a side to its XDP role.
var roles = [nat.NumSides]xdpprog.Role{nat.Inside: xdpprog.RoleInside, nat.Outside: xdpprog.RoleOutside}

// register is every AF_XDP port's Options.Register: it runs at start, from
// afxdp.New, and after a recovery, on the worker goroutine of the port
// (which is not polling meanwhile). Workers of several queues of one side
// may call it at once; the first to see a new ifindex re-attaches.
func (d *daemon) register(s nat.Side, ifindex, queue, fd int) error {
	d.attMu.Lock()
	defer d.attMu.Unlock()
	att := d.att[s]
	if ifindex != att.Ifindex() {
		var err error
		if att, err = d.reattach(s, att, ifindex); err != nil {
			return err
		}
	}
	return att.Register(queue, fd)
}

// reattach attaches the XDP program to the re-created interface of side s
// and makes natd's view of the link follow. Called with attMu held.
func (d *daemon) reattach(s nat.Side, old *xdpprog.Attachment, ifindex int) (*xdpprog.Attachment, error) {
	start := time.Now()
	name := d.links[s].name
	link, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("interface %s re-created as ifindex %d: %w", name, ifindex, err)
	}
	// The old attachment's device is gone; Detach only frees its
	// collection.
	if err := old.Detach(); err != nil {
		d.log.Warn("free the XDP program of the deleted interface", "interface", name, "err", err)
	}
	att, err := d.prog.Attach(ifindex, roles[s])
	if err != nil {
		return nil, fmt.Errorf("re-attach XDP to re-created %s (ifindex %d): %w", name, ifindex, err)
	}
	d.att[s] = att
	a := link.Attrs()
	if net.HardwareAddr(d.links[s].mac[:]).String() != a.HardwareAddr.String() {
		// The workers write the MAC they started with as the source of
		// every frame; a new one would need a restart to be used.
		d.log.Error("re-created interface has a different MAC address; frames keep the old source MAC until natd restarts",
			"interface", name, "old", net.HardwareAddr(d.links[s].mac[:]).String(), "new", a.HardwareAddr.String())
	}
	d.addrMu.Lock()
	d.links[s].ifindex = ifindex
	if s == nat.Outside {
		// The addresses natd had added went with the old device.
		clear(d.added)
		d.gen = 0 // the housekeeper re-syncs (adds them back) on its next tick
	}
	d.addrMu.Unlock()
	d.log.Warn("interface re-created: XDP program re-attached without a restart; sessions kept",
		"interface", name, "side", s.String(), "ifindex", ifindex, "took", time.Since(start))
	return att, nil
}
