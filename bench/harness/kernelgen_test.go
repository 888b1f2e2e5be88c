package harness

import "testing"

// TestCounterPackets reads the scenario's delivered frames from nft's JSON
// listing of the sink's counter (the shape nft 1.0.6 prints).
func TestCounterPackets(t *testing.T) {
	const listing = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"counter": {"family": "netdev", "name": "scenario", "table": "xnatbench_sink", "handle": 2, "packets": 1000000, "bytes": 64000000}}]}`
	if n, err := counterPackets([]byte(listing)); err != nil || n != 1000000 {
		t.Fatalf("counterPackets = %d, %v; want 1000000", n, err)
	}
	for _, bad := range []string{
		`{"nftables": [{"metainfo": {"version": "1.0.6"}}]}`,
		`Error: No such file or directory`,
		``,
	} {
		if n, err := counterPackets([]byte(bad)); err == nil {
			t.Errorf("counterPackets(%q) = %d, want an error", bad, n)
		}
	}
}
