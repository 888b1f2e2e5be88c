package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/events"
)

// DefaultAddr is the default listen address: loopback, off the dataplane
// interfaces. 9469 is unassigned in the Prometheus default port list.
const DefaultAddr = "127.0.0.1:9469"

// ServerOptions configure the metrics HTTP server.
type ServerOptions struct {
	// Addr is the listen address; default DefaultAddr.
	Addr string
	// Core is scraped for counters. Required.
	Core mgmt.Core
	// Ready reports readiness for /readyz (natd: all workers are
	// running); nil means always ready.
	Ready func() bool
	// Events, if set, adds the event exporter's counters.
	Events func() events.Stats
	// Version for xnat_build_info (default: from the build).
	Version string
	Logger  *slog.Logger
}

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	reg  *prometheus.Registry
	log  *slog.Logger
	done chan struct{}
}

// NewRegistry returns a registry with the xnat collector, Go runtime
// metrics (runtime/metrics: GC, memory, scheduler) and process metrics.
func NewRegistry(c *Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		c,
		&bgpCollector{core: c.core}, // scaleout.go
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.MetricsGC, collectors.MetricsMemory, collectors.MetricsScheduler,
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/cpu/classes/gc/.*`)},
		)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// NewServer listens on opts.Addr (so that a busy port fails at start-up);
// Serve serves.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Core == nil {
		return nil, errors.New("metrics: Core is required")
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("component", "metrics")
	reg := NewRegistry(NewCollector(opts.Core, CollectorOptions{Version: opts.Version, Events: opts.Events}))
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{ln: ln, reg: reg, log: log, done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           Handler(reg, opts.Ready, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Handler serves the registry on /metrics, liveness on /healthz and
// readiness on /readyz.
func Handler(reg *prometheus.Registry, ready func() bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A collection error (say, a duplicate label set) must not hide
		// every other metric.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		Registry:      reg,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil && !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Registry is the server's registry (to register more collectors).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Serve serves until ctx ends, then shuts down (waiting up to 5 s for
// scrapes in flight).
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info("serving metrics", "addr", s.ln.Addr().String())
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	<-errc
	return err
}

// Close stops the server at once.
func (s *Server) Close() error { return s.srv.Close() }

// Scrape fetches url (a /metrics endpoint) and parses the text exposition
// format. Tests and the lab use it to check counters end to end.
func Scrape(url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: GET %s: %s", url, resp.Status)
	}
	return parseText(resp.Body)
}

// Gather collects g's metric families by name, as Scrape returns them,
// without HTTP: tests use it on a registry in their own process.
func Gather(g prometheus.Gatherer) (map[string]*dto.MetricFamily, error) {
	fams, err := g.Gather()
	if err != nil {
		return nil, err
	}
	mfs := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		mfs[f.GetName()] = f
	}
	return mfs, nil
}

func parseText(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// Parse parses a /metrics answer fetched some other way (in a lab
// namespace, say): its HTTP status code and its body in the text
// exposition format. where names the endpoint in errors.
func Parse(where string, code int, body []byte) (map[string]*dto.MetricFamily, error) {
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", where, code)
	}
	return parseText(bytes.NewReader(body))
}

// Value returns the value of the sample of family name whose labels
// include every given name=value pair, and whether there is one. Tests use
// it on Scrape's result.
func Value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.Metric {
		if hasLabels(m, labels) && (m.Counter != nil || m.Gauge != nil || m.Untyped != nil) {
			return SampleValue(m), true
		}
	}
	return 0, false
}

// Sum returns the sum of the samples of family name whose labels include
// every given name=value pair (all of the family's samples when none is
// given); 0 when there is no such family, as for a counter not yet
// touched.
func Sum(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return 0
	}
	sum := 0.0
	for _, m := range mf.Metric {
		if hasLabels(m, labels) {
			sum += SampleValue(m)
		}
	}
	return sum
}

// SampleValue returns the value of a counter, gauge or untyped sample, 0
// for any other kind.
func SampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// hasLabels reports whether m carries every name=value pair of labels.
func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.Label {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
