package nat

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// fieldErrors returns the FieldErrors Validate joined.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a FieldError", e)
		}
		out = append(out, fe)
	}
	return out
}

// TestConfigValidatePublicAddresses covers the checks that keep pools,
// static mappings and port forwards clear of the inside prefixes and of
// each other: each case must be refused on the field named, colliding with
// the field named in With.
func TestConfigValidatePublicAddresses(t *testing.T) {
	pfx, ad, ap := netip.MustParsePrefix, netip.MustParseAddr, netip.MustParseAddrPort
	fwd := func(proto Proto, out, in string) PortForward {
		return PortForward{Proto: proto, Outside: ap(out), Inside: ap(in)}
	}
	for _, tc := range []struct {
		name        string
		mod         func(c *Config)
		field, with string
		reason      string
	}{
		{"pool larger than an inside prefix", func(c *Config) {
			c.InsidePrefixes = []netip.Prefix{pfx("10.0.5.0/24")}
			c.Pools[0].Addresses = []netip.Prefix{pfx("10.0.0.0/16")}
		}, "pools[0].addresses[0]", "", "10.0.0.0/16 overlaps inside prefix 10.0.5.0/24 (inside_prefixes[0])"},
		{"pool inside an inside prefix", func(c *Config) {
			c.Pools[0].Addresses = []netip.Prefix{pfx("10.9.0.0/24")}
		}, "pools[0].addresses[0]", "", "overlaps inside prefix 10.0.0.0/8"},
		{"pool with host bits", func(c *Config) {
			c.Pools[0].Addresses = []netip.Prefix{pfx("198.18.1.5/24")}
		}, "pools[0].addresses[0]", "", "198.18.1.5/24 has host bits set (did you mean 198.18.1.0/24?)"},
		{"pools overlap", func(c *Config) {
			c.Pools = append(c.Pools, Pool{Name: "b", Addresses: []netip.Prefix{pfx("198.18.0.96/28")}})
		}, "pools[1].addresses[0]", "pools[0].addresses[0]", `198.18.0.96/28 overlaps pool "main" (198.18.0.100/32, pools[0].addresses[0])`},
		{"prefixes of one pool overlap", func(c *Config) {
			c.Pools[0].Addresses = []netip.Prefix{pfx("198.18.1.0/24"), pfx("198.18.1.128/25")}
		}, "pools[0].addresses[1]", "", "198.18.1.128/25 overlaps 198.18.1.0/24 in the same pool"},
		{"static outside in an inside prefix", func(c *Config) {
			c.StaticMappings = []StaticMapping{{Inside: ad("10.0.0.5"), Outside: ad("10.1.1.1")}}
		}, "static_mappings[0].outside", "", "outside 10.1.1.1 is in inside prefix 10.0.0.0/8"},
		{"static outside in a pool", func(c *Config) {
			c.StaticMappings = []StaticMapping{{Inside: ad("10.0.0.5"), Outside: ad("198.18.0.100")}}
		}, "static_mappings[0].outside", "pools[0].addresses[0]", `198.18.0.100 is in pool "main"`},
		{"two statics share an outside address", func(c *Config) {
			c.StaticMappings = []StaticMapping{{Inside: ad("10.0.0.5"), Outside: ad("198.18.0.5")}, {Inside: ad("10.0.0.6"), Outside: ad("198.18.0.5")}}
		}, "static_mappings[1].outside", "static_mappings[0].outside", "198.18.0.5 is already the outside address of the static mapping for 10.0.0.5"},
		{"two statics for one inside address", func(c *Config) {
			c.StaticMappings = []StaticMapping{{Inside: ad("10.0.0.5"), Outside: ad("198.18.0.5")}, {Inside: ad("10.0.0.5"), Outside: ad("198.18.0.6")}}
		}, "static_mappings[1].inside", "static_mappings[0].inside", "10.0.0.5 already has a static mapping to 198.18.0.5"},
		{"forward outside in an inside prefix", func(c *Config) {
			c.PortForwards = []PortForward{fwd(TCP, "10.1.1.1:80", "10.0.0.5:80")}
		}, "port_forwards[0].outside", "", "outside 10.1.1.1 is in inside prefix 10.0.0.0/8"},
		{"forward on a static's outside address", func(c *Config) {
			c.StaticMappings = []StaticMapping{{Inside: ad("10.0.0.5"), Outside: ad("198.18.0.5")}}
			c.PortForwards = []PortForward{fwd(UDP, "198.18.0.5:53", "10.0.0.53:53")}
		}, "port_forwards[0].outside", "static_mappings[0].outside", "198.18.0.5 is the outside address of the static mapping for 10.0.0.5"},
		{"forward twice", func(c *Config) {
			c.PortForwards = []PortForward{fwd(TCP, "198.18.0.100:80", "10.0.0.5:80"), fwd(TCP, "198.18.0.100:80", "10.0.0.6:80")}
		}, "port_forwards[1]", "port_forwards[0]", "tcp 198.18.0.100:80 is already forwarded to 10.0.0.5:80"},
		{"two forwards to one inside endpoint", func(c *Config) {
			c.PortForwards = []PortForward{fwd(TCP, "198.18.0.100:80", "10.0.0.5:80"), fwd(TCP, "198.18.0.100:8080", "10.0.0.5:80")}
		}, "port_forwards[1].inside", "port_forwards[0].inside", "tcp 10.0.0.5:80 is already the target of the forward from 198.18.0.100:80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("validated")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%v does not wrap ErrInvalidConfig", err)
			}
			for _, fe := range fieldErrors(t, err) {
				if fe.Field == tc.field && fe.With == tc.with && strings.Contains(fe.Reason, tc.reason) {
					return
				}
			}
			t.Fatalf("got %q; want field %s, with %q, reason containing %q", err, tc.field, tc.with, tc.reason)
		})
	}

	// What stays allowed: a forward on a pool address, a forward to a host
	// that also has a static mapping, the same port on two protocols.
	c := testConfig()
	c.StaticMappings = []StaticMapping{{Inside: ad("10.0.0.5"), Outside: ad("198.18.0.5")}}
	c.PortForwards = []PortForward{fwd(TCP, "198.18.0.100:80", "10.0.0.5:80"), fwd(UDP, "198.18.0.100:80", "10.0.0.5:80")}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
}
