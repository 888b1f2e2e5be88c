// Package metrics exports natd's counters to Prometheus. It sits at the
// very end of the pipeline's accounting: workers count into plain
// per-worker arrays and publish them once per burst (nat.Worker.Counters);
// at scrape time the Collector asks the core for those published values
// (mgmt.Core.Stats and Status) and sums them. No per-packet code touches a
// Prometheus type or a shared cache line.
//
// Server serves /metrics from a private registry (the collector, Go
// runtime metrics including GC cycles, process metrics and build info),
// /healthz (liveness) and /readyz (readiness: natd's workers run), on a
// loopback address by default so that it stays off the dataplane
// interfaces.
package metrics

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/events"
)

// CollectorOptions configure a Collector.
type CollectorOptions struct {
	// Version is reported in xnat_build_info; default: the main module's
	// version from the build information.
	Version string
	// Events, if set, returns the event exporter's counters.
	Events func() events.Stats
}

// Collector is a prometheus.Collector over a mgmt.Core. Any goroutine may
// scrape it; concurrent scrapes are serialised (the busy ratio needs the
// previous scrape's values).
type Collector struct {
	core    mgmt.Core
	version string
	events  func() events.Stats

	mu   sync.Mutex
	prev map[int]busySample
}

type busySample struct{ poll, busy uint64 }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dBuildInfo   = desc("xnat_build_info", "Build information; always 1.", "version", "goversion")
	dStartTime   = desc("xnat_start_time_seconds", "Unix time natd started.")
	dGeneration  = desc("xnat_config_generation", "Generation of the NAT configuration snapshot in force.")
	dRxPackets   = desc("xnat_rx_packets_total", "Frames received, by interface and queue.", "interface", "queue")
	dTxPackets   = desc("xnat_tx_packets_total", "Frames sent, by interface and queue.", "interface", "queue")
	dRxBytes     = desc("xnat_rx_bytes_total", "Bytes received (Ethernet frames without FCS), by interface and queue.", "interface", "queue")
	dTxBytes     = desc("xnat_tx_bytes_total", "Bytes sent (Ethernet frames without FCS), by interface and queue.", "interface", "queue")
	dIfDrops     = desc("xnat_interface_dropped_packets_total", "Frames the port layer itself lost (full rings, copy failures), by interface and queue.", "interface", "queue")
	dIfUp        = desc("xnat_interface_up", "1 when the interface's link is up.", "interface", "side")
	dDropped     = desc("xnat_dropped_packets_total", "Frames the dataplane dropped, by reason (see docs/operations.md).", "reason")
	dSessions    = desc("xnat_sessions", "Live sessions, by protocol.", "protocol")
	dSessCap     = desc("xnat_sessions_capacity", "Capacity of the session table.")
	dCreated     = desc("xnat_sessions_created_total", "Sessions created, by protocol.", "protocol")
	dExpired     = desc("xnat_sessions_expired_total", "Sessions ended by idle timeout, by protocol.", "protocol")
	dDeleted     = desc("xnat_sessions_deleted_total", "Sessions deleted by an operator.")
	dAllocFail   = desc("xnat_port_alloc_failures_total", "New mappings that found no free external port.")
	dPortsInUse  = desc("xnat_pool_ports_in_use", "External ports (ICMP identifiers) in use, by pool, address and protocol.", "pool", "address", "protocol")
	dPorts       = desc("xnat_pool_ports", "External ports (ICMP identifiers) available, by pool, address and protocol.", "pool", "address", "protocol")
	dSubscribers = desc("xnat_pool_subscribers", "Subscribers (inside addresses) paired with an external address.", "pool", "address")
	dPoolUtil    = desc("xnat_pool_utilization_ratio", "Share of a pool's ports in use, all addresses and protocols together.", "pool")
	dHairpin     = desc("xnat_hairpinned_packets_total", "Packets hairpinned from inside to a public address back inside.")
	dICMPSent    = desc("xnat_icmp_errors_sent_total", "ICMP errors natd originated.")
	dICMPSupp    = desc("xnat_icmp_errors_suppressed_total", "ICMP errors not sent because of the rate limit.")
	dFragTrans   = desc("xnat_fragments_translated_total", "IPv4 fragments translated.")
	dFragHeld    = desc("xnat_fragments_held_total", "Out-of-order IPv4 fragments held until their first fragment.")
	dFragMade    = desc("xnat_fragments_made_total", "Fragments natd made to fit the egress MTU.")
	dMSSClamped  = desc("xnat_mss_clamped_total", "TCP SYNs whose MSS option natd lowered (nat.mss_clamp).")
	dEvDropped   = desc("xnat_events_dropped_total", "Session events lost because the engine's event rings were full.")
	dHoldsCut    = desc("xnat_port_holds_shortened_total", "Port hold-downs (RFC 6888 REQ-8) ended early because the port table had no room for them.")
	dEvWritten   = desc("xnat_events_written_total", "Session events written to the event log.")
	dEvWriteErr  = desc("xnat_event_write_errors_total", "Failed writes to the event log.")
	dEvFileDrop  = desc("xnat_event_log_dropped_total", "Session events lost to event log write errors.")
	dEvSubDrop   = desc("xnat_event_subscriber_dropped_total", "Session events lost by subscribers (WatchEvents streams) reading too slowly.")
	dBusyRatio   = desc("xnat_worker_busy_ratio", "Share of a worker's polling time since the previous scrape that followed polls moving frames.", "worker")
	dBusySecs    = desc("xnat_worker_busy_seconds_total", "Polling time that followed polls moving frames.", "worker")
	dPollSecs    = desc("xnat_worker_poll_seconds_total", "Time a worker spent polling.", "worker")
	dPolls       = desc("xnat_worker_polls_total", "Polls a worker made.", "worker")
	dBusyPolls   = desc("xnat_worker_busy_polls_total", "Polls that moved at least one frame.", "worker")
	dLinkErrors  = desc("xnat_worker_link_errors_total", "Port errors (link down, ring errors) a worker met.", "worker")
	dPanics      = desc("xnat_worker_panics_total", "Panics of a worker's poll loop, each logged with its stack and the loop restarted.", "worker")
)

