package metrics_test

import (
	"testing"

	"github.com/xnat/xnat/mgmt/metrics"
)

// Value takes the first matching sample, Sum adds every matching one;
// both read counters, gauges and untyped samples, and Sum of a family
// that is not there is 0.
func TestValueAndSum(t *testing.T) {
	mfs, err := metrics.Parse("test", 200, []byte(`# TYPE rx counter
rx{interface="in",queue="0"} 3
rx{interface="in",queue="1"} 4
rx{interface="out",queue="0"} 10
# TYPE sessions gauge
sessions{protocol="udp"} 5
sessions{protocol="tcp"} 7
plain 2
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		sum    float64
	}{
		{"rx", nil, 17},
		{"rx", []string{"interface", "in"}, 7},
		{"rx", []string{"interface", "in", "queue", "1"}, 4},
		{"rx", []string{"interface", "nowhere"}, 0},
		{"sessions", nil, 12},
		{"plain", nil, 2},
		{"absent", nil, 0},
	} {
		if got := metrics.Sum(mfs, c.name, c.labels...); got != c.sum {
			t.Errorf("Sum(%s %v) = %v, want %v", c.name, c.labels, got, c.sum)
		}
	}
	if v, ok := metrics.Value(mfs, "rx", "interface", "out"); !ok || v != 10 {
		t.Errorf("Value(rx interface=out) = %v, %v", v, ok)
	}
	if v, ok := metrics.Value(mfs, "sessions", "protocol", "tcp"); !ok || v != 7 {
		t.Errorf("Value(sessions protocol=tcp) = %v, %v", v, ok)
	}
	if _, ok := metrics.Value(mfs, "rx", "interface", "nowhere"); ok {
		t.Error("Value found a sample no label matches")
	}
	if _, ok := metrics.Value(mfs, "absent"); ok {
		t.Error("Value found a family that is not there")
	}
}
