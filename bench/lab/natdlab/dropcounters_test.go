package natdlab

import (
	"testing"

	"github.com/xnat/xnat/mgmt/metrics"
)

// TestDropCounters checks what a failed e2e test prints of natd's metrics:
// the nonzero samples of the drop families, with their labels, and
// nothing else.
func TestDropCounters(t *testing.T) {
	body := []byte(`# TYPE xnat_dropped_packets_total counter
xnat_dropped_packets_total{reason="no_route",side="inside"} 0
xnat_dropped_packets_total{reason="table_full",side="outside"} 3
# TYPE xnat_interface_dropped_packets_total counter
xnat_interface_dropped_packets_total{interface="nat-in"} 2
# TYPE xnat_packets_total counter
xnat_packets_total{side="inside"} 7
`)
	mfs, err := metrics.Parse("test", 200, body)
	if err != nil {
		t.Fatal(err)
	}
	want := `xnat_dropped_packets_total{reason="table_full",side="outside"} 3
xnat_interface_dropped_packets_total{interface="nat-in"} 2
`
	if got := dropCounters(mfs); got != want {
		t.Errorf("dropCounters:\n%s\nwant:\n%s", got, want)
	}
	delete(mfs, "xnat_interface_dropped_packets_total")
	delete(mfs, "xnat_dropped_packets_total")
	if got := dropCounters(mfs); got != "(none)\n" {
		t.Errorf("no drops: %q", got)
	}
}
