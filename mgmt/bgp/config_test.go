package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := func() Config {
		return Config{
			LocalAS: 65010, RouterID: netip.MustParseAddr("198.18.0.1"),
			Neighbors:     []Neighbor{{Address: netip.MustParseAddr("198.18.0.2"), AS: 65002, Side: Outside}},
			Announcements: []Announcement{{Prefix: netip.MustParsePrefix("198.18.10.0/28"), Side: Outside}},
		}
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Neighbors[0].HoldTime != DefaultHoldTime || c.ShutdownDelay != DefaultShutdownDelay {
		t.Errorf("defaults not filled: %+v", c)
	}
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"local_as", func(c *Config) { c.LocalAS = 0 }},
		{"local_as", func(c *Config) { c.LocalAS = 23456 }},
		{"router_id", func(c *Config) { c.RouterID = netip.Addr{} }},
		{"neighbors", func(c *Config) { c.Neighbors = nil; c.Announcements = nil }},
		{"neighbors[0].as", func(c *Config) { c.Neighbors[0].AS = 0 }},
		{"neighbors[0].address", func(c *Config) { c.Neighbors[0].Address = netip.MustParseAddr("::1") }},
		{"neighbors[1].address", func(c *Config) { c.Neighbors = append(c.Neighbors, c.Neighbors[0]) }},
		{"neighbors[0].hold_time", func(c *Config) { c.Neighbors[0].HoldTime = 2 * time.Second }},
		{"neighbors[0].hold_time", func(c *Config) { c.Neighbors[0].HoldTime = 3500 * time.Millisecond }},
		{"neighbors[0].password", func(c *Config) { c.Neighbors[0].Password = strings.Repeat("x", 81) }},
		{"announcements[0].prefix", func(c *Config) { c.Announcements[0].Prefix = netip.MustParsePrefix("198.18.10.1/28") }},
		{"announcements[0].side", func(c *Config) { c.Announcements[0].Side = Inside }},
		{"announcements[1].prefix", func(c *Config) { c.Announcements = append(c.Announcements, c.Announcements[0]) }},
		{"shutdown_delay", func(c *Config) { c.ShutdownDelay = 2 * time.Minute }},
	} {
		c := good()
		tc.mod(&c)
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
}

func TestTextEnums(t *testing.T) {
	var c Community
	if err := c.UnmarshalText([]byte("65010:100")); err != nil || c != 65010<<16|100 || c.String() != "65010:100" {
		t.Errorf("community: %v %v", c, err)
	}
	for _, bad := range []string{"65010", "65536:1", "1:65536", "a:b", ""} {
		if err := c.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("community %q accepted", bad)
		}
	}
	var s Side
	for _, want := range []Side{Inside, Outside} {
		b, _ := want.MarshalText()
		if err := s.UnmarshalText(b); err != nil || s != want {
			t.Errorf("side %v round trip: %v %v", want, s, err)
		}
	}
	if err := s.UnmarshalText([]byte("upside")); err == nil {
		t.Error("side upside accepted")
	}
}
