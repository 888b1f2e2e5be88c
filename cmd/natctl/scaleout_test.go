package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDrainEndToEnd: drain and undrain through the admin socket, the
// read-only socket refused, and the BGP block in natctl bgp and status.
func TestDrainEndToEnd(t *testing.T) {
	e := newTestEnv(t)
	// A natd without a bgp section: status has no BGP block, drain is
	// refused with the reason.
	if r := e.readonly(t, "status"); strings.Contains(r.out, "BGP:") {
		t.Fatalf("status of a natd without BGP shows a BGP block:\n%s", r.out)
	}
	wantRun(t, e.admin_(t, "drain"), 4, "", "natd speaks no BGP")

	e.core.EnableBGP()
	wantRun(t, e.readonly(t, "drain"), 4, "", "natctl: permission denied: this connection (read-only socket "+e.ro+") is read-only and SetDrain changes state")
	wantRun(t, e.readonly(t, "status"), 0, "Drain:   not drained", "")
	wantRun(t, e.admin_(t, "drain"), 0, "drained: inside routes withdrawn, outside routes kept;", "")
	r := e.readonly(t, "status")
	wantRun(t, r, 0, "DRAINING", "")
	for _, want := range []string{"10.0.0.254  65001  inside   active", "0.0.0.0/0        inside   withdrawn", "198.18.0.100/32  outside  announced  10   [65010:1]"} {
		// Column widths are tabwriter's; compare with single spaces.
		if !strings.Contains(squeeze(r.out), squeeze(want)) {
			t.Errorf("status lacks %q:\n%s", want, r.out)
		}
	}
	r = e.readonly(t, "bgp", "-o", "json")
	var b bgpJSON
	if err := json.Unmarshal([]byte(r.out), &b); err != nil || !b.Enabled || !b.Drained || b.DrainedSince == nil || len(b.Peers) != 2 || len(b.Routes) != 2 || b.Routes[1].Announced {
		t.Fatalf("bgp -o json: %v\n%s", err, r.out)
	}
	r = e.readonly(t, "status", "-o", "json")
	var st statusWithBGP
	if err := json.Unmarshal([]byte(r.out), &st); err != nil || st.BGP == nil || !st.BGP.Drained || st.Version == "" {
		t.Fatalf("status -o json: %v\n%s", err, r.out)
	}
	wantRun(t, e.admin_(t, "undrain"), 0, "undrained", "")
	wantRun(t, e.readonly(t, "bgp"), 0, "Drain:   not drained", "")
}

func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }
