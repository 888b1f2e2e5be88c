package mgmt

import (
	"context"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// --- scale-out (BGP) ---

func (s *service) GetBGPStatus(context.Context, *xnatv1.GetBGPStatusRequest) (*xnatv1.GetBGPStatusResponse, error) {
	st := s.core.BGPStatus()
	return &xnatv1.GetBGPStatusResponse{Status: BGPStatusToProto(&st)}, nil
}

func (s *service) SetDrain(_ context.Context, req *xnatv1.SetDrainRequest) (*xnatv1.SetDrainResponse, error) {
	st, err := s.core.SetDrain(req.Drain)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &xnatv1.SetDrainResponse{Status: BGPStatusToProto(&st)}, nil
}

// BGPStatusToProto converts a BGPStatus for the API.
func BGPStatusToProto(st *BGPStatus) *xnatv1.BGPStatus {
	out := &xnatv1.BGPStatus{
		Enabled: st.Enabled, LocalAs: st.LocalAS, Healthy: st.Healthy, Drained: st.Drained,
		SessionsLeft: uint64(max(st.SessionsLeft, 0)), SessionsActive: uint64(max(st.SessionsActive, 0)), TcpOpen: uint64(max(st.TCPOpen, 0)),
		Announcements: st.Announcements, Withdrawals: st.Withdrawals,
	}
	if st.RouterID.IsValid() {
		out.RouterId = st.RouterID.String()
	}
	if !st.DrainedSince.IsZero() {
		out.DrainedSince = timestamppb.New(st.DrainedSince)
	}
	for _, p := range st.Peers {
		pp := &xnatv1.BGPPeer{Address: p.Address.String(), As: p.AS, Side: p.Side, State: p.State}
		if !p.Since.IsZero() {
			pp.Since = timestamppb.New(p.Since)
		}
		out.Peers = append(out.Peers, pp)
	}
	for _, r := range st.Routes {
		pr := &xnatv1.BGPRoute{Prefix: r.Prefix.String(), Side: r.Side, Announced: r.Announced, Communities: r.Communities}
		if r.HasMED {
			pr.Med = proto.Uint32(r.MED)
		}
		out.Routes = append(out.Routes, pr)
	}
	return out
}
