package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/xnat/xnat/mgmt/metrics"
)

// metricsServer serves /metrics, /healthz and /readyz.
type metricsServer struct {
	srv *metrics.Server
}

func startMetrics(ctx context.Context, c *core, addr string, d *daemon) (*metricsServer, error) {
	if addr == "off" {
		return nil, nil
	}
	srv, err := metrics.NewServer(metrics.ServerOptions{
		Addr:    addr,
		Core:    c,
		Ready:   d.ready,
		Events:  c.Events.Stats,
		Version: buildVersion(),
		Logger:  d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	go func() {
		if err := srv.Serve(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, context.Canceled) {
			d.log.Error("metrics server", "err", err)
		}
	}()
	d.log.Info("metrics listening", "addr", srv.Addr().String())
	return &metricsServer{srv: srv}, nil
}

func (m *metricsServer) close() {
	if m != nil && m.srv != nil {
		m.srv.Close()
	}
}

// ready reports whether every worker's poll loop is running.
func (d *daemon) ready() bool {
	if len(d.wk) == 0 {
		return false
	}
	for _, ws := range d.wk {
		if ws.run == nil || !ws.run.Running() {
			return false
		}
	}
	return true
}

func osFileMode(m uint32) os.FileMode { return os.FileMode(m) }
