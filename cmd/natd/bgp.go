package main

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/bgp"
)

// bgpFileConfig is natd.yaml's bgp section (docs/scaleout.md).
type bgpFileConfig struct {
	LocalAS       uint32            `yaml:"local_as"`
	RouterID      string            `yaml:"router_id"`
	HoldTime      string            `yaml:"hold_time"` // default for every neighbour
	ShutdownDelay string            `yaml:"shutdown_delay"`
	Neighbors     []bgpNeighborFile `yaml:"neighbors"`
	Outside       bgpSideFile       `yaml:"outside"`
	Inside        bgpSideFile       `yaml:"inside"`
}

type bgpNeighborFile struct {
	Address  string   `yaml:"address"`
	AS       uint32   `yaml:"as"`
	Side     bgp.Side `yaml:"side"`
	Password string   `yaml:"password"`
	HoldTime string   `yaml:"hold_time"`
	Port     uint16   `yaml:"port"`
}

// bgpSideFile says what to announce to one side's neighbours. MED and
// communities apply to every route of the side unless a prefix entry
// gives its own.
type bgpSideFile struct {
	// Announce lists what the outside announces of the NAT configuration:
	// pools, static_mappings, port_forwards (default: all three).
	Announce     []string        `yaml:"announce"`
	DefaultRoute bool            `yaml:"default_route"`
	Prefixes     []bgpPrefixFile `yaml:"prefixes"`
	MED          *uint32         `yaml:"med"`
	Communities  []bgp.Community `yaml:"communities"`
}

type bgpPrefixFile struct {
	Prefix      string          `yaml:"prefix"`
	MED         *uint32         `yaml:"med"`
	Communities []bgp.Community `yaml:"communities"`
}

// bgpFromFile converts the bgp section and derives the outside
// announcements from the NAT configuration; bgp.Config.Validate judges the
// result, so the file and any other path share one validation.
func bgpFromFile(f *bgpFileConfig, nc *nat.Config, ce *configErrors) *bgp.Config {
	if f == nil {
		return nil
	}
	c := &bgp.Config{LocalAS: f.LocalAS}
	if f.RouterID != "" {
		a, err := netip.ParseAddr(f.RouterID)
		if err != nil {
			ce.add("bgp.router_id", "%q is not an IPv4 address", f.RouterID)
		}
		c.RouterID = a
	}
	dur := func(field, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			ce.add(field, "%q is not a duration like 3s or 90s", s)
		}
		return d
	}
	hold := dur("bgp.hold_time", f.HoldTime)
	c.ShutdownDelay = dur("bgp.shutdown_delay", f.ShutdownDelay)
	for i, n := range f.Neighbors {
		field := fmt.Sprintf("bgp.neighbors[%d]", i)
		a, err := netip.ParseAddr(n.Address)
		if err != nil {
			ce.add(field+".address", "%q is not an IPv4 address", n.Address)
		}
		nb := bgp.Neighbor{Address: a, AS: n.AS, Password: n.Password, Side: n.Side, Port: n.Port, HoldTime: hold}
		if n.HoldTime != "" {
			nb.HoldTime = dur(field+".hold_time", n.HoldTime)
		}
		c.Neighbors = append(c.Neighbors, nb)
	}
	add := func(side bgp.Side, p netip.Prefix, med *uint32, comms []bgp.Community, sf *bgpSideFile) {
		a := bgp.Announcement{Prefix: p, Side: side, Communities: sf.Communities}
		if comms != nil {
			a.Communities = comms
		}
		if med == nil {
			med = sf.MED
		}
		if med != nil {
			a.MED, a.HasMED = *med, true
		}
		for _, o := range c.Announcements {
			if o.Side == side && o.Prefix.Overlaps(p) && o.Prefix.Bits() <= p.Bits() {
				return // covered by a route already announced (a forward on a pool address)
			}
		}
		c.Announcements = append(c.Announcements, a)
	}
	what := f.Outside.Announce
	if what == nil {
		what = []string{"pools", "static_mappings", "port_forwards"}
	}
	for i, w := range what {
		switch w {
		case "pools":
			for _, pool := range nc.Pools {
				for _, p := range pool.Addresses {
					if p.Addr().IsUnspecified() {
						// An interface pool (masquerade.go): the
						// box's own address, which its link's
						// prefix already routes to it.
						continue
					}
					add(bgp.Outside, p.Masked(), nil, nil, &f.Outside)
				}
			}
		case "static_mappings":
			for _, m := range nc.StaticMappings {
				add(bgp.Outside, netip.PrefixFrom(m.Outside, 32), nil, nil, &f.Outside)
			}
		case "port_forwards":
			for _, r := range nc.PortForwards {
				if r.Outside.Addr().IsUnspecified() {
					continue // on the interface pool's address
				}
				add(bgp.Outside, netip.PrefixFrom(r.Outside.Addr(), 32), nil, nil, &f.Outside)
			}
		default:
			ce.add(fmt.Sprintf("bgp.outside.announce[%d]", i), "%q is not pools, static_mappings or port_forwards", w)
		}
	}
	if f.Outside.DefaultRoute {
		ce.add("bgp.outside.default_route", "natd announces a default route only to the inside routers")
	}
	if f.Inside.Announce != nil {
		ce.add("bgp.inside.announce", "the inside announces default_route and prefixes only")
	}
	if f.Inside.DefaultRoute {
		add(bgp.Inside, netip.MustParsePrefix("0.0.0.0/0"), nil, nil, &f.Inside)
	}
	for _, s := range []struct {
		name string
		side bgp.Side
		f    *bgpSideFile
	}{{"outside", bgp.Outside, &f.Outside}, {"inside", bgp.Inside, &f.Inside}} {
		for i, pf := range s.f.Prefixes {
			p, err := netip.ParsePrefix(pf.Prefix)
			if err != nil {
				ce.add(fmt.Sprintf("bgp.%s.prefixes[%d].prefix", s.name, i), "%q is not a prefix like 198.18.0.0/24", pf.Prefix)
				continue
			}
			add(s.side, p, pf.MED, pf.Communities, s.f)
		}
	}
	ce.addValidation("bgp", c.Validate())
	return c
}

