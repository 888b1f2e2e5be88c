package metrics_test

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/xnat/xnat/mgmt/metrics"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

// TestBGPMetrics: the xnat_bgp_* series follow the core's BGP status, and
// a natd without BGP exports none.
func TestBGPMetrics(t *testing.T) {
	core := mgmttest.Start(t, mgmttest.Options{})
	reg := metrics.NewRegistry(metrics.NewCollector(core, metrics.CollectorOptions{}))
	gather := func() map[string]*dto.MetricFamily {
		t.Helper()
		mfs, err := metrics.Gather(reg)
		if err != nil {
			t.Fatal(err)
		}
		return mfs
	}
	if _, ok := gather()["xnat_bgp_peer_up"]; ok {
		t.Fatal("xnat_bgp_peer_up exported by a natd without BGP")
	}
	core.EnableBGP()
	mfs := gather()
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"xnat_bgp_peer_up", []string{"peer", "198.18.0.2", "side", "outside"}, 1},
		{"xnat_bgp_peer_up", []string{"peer", "10.0.0.254", "side", "inside"}, 0},
		{"xnat_bgp_route_announced", []string{"prefix", "0.0.0.0/0"}, 1},
		{"xnat_bgp_drained", nil, 0},
		{"xnat_bgp_announcements_total", nil, 2},
	} {
		if v, ok := metrics.Value(mfs, c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, err := core.SetDrain(true); err != nil {
		t.Fatal(err)
	}
	mfs = gather()
	if v, _ := metrics.Value(mfs, "xnat_bgp_drained"); v != 1 {
		t.Errorf("xnat_bgp_drained = %v after drain", v)
	}
	if v, _ := metrics.Value(mfs, "xnat_bgp_route_announced", "prefix", "0.0.0.0/0"); v != 0 {
		t.Errorf("inside route still announced after drain: %v", v)
	}
}
