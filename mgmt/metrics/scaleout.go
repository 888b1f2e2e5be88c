package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xnat/xnat/mgmt"
)

// bgpCollector exports the scale-out state (mgmt.Core.BGPStatus). A natd
// without a bgp section exports none of these series.
type bgpCollector struct{ core mgmt.Core }

var (
	dBGPPeerUp      = desc("xnat_bgp_peer_up", "1 while the BGP session with the neighbour is established.", "peer", "side", "peer_as")
	dBGPPeerState   = desc("xnat_bgp_peer_state", "BGP session state of the neighbour; always 1, the state is the label.", "peer", "side", "state")
	dBGPAnnounced   = desc("xnat_bgp_route_announced", "1 while natd announces the route.", "prefix", "side")
	dBGPAnnounceTot = desc("xnat_bgp_announcements_total", "Route announcements natd made since start.")
	dBGPWithdrawTot = desc("xnat_bgp_withdrawals_total", "Route withdrawals natd made since start.")
	dBGPHealthy     = desc("xnat_bgp_dataplane_healthy", "1 while the dataplane passes the health check that gates the announcements.")
	dBGPDrained     = desc("xnat_bgp_drained", "1 while the appliance is drained (inside announcements withdrawn).")
	dBGPSessLeft    = desc("xnat_bgp_drain_sessions_left", "Live NAT sessions left on a drained appliance (0 when not drained).")
)

func (b *bgpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dBGPPeerUp, dBGPPeerState, dBGPAnnounced, dBGPAnnounceTot, dBGPWithdrawTot, dBGPHealthy, dBGPDrained, dBGPSessLeft} {
		ch <- d
	}
}

func (b *bgpCollector) Collect(ch chan<- prometheus.Metric) {
	st := b.core.BGPStatus()
	if !st.Enabled {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, p := range st.Peers {
		gauge(dBGPPeerUp, b2f(p.Up()), p.Address.String(), p.Side, strconv.FormatUint(uint64(p.AS), 10))
		gauge(dBGPPeerState, 1, p.Address.String(), p.Side, p.State)
	}
	for _, r := range st.Routes {
		gauge(dBGPAnnounced, b2f(r.Announced), r.Prefix.String(), r.Side)
	}
	ch <- prometheus.MustNewConstMetric(dBGPAnnounceTot, prometheus.CounterValue, float64(st.Announcements))
	ch <- prometheus.MustNewConstMetric(dBGPWithdrawTot, prometheus.CounterValue, float64(st.Withdrawals))
	gauge(dBGPHealthy, b2f(st.Healthy))
	gauge(dBGPDrained, b2f(st.Drained))
	left := 0
	if st.Drained {
		left = st.SessionsLeft
	}
	gauge(dBGPSessLeft, float64(left))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
