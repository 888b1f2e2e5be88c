package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// --- scale-out (BGP): natctl bgp, drain, undrain ---

func bgpCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "bgp",
		Short: "Show BGP sessions, announced routes and drain progress",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := unary(cmd.Context(), a, xnatv1.NatServiceClient.GetBGPStatus, &xnatv1.GetBGPStatusRequest{})
			if err != nil {
				return err
			}
			return a.emit(func(w io.Writer) error { return printBGP(w, r.Status, a.now()) }, bgpToJSON(r.Status))
		},
	}
}

// drainCmd and undrainCmd wrap SetDrain, one core function.
func drainCmd(a *app, drain bool) *cobra.Command {
	use, short := "drain", "Withdraw the inside announcement: no new subscribers arrive, existing sessions finish"
	if !drain {
		use, short = "undrain", "Announce the inside routes again: the appliance takes new subscribers"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := unary(cmd.Context(), a, xnatv1.NatServiceClient.SetDrain, &xnatv1.SetDrainRequest{Drain: drain})
			if err != nil {
				return err
			}
			return a.emit(func(w io.Writer) error {
				if drain {
					fmt.Fprintf(w, "drained: inside routes withdrawn, outside routes kept; %d sessions left (natctl status shows progress)\n", r.Status.SessionsLeft)
				} else {
					fmt.Fprintln(w, "undrained: inside routes announced while the dataplane is healthy")
				}
				return nil
			}, bgpToJSON(r.Status))
		},
	}
}

// statusBGP fetches the BGP block of natctl status: nil when natd speaks
// no BGP, or predates the RPC.
func statusBGP(ctx context.Context, cl xnatv1.NatServiceClient) (*xnatv1.BGPStatus, error) {
	r, err := cl.GetBGPStatus(ctx, &xnatv1.GetBGPStatusRequest{})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !r.Status.Enabled {
		return nil, nil
	}
	return r.Status, nil
}

type bgpPeerJSON struct {
	Address string     `json:"address"`
	AS      uint32     `json:"as"`
	Side    string     `json:"side"`
	State   string     `json:"state"`
	Since   *time.Time `json:"since,omitempty"`
}

type bgpRouteJSON struct {
	Prefix      string   `json:"prefix"`
	Side        string   `json:"side"`
	Announced   bool     `json:"announced"`
	MED         *uint32  `json:"med,omitempty"`
	Communities []string `json:"communities,omitempty"`
}

type bgpJSON struct {
	Enabled       bool           `json:"enabled"`
	LocalAS       uint32         `json:"local_as,omitempty"`
	RouterID      string         `json:"router_id,omitempty"`
	Healthy       bool           `json:"healthy"`
	Drained       bool           `json:"drained"`
	DrainedSince  *time.Time     `json:"drained_since,omitempty"`
	SessionsLeft  uint64         `json:"sessions_left"`
	Active        uint64         `json:"sessions_active"`
	TCPOpen       uint64         `json:"tcp_open"`
	Peers         []bgpPeerJSON  `json:"peers"`
	Routes        []bgpRouteJSON `json:"routes"`
	Announcements uint64         `json:"announcements"`
	Withdrawals   uint64         `json:"withdrawals"`
}

func bgpToJSON(s *xnatv1.BGPStatus) *bgpJSON {
	if s == nil {
		return nil
	}
	out := &bgpJSON{
		Enabled: s.Enabled, LocalAS: s.LocalAs, RouterID: s.RouterId, Healthy: s.Healthy, Drained: s.Drained,
		SessionsLeft: s.SessionsLeft, Active: s.SessionsActive, TCPOpen: s.TcpOpen, Announcements: s.Announcements, Withdrawals: s.Withdrawals,
		Peers: []bgpPeerJSON{}, Routes: []bgpRouteJSON{},
	}
	if s.DrainedSince != nil {
		t := s.DrainedSince.AsTime()
		out.DrainedSince = &t
	}
	for _, p := range s.Peers {
		pj := bgpPeerJSON{Address: p.Address, AS: p.As, Side: p.Side, State: p.State}
		if p.Since != nil {
			t := p.Since.AsTime()
			pj.Since = &t
		}
		out.Peers = append(out.Peers, pj)
	}
	for _, r := range s.Routes {
		out.Routes = append(out.Routes, bgpRouteJSON{Prefix: r.Prefix, Side: r.Side, Announced: r.Announced, MED: r.Med, Communities: r.Communities})
	}
	return out
}

// statusWithBGP is natctl status -o json: the status, plus "bgp" when natd
// speaks BGP.
type statusWithBGP struct {
	statusJSON
	BGP *bgpJSON `json:"bgp,omitempty"`
}

func printBGP(w io.Writer, s *xnatv1.BGPStatus, now time.Time) error {
	if s == nil || !s.Enabled {
		_, err := fmt.Fprintln(w, "BGP: not configured (no bgp section)")
		return err
	}
	tw := newTab(w)
	health := "healthy (announcing)"
	if !s.Healthy {
		health = "UNHEALTHY (everything withdrawn)"
	}
	fmt.Fprintf(tw, "BGP:\tAS %d, router ID %s, dataplane %s\n", s.LocalAs, s.RouterId, health)
	if s.Drained {
		since := ""
		if s.DrainedSince != nil {
			since = fmt.Sprintf(" for %s", now.Sub(s.DrainedSince.AsTime()).Round(time.Second))
		}
		left := fmt.Sprintf("%d sessions left, %d active in the last 5 s, %d TCP open", s.SessionsLeft, s.SessionsActive, s.TcpOpen)
		if s.SessionsActive == 0 && s.TcpOpen == 0 {
			left += ": drained, safe to stop"
		}
		fmt.Fprintf(tw, "Drain:\tDRAINING%s (inside routes withdrawn); %s\n", since, left)
	} else {
		fmt.Fprintf(tw, "Drain:\tnot drained\n")
	}
	fmt.Fprintf(tw, "Routes:\t%d announcements, %d withdrawals since start\n", s.Announcements, s.Withdrawals)
	fmt.Fprintf(tw, "\nNEIGHBOUR\tAS\tSIDE\tSTATE\tSINCE\n")
	for _, p := range s.Peers {
		since := "-"
		if p.Since != nil {
			since = now.Sub(p.Since.AsTime()).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", p.Address, p.As, p.Side, p.State, since)
	}
	fmt.Fprintf(tw, "\nPREFIX\tSIDE\tSTATE\tMED\tCOMMUNITIES\n")
	for _, r := range s.Routes {
		state, med := "withdrawn", "-"
		if r.Announced {
			state = "announced"
		}
		if r.Med != nil {
			med = fmt.Sprint(*r.Med)
		}
		comms := "-"
		if len(r.Communities) > 0 {
			comms = fmt.Sprint(r.Communities)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Prefix, r.Side, state, med, comms)
	}
	return tw.Flush()
}
