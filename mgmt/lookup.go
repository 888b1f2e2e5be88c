package mgmt

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/xnat/xnat/dataplane/nat"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// Subscriber lookup (docs/cgn.md): Core.Lookup (EngineCore), its gRPC
// handler and natctl lookup all wrap LookupEngine.

// Lookup answers from the engine, at the engine's clock.
func (c *EngineCore) Lookup(_ context.Context, q LookupQuery) (LookupResult, error) {
	return LookupEngine(c.Engine, q, c.Engine.Now())
}

// LookupQuery asks who held Outside (valid) or what Inside holds (valid);
// exactly one is set.
type LookupQuery struct {
	Outside netip.AddrPort
	Inside  netip.Addr
	// Proto narrows an outside lookup; nil is any.
	Proto *nat.Proto
	// At is the time asked about; zero is now.
	At time.Time
}

// LookupResult answers a LookupQuery.
type LookupResult struct {
	Mode    nat.PortAllocation
	Holders []nat.Holder
	// Note qualifies the answer: what live state can and cannot say
	// about At.
	Note string
	// Inside lookups: the paired address and live counts.
	Paired          netip.Addr
	Sessions, Ports int
}

// LookupEngine answers q from engine e's live state, or in deterministic
// mode from the function. now is the current time.
func LookupEngine(e *nat.Engine, q LookupQuery, now time.Time) (LookupResult, error) {
	if q.Outside.IsValid() == q.Inside.IsValid() {
		return LookupResult{}, Errorf(ErrInvalid, "look up either an outside address:port or an inside address")
	}
	if (q.Outside.IsValid() && !q.Outside.Addr().Is4()) || (q.Inside.IsValid() && !q.Inside.Is4()) {
		return LookupResult{}, Errorf(ErrInvalid, "addresses are IPv4")
	}
	if q.At.After(now.Add(time.Minute)) {
		return LookupResult{}, Errorf(ErrInvalid, "at %s is in the future", q.At.Format(time.RFC3339))
	}
	r := LookupResult{Mode: e.Snapshot().Config.CGN.PortAllocation}
	if q.Inside.IsValid() {
		v, ok := e.LookupInside(q.Inside)
		if !ok {
			return r, Errorf(ErrNotFound, "%s holds nothing now", q.Inside)
		}
		r.Holders, r.Paired, r.Sessions, r.Ports = v.Ranges, v.Paired, v.Sessions, v.Ports
		return r, nil
	}
	past := !q.At.IsZero() && now.Sub(q.At) > time.Second
	for _, h := range e.LookupOutside(q.Outside.Addr(), q.Outside.Port(), q.Proto) {
		if past && h.Source == "block" && h.Since.After(q.At) {
			r.Note = fmt.Sprintf("the block holding this port was allocated at %s, after %s: its holder then is in the block_released record before that", h.Since.Format(time.RFC3339), q.At.Format(time.RFC3339))
			continue
		}
		r.Holders = append(r.Holders, h)
	}
	switch {
	case past && r.Mode == nat.AllocDeterministic:
		r.Note = "the function of the configuration in force; if the configuration changed after that time, ask natctl detmap --config with the configuration of then"
	case past && r.Mode == nat.AllocDynamic:
		r.Note = "live state says who holds the port now; for a past time, search the session logs (IPFIX, syslog or JSON)"
	}
	if len(r.Holders) == 0 {
		if r.Note == "" {
			r.Note = "nobody holds this address and port now"
		}
		return r, Errorf(ErrNotFound, "%s: %s", q.Outside, r.Note)
	}
	return r, nil
}

func (s *service) Lookup(ctx context.Context, req *xnatv1.LookupRequest) (*xnatv1.LookupResponse, error) {
	var q LookupQuery
	var err error
	if req.Outside != nil {
		if q.Outside, err = parseEndpoint("outside", req.Outside); err != nil {
			return nil, ToStatus(err)
		}
	}
	if req.Inside != "" {
		if q.Inside, err = parseAddr("inside", req.Inside); err != nil {
			return nil, ToStatus(err)
		}
	}
	if req.Protocol != xnatv1.Protocol_PROTOCOL_UNSPECIFIED {
		p, err := natProto("protocol", req.Protocol)
		if err != nil {
			return nil, ToStatus(err)
		}
		q.Proto = &p
	}
	if req.At != nil {
		if err := req.At.CheckValid(); err != nil {
			return nil, ToStatus(Errorf(ErrInvalid, "at: %v", err))
		}
		q.At = req.At.AsTime()
	}
	r, err := s.core.Lookup(ctx, q)
	if err != nil {
		return nil, ToStatus(err)
	}
	return lookupToProto(&r), nil
}

func lookupToProto(r *LookupResult) *xnatv1.LookupResponse {
	out := &xnatv1.LookupResponse{Mode: r.Mode.String(), Note: r.Note, Sessions: uint32(r.Sessions), Ports: uint32(r.Ports)}
	if r.Paired.IsValid() {
		out.Paired = r.Paired.String()
	}
	for _, h := range r.Holders {
		ph := &xnatv1.LookupHolder{Subscriber: h.Subscriber.String(), Outside: h.Outside.String(),
			PortMin: uint32(h.Ports.Min), PortMax: uint32(h.Ports.Max), Source: h.Source, Held: h.Held}
		if h.Inside.IsValid() {
			ph.Inside = protoEndpoint(h.Inside)
		}
		if h.HasProto {
			ph.Protocol = APIProtocol(h.Proto)
		}
		if !h.Since.IsZero() {
			ph.Since = timestamppb.New(h.Since)
		}
		out.Holders = append(out.Holders, ph)
	}
	return out
}
