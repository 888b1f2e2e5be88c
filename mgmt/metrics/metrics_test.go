package metrics_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/events"
	"github.com/xnat/xnat/mgmt/metrics"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

// stubCore returns fixed Status and Stats; the rest of mgmt.Core is not
// used by the collector.
type stubCore struct {
	mgmt.Core
	mu    sync.Mutex
	st    mgmt.Status
	stats mgmt.Stats
}

// BGPStatus: the stub speaks no BGP (NewRegistry's bgpCollector asks).
func (s *stubCore) BGPStatus() mgmt.BGPStatus { return mgmt.BGPStatus{} }

func (s *stubCore) Status() mgmt.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (s *stubCore) Stats() mgmt.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func known() *stubCore {
	var w0, w1 nat.Counters
	w0[nat.SessionsCreated+nat.Counter(nat.TCP)] = 10
	w1[nat.SessionsCreated+nat.Counter(nat.TCP)] = 5
	w0[nat.SessionsCreated+nat.Counter(nat.UDP)] = 7
	w0[nat.DropCounter(drop.NoSession)] = 3
	w1[nat.DropCounter(drop.NoSession)] = 4
	w1[nat.DropCounter(drop.PortExhausted)] = 2
	w0[nat.PortAllocFailures] = 2
	w1[nat.Hairpinned] = 9
	w0[nat.ICMPErrorsSent] = 6
	w0[nat.PollNanos], w0[nat.BusyNanos] = 4e9, 1e9
	w1[nat.PollNanos], w1[nat.BusyNanos] = 2e9, 2e9
	w0[nat.Polls], w0[nat.BusyPolls] = 1000, 250
	mk := func(a string, inUse, total [nat.NumProtos]int) mgmt.AddressStatus {
		return mgmt.AddressStatus{Addr: netip.MustParseAddr(a), Subscribers: 2, PortsInUse: inUse, PortsTotal: total}
	}
	return &stubCore{
		st: mgmt.Status{
			StartTime:        time.Unix(1_767_000_000, 0),
			ConfigGeneration: 42,
			SessionsCapacity: 1 << 20,
			Interfaces: []mgmt.InterfaceStatus{
				{Name: "eth0", Side: nat.Inside, LinkUp: true},
				{Name: "eth1", Side: nat.Outside, LinkUp: false},
			},
			Pools: []mgmt.PoolStatus{{Name: "main", Addresses: []mgmt.AddressStatus{
				mk("198.18.0.100", [3]int{100, 50, 10}, [3]int{1000, 1000, 1000}),
				mk("198.18.0.101", [3]int{0, 140, 0}, [3]int{1000, 1000, 1000}),
			}}},
		},
		stats: mgmt.Stats{
			Workers: []mgmt.WorkerStats{{ID: 0, Counters: w0}, {ID: 1, Counters: w1}},
			Interfaces: []mgmt.InterfaceStats{
				{Name: "eth0", Queue: 0, RxPackets: 100, RxBytes: 6400, TxPackets: 90, TxBytes: 5760, Drops: 1},
				{Name: "eth0", Queue: 1, RxPackets: 50, RxBytes: 3200},
				{Name: "eth1", Queue: 0, RxPackets: 80, TxPackets: 140},
			},
			SessionsExpired: [3]uint64{3, 2, 1},
			SessionsDeleted: 4,
			Sessions:        [3]uint64{12, 5, 0},
			EventsDropped:   11,

			PortHoldsShortened: 13,
			CGN:                nat.CGNStats{BlocksFreed: 5, BlockHoldsShortened: 2},
		},
	}
}

