package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xnat/xnat/mgmt"
)

// Speaker holds natd's BGP sessions and decides what they announce: every
// configured route while the dataplane is healthy, except the inside ones
// while drained; nothing once closing. Its methods are safe for concurrent
// use (natd's health watcher, the management API and the shutdown path
// call them); mu serialises every change of what is announced.
type Speaker struct {
	cfg Config
	log *slog.Logger
	srv [numSides]*server.BgpServer // nil: no neighbour on that side

	mu           sync.Mutex
	healthy      bool
	drained      bool
	drainedSince time.Time
	outsideUp    bool      // an outside session is established (or none is configured)
	outsideSince time.Time // when outsideUp last became true
	closing      bool      // inside routes withdrawn for shutdown
	closed       bool      // everything withdrawn
	uuid         [][]byte  // per announcement: GoBGP's handle while announced
	announced    uint64
	withdrawn    uint64

	kick   chan struct{} // a session changed state
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var ipv4Unicast = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// Start starts the sessions. Nothing is announced until SetHealthy(true).
// cfg must have passed Validate.
func Start(cfg Config, log *slog.Logger) (_ *Speaker, err error) {
	s := &Speaker{cfg: cfg, log: log, uuid: make([][]byte, len(cfg.Announcements)), kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	for side := Side(0); side < numSides; side++ {
		var nbrs []Neighbor
		for _, n := range cfg.Neighbors {
			if n.Side == side {
				nbrs = append(nbrs, n)
			}
		}
		if len(nbrs) == 0 {
			continue
		}
		srv := server.NewBgpServer(server.LoggerOption(&logAdapter{log: log.With("bgp", side.String())}))
		go srv.Serve()
		s.srv[side] = srv
		// ListenPort -1: natd only connects out, so it opens no port on
		// the dataplane interfaces; routers configured passive wait for it.
		if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn: cfg.LocalAS, RouterId: cfg.RouterID.String(), ListenPort: -1,
		}}); err != nil {
			return nil, fmt.Errorf("bgp: start %s speaker: %w", side, err)
		}
		for _, n := range nbrs {
			hold := uint64(n.HoldTime / time.Second)
			peer := &api.Peer{
				Conf: &api.PeerConf{NeighborAddress: n.Address.String(), PeerAsn: n.AS, AuthPassword: n.Password},
				Timers: &api.Timers{Config: &api.TimersConfig{
					HoldTime: hold, KeepaliveInterval: max(hold/3, 1),
					// GoBGP's defaults (120 s between connection attempts,
					// 30 s idle after a reset) would keep a restarted
					// appliance out of service for minutes.
					ConnectRetry: 1, IdleHoldTimeAfterReset: 1,
				}},
				AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: ipv4Unicast, Enabled: true}}},
			}
			if n.Port != 0 {
				peer.Transport = &api.Transport{RemotePort: uint32(n.Port)}
			}
			if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
				return nil, fmt.Errorf("bgp: neighbour %s: %w", n.Address, err)
			}
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.watchPeers(ctx, srv)
		}()
	}
	s.outsideUp = s.srv[Outside] == nil
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.followOutside(ctx)
	}()
	return s, nil
}

// outsideSettle is how long the inside routes wait after an outside
// session comes up: the outside routers install the pool routes in the
// meantime, so the first subscribers' replies find their way back (the
// scale-out lab lost up to 7 flows at a rejoin without it).
const outsideSettle = 500 * time.Millisecond

// followOutside re-evaluates the announcements whenever a session changes
// state: the inside routes are announced only while an outside session is
// established, so that an appliance never attracts subscriber traffic
// whose replies cannot come back to it (at start-up, or when its outside
// routers are all gone). It runs on its own goroutine because GoBGP's
// event callbacks must not call back into GoBGP.
func (s *Speaker) followOutside(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		up := s.srv[Outside] == nil
		if !up {
			_ = s.srv[Outside].ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
				up = up || (p.State != nil && p.State.SessionState == api.PeerState_ESTABLISHED)
			})
		}
		s.mu.Lock()
		if up != s.outsideUp {
			s.log.Info("BGP: inside announcements follow the outside sessions", "outside_up", up)
			if up {
				s.outsideSince = time.Now()
				// Look again once the outside routes have settled.
				time.AfterFunc(outsideSettle, func() {
					select {
					case s.kick <- struct{}{}:
					default:
					}
				})
			}
		}
		s.outsideUp = up
		s.sync()
		s.mu.Unlock()
	}
}

