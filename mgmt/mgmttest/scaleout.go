package mgmttest

import (
	"net/netip"
	"sync"
	"time"

	"github.com/xnat/xnat/mgmt"
)

// scaleoutState is the test core's drain flag, which SetDrain toggles.
type scaleoutState struct {
	mu      sync.Mutex
	enabled bool
	drained bool
	since   time.Time
}

// EnableBGP makes the test core speak (canned) BGP; without it, it has no
// bgp section, like most natds.
func (c *Core) EnableBGP() {
	c.scaleout.mu.Lock()
	c.scaleout.enabled = true
	c.scaleout.mu.Unlock()
}

// BGPStatus returns a canned BGP state (one established outside peer, one
// inside peer trying to connect) with the drain flag SetDrain set.
func (c *Core) BGPStatus() mgmt.BGPStatus {
	c.scaleout.mu.Lock()
	enabled, drained, since := c.scaleout.enabled, c.scaleout.drained, c.scaleout.since
	c.scaleout.mu.Unlock()
	if !enabled {
		return mgmt.BGPStatus{}
	}
	live, _ := c.Engine.TableUsage()
	return mgmt.BGPStatus{
		Enabled: true, LocalAS: 65010, RouterID: netip.MustParseAddr("198.18.0.1"), Healthy: true,
		Drained: drained, DrainedSince: since, SessionsLeft: live, SessionsActive: live,
		Peers: []mgmt.BGPPeerStatus{
			{Address: netip.MustParseAddr("198.18.0.2"), AS: 65002, Side: "outside", State: "established", Since: StartTime},
			{Address: netip.MustParseAddr("10.0.0.254"), AS: 65001, Side: "inside", State: "active"},
		},
		Routes: []mgmt.BGPRouteStatus{
			{Prefix: netip.MustParsePrefix("198.18.0.100/32"), Side: "outside", Announced: true, MED: 10, HasMED: true, Communities: []string{"65010:1"}},
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Side: "inside", Announced: !drained},
		},
		Announcements: 2,
	}
}

// SetDrain records the drain flag.
func (c *Core) SetDrain(drain bool) (mgmt.BGPStatus, error) {
	c.scaleout.mu.Lock()
	if !c.scaleout.enabled {
		c.scaleout.mu.Unlock()
		return mgmt.BGPStatus{}, mgmt.Errorf(mgmt.ErrUnavailable, "natd speaks no BGP: nothing to drain")
	}
	if drain && !c.scaleout.drained {
		c.scaleout.since = c.Clock.Now()
	}
	c.scaleout.drained = drain
	if !drain {
		c.scaleout.since = time.Time{}
	}
	c.scaleout.mu.Unlock()
	return c.BGPStatus(), nil
}
