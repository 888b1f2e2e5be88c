package mgmttest

import (
	"context"
	"net/netip"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
)

// Capture implements mgmt.Core over the test engine.
func (c *Core) Capture(ctx context.Context, spec mgmt.CaptureSpec, emit func([]nat.CaptureFrame, uint64) error) error {
	return mgmt.RunCapture(ctx, c.Engine, spec, emit)
}

// Trace implements mgmt.Core over the test engine.
func (c *Core) Trace(ctx context.Context, spec mgmt.TraceSpec, emit func(*nat.TraceRecord) error) error {
	return mgmt.RunTrace(ctx, c.Engine, spec, emit)
}

// Explain implements mgmt.Core over the test engine.
func (c *Core) Explain(side nat.Side, proto nat.Proto, src, dst netip.AddrPort) (nat.Trail, error) {
	return mgmt.ExplainEngine(c.Engine, side, proto, src, dst)
}

// Drops implements mgmt.Core over the test engine.
func (c *Core) Drops(ctx context.Context, interval time.Duration) (mgmt.DropReport, error) {
	return mgmt.MeasureDrops(ctx, c.Engine, c.Stats, interval)
}
