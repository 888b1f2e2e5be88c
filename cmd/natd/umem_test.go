package main

import (
	"strings"
	"testing"
)

// TestSharedUMEMConfig: a worker's sockets share a UMEM unless the file
// turns it off or the backend cannot; asking asavie to share is an error
// naming the field.
func TestSharedUMEMConfig(t *testing.T) {
	for _, tc := range []struct {
		xdp     string
		want    bool
		wantErr string
	}{
		{"", true, ""},
		{"xdp: {shared_umem: false}\n", false, ""},
		{"xdp: {shared_umem: true}\n", true, ""},
		{"xdp: {backend: asavie}\n", false, ""},
		{"xdp: {backend: asavie, shared_umem: true}\n", false, "xdp.shared_umem"},
	} {
		c, err := ParseConfig("natd.yaml", []byte(baseYAML+tc.xdp))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want one naming %s", tc.xdp, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.xdp, err)
		case c.SharedUMEM != tc.want:
			t.Errorf("%q: SharedUMEM = %v, want %v", tc.xdp, c.SharedUMEM, tc.want)
		}
	}
}

// TestSharedUMEMIsRestartOnly: turning xdp.shared_umem off by a reload is
// reported as a change natd applies only at restart.
func TestSharedUMEMIsRestartOnly(t *testing.T) {
	on, err := ParseConfig("natd.yaml", []byte(baseYAML))
	if err != nil {
		t.Fatal(err)
	}
	off, err := ParseConfig("natd.yaml", []byte(baseYAML+"xdp: {shared_umem: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := restartOnlyChanges(on, off)
	if len(got) != 1 || got[0].Section != "xdp" {
		t.Fatalf("restart-only changes %+v, want the xdp section", got)
	}
}
