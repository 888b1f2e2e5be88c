package main

import (
	"context"
	"net/netip"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
)

// Operator visibility (issue 17): natd's Core methods wrap the engine's
// through mgmt's shared implementations.

func (c *core) Capture(ctx context.Context, spec mgmt.CaptureSpec, emit func([]nat.CaptureFrame, uint64) error) error {
	return mgmt.RunCapture(ctx, c.d.eng, spec, emit)
}

func (c *core) Trace(ctx context.Context, spec mgmt.TraceSpec, emit func(*nat.TraceRecord) error) error {
	return mgmt.RunTrace(ctx, c.d.eng, spec, emit)
}

func (c *core) Explain(side nat.Side, proto nat.Proto, src, dst netip.AddrPort) (nat.Trail, error) {
	return mgmt.ExplainEngine(c.d.eng, side, proto, src, dst)
}

func (c *core) Drops(ctx context.Context, interval time.Duration) (mgmt.DropReport, error) {
	return mgmt.MeasureDrops(ctx, c.d.eng, c.Stats, interval)
}