// watchPeers logs session state changes until ctx ends.
func (s *Speaker) watchPeers(ctx context.Context, srv *server.BgpServer) {
	err := srv.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		p := r.GetPeer()
		if p == nil || p.Type != api.WatchEventResponse_PeerEvent_STATE || p.Peer == nil || p.Peer.State == nil {
			return
		}
		st := p.Peer.State
		s.log.Info("BGP session", "peer", st.NeighborAddress, "peer_as", st.PeerAsn, "state", stateName(st.SessionState))
		select {
		case s.kick <- struct{}{}:
		default:
		}
	})
	if err != nil {
		s.log.Warn("BGP session events unavailable", "err", err)
	}
}

func stateName(st api.PeerState_SessionState) string {
	return strings.ToLower(st.String())
}

// SetHealthy gates the announcements on the dataplane's health.
func (s *Speaker) SetHealthy(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.healthy != ok {
		s.log.Info("BGP announcements follow the dataplane's health", "healthy", ok)
	}
	s.healthy = ok
	s.sync()
}

// SetDrain drains (withdraws the inside announcements) or undrains.
func (s *Speaker) SetDrain(drain bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if drain && !s.drained {
		s.drainedSince = time.Now()
		s.log.Info("draining: inside announcements withdrawn, outside ones kept")
	} else if !drain && s.drained {
		s.drainedSince = time.Time{}
		s.log.Info("undrained: inside announcements restored while healthy")
	}
	s.drained = drain
	s.sync()
}

// want reports whether announcement i should be announced now.
func (s *Speaker) want(i int) bool {
	a := &s.cfg.Announcements[i]
	if a.Side == Inside && (s.drained || s.closing || !s.outsideUp || time.Since(s.outsideSince) < outsideSettle) {
		return false
	}
	return s.healthy && !s.closed
}

// sync announces and withdraws to match want. Called with mu held.
func (s *Speaker) sync() {
	for i := range s.cfg.Announcements {
		a := &s.cfg.Announcements[i]
		srv := s.srv[a.Side]
		if srv == nil {
			continue
		}
		switch want, have := s.want(i), s.uuid[i] != nil; {
		case want && !have:
			r, err := srv.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path(a)})
			if err != nil {
				s.log.Error("BGP announce", "prefix", a.Prefix, "side", a.Side.String(), "err", err)
				continue
			}
			s.uuid[i] = r.Uuid
			s.announced++
			s.log.Info("BGP route announced", "prefix", a.Prefix, "side", a.Side.String())
		case !want && have:
			err := srv.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: ipv4Unicast, Uuid: s.uuid[i]})
			if err != nil {
				s.log.Error("BGP withdraw", "prefix", a.Prefix, "side", a.Side.String(), "err", err)
				continue
			}
			s.uuid[i] = nil
			s.withdrawn++
			s.log.Info("BGP route withdrawn", "prefix", a.Prefix, "side", a.Side.String())
		}
	}
}

// path is the GoBGP form of an announcement: origin IGP, next hop
// 0.0.0.0 (GoBGP sends the session's own address, what eBGP peers on the
// link need), then MED and communities when configured.
func path(a *Announcement) *api.Path {
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: a.Prefix.Addr().String(), PrefixLen: uint32(a.Prefix.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "0.0.0.0"})
	attrs := []*anypb.Any{origin, nh}
	if a.HasMED {
		med, _ := anypb.New(&api.MultiExitDiscAttribute{Med: a.MED})
		attrs = append(attrs, med)
	}
	if len(a.Communities) > 0 {
		cs := make([]uint32, len(a.Communities))
		for i, c := range a.Communities {
			cs[i] = uint32(c)
		}
		comm, _ := anypb.New(&api.CommunitiesAttribute{Communities: cs})
		attrs = append(attrs, comm)
	}
	return &api.Path{Family: ipv4Unicast, Nlri: nlri, Pattrs: attrs}
}