// bgpSummary renders the bgp section for reload's restart-only check.
func bgpSummary(c *bgp.Config) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%+v", *c)
}

// bgpGlue ties the speaker to the daemon: a health watcher gates the
// announcements on the dataplane, and Close withdraws them first.
type bgpGlue struct {
	sp   *bgp.Speaker
	stop chan struct{}
	done chan struct{}
	once sync.Once

	// The health watcher's own: each worker's poll count and when it
	// last moved.
	polls   []uint64
	movedAt []time.Time
}

// healthInterval is how often the watcher checks the dataplane, and
// stallAfter how long a worker's poll count may stand still: a failure is
// withdrawn within their sum plus one GoBGP update, under a second. An
// idle adaptive worker still polls every 10 ms or so (XnatWorkerStalled
// relies on it too).
const (
	healthInterval = 200 * time.Millisecond
	stallAfter     = 600 * time.Millisecond
)

// startBGP starts the speaker and its health watcher (no bgp section:
// nothing).
func (d *daemon) startBGP() error {
	if d.cfg.BGP == nil {
		return nil
	}
	sp, err := bgp.Start(*d.cfg.BGP, d.log)
	if err != nil {
		return err
	}
	g := &bgpGlue{sp: sp, stop: make(chan struct{}), done: make(chan struct{}),
		polls: make([]uint64, len(d.wk)), movedAt: make([]time.Time, len(d.wk))}
	d.bgp = g
	go func() {
		defer close(g.done)
		t := time.NewTicker(healthInterval)
		defer t.Stop()
		for {
			sp.SetHealthy(d.healthy() && g.polling(d, time.Now()))
			select {
			case <-g.stop:
				return
			case <-t.C:
			}
		}
	}()
	d.log.Info("BGP speaker started", "local_as", d.cfg.BGP.LocalAS, "router_id", d.cfg.BGP.RouterID,
		"neighbors", len(d.cfg.BGP.Neighbors), "announcements", len(d.cfg.BGP.Announcements))
	return nil
}

