package mgmt

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/grpc"

	"github.com/xnat/xnat/dataplane/nat"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// Limits of the session and statistics RPCs.
const (
	DefaultPageSize      = 100
	MaxPageSize          = 1000
	DefaultStreamBatch   = 256
	MinWatchInterval     = 100 * time.Millisecond
	MaxWatchInterval     = time.Hour
	DefaultWatchInterval = time.Second
)

// service implements xnatv1.NatServiceServer. Each handler decodes its
// request, calls one Core method and encodes the answer; errors go through
// ToStatus. Access control and auditing happen in the interceptors.
type service struct {
	xnatv1.UnimplementedNatServiceServer
	core Core
	now  func() time.Time
	// done is closed when the server stops, ending long-lived streams so
	// that a graceful stop does not wait for clients to hang up.
	done <-chan struct{}
}

func (s *service) GetStatus(context.Context, *xnatv1.GetStatusRequest) (*xnatv1.GetStatusResponse, error) {
	st := s.core.Status()
	return &xnatv1.GetStatusResponse{Status: statusToProto(&st, s.now())}, nil
}

func (s *service) GetStats(context.Context, *xnatv1.GetStatsRequest) (*xnatv1.GetStatsResponse, error) {
	st := s.core.Stats()
	return &xnatv1.GetStatsResponse{Stats: statsToProto(&st)}, nil
}

func (s *service) WatchStats(req *xnatv1.WatchStatsRequest, stream grpc.ServerStreamingServer[xnatv1.WatchStatsResponse]) error {
	interval := DefaultWatchInterval
	if req.Interval != nil {
		if err := req.Interval.CheckValid(); err != nil {
			return ToStatus(Errorf(ErrInvalid, "interval: %v", err))
		}
		interval = req.Interval.AsDuration()
	}
	if interval < MinWatchInterval || interval > MaxWatchInterval {
		return ToStatus(Errorf(ErrInvalid, "interval %v is out of range %v..%v", interval, MinWatchInterval, MaxWatchInterval))
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st := s.core.Stats()
		if err := stream.Send(&xnatv1.WatchStatsResponse{Stats: statsToProto(&st)}); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.done:
			return nil
		case <-t.C:
		}
	}
}

// Page tokens are the session table cursor in decimal. They are opaque to
// clients; a token that does not parse is InvalidArgument.
func parsePageToken(tok string) (uint32, error) {
	if tok == "" {
		return 0, nil
	}
	c, err := strconv.ParseUint(tok, 10, 32)
	if err != nil || c == 0 {
		return 0, Errorf(ErrInvalid, "page_token %q is not a token from a previous page", tok)
	}
	return uint32(c), nil
}

func pageToken(next uint32) string {
	if next == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(next), 10)
}

