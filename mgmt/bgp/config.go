// Package bgp announces an appliance's addresses to its routers over BGP, so
// that several natd appliances share subscribers by ECMP and a dead one's
// subscribers move to the survivors (docs/scaleout.md).
//
// BGP itself is GoBGP (github.com/osrg/gobgp/v3), embedded as a library: the
// sessions live and die with natd's process, so a natd killed with SIGKILL
// takes its sessions down with it (the kernel closes their sockets; a box
// that vanishes silently is caught by the peers' hold timers), and
// announcing or withdrawing is a function call that takes effect at once.
//
// The Speaker runs one GoBGP instance per side (inside routers, outside
// routers), each with only that side's neighbours and routes, so no export
// policy is needed to keep the default route off the outside routers or the
// pools off the inside ones.
package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Side says which routers a neighbour or an announcement belongs to.
type Side uint8

const (
	// Outside routers learn the public addresses (pools, static
	// mappings, port forwards), so return traffic finds this appliance.
	Outside Side = iota
	// Inside routers learn a default route or configured prefixes, so
	// subscriber traffic reaches this appliance.
	Inside
	numSides
)

func (s Side) String() string {
	switch s {
	case Outside:
		return "outside"
	case Inside:
		return "inside"
	}
	return "side(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes "inside" or "outside".
func (s Side) MarshalText() ([]byte, error) {
	if s >= numSides {
		return nil, fmt.Errorf("invalid side %d", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads "inside" or "outside".
func (s *Side) UnmarshalText(b []byte) error {
	switch string(b) {
	case "outside":
		*s = Outside
	case "inside":
		*s = Inside
	default:
		return fmt.Errorf("%q is not inside or outside", b)
	}
	return nil
}

// Community is a standard BGP community (RFC 1997): the high 16 bits an AS
// number, the low 16 bits a value, written "AS:value".
type Community uint32

func (c Community) String() string {
	return strconv.Itoa(int(c>>16)) + ":" + strconv.Itoa(int(c&0xffff))
}

// MarshalText writes "AS:value".
func (c Community) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads "AS:value", each part 0..65535.
func (c *Community) UnmarshalText(b []byte) error {
	as, v, ok := strings.Cut(string(b), ":")
	a, err1 := strconv.ParseUint(as, 10, 16)
	n, err2 := strconv.ParseUint(v, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%q is not a community like 65010:100", b)
	}
	*c = Community(a<<16 | n)
	return nil
}

// Neighbor is one BGP peer: a router on one side.
type Neighbor struct {
	Address netip.Addr
	AS      uint32
	// Password enables TCP MD5 signatures (RFC 2385) when set.
	Password string
	// HoldTime is proposed in OPEN (RFC 4271 4.2: 0 or at least 3 s);
	// keepalives go every third of it.
	HoldTime time.Duration
	Side     Side
	// Port is the peer's BGP port; 0 means 179 (tests use others).
	Port uint16
}

// Announcement is one route natd announces while healthy.
type Announcement struct {
	Prefix netip.Prefix
	Side   Side
	// MED (RFC 4271 5.1.4), sent when HasMED: a lower value makes
	// routers prefer this appliance.
	MED         uint32
	HasMED      bool
	Communities []Community
}

// Config is the validated BGP configuration.
type Config struct {
	LocalAS       uint32
	RouterID      netip.Addr
	Neighbors     []Neighbor
	Announcements []Announcement
	// ShutdownDelay is how long natd keeps forwarding after withdrawing
	// everything on shutdown, so that routers move traffic away before
	// the dataplane stops.
	ShutdownDelay time.Duration
}

// Defaults.
const (
	DefaultHoldTime      = 90 * time.Second // RFC 4271 10, suggested value
	DefaultShutdownDelay = time.Second
)

// FieldError is one invalid field of a Config; Field is the path as
// written in natd.yaml's bgp section ("neighbors[1].hold_time").
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Validate checks the configuration, filling defaults; it serves the
// config file and the management API alike. The error joins one FieldError
// per problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if c.LocalAS == 0 || c.LocalAS == 23456 {
		// RFC 6793: AS_TRANS (23456) is not an AS of its own.
		bad("local_as", "an AS number (1..4294967295, not 23456) is required")
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		bad("router_id", "a non-zero IPv4 address is required (RFC 6286: a 4-byte identifier)")
	}
	if c.ShutdownDelay == 0 {
		c.ShutdownDelay = DefaultShutdownDelay
	}
	if c.ShutdownDelay < 0 || c.ShutdownDelay > time.Minute {
		bad("shutdown_delay", "%v out of range 0..1m", c.ShutdownDelay)
	}
	if len(c.Neighbors) == 0 {
		bad("neighbors", "at least one neighbour is required")
	}
	seen := map[netip.Addr]bool{}
	var sides [numSides]bool
	for i := range c.Neighbors {
		n := &c.Neighbors[i]
		f := fmt.Sprintf("neighbors[%d]", i)
		if !n.Address.Is4() || n.Address.IsUnspecified() || n.Address.IsMulticast() {
			bad(f+".address", "an IPv4 unicast address is required")
		} else if seen[n.Address] {
			bad(f+".address", "%s listed twice", n.Address)
		}
		seen[n.Address] = true
		if n.AS == 0 || n.AS == 23456 {
			bad(f+".as", "an AS number (1..4294967295, not 23456) is required")
		}
		if n.HoldTime == 0 {
			n.HoldTime = DefaultHoldTime
		}
		// RFC 4271 4.2: the hold time is zero or at least three seconds,
		// and fits 16 bits of seconds.
		if n.HoldTime < 3*time.Second || n.HoldTime > 65535*time.Second || n.HoldTime%time.Second != 0 {
			bad(f+".hold_time", "%v: whole seconds from 3s to 65535s", n.HoldTime)
		}
		if len(n.Password) > 80 {
			// TCP_MD5SIG_MAXKEYLEN in Linux.
			bad(f+".password", "longer than 80 bytes")
		}
		if n.Side >= numSides {
			bad(f+".side", "not inside or outside")
		} else {
			sides[n.Side] = true
		}
	}
	seenRoute := map[[2]any]bool{}
	for i, a := range c.Announcements {
		f := fmt.Sprintf("announcements[%d]", i)
		if !a.Prefix.IsValid() || !a.Prefix.Addr().Is4() {
			bad(f+".prefix", "an IPv4 prefix is required")
			continue
		}
		if a.Prefix != a.Prefix.Masked() {
			bad(f+".prefix", "%s has host bits set (did you mean %s?)", a.Prefix, a.Prefix.Masked())
		}
		if a.Side >= numSides {
			bad(f+".side", "not inside or outside")
			continue
		}
		if !sides[a.Side] {
			bad(f+".side", "no %s neighbour to announce %s to", a.Side, a.Prefix)
		}
		k := [2]any{a.Prefix, a.Side}
		if seenRoute[k] {
			bad(f+".prefix", "%s announced twice on the %s", a.Prefix, a.Side)
		}
		seenRoute[k] = true
	}
	return errors.Join(errs...)
}
