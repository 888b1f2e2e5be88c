package mgmt

import (
	"net/netip"
	"time"
)

// BGPStatus is the scale-out state of an appliance: its BGP sessions, the
// routes it announces and whether it is drained (docs/scaleout.md).
type BGPStatus struct {
	// Enabled is false when natd has no bgp section; nothing else is set.
	Enabled  bool
	LocalAS  uint32
	RouterID netip.Addr
	// Healthy: the dataplane passed its last health check (workers
	// polling, links up, XDP attached); announcements are made only
	// while it is.
	Healthy bool
	// Drained: an operator drained the appliance; the inside
	// announcements are withdrawn, the outside ones stay.
	Drained bool
	// DrainedSince is when the drain began (zero when not drained).
	DrainedSince time.Time
	// SessionsLeft is the number of live NAT sessions: while drained,
	// the appliance can be stopped without loss once it reaches zero.
	SessionsLeft int
	// While drained: sessions that moved traffic in the last
	// DrainActiveWindow, and TCP connections established or half closed.
	// When both are zero the appliance can stop without cutting a
	// session.
	SessionsActive int
	TCPOpen        int
	Peers          []BGPPeerStatus
	Routes         []BGPRouteStatus
	// Announcements and Withdrawals count route announcements and
	// withdrawals natd made since start (each route each time).
	Announcements uint64
	Withdrawals   uint64
}

// DrainActiveWindow is how recent a session's last packet must be for
// drain progress to count it active.
const DrainActiveWindow = 5 * time.Second

// BGPPeerStatus is one BGP neighbour.
type BGPPeerStatus struct {
	Address netip.Addr
	AS      uint32
	// Side is "inside" or "outside": which routers the neighbour is.
	Side string
	// State is the BGP finite-state-machine state in lower case
	// ("established", "active", "connect", "idle", ...).
	State string
	// Since is when the session entered State (established sessions:
	// their uptime), when known.
	Since time.Time
}

// Up reports whether the session is established.
func (p *BGPPeerStatus) Up() bool { return p.State == "established" }

// BGPRouteStatus is one configured announcement.
type BGPRouteStatus struct {
	Prefix netip.Prefix
	Side   string
	// Announced: the route is announced now.
	Announced   bool
	MED         uint32
	HasMED      bool
	Communities []string
}
