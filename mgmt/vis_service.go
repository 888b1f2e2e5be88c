package mgmt

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// gRPC handlers of the visibility RPCs (vis.go).

func visFilterFromProto(f *xnatv1.VisFilter) (nat.VisFilter, error) {
	out := nat.VisFilter{AnyProto: true}
	if f == nil {
		return out, nil
	}
	var err error
	if out.Inside, err = optAddr("filter.inside", f.GetInside()); err != nil {
		return out, err
	}
	if out.Outside, err = optAddr("filter.outside", f.GetOutside()); err != nil {
		return out, err
	}
	if out.Port, err = parsePort("filter.port", f.GetPort()); err != nil {
		return out, err
	}
	if f.GetProtocol() != xnatv1.Protocol_PROTOCOL_UNSPECIFIED {
		if out.Proto, err = natProto("filter.protocol", f.GetProtocol()); err != nil {
			return out, err
		}
		out.AnyProto = false
	}
	return out, nil
}

func optDuration(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, Errorf(ErrInvalid, "%s: %v", field, err)
	}
	return d.AsDuration(), nil
}

// visRequest decodes what Capture and Trace share: the filter and a time
// limit (durField names it in errors).
func visRequest(f *xnatv1.VisFilter, durField string, d *durationpb.Duration) (nat.VisFilter, time.Duration, error) {
	vf, err := visFilterFromProto(f)
	if err != nil {
		return vf, 0, err
	}
	dd, err := optDuration(durField, d)
	return vf, dd, err
}

func (s *service) Capture(req *xnatv1.CaptureRequest, stream grpc.ServerStreamingServer[xnatv1.CaptureResponse]) error {
	f, d, err := visRequest(req.GetFilter(), "duration", req.GetDuration())
	if err != nil {
		return ToStatus(err)
	}
	spec := CaptureSpec{Filter: f, Count: req.GetCount(), Duration: d, RingFrames: int(req.GetRingFrames())}
	ctx, cancel := s.untilDone(stream.Context())
	defer cancel()
	err = s.core.Capture(ctx, spec, func(frames []nat.CaptureFrame, overflow uint64) error {
		return stream.Send(&xnatv1.CaptureResponse{Overflow: overflow, Frames: toProto(frames, captureToProto)})
	})
	return ToStatus(err)
}

func captureToProto(f *nat.CaptureFrame) *xnatv1.CapturedFrame {
	st := xnatv1.CaptureStage_CAPTURE_STAGE_RX
	if f.Stage == nat.StageTx {
		st = xnatv1.CaptureStage_CAPTURE_STAGE_TX
	}
	return &xnatv1.CapturedFrame{
		Time:    timestamppb.New(time.Unix(0, f.UnixNano)),
		Worker:  uint32(f.Worker),
		Side:    protoSide(f.Side),
		Stage:   st,
		Packet:  f.Packet,
		OrigLen: uint32(f.OrigLen),
		Data:    append([]byte(nil), f.Bytes()...),
	}
}

// untilDone returns ctx ended also when the server stops.
func (s *service) untilDone(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (s *service) Trace(req *xnatv1.TraceRequest, stream grpc.ServerStreamingServer[xnatv1.TraceResponse]) error {
	f, d, err := visRequest(req.GetFilter(), "timeout", req.GetTimeout())
	if err != nil {
		return ToStatus(err)
	}
	n := int(req.GetCount())
	if n < 1 || n > nat.MaxTrace {
		return ToStatus(Errorf(ErrInvalid, "count %d out of range 1..%d", req.GetCount(), nat.MaxTrace))
	}
	ctx, cancel := s.untilDone(stream.Context())
	defer cancel()
	pools := s.poolNames()
	err = s.core.Trace(ctx, TraceSpec{Filter: f, Count: n, Timeout: d}, func(r *nat.TraceRecord) error {
		if r == nil {
			return stream.Send(&xnatv1.TraceResponse{}) // running
		}
		return stream.Send(&xnatv1.TraceResponse{Packet: &xnatv1.TracedPacket{
			Time:    timestamppb.New(time.Unix(0, r.UnixNano)),
			Worker:  uint32(r.Worker),
			Side:    protoSide(r.Side),
			Packet:  r.Packet,
			Steps:   stepsToProto(&r.Trail, pools),
			Verdict: verdictName(&r.Trail),
		}})
	})
	return ToStatus(err)
}

// poolNames are the names the trails' address steps refer to.
func (s *service) poolNames() []string {
	var names []string
	for _, p := range s.core.Config().Pools {
		names = append(names, p.Name)
	}
	return names
}

func stepsToProto(t *nat.Trail, pools []string) []*xnatv1.TraceStep {
	var out []*xnatv1.TraceStep
	for _, st := range t.List() {
		ps := &xnatv1.TraceStep{Stage: st.Stage(), Text: st.TextPools(pools), Code: st.Code.String()}
		if st.Reason != drop.None {
			ps.Reason = st.Reason.String()
		}
		out = append(out, ps)
	}
	return out
}

func verdictName(t *nat.Trail) string {
	if r := t.Verdict(); r != drop.None {
		return r.String()
	}
	return "forwarded"
}

func (s *service) Explain(_ context.Context, req *xnatv1.ExplainRequest) (*xnatv1.ExplainResponse, error) {
	var side nat.Side
	switch req.GetSide() {
	case xnatv1.Side_SIDE_INSIDE:
		side = nat.Inside
	case xnatv1.Side_SIDE_OUTSIDE:
		side = nat.Outside
	default:
		return nil, ToStatus(Errorf(ErrInvalid, "side: say inside or outside"))
	}
	proto, err := natProto("protocol", req.GetProtocol())
	if err != nil {
		return nil, ToStatus(err)
	}
	src, err := parseEndpoint("source", req.GetSource())
	if err != nil {
		return nil, ToStatus(err)
	}
	dst, err := parseEndpoint("destination", req.GetDestination())
	if err != nil {
		return nil, ToStatus(err)
	}
	t, err := s.core.Explain(side, proto, src, dst)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &xnatv1.ExplainResponse{Steps: stepsToProto(&t, s.poolNames()), Verdict: verdictName(&t)}, nil
}

func (s *service) GetDrops(ctx context.Context, req *xnatv1.GetDropsRequest) (*xnatv1.GetDropsResponse, error) {
	d, err := optDuration("interval", req.GetInterval())
	if err != nil {
		return nil, ToStatus(err)
	}
	rep, err := s.core.Drops(ctx, d)
	if err != nil {
		return nil, ToStatus(err)
	}
	out := &xnatv1.GetDropsResponse{Interval: durationpb.New(rep.Interval)}
	for _, r := range rep.Reasons {
		pr := &xnatv1.DropReasonStats{Reason: r.Reason.String(), Total: r.Total, PerSecond: r.PerSecond}
		for _, sm := range r.Samples {
			pr.Samples = append(pr.Samples, &xnatv1.DropSample{
				Time:        timestamppb.New(time.Unix(0, sm.UnixNano)),
				Worker:      uint32(sm.Worker),
				Side:        protoSide(sm.Side),
				IpProtocol:  uint32(sm.Proto),
				Source:      protoEndpoint(sm.Src),
				Destination: protoEndpoint(sm.Dst),
			})
		}
		out.Reasons = append(out.Reasons, pr)
	}
	return out, nil
}