func clampSize(field string, n int32, def int) (int, error) {
	switch {
	case n < 0:
		return 0, Errorf(ErrInvalid, "%s %d is negative", field, n)
	case n == 0:
		return def, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return int(n), nil
}

func (s *service) ListSessions(ctx context.Context, req *xnatv1.ListSessionsRequest) (*xnatv1.ListSessionsResponse, error) {
	f, err := filterFromProto(req.Filter)
	if err != nil {
		return nil, ToStatus(err)
	}
	size, err := clampSize("page_size", req.PageSize, DefaultPageSize)
	if err != nil {
		return nil, ToStatus(err)
	}
	cursor, err := parsePageToken(req.PageToken)
	if err != nil {
		return nil, ToStatus(err)
	}
	sess, next, err := s.core.Sessions(ctx, f, cursor, size)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &xnatv1.ListSessionsResponse{NextPageToken: pageToken(next), Sessions: toProto(sess, sessionToProto)}, nil
}

func (s *service) StreamSessions(req *xnatv1.StreamSessionsRequest, stream grpc.ServerStreamingServer[xnatv1.StreamSessionsResponse]) error {
	f, err := filterFromProto(req.Filter)
	if err != nil {
		return ToStatus(err)
	}
	size, err := clampSize("batch_size", req.BatchSize, DefaultStreamBatch)
	if err != nil {
		return ToStatus(err)
	}
	ctx := stream.Context()
	cursor := uint32(0)
	for {
		sess, next, err := s.core.Sessions(ctx, f, cursor, size)
		if err != nil {
			return ToStatus(err)
		}
		if len(sess) > 0 {
			msg := &xnatv1.StreamSessionsResponse{Sessions: make([]*xnatv1.Session, len(sess))}
			for i := range sess {
				msg.Sessions[i] = sessionToProto(&sess[i])
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
		select {
		case <-s.done:
			return ToStatus(Errorf(ErrUnavailable, "natd is shutting down"))
		default:
		}
	}
}

func (s *service) DeleteSession(_ context.Context, req *xnatv1.DeleteSessionRequest) (*xnatv1.DeleteSessionResponse, error) {
	return reply(&xnatv1.DeleteSessionResponse{}, s.core.DeleteSession(req.Id, req.Generation))
}

func (s *service) FlushSessions(_ context.Context, req *xnatv1.FlushSessionsRequest) (*xnatv1.FlushSessionsResponse, error) {
	f, err := filterFromProto(req.Filter)
	if err != nil {
		return nil, ToStatus(err)
	}
	n, err := s.core.FlushSessions(f)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &xnatv1.FlushSessionsResponse{Deleted: uint64(n)}, nil
}

func (s *service) ListPools(context.Context, *xnatv1.ListPoolsRequest) (*xnatv1.ListPoolsResponse, error) {
	cfg := s.core.Config()
	out := &xnatv1.ListPoolsResponse{Pools: toProto(cfg.Pools, poolToProto)}
	// Addresses that left the configuration and still drain.
	for _, p := range s.core.Status().Pools {
		for i := range p.Addresses {
			if a := &p.Addresses[i]; a.Draining {
				out.Draining = append(out.Draining, addressStatusToProto(a))
			}
		}
	}
	return out, nil
}

func (s *service) AddPool(_ context.Context, req *xnatv1.AddPoolRequest) (*xnatv1.AddPoolResponse, error) {
	p, err := poolFromProto("pool", req.Pool)
	return replyAfter(&xnatv1.AddPoolResponse{}, s.core.AddPool, p, err)
}

func (s *service) DeletePool(_ context.Context, req *xnatv1.DeletePoolRequest) (*xnatv1.DeletePoolResponse, error) {
	if req.Name == "" {
		return nil, ToStatus(Errorf(ErrInvalid, "name is required"))
	}
	return reply(&xnatv1.DeletePoolResponse{}, s.core.DeletePool(req.Name))
}

func (s *service) ListPortForwards(context.Context, *xnatv1.ListPortForwardsRequest) (*xnatv1.ListPortForwardsResponse, error) {
	return &xnatv1.ListPortForwardsResponse{PortForwards: toProto(s.core.Config().PortForwards, forwardToProto)}, nil
}

func (s *service) AddPortForward(_ context.Context, req *xnatv1.AddPortForwardRequest) (*xnatv1.AddPortForwardResponse, error) {
	r, err := forwardFromProto("port_forward", req.PortForward, true)
	return replyAfter(&xnatv1.AddPortForwardResponse{}, s.core.AddPortForward, r, err)
}

func (s *service) DeletePortForward(_ context.Context, req *xnatv1.DeletePortForwardRequest) (*xnatv1.DeletePortForwardResponse, error) {
	r, err := forwardFromProto("", &xnatv1.PortForward{Protocol: req.Protocol, Outside: req.Outside}, false)
	del := func(r nat.PortForward) error { return s.core.DeletePortForward(r.Proto, r.Outside) }
	return replyAfter(&xnatv1.DeletePortForwardResponse{}, del, r, err)
}

func (s *service) ListStaticMappings(context.Context, *xnatv1.ListStaticMappingsRequest) (*xnatv1.ListStaticMappingsResponse, error) {
	return &xnatv1.ListStaticMappingsResponse{StaticMappings: toProto(s.core.Config().StaticMappings, staticToProto)}, nil
}

func (s *service) AddStaticMapping(_ context.Context, req *xnatv1.AddStaticMappingRequest) (*xnatv1.AddStaticMappingResponse, error) {
	m, err := staticFromProto("static_mapping", req.StaticMapping)
	return replyAfter(&xnatv1.AddStaticMappingResponse{}, s.core.AddStaticMapping, m, err)
}

func (s *service) DeleteStaticMapping(_ context.Context, req *xnatv1.DeleteStaticMappingRequest) (*xnatv1.DeleteStaticMappingResponse, error) {
	in, err := parseAddr("inside", req.Inside)
	return replyAfter(&xnatv1.DeleteStaticMappingResponse{}, s.core.DeleteStaticMapping, in, err)
}

func (s *service) ApplyChanges(_ context.Context, req *xnatv1.ApplyChangesRequest) (*xnatv1.ApplyChangesResponse, error) {
	changes := make([]Change, len(req.Changes))
	for i, c := range req.Changes {
		var err error
		if changes[i], err = changeFromProto(i, c); err != nil {
			return nil, ToStatus(err)
		}
	}
	return reply(&xnatv1.ApplyChangesResponse{}, s.core.Apply(changes))
}

func (s *service) ReloadConfig(context.Context, *xnatv1.ReloadConfigRequest) (*xnatv1.ReloadConfigResponse, error) {
	return reply(&xnatv1.ReloadConfigResponse{}, s.core.Reload())
}

func (s *service) WatchEvents(req *xnatv1.WatchEventsRequest, stream grpc.ServerStreamingServer[xnatv1.WatchEventsResponse]) error {
	var want [16]bool // by nat.EventType
	all := len(req.Types) == 0
	for _, t := range req.Types {
		found := false
		for nt, pt := range protoEventTypes {
			if pt == t && nt != 0 {
				want[nt], found = true, true
			}
		}
		if !found {
			return ToStatus(Errorf(ErrInvalid, "types: unknown event type %v", t))
		}
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for ev := range s.core.SubscribeEvents(ctx) {
		if !all && (int(ev.Type) >= len(want) || !want[ev.Type]) {
			continue
		}
		if err := stream.Send(&xnatv1.WatchEventsResponse{Event: eventToProto(&ev)}); err != nil {
			return err
		}
	}
	return nil
}

// Compile-time check that service implements the whole API.
var _ xnatv1.NatServiceServer = (*service)(nil)