// Status describes the sessions and routes. SessionsLeft is the caller's.
func (s *Speaker) Status() mgmt.BGPStatus {
	s.mu.Lock()
	st := mgmt.BGPStatus{
		Enabled: true, LocalAS: s.cfg.LocalAS, RouterID: s.cfg.RouterID,
		Healthy: s.healthy, Drained: s.drained, DrainedSince: s.drainedSince,
		Announcements: s.announced, Withdrawals: s.withdrawn,
	}
	for i, a := range s.cfg.Announcements {
		r := mgmt.BGPRouteStatus{Prefix: a.Prefix, Side: a.Side.String(), Announced: s.uuid[i] != nil, MED: a.MED, HasMED: a.HasMED}
		for _, c := range a.Communities {
			r.Communities = append(r.Communities, c.String())
		}
		st.Routes = append(st.Routes, r)
	}
	s.mu.Unlock()
	states := map[netip.Addr]mgmt.BGPPeerStatus{}
	for _, srv := range s.srv {
		if srv == nil {
			continue
		}
		_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.State == nil {
				return
			}
			a, err := netip.ParseAddr(p.State.NeighborAddress)
			if err != nil {
				return
			}
			ps := mgmt.BGPPeerStatus{State: stateName(p.State.SessionState)}
			if p.Timers != nil && p.Timers.State != nil {
				ts := p.Timers.State.Uptime
				if ps.State != "established" {
					ts = p.Timers.State.Downtime
				}
				if ts != nil && ts.AsTime().Unix() > 0 {
					ps.Since = ts.AsTime()
				}
			}
			states[a] = ps
		})
	}
	for _, n := range s.cfg.Neighbors {
		ps, ok := states[n.Address]
		if !ok {
			ps.State = "unknown"
		}
		ps.Address, ps.AS, ps.Side = n.Address, n.AS, n.Side.String()
		st.Peers = append(st.Peers, ps)
	}
	return st
}

// Close takes the appliance out of service in the order that loses
// nothing in flight: it withdraws the inside routes first, so that no new
// flow arrives, waits ShutdownDelay while the outside routes still bring
// the replies of flows already under way, then withdraws the outside
// routes and ends the sessions with a Cease NOTIFICATION (RFC 4486 subcode
// 3, peer de-configured). natd calls it before it stops its workers and
// detaches XDP.
func (s *Speaker) Close() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	s.sync()
	s.mu.Unlock()
	s.log.Info("BGP: inside routes withdrawn for shutdown; outside routes kept for flows in flight", "delay", s.cfg.ShutdownDelay)
	time.Sleep(s.cfg.ShutdownDelay)
	s.mu.Lock()
	s.closed = true
	s.sync()
	s.mu.Unlock()
	s.stop()
	s.log.Info("BGP routes withdrawn and sessions closed; the dataplane stops now")
}

func (s *Speaker) stop() {
	for _, srv := range s.srv {
		if srv != nil {
			srv.Stop()
		}
	}
	s.cancel()
	s.wg.Wait()
}

// logAdapter sends GoBGP's log to natd's. GoBGP's info messages (each
// configuration step) go to debug; its warnings and errors stay.
type logAdapter struct {
	log *slog.Logger
	lv  gobgplog.LogLevel
}

func attrs(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, strings.ToLower(k), v)
	}
	return out
}

func (l *logAdapter) Panic(msg string, f gobgplog.Fields) { l.log.Error(msg, attrs(f)...) }
func (l *logAdapter) Fatal(msg string, f gobgplog.Fields) { l.log.Error(msg, attrs(f)...) }
func (l *logAdapter) Error(msg string, f gobgplog.Fields) { l.log.Error(msg, attrs(f)...) }
func (l *logAdapter) Warn(msg string, f gobgplog.Fields)  { l.log.Warn(msg, attrs(f)...) }
func (l *logAdapter) Info(msg string, f gobgplog.Fields)  { l.log.Debug(msg, attrs(f)...) }
func (l *logAdapter) Debug(msg string, f gobgplog.Fields) {}
func (l *logAdapter) SetLevel(lv gobgplog.LogLevel)       { l.lv = lv }
func (l *logAdapter) GetLevel() gobgplog.LogLevel         { return gobgplog.InfoLevel }
