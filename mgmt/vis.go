package mgmt

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"google.golang.org/grpc"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// Operator visibility (issue 17): the Core methods Capture, Trace, Explain
// and Drops, implemented over a nat.Engine by the functions below, which
// natd's core and mgmttest's both call.

// VisCore is the part of Core that serves capture, trace, explain and
// drops.
type VisCore interface {
	// Capture copies the frames matching spec, as they arrived and as
	// they left, to emit in batches with the overflow count so far, until
	// ctx ends or spec's count or duration is reached. The first emit,
	// without frames, says the capture is running. One capture runs at a
	// time (ErrUnavailable otherwise).
	Capture(ctx context.Context, spec CaptureSpec, emit func(frames []nat.CaptureFrame, overflow uint64) error) error
	// Trace passes the trail of each of the next spec.Count packets
	// matching spec.Filter to emit, until they are all traced or ctx
	// ends or spec.Timeout passes. The first emit, with nil, says the
	// trace is running. One trace runs at a time.
	Trace(ctx context.Context, spec TraceSpec, emit func(*nat.TraceRecord) error) error
	// Explain tells what the NAT would do now with a 5-tuple, and why.
	Explain(side nat.Side, proto nat.Proto, src, dst netip.AddrPort) (nat.Trail, error)
	// Drops measures drop counters over interval and returns them with
	// rates and the sampled 5-tuples.
	Drops(ctx context.Context, interval time.Duration) (DropReport, error)
}

// CaptureSpec is a capture request.
type CaptureSpec struct {
	Filter     nat.VisFilter
	Count      uint64        // frames; 0: no limit
	Duration   time.Duration // 0: until ctx ends
	RingFrames int           // per worker; 0: nat.DefaultCaptureRing
}

// TraceSpec is a trace request.
type TraceSpec struct {
	Filter  nat.VisFilter
	Count   int
	Timeout time.Duration // 0: until ctx ends
}

// DropReport is drop counters with rates and samples.
type DropReport struct {
	Interval time.Duration
	Reasons  []DropReasonStats
}

// DropReasonStats is one drop reason.
type DropReasonStats struct {
	Reason    drop.Reason
	Total     uint64
	PerSecond float64
	Samples   []nat.DropSample
}

// Limits of the visibility RPCs.
const (
	MinDropsInterval     = 100 * time.Millisecond
	MaxDropsInterval     = 10 * time.Second
	DefaultDropsInterval = time.Second
	MaxCaptureDuration   = 24 * time.Hour
	// visPoll is how often a capture or trace looks at the workers' rings:
	// at 1024 frames a ring, 10 ms keeps up with 100k frames/s per worker.
	visPoll = 10 * time.Millisecond
	// captureBatch bounds the frames one emit carries (2 KiB each).
	captureBatch = 64
)

func visErr(what string, err error) error {
	if errors.Is(err, nat.ErrVisBusy) {
		return Errorf(ErrUnavailable, "%s: %v", what, err)
	}
	return Errorf(ErrInvalid, "%s: %v", what, err)
}

// RunCapture implements Core.Capture over eng.
func RunCapture(ctx context.Context, eng *nat.Engine, spec CaptureSpec, emit func([]nat.CaptureFrame, uint64) error) error {
	if spec.Duration < 0 || spec.Duration > MaxCaptureDuration {
		return Errorf(ErrInvalid, "capture duration %v out of range 0..%v", spec.Duration, MaxCaptureDuration)
	}
	c, err := eng.StartCapture(spec.Filter, spec.RingFrames)
	if err != nil {
		return visErr("capture", err)
	}
	defer c.Stop()
	// Tell the client the capture is running: packets from now on are
	// seen.
	if err := emit(nil, 0); err != nil {
		return err
	}
	if spec.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.Duration)
		defer cancel()
	}
	buf := make([]nat.CaptureFrame, captureBatch)
	t := time.NewTicker(visPoll)
	defer t.Stop()
	var sent uint64
	for {
		for {
			n := c.Read(buf)
			if spec.Count != 0 && sent+uint64(n) > spec.Count {
				n = int(spec.Count - sent)
			}
			if n > 0 {
				if err := emit(buf[:n], c.Overflow()); err != nil {
					return err
				}
				sent += uint64(n)
			}
			if spec.Count != 0 && sent >= spec.Count {
				return nil
			}
			if n < len(buf) {
				break
			}
		}
		select {
		case <-ctx.Done():
			// The limit or the client ending the capture is no error;
			// report the final overflow count.
			return emit(nil, c.Overflow())
		case <-t.C:
		}
	}
}

