package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/events"
)

// mgmtPlane is natd's management plane: the gRPC server over natd's Core,
// the event exporter, and the metrics endpoint.
type mgmtPlane struct {
	core    *core
	server  *mgmt.Server
	events  *events.Exporter
	metrics *metricsServer
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startMgmt(ctx context.Context, d *daemon) (_ *mgmtPlane, err error) {
	m := &mgmtPlane{core: &core{d: d, EngineCore: mgmt.EngineCore{Engine: d.eng, Store: d.store}}}
	ctx, m.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	cfg := d.cfg
	// The exporters stop after the event exporter's last drain.
	sinkCtx, stopSinks := context.WithCancel(context.Background())
	sinks, err := startExporters(sinkCtx, cfg.Logging, d.log, &m.wg)
	if err != nil {
		stopSinks()
		return nil, err
	}
	m.events, err = events.New(events.Options{
		Sinks:      sinks,
		Drain:      d.eng.DrainEvents,
		Path:       cfg.Events.File,
		MaxSize:    cfg.Events.MaxSize,
		MaxBackups: cfg.Events.MaxBackups,
		Logger:     d.log,
	})
	if err != nil {
		stopSinks()
		return nil, fmt.Errorf("event export: %w", err)
	}
	m.serve(ctx, "event exporter", func(ctx context.Context) error {
		defer stopSinks()
		return m.events.Run(ctx)
	})
	m.core.Events = m.events

	roMode := uint32(0o660)
	if cfg.Mgmt.ReadOnlyMode != "" {
		if _, err := fmt.Sscanf(cfg.Mgmt.ReadOnlyMode, "%o", &roMode); err != nil {
			return nil, fmt.Errorf("management.readonly_socket_mode %q: not an octal mode", cfg.Mgmt.ReadOnlyMode)
		}
	}
	m.server, err = mgmt.NewServer(m.core, mgmt.ServerOptions{
		SocketPath:          cfg.Mgmt.Socket,
		ReadOnlySocketPath:  cfg.Mgmt.ReadOnlySocket,
		ReadOnlySocketMode:  osFileMode(roMode),
		ReadOnlySocketGroup: cfg.Mgmt.ReadOnlyGroup,
		TCPAddr:             cfg.Mgmt.Listen,
		TLSCertFile:         cfg.Mgmt.TLS.Cert,
		TLSKeyFile:          cfg.Mgmt.TLS.Key,
		TLSClientCAFile:     cfg.Mgmt.TLS.ClientCA,
		AdminIdentities:     cfg.Mgmt.AdminIdentities,
		Insecure:            cfg.Mgmt.Insecure,
		Logger:              d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("management API: %w", err)
	}
	m.serve(ctx, "management API", m.server.Serve)
	d.log.Info("management API listening", "socket", cfg.Mgmt.Socket, "readonly_socket", cfg.Mgmt.ReadOnlySocket, "tcp", cfg.Mgmt.Listen)

	m.metrics, err = startMetrics(ctx, m.core, cfg.Metrics, d)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// serve runs run(ctx) on a goroutine of m's, logging its error under name
// unless ctx ended it.
func (m *mgmtPlane) serve(ctx context.Context, name string, run func(context.Context) error) {
	m.wg.Go(func() {
		if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			m.core.d.log.Error(name, "err", err)
		}
	})
}

func (m *mgmtPlane) close() {
	if m.server != nil {
		m.server.Close()
	}
	if m.metrics != nil {
		m.metrics.close()
	}
}

// flushEvents lets the exporter drain what the workers queued before they
// stopped, then stops it.
func (m *mgmtPlane) flushEvents() {
	time.Sleep(250 * time.Millisecond) // a few exporter rounds
	m.cancel()
	m.wg.Wait()
}

// core implements mgmt.Core over the running daemon: the engine, the
// configuration store and the event exporter answer most of it
// (mgmt.EngineCore); the rest describes the appliance.
type core struct {
	mgmt.EngineCore
	d *daemon
}

var _ mgmt.Core = (*core)(nil)

func (c *core) Status() mgmt.Status {
	d := c.d
	snap := d.eng.Snapshot()
	live, capacity := d.eng.TableUsage()
	st := mgmt.Status{
		Version:          buildVersion(),
		StartTime:        d.started,
		ConfigGeneration: snap.Generation,
		ConfigFile:       d.cfg.File,
		SessionsInUse:    live,
		SessionsCapacity: capacity,
	}
	for s, li := range d.links {
		is := mgmt.InterfaceStatus{
			Name: li.name, Side: nat.Side(s), Ifindex: li.ifindex, MAC: li.mac, MTU: li.mtu, Queues: li.queues,
			XDPMode: "native", XSKMode: "copy",
		}
		if li.generic {
			is.XDPMode = "generic"
		}
		if len(li.addrs) > 0 {
			is.Addr = li.addrs[0].Addr()
		}
		if len(d.wk) > 0 && d.wk[0].ports[s].ZeroCopy() {
			is.XSKMode = "zerocopy"
		}
		if l, err := netlink.LinkByIndex(li.ifindex); err == nil {
			is.LinkUp = l.Attrs().OperState == netlink.OperUp || l.Attrs().OperState == netlink.OperUnknown
		}
		st.Interfaces = append(st.Interfaces, is)
	}
	for _, ws := range d.wk {
		var cnt nat.Counters
		ws.w.Counters(&cnt)
		wst := mgmt.WorkerStatus{
			ID: ws.id, CPU: ws.cpu, PollMode: d.cfg.PollMode.String(), Queues: ws.queues,
			LinkErrors: cnt[nat.LinkErrors],
			Interfaces: [nat.NumSides]string{d.links[nat.Inside].name, d.links[nat.Outside].name},
		}
		if cnt[nat.PollNanos] > 0 {
			wst.BusyRatio = float64(cnt[nat.BusyNanos]) / float64(cnt[nat.PollNanos])
		}
		st.Workers = append(st.Workers, wst)
	}
	st.Pools = mgmt.PoolStatusOf(d.eng.PoolUsage())
	return st
}

func (c *core) Stats() mgmt.Stats {
	d := c.d
	st := mgmt.Stats{Time: time.Now(), EventsDropped: d.eng.EventsDropped(), PortHoldsShortened: d.eng.PortHoldsShortened(), CGN: d.eng.CGNStats()}
	sc := d.eng.SessionCounts()
	st.Sessions, st.SessionsExpired, st.SessionsDeleted = sc.Live, sc.Expired, sc.DeletedByOperator
	for _, ws := range d.wk {
		w := mgmt.WorkerStats{ID: ws.id}
		ws.w.Counters(&w.Counters)
		if ws.run != nil {
			w.Panics = ws.run.Panics()
		}
		st.Workers = append(st.Workers, w)
		ps, ks := ws.portStats()
		for s := nat.Inside; s < nat.NumSides; s++ {
			p, k := ps[s], ks[s]
			st.Interfaces = append(st.Interfaces, mgmt.InterfaceStats{
				Name: d.links[s].name, Queue: ws.queues[s],
				RxPackets: p.RxPackets, RxBytes: p.RxBytes, TxPackets: p.TxPackets, TxBytes: p.TxBytes,
				// Frames lost in the port layer (frames handed back that
				// we did not own) and in the kernel before we saw them
				// (RX ring full, no fill-ring frame, invalid descriptors).
				// A full TX ring is a drop reason of the worker's.
				Drops: p.BadFrames + k.Rx_dropped + k.Rx_ring_full + k.Rx_invalid_descs + k.Tx_invalid_descs,
			})
		}
	}
	return st
}

func (c *core) Reload() error {
	if err := c.d.Reload(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) || errors.Is(err, nat.ErrInvalidConfig) {
			return mgmt.Errorf(mgmt.ErrInvalid, "%v", err)
		}
		return err
	}
	return nil
}
