package bgp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/xnat/xnat/internal/wait"
)

// router is a GoBGP instance standing in for the routers: it listens on a
// loopback port and accepts the speaker's sessions.
type router struct {
	srv  *server.BgpServer
	port int
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newRouter(t *testing.T, as uint32, id string, peers map[string]uint32) *router {
	t.Helper()
	r := &router{srv: server.NewBgpServer(server.LoggerOption(&logAdapter{log: slog.New(slog.DiscardHandler)})), port: freePort(t)}
	go r.srv.Serve()
	if err := r.srv.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn: as, RouterId: id, ListenPort: int32(r.port), ListenAddresses: []string{id},
	}}); err != nil {
		t.Fatal(err)
	}
	for addr, pas := range peers {
		if err := r.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: addr, PeerAsn: pas},
			Transport: &api.Transport{PassiveMode: true},
			Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1}},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(r.srv.Stop)
	return r
}

// routes lists the prefixes the router has learned, with their MED and
// communities rendered.
func (r *router) routes(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: ipv4Unicast}, func(d *api.Destination) {
		for _, p := range d.Paths {
			var attrs []string
			for _, a := range p.Pattrs {
				var med api.MultiExitDiscAttribute
				var comm api.CommunitiesAttribute
				if a.UnmarshalTo(&med) == nil {
					attrs = append(attrs, "med="+strconv.FormatUint(uint64(med.Med), 10))
				} else if a.UnmarshalTo(&comm) == nil {
					for _, c := range comm.Communities {
						attrs = append(attrs, "comm="+Community(c).String())
					}
				}
			}
			out[d.Prefix] = strings.Join(attrs, " ")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, what, 20*time.Second, cond)
}

// startSpeaker validates cfg and starts a speaker that logs nowhere; the
// caller closes it.
func startSpeaker(t *testing.T, cfg Config) *Speaker {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sp, err := Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestSpeakerHealthDrainClose drives a speaker against two GoBGP routers
// (inside on 127.0.0.2, outside on 127.0.0.3): nothing is announced until
// healthy; healthy announces each side's routes to that side only, with
// MED and communities; drain withdraws the inside routes only; unhealthy
// withdraws everything; Close withdraws and ends the sessions.
func TestSpeakerHealthDrainClose(t *testing.T) {
	in := newRouter(t, 65001, "127.0.0.2", map[string]uint32{"127.0.0.1": 65010})
	out := newRouter(t, 65002, "127.0.0.3", map[string]uint32{"127.0.0.1": 65010})
	cfg := Config{
		LocalAS: 65010, RouterID: netip.MustParseAddr("198.18.0.1"), ShutdownDelay: 10 * time.Millisecond,
		Neighbors: []Neighbor{
			{Address: netip.MustParseAddr("127.0.0.2"), AS: 65001, Side: Inside, HoldTime: 3 * time.Second, Port: uint16(in.port)},
			{Address: netip.MustParseAddr("127.0.0.3"), AS: 65002, Side: Outside, HoldTime: 3 * time.Second, Port: uint16(out.port)},
		},
		Announcements: []Announcement{
			{Prefix: netip.MustParsePrefix("198.18.10.0/28"), Side: Outside, MED: 10, HasMED: true, Communities: []Community{65010<<16 | 100}},
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Side: Inside},
		},
	}
	sp := startSpeaker(t, cfg)
	defer sp.Close()
	waitFor(t, "both sessions established", func() bool {
		st := sp.Status()
		return len(st.Peers) == 2 && st.Peers[0].Up() && st.Peers[1].Up()
	})
	if r := in.routes(t); len(r) != 0 {
		t.Fatalf("announced before healthy: %v", r)
	}
	sp.SetHealthy(true)
	waitFor(t, "outside route with MED and community", func() bool {
		return out.routes(t)["198.18.10.0/28"] == "med=10 comm=65010:100"
	})
	waitFor(t, "inside default route", func() bool { _, ok := in.routes(t)["0.0.0.0/0"]; return ok })
	if r := in.routes(t); len(r) != 1 {
		t.Fatalf("inside router learned %v, want only the default route", r)
	}
	if r := out.routes(t); len(r) != 1 {
		t.Fatalf("outside router learned %v, want only the pool", r)
	}

	sp.SetDrain(true)
	waitFor(t, "inside route withdrawn on drain", func() bool { return len(in.routes(t)) == 0 })
	if _, ok := out.routes(t)["198.18.10.0/28"]; !ok {
		t.Fatal("drain withdrew the outside route")
	}
	st := sp.Status()
	if !st.Drained || st.DrainedSince.IsZero() || st.Routes[1].Announced || !st.Routes[0].Announced {
		t.Fatalf("status after drain: %+v", st)
	}
	sp.SetDrain(false)
	waitFor(t, "inside route back on undrain", func() bool { return len(in.routes(t)) == 1 })

	start := time.Now()
	sp.SetHealthy(false)
	waitFor(t, "everything withdrawn when unhealthy", func() bool { return len(in.routes(t))+len(out.routes(t)) == 0 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("withdrawal took %v, want under 1 s", d)
	}
	sp.SetHealthy(true)
	waitFor(t, "announced again", func() bool { return len(in.routes(t)) == 1 && len(out.routes(t)) == 1 })
	sp.Close()
	waitFor(t, "withdrawn on Close", func() bool { return len(in.routes(t))+len(out.routes(t)) == 0 })
	if st := sp.Status(); st.Announcements != 5 || st.Withdrawals != 5 {
		t.Errorf("counted %d announcements, %d withdrawals; want 5 and 5 (2+1+2, 1+2+2)", st.Announcements, st.Withdrawals)
	}
}

// TestInsideWaitsForOutside: with no outside session established, the
// inside routes stay withdrawn even while healthy (the appliance would
// attract traffic whose replies could not come back).
func TestInsideWaitsForOutside(t *testing.T) {
	in := newRouter(t, 65001, "127.0.0.2", map[string]uint32{"127.0.0.1": 65010})
	cfg := Config{
		LocalAS: 65010, RouterID: netip.MustParseAddr("198.18.0.1"), ShutdownDelay: 10 * time.Millisecond,
		Neighbors: []Neighbor{
			{Address: netip.MustParseAddr("127.0.0.2"), AS: 65001, Side: Inside, HoldTime: 3 * time.Second, Port: uint16(in.port)},
			// Nobody listens there.
			{Address: netip.MustParseAddr("127.0.0.3"), AS: 65002, Side: Outside, HoldTime: 3 * time.Second, Port: uint16(freePort(t))},
		},
		Announcements: []Announcement{
			{Prefix: netip.MustParsePrefix("198.18.10.0/28"), Side: Outside},
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Side: Inside},
		},
	}
	sp := startSpeaker(t, cfg)
	defer sp.Close()
	sp.SetHealthy(true)
	waitFor(t, "inside session established", func() bool { return sp.Status().Peers[0].Up() })
	// Give a wrongly announced route time to arrive.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if r := in.routes(t); len(r) != 0 {
			t.Fatalf("inside router learned %v with no outside session up", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := sp.Status(); st.Routes[1].Announced {
		t.Fatalf("status says the inside route is announced: %+v", st.Routes)
	}
}