// RunTrace implements Core.Trace over eng.
func RunTrace(ctx context.Context, eng *nat.Engine, spec TraceSpec, emit func(*nat.TraceRecord) error) error {
	if spec.Timeout < 0 {
		return Errorf(ErrInvalid, "trace timeout %v is negative", spec.Timeout)
	}
	tr, err := eng.StartTrace(spec.Filter, spec.Count)
	if err != nil {
		return visErr("trace", err)
	}
	defer tr.Stop()
	if err := emit(nil); err != nil { // the trace is running
		return err
	}
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.Timeout)
		defer cancel()
	}
	buf := make([]nat.TraceRecord, 16)
	t := time.NewTicker(visPoll)
	defer t.Stop()
	for {
		for {
			n := tr.Read(buf)
			for i := range buf[:n] {
				if err := emit(&buf[i]); err != nil {
					return err
				}
			}
			if n < len(buf) {
				break
			}
		}
		if tr.Done() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// MeasureDrops implements Core.Drops: stats is read twice, interval
// apart, for the rates.
func MeasureDrops(ctx context.Context, eng *nat.Engine, stats func() Stats, interval time.Duration) (DropReport, error) {
	if interval == 0 {
		interval = DefaultDropsInterval
	}
	if interval < MinDropsInterval || interval > MaxDropsInterval {
		return DropReport{}, Errorf(ErrInvalid, "interval %v out of range %v..%v", interval, MinDropsInterval, MaxDropsInterval)
	}
	sum := func() (c [drop.NumReasons]uint64, at time.Time) {
		st := stats()
		for _, w := range st.Workers {
			for r := range c {
				c[r] += w.Counters.Drops(drop.Reason(r))
			}
		}
		return c, time.Now()
	}
	c0, t0 := sum()
	select {
	case <-ctx.Done():
		return DropReport{}, Errorf(ErrUnavailable, "drops: %v", ctx.Err())
	case <-time.After(interval):
	}
	c1, t1 := sum()
	samples := eng.DropSamples()
	rep := DropReport{Interval: t1.Sub(t0)}
	for r := drop.Reason(1); r < drop.NumReasons; r++ {
		if c1[r] == 0 && len(samples[r]) == 0 {
			continue
		}
		rep.Reasons = append(rep.Reasons, DropReasonStats{
			Reason:    r,
			Total:     c1[r],
			PerSecond: float64(c1[r]-c0[r]) / rep.Interval.Seconds(),
			Samples:   samples[r],
		})
	}
	return rep, nil
}

// ExplainEngine implements Core.Explain over eng.
func ExplainEngine(eng *nat.Engine, side nat.Side, proto nat.Proto, src, dst netip.AddrPort) (nat.Trail, error) {
	t, err := eng.Explain(side, proto, src, dst)
	if err != nil {
		return t, Errorf(ErrInvalid, "%v", err)
	}
	return t, nil
}

// auditedStream remembers the request of a server-streaming call for the
// audit log.
type auditedStream struct {
	grpc.ServerStream
	req     any
	started func(req any)
}

func (s *auditedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.req == nil {
		s.req = m
		if s.started != nil {
			s.started(m)
		}
	}
	return err
}

// auditStart logs the start of an audited stream.
func (ic *interceptors) auditStart(id *Identity, method string, req any) {
	who, transport := "unknown", "unknown"
	if id != nil {
		who, transport = id.Name, id.Transport
	}
	ic.log.Info("audit", "who", who, "transport", transport, "method", shortMethod(method),
		"request", summarize(req), "result", "started")
}

// adminWhy says why method needs the admin role, for refusals: capture
// and trace change nothing but show subscribers' packets.
func adminWhy(method string) string {
	switch method {
	case xnatv1.NatService_Capture_FullMethodName, xnatv1.NatService_Trace_FullMethodName:
		return "shows subscribers' packets"
	}
	return "changes state"
}
