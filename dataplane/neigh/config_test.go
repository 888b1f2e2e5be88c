package neigh

import (
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{Inside: Link{Name: "a"}, Outside: Link{Index: 3}}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.RouteTable != 254 || c.PendingTimeout != 5*time.Second || c.RetryFailed != time.Second ||
		c.RefreshInterval != 10*time.Second || c.ReceiveBuffer != 4<<20 {
		t.Fatalf("defaults %+v", c)
	}
	c = Config{Inside: Link{Name: "a"}, Outside: Link{Name: "b"}, RefreshInterval: -1}
	if err := c.setDefaults(); err != nil || c.RefreshInterval != -1 {
		t.Fatalf("negative refresh interval not kept: %v %+v", err, c)
	}
	for _, bad := range []Config{
		{Outside: Link{Name: "b"}},
		{Inside: Link{Name: "a"}},
		{Inside: Link{Index: -1}, Outside: Link{Name: "b"}},
		{Inside: Link{Name: "a"}, Outside: Link{Name: "b"}, RouteTable: -2},
	} {
		if err := bad.setDefaults(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