// NewCollector returns a collector over core.
func NewCollector(core mgmt.Core, opts CollectorOptions) *Collector {
	if opts.Version == "" {
		opts.Version = buildVersion()
	}
	return &Collector{core: core, version: opts.Version, events: opts.Events, prev: map[int]busySample{}}
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		dBuildInfo, dStartTime, dGeneration, dRxPackets, dTxPackets, dRxBytes, dTxBytes, dIfDrops, dIfUp,
		dDropped, dSessions, dSessCap, dCreated, dExpired, dDeleted, dAllocFail, dPortsInUse, dPorts,
		dSubscribers, dPoolUtil, dHairpin, dICMPSent, dICMPSupp, dFragTrans, dFragHeld, dFragMade,
		dEvDropped, dBusyRatio, dBusySecs, dPollSecs, dPolls, dBusyPolls, dLinkErrors, dPanics,
		dMSSClamped,
		dBlocksInUse, dBlocksAlloc, dBlocksFreed, dBlocksCut,
	} {
		ch <- d
	}
	if c.events != nil {
		ch <- dEvWritten
		ch <- dEvWriteErr
		ch <- dEvFileDrop
		ch <- dEvSubDrop
		describeExport(ch)
	}
}

// Collect reads the core's counters once and emits every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.core.Status()
	stats := c.core.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	gauge(dBuildInfo, 1, c.version, runtime.Version())
	if !st.StartTime.IsZero() {
		gauge(dStartTime, float64(st.StartTime.UnixNano())/1e9)
	}
	gauge(dGeneration, float64(st.ConfigGeneration))
	gauge(dSessCap, float64(st.SessionsCapacity))
	for _, i := range st.Interfaces {
		up := 0.0
		if i.LinkUp {
			up = 1
		}
		gauge(dIfUp, up, i.Name, i.Side.String())
	}
	for _, i := range stats.Interfaces {
		q := strconv.Itoa(i.Queue)
		counter(dRxPackets, i.RxPackets, i.Name, q)
		counter(dTxPackets, i.TxPackets, i.Name, q)
		counter(dRxBytes, i.RxBytes, i.Name, q)
		counter(dTxBytes, i.TxBytes, i.Name, q)
		counter(dIfDrops, i.Drops, i.Name, q)
	}

	// Sum the workers' counters.
	var sum nat.Counters
	for i := range stats.Workers {
		sum.Add(&stats.Workers[i].Counters)
	}
	for r := drop.Reason(1); r < drop.NumReasons; r++ {
		counter(dDropped, sum.Drops(r), r.String())
	}
	for p := nat.Proto(0); p < nat.NumProtos; p++ {
		gauge(dSessions, float64(stats.Sessions[p]), p.String())
		counter(dCreated, sum[nat.SessionsCreated+nat.Counter(p)], p.String())
		counter(dExpired, stats.SessionsExpired[p], p.String())
	}
	counter(dDeleted, stats.SessionsDeleted)
	counter(dAllocFail, sum[nat.PortAllocFailures])
	counter(dHairpin, sum[nat.Hairpinned])
	counter(dICMPSent, sum[nat.ICMPErrorsSent])
	counter(dICMPSupp, sum[nat.ICMPErrorsSuppressed])
	counter(dFragTrans, sum[nat.FragmentsTranslated])
	counter(dFragHeld, sum[nat.FragmentsHeld])
	counter(dFragMade, sum[nat.FragmentsMade])
	counter(dMSSClamped, sum[nat.MSSClamped])
	counter(dEvDropped, stats.EventsDropped)
	counter(dHoldsCut, stats.PortHoldsShortened)
	counter(dBlocksAlloc, stats.CGN.BlocksAllocated)
	counter(dBlocksFreed, stats.CGN.BlocksFreed)
	counter(dBlocksCut, stats.CGN.BlockHoldsShortened)
	gauge(dBlocksInUse, float64(stats.CGN.BlocksInUse))

	for _, p := range st.Pools {
		for _, a := range p.Addresses {
			addr := a.Addr.String()
			for pr := nat.Proto(0); pr < nat.NumProtos; pr++ {
				gauge(dPortsInUse, float64(a.PortsInUse[pr]), p.Name, addr, pr.String())
				gauge(dPorts, float64(a.PortsTotal[pr]), p.Name, addr, pr.String())
			}
			gauge(dSubscribers, float64(a.Subscribers), p.Name, addr)
		}
		gauge(dPoolUtil, mgmt.PoolUtilization(&p), p.Name)
	}

	c.mu.Lock()
	for _, w := range stats.Workers {
		id := strconv.Itoa(w.ID)
		wc := &w.Counters
		poll, busy := wc[nat.PollNanos], wc[nat.BusyNanos]
		counter(dPolls, wc[nat.Polls], id)
		counter(dBusyPolls, wc[nat.BusyPolls], id)
		counter(dLinkErrors, wc[nat.LinkErrors], id)
		counter(dPanics, w.Panics, id)
		ch <- prometheus.MustNewConstMetric(dPollSecs, prometheus.CounterValue, float64(poll)/1e9, id)
		ch <- prometheus.MustNewConstMetric(dBusySecs, prometheus.CounterValue, float64(busy)/1e9, id)
		gauge(dBusyRatio, c.busyRatio(w.ID, poll, busy), id)
	}
	c.mu.Unlock()

	if c.events != nil {
		es := c.events()
		counter(dEvWritten, es.Written)
		counter(dEvWriteErr, es.WriteErrors)
		counter(dEvFileDrop, es.FileDropped)
		counter(dEvSubDrop, es.SubscriberDropped)
		collectExport(ch, es.Sinks)
	}
}

// busyRatio is the share of polling time that was busy since the previous
// scrape (since start on the first one). A worker that did not poll in
// between reports 0. Called with mu held.
func (c *Collector) busyRatio(id int, poll, busy uint64) float64 {
	prev, seen := c.prev[id]
	c.prev[id] = busySample{poll, busy}
	if seen && poll >= prev.poll && busy >= prev.busy {
		poll -= prev.poll
		busy -= prev.busy
	}
	if poll == 0 {
		return 0
	}
	return float64(busy) / float64(poll)
}