// stopBGP withdraws everything and ends the sessions before the dataplane
// stops (SIGTERM: the routers move traffic away while natd still
// forwards).
func (d *daemon) stopBGP() {
	g := d.bgp
	if g == nil {
		return
	}
	g.once.Do(func() {
		close(g.stop)
		<-g.done
		g.sp.Close()
	})
}

// polling reports whether every worker's poll count moved in the last
// stallAfter. Only the health watcher calls it.
func (g *bgpGlue) polling(d *daemon, now time.Time) bool {
	ok := true
	for i, ws := range d.wk {
		var c nat.Counters
		ws.w.Counters(&c)
		if c[nat.Polls] != g.polls[i] || g.movedAt[i].IsZero() {
			g.polls[i], g.movedAt[i] = c[nat.Polls], now
		}
		ok = ok && now.Sub(g.movedAt[i]) < stallAfter
	}
	return ok
}

// healthy is the dataplane health that gates the announcements: every
// worker's poll loop running, both links up, and XDP attached on both
// (polling adds that the loops actually poll).
func (d *daemon) healthy() bool {
	if !d.ready() {
		return false
	}
	for _, li := range d.links {
		l, err := netlink.LinkByIndex(li.ifindex)
		if err != nil {
			return false
		}
		a := l.Attrs()
		if a.Flags&net.FlagUp == 0 || (a.OperState != netlink.OperUp && a.OperState != netlink.OperUnknown) {
			return false
		}
		if a.Xdp == nil || !a.Xdp.Attached {
			return false
		}
	}
	return true
}

// BGPStatus implements mgmt.Core.
func (c *core) BGPStatus() mgmt.BGPStatus {
	g := c.d.bgp
	if g == nil {
		return mgmt.BGPStatus{}
	}
	st := g.sp.Status()
	st.SessionsLeft, _ = c.d.eng.TableUsage()
	if st.Drained {
		st.SessionsActive, st.TCPOpen = drainProgress(c.d.eng, time.Now())
	}
	return st
}

// drainProgress pages through the session table (only while drained, so
// scrapes of a busy appliance never pay for it) and counts what still
// moves and the TCP connections still open (established or half closed).
func drainProgress(e *nat.Engine, now time.Time) (active, tcpOpen int) {
	var cursor uint32
	for {
		page, next := e.Sessions(nat.SessionFilter{}, cursor, 4096)
		for i := range page {
			s := &page[i]
			if now.Sub(s.LastSeen) < mgmt.DrainActiveWindow {
				active++
			}
			// Connections that were established and are not closed:
			// an embryonic one (a SYN never answered) is not a
			// connection a subscriber would lose.
			if s.Proto == nat.TCP && (s.State == "established" || s.State == "closing") {
				tcpOpen++
			}
		}
		if next == 0 {
			return active, tcpOpen
		}
		cursor = next
	}
}

// SetDrain implements mgmt.Core.
func (c *core) SetDrain(drain bool) (mgmt.BGPStatus, error) {
	g := c.d.bgp
	if g == nil {
		return mgmt.BGPStatus{}, mgmt.Errorf(mgmt.ErrUnavailable, "natd speaks no BGP (no bgp section in %s): nothing to drain", c.d.cfg.File)
	}
	g.sp.SetDrain(drain)
	return c.BGPStatus(), nil
}

// bgpCheckSummary is --check-config's line about the bgp section.
func bgpCheckSummary(c *bgp.Config) string {
	if c == nil {
		return ""
	}
	var sides [2][]string
	for _, a := range c.Announcements {
		sides[a.Side] = append(sides[a.Side], a.Prefix.String())
	}
	slices.Sort(sides[bgp.Outside])
	return fmt.Sprintf("bgp: AS %d, %d neighbour(s); outside announces %s; inside announces %s",
		c.LocalAS, len(c.Neighbors), orNone(sides[bgp.Outside]), orNone(sides[bgp.Inside]))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}