func startServer(t *testing.T, core mgmt.Core, ready func() bool, ev func() events.Stats) string {
	t.Helper()
	srv, err := metrics.NewServer(metrics.ServerOptions{Addr: "127.0.0.1:0", Core: core, Ready: ready, Events: ev,
		Version: "v1.2.3", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mgmttest.Serve(t, srv.Serve)
	return "http://" + srv.Addr().String()
}

// series is one expected sample: a metric, its label pairs, its value.
type series struct {
	name   string
	labels []string
	want   float64
}

// wantSeries checks every expected sample against a scrape.
func wantSeries(t *testing.T, mfs map[string]*dto.MetricFamily, want []series) {
	t.Helper()
	for _, tc := range want {
		if got, ok := metrics.Value(mfs, tc.name, tc.labels...); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
}

func TestScrapeKnownValues(t *testing.T) {
	core := known()
	url := startServer(t, core, nil, func() events.Stats {
		return events.Stats{Written: 500, WriteErrors: 1, FileDropped: 3, SubscriberDropped: 8}
	})
	mfs, err := metrics.Scrape(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	wantSeries(t, mfs, []series{
		{"xnat_build_info", []string{"version", "v1.2.3"}, 1},
		{"xnat_start_time_seconds", nil, 1_767_000_000},
		{"xnat_config_generation", nil, 42},
		{"xnat_sessions_capacity", nil, 1 << 20},
		{"xnat_interface_up", []string{"interface", "eth0", "side", "inside"}, 1},
		{"xnat_interface_up", []string{"interface", "eth1", "side", "outside"}, 0},
		{"xnat_rx_packets_total", []string{"interface", "eth0", "queue", "0"}, 100},
		{"xnat_rx_packets_total", []string{"interface", "eth0", "queue", "1"}, 50},
		{"xnat_rx_packets_total", []string{"interface", "eth1", "queue", "0"}, 80},
		{"xnat_tx_packets_total", []string{"interface", "eth1", "queue", "0"}, 140},
		{"xnat_rx_bytes_total", []string{"interface", "eth0", "queue", "0"}, 6400},
		{"xnat_tx_bytes_total", []string{"interface", "eth0", "queue", "0"}, 5760},
		{"xnat_interface_dropped_packets_total", []string{"interface", "eth0", "queue", "0"}, 1},
		{"xnat_dropped_packets_total", []string{"reason", "no_session"}, 7},
		{"xnat_dropped_packets_total", []string{"reason", "port_exhausted"}, 2},
		{"xnat_dropped_packets_total", []string{"reason", "ttl_expired"}, 0},
		{"xnat_sessions", []string{"protocol", "tcp"}, 12},
		{"xnat_sessions", []string{"protocol", "udp"}, 5},
		{"xnat_sessions_created_total", []string{"protocol", "tcp"}, 15},
		{"xnat_sessions_created_total", []string{"protocol", "udp"}, 7},
		{"xnat_sessions_expired_total", []string{"protocol", "icmp"}, 1},
		{"xnat_sessions_deleted_total", nil, 4},
		{"xnat_port_alloc_failures_total", nil, 2},
		{"xnat_hairpinned_packets_total", nil, 9},
		{"xnat_icmp_errors_sent_total", nil, 6},
		{"xnat_events_dropped_total", nil, 11},
		{"xnat_port_holds_shortened_total", nil, 13},
		{"xnat_port_blocks_released_total", nil, 5},
		{"xnat_port_block_holds_shortened_total", nil, 2},
		{"xnat_events_written_total", nil, 500},
		{"xnat_event_subscriber_dropped_total", nil, 8},
		{"xnat_event_log_dropped_total", nil, 3},
		{"xnat_pool_ports_in_use", []string{"pool", "main", "address", "198.18.0.100", "protocol", "tcp"}, 100},
		{"xnat_pool_ports_in_use", []string{"pool", "main", "address", "198.18.0.101", "protocol", "udp"}, 140},
		{"xnat_pool_ports", []string{"pool", "main", "address", "198.18.0.101", "protocol", "icmp"}, 1000},
		{"xnat_pool_subscribers", []string{"pool", "main", "address", "198.18.0.100"}, 2},
		{"xnat_pool_utilization_ratio", []string{"pool", "main"}, 300.0 / 6000},
		{"xnat_worker_poll_seconds_total", []string{"worker", "0"}, 4},
		{"xnat_worker_busy_seconds_total", []string{"worker", "1"}, 2},
		{"xnat_worker_busy_ratio", []string{"worker", "0"}, 0.25},
		{"xnat_worker_busy_ratio", []string{"worker", "1"}, 1},
		{"xnat_worker_polls_total", []string{"worker", "0"}, 1000},
		{"xnat_worker_busy_polls_total", []string{"worker", "0"}, 250},
	})
	// Every drop reason is exported, zero or not, so rate() works from the
	// first scrape.
	if n := len(mfs["xnat_dropped_packets_total"].Metric); n != int(drop.NumReasons)-1 {
		t.Errorf("%d drop reasons exported, want %d", n, drop.NumReasons-1)
	}
	// Go runtime metrics, GC cycles included.
	for _, name := range []string{"go_gc_cycles_total_gc_cycles_total", "go_goroutines", "process_open_fds"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}

	// The busy ratio covers the time since the previous scrape: worker 0
	// polled 1 s more, all of it busy.
	core.mu.Lock()
	core.stats.Workers[0].Counters[nat.PollNanos] += 1e9
	core.stats.Workers[0].Counters[nat.BusyNanos] += 1e9
	core.mu.Unlock()
	mfs, err = metrics.Scrape(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := metrics.Value(mfs, "xnat_worker_busy_ratio", "worker", "0"); got != 1 {
		t.Errorf("busy ratio after a busy second: %v", got)
	}
	if got, _ := metrics.Value(mfs, "xnat_worker_busy_ratio", "worker", "1"); got != 0 {
		t.Errorf("busy ratio of a worker that did not poll: %v", got)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var ready atomic.Bool
	url := startServer(t, known(), ready.Load, nil)
	get := func(path string) (int, string) {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || body != "not ready\n" {
		t.Errorf("/readyz before workers run: %d %q", code, body)
	}
	ready.Store(true)
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Errorf("/nope: %d", code)
	}
}

// A duplicate label set from a confused core costs that metric, not the
// whole page.
func TestCollectErrorsKeepTheRest(t *testing.T) {
	core := known()
	core.stats.Interfaces = append(core.stats.Interfaces, core.stats.Interfaces[0])
	mfs, err := metrics.Scrape(startServer(t, core, nil, nil) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := metrics.Value(mfs, "xnat_config_generation"); !ok || v != 42 {
		t.Errorf("config generation %v %v", v, ok)
	}
}

// End to end over the real engine: traffic through the test core's worker
// shows up in the scrape.
func TestScrapeRealEngine(t *testing.T) {
	core := mgmttest.Start(t, mgmttest.Options{})
	for i := 0; i < 5; i++ {
		in := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.5"), uint16(3000+i))
		if err := core.Open(nat.UDP, in, netip.MustParseAddrPort("203.0.113.9:53")); err != nil {
			t.Fatal(err)
		}
	}
	core.Send(nat.Outside, mgmttest.Frame(nat.Outside, nat.UDP, netip.MustParseAddrPort("203.0.113.9:53"), netip.MustParseAddrPort("198.18.0.100:9")))
	mfs, err := metrics.Scrape(startServer(t, core, nil, func() events.Stats { return core.Events.Stats() }) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	wantSeries(t, mfs, []series{
		{"xnat_rx_packets_total", []string{"interface", "veth-in"}, 5},
		{"xnat_tx_packets_total", []string{"interface", "veth-out"}, 5},
		{"xnat_rx_packets_total", []string{"interface", "veth-out"}, 1},
		{"xnat_sessions_created_total", []string{"protocol", "udp"}, 5},
		{"xnat_sessions", []string{"protocol", "udp"}, 5},
		{"xnat_dropped_packets_total", []string{"reason", "no_session"}, 1},
		{"xnat_pool_ports_in_use", []string{"pool", "main", "address", "198.18.0.100", "protocol", "udp"}, 5},
	})
}

// large is known() grown to an appliance with 8 workers, 16 queues and a
// /24 pool, the size the Gather benchmarks measure.
func large() *stubCore {
	core := known()
	for i := 2; i < 8; i++ {
		core.stats.Workers = append(core.stats.Workers, mgmt.WorkerStats{ID: i, Counters: core.stats.Workers[0].Counters})
	}
	for q := 2; q < 16; q++ {
		core.stats.Interfaces = append(core.stats.Interfaces, mgmt.InterfaceStats{Name: "eth0", Queue: q})
	}
	p := &core.st.Pools[0]
	a := netip.MustParseAddr("198.18.1.0")
	for i := 0; i < 256; i++ {
		p.Addresses = append(p.Addresses, mgmt.AddressStatus{Addr: a})
		a = a.Next()
	}
	return core
}

// BenchmarkGather measures one scrape's collection (without HTTP) for an
// appliance with 8 workers, 16 queues and a /24 pool.
func BenchmarkGather(b *testing.B) {
	core := large()
	reg := metrics.NewRegistry(metrics.NewCollector(core, metrics.CollectorOptions{}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGatherXnatOnly is BenchmarkGather without the Go runtime and
// process collectors: the cost of the xnat collector itself.
func BenchmarkGatherXnatOnly(b *testing.B) {
	core := large()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(core, metrics.CollectorOptions{}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
