package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Mapping is the NAT mapping behaviour (RFC 4787 section 4.1).
type Mapping uint8

const (
	// EndpointIndependent reuses one external address:port for every
	// destination of an internal endpoint (RFC 4787 REQ-1, RFC 5382 REQ-1).
	EndpointIndependent Mapping = iota
	// AddressAndPortDependent gives each destination its own mapping and
	// lets external ports overlap across destinations, as VPP's NAT44-ED
	// does, for more sessions per external address.
	AddressAndPortDependent
)

// Filtering is the NAT filtering behaviour (RFC 4787 section 5).
type Filtering uint8

const (
	// FilterEndpointIndependent admits inbound packets from any external
	// endpoint to a mapped external address:port (RFC 6888 REQ-7 default).
	FilterEndpointIndependent Filtering = iota
	// FilterAddressDependent admits them only from external addresses the
	// internal endpoint has sent to.
	FilterAddressDependent
	// FilterAddressAndPortDependent admits them only from external
	// address:port pairs the internal endpoint has sent to.
	FilterAddressAndPortDependent
)

// ExhaustionReply says which ICMP error, if any, answers a packet dropped
// because a resource ran out.
type ExhaustionReply uint8

const (
	// ReplyNone drops silently (counted).
	ReplyNone ExhaustionReply = iota
	// ReplyHostUnreachable sends Destination Unreachable code 1 (RFC 6888).
	ReplyHostUnreachable
	// ReplyAdminProhibited sends Destination Unreachable code 13 (RFC 5508).
	ReplyAdminProhibited
)

// PortRange is an inclusive range of external ports (or ICMP identifiers).
type PortRange struct{ Min, Max uint16 }

// Size returns the number of ports in the range.
func (r PortRange) Size() int { return int(r.Max) - int(r.Min) + 1 }

// Pool is a named set of external addresses.
type Pool struct {
	Name string
	// Addresses are prefixes or single addresses (as /32). Network and
	// broadcast addresses of a prefix are usable: the pool is routed to
	// the appliance, not configured on a shared LAN.
	Addresses []netip.Prefix
}

// StaticMapping maps one inside address to one outside address 1:1, for
// every protocol and port, in both directions.
type StaticMapping struct {
	Inside  netip.Addr
	Outside netip.Addr
}

// PortForward maps an external address:port of one protocol to an inside
// address:port (DNAT).
type PortForward struct {
	Proto   Proto
	Outside netip.AddrPort
	Inside  netip.AddrPort
}

// Timeouts are idle timeouts. The defaults follow the RFCs.
type Timeouts struct {
	// TCPEstablished: RFC 5382 REQ-5, at least 2 h 4 min.
	TCPEstablished time.Duration
	// TCPTransitory covers half-open, closing and reset connections: RFC
	// 5382 REQ-5 and RFC 7857 section 2.2 (4 minutes after RST).
	TCPTransitory time.Duration
	// UDP: RFC 4787 REQ-5, at least 2 minutes; 5 minutes recommended.
	UDP time.Duration
	// ICMP query sessions: RFC 5508 REQ-1, 60 s.
	ICMP time.Duration
	// PortHoldDown keeps a freed external port out of use: RFC 6888 REQ-8.
	PortHoldDown time.Duration
	// Fragment is how long an out-of-order fragment, or the state that
	// translates later fragments, is kept (RFC 4787 REQ-14).
	Fragment time.Duration
}

// Limits bound what one subscriber (inside address) may hold, and the
// table as a whole.
type Limits struct {
	// MaxSessions is the session table's capacity.
	MaxSessions int
	// MaxSubscribers bounds distinct inside addresses with mappings.
	MaxSubscribers int
	// SessionsPerSubscriber limits the state one subscriber holds (RFC
	// 6888 REQ-5); 0 means no limit.
	SessionsPerSubscriber int
	// PortsPerSubscriber limits the external ports (ICMP identifiers
	// included) one subscriber holds at once, across protocols (RFC 6888
	// REQ-4); 0 means no limit.
	PortsPerSubscriber int
	// HeldFragments bounds the out-of-order fragments one worker holds
	// while their first fragment is missing, in frames of its ports. A
	// worker refuses to start with more than a quarter of its ports'
	// frames, and never holds more than that after a reload. 0 holds
	// none (a later fragment before its first is dropped).
	HeldFragments int
	// HeldFragmentBytes bounds the same fragments in bytes (frame
	// lengths), per worker.
	HeldFragmentBytes int
	// HeldFragmentsPerSource and HeldFragmentBytesPerSource bound what
	// one source address may hold of a worker's share, so that one sender
	// cannot take the budget of all (RFC 4787 REQ-14a: fragmentation-based
	// attacks must not compromise the NAT's handling of other packets).
	HeldFragmentsPerSource     int
	HeldFragmentBytesPerSource int
	// InboundSessions bounds the sessions opened from outside (through a
	// port forward, a static mapping or an endpoint-independent mapping),
	// across the engine; 0 means no limit beyond MaxSessions.
	InboundSessions int
	// InboundSessionsPerRule bounds the sessions opened from outside
	// through one port forward or one static mapping; 0 means no limit.
	InboundSessionsPerRule int
	// ICMPErrorsPerSecond rate-limits the ICMP errors one worker sends.
	ICMPErrorsPerSecond int
}

// Config is the NAT's configuration. The zero value is not valid; start
// from DefaultConfig. Config uses net/netip types: it is the boundary where
// operators' words become the dataplane's compiled Snapshot.
type Config struct {
	InsidePrefixes []netip.Prefix
	Pools          []Pool
	// Ports are the external port ranges per protocol; ICMP is the range
	// of query identifiers.
	Ports   [NumProtos]PortRange
	Mapping Mapping
	// Filtering per protocol (RFC 4787 REQ-8, RFC 5382 REQ-3).
	Filtering [NumProtos]Filtering
	// UDPInboundRefresh makes inbound packets refresh UDP mappings (RFC
	// 4787 REQ-6 allows it; outbound packets always refresh).
	UDPInboundRefresh bool
	Timeouts          Timeouts
	Limits            Limits
	StaticMappings    []StaticMapping
	PortForwards      []PortForward
	// OnExhaustion chooses the ICMP error for resource exhaustion.
	OnExhaustion ExhaustionReply
	// LogDestinations records the remote endpoint in session events (RFC
	// 6888 REQ-12 leaves it to the operator).
	LogDestinations bool
	// MSSClamp clamps the MSS of SYNs in both directions (mss.go).
	MSSClamp MSSClamp
	// CGN is the port allocation: dynamic, block or deterministic
	// (cgn_config.go, docs/cgn.md).
	CGN CGN
}

// DefaultConfig returns the defaults: endpoint-independent mapping and
// filtering, ports 1024–65535, and the RFC timeouts. It has no prefixes,
// pools or rules.
func DefaultConfig() Config {
	var c Config
	for p := range c.Ports {
		c.Ports[p] = PortRange{1024, 65535}
	}
	c.UDPInboundRefresh = true
	c.Timeouts = Timeouts{
		TCPEstablished: 7440 * time.Second,
		TCPTransitory:  240 * time.Second,
		UDP:            300 * time.Second,
		ICMP:           60 * time.Second,
		PortHoldDown:   120 * time.Second,
		Fragment:       2 * time.Second,
	}
	c.Limits = Limits{
		MaxSessions:                1 << 20,
		MaxSubscribers:             1 << 16,
		HeldFragments:              64,
		HeldFragmentBytes:          96 << 10,
		HeldFragmentsPerSource:     16,
		HeldFragmentBytesPerSource: 24 << 10,
		InboundSessions:            1 << 18,
		ICMPErrorsPerSecond:        100,
	}
	c.CGN = defaultCGN()
	return c
}

// maxTimeout keeps every timeout far below the 49-day wrap of the
// millisecond tick.
const maxTimeout = 24 * time.Hour

// MaxHeldFragments and MaxHeldFragmentBytes are the most out-of-order
// fragments a worker may be configured to hold; each worker preallocates
// its holding area for the smaller of MaxHeldFragments and a quarter of
// its ports' frames, so a reload can change the limit without allocating.
const (
	MaxHeldFragments     = 4096
	MaxHeldFragmentBytes = 64 << 20
)

// MaxPoolAddresses bounds the external addresses an engine manages over its
// lifetime, including removed ones that still hold mappings.
const MaxPoolAddresses = 1 << 16

// ErrInvalidConfig is wrapped by every validation error.
var ErrInvalidConfig = errors.New("invalid NAT config")

// FieldError names the config field that is wrong and why.
type FieldError struct {
	Field  string
	Reason string
	// With is the field of the other object this one collides with (an
	// overlapping pool prefix, a static mapping claiming the same
	// address), or "" when the field is wrong by itself. The management
	// API reports collisions as conflicts, and charges them to the change
	// that added either object.
	With string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func conflictErr(field, with, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...), With: with}
}

// Validate checks the config and returns every problem found, each naming
// its field, joined with errors.Join. It is the one judge of a
// configuration: natd's config file and the management API's changes are
// both checked here.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	c.validateInside(add)
	pools := c.validatePools(add)
	c.validateBehaviour(add)
	c.validateTimeouts(add)
	c.validateLimits(add)
	if c.OnExhaustion > ReplyAdminProhibited {
		add(fieldErr("on_exhaustion", "unknown reply %d", c.OnExhaustion))
	}
	if err := c.MSSClamp.check(); err != nil {
		add(err)
	}
	staticOut := c.validateStaticMappings(add, pools)
	c.validatePortForwards(add, staticOut)
	errs = append(errs, c.validateCGN()...)
	return errors.Join(errs...)
}

// The steps of Validate. Each reports the problems of its part through add
// and judges only that part, given what earlier steps found.

// validateInside judges the inside prefixes.
func (c *Config) validateInside(add func(error)) {
	if len(c.InsidePrefixes) == 0 {
		add(fieldErr("inside_prefixes", "at least one inside prefix is required"))
	}
	for i, p := range c.InsidePrefixes {
		f := fmt.Sprintf("inside_prefixes[%d]", i)
		switch {
		case !p.IsValid():
			add(fieldErr(f, "not a valid prefix"))
		case !p.Addr().Is4():
			add(fieldErr(f, "%s is not IPv4", p))
		case p.Masked() != p:
			add(fieldErr(f, "%s has host bits set (did you mean %s?)", p, p.Masked()))
		}
	}
}

// validatePools judges the pools and returns their prefixes with the fields
// that name them.
func (c *Config) validatePools(add func(error)) []ownedPrefix {
	// Public addresses: pool prefixes, static mappings' and forwards'
	// outside addresses must stay clear of the inside prefixes (a packet
	// from an inside host to them would be both inside and public) and of
	// each other, except that a forward may use a pool address (its port
	// is then not handed out dynamically).
	var pools []ownedPrefix
	total := 0
	names := map[string]bool{}
	for i, pool := range c.Pools {
		f := fmt.Sprintf("pools[%d]", i)
		if pool.Name == "" {
			add(fieldErr(f+".name", "a pool needs a name"))
		} else if names[pool.Name] {
			add(fieldErr(f+".name", "duplicate pool name %q", pool.Name))
		}
		names[pool.Name] = true
		if len(pool.Addresses) == 0 {
			add(fieldErr(f+".addresses", "pool %q has no addresses", pool.Name))
		}
		for j, p := range pool.Addresses {
			af := fmt.Sprintf("%s.addresses[%d]", f, j)
			switch {
			case !p.IsValid() || !p.Addr().Is4():
				add(fieldErr(af, "%v is not an IPv4 prefix or address", p))
				continue
			case p.Masked() != p:
				add(fieldErr(af, "%s has host bits set (did you mean %s?)", p, p.Masked()))
				continue
			case p.Bits() < 16:
				add(fieldErr(af, "%s is larger than a /16", p))
				continue
			}
			if in, k := c.insidePrefixOverlapping(p); k >= 0 {
				add(fieldErr(af, "%s overlaps inside prefix %s (inside_prefixes[%d])", p, in, k))
			}
			for _, o := range pools {
				if !o.p.Overlaps(p) {
					continue
				}
				if o.pool == pool.Name {
					add(fieldErr(af, "%s overlaps %s in the same pool (%s)", p, o.p, o.field))
				} else {
					add(conflictErr(af, o.field, "%s overlaps pool %q (%s, %s)", p, o.pool, o.p, o.field))
				}
			}
			total += 1 << (32 - p.Bits())
			pools = append(pools, ownedPrefix{p: p, pool: pool.Name, field: af})
		}
	}
	if len(c.Pools) == 0 && len(c.StaticMappings) == 0 && len(c.PortForwards) == 0 {
		add(fieldErr("pools", "at least one pool, static mapping or port forward is required"))
	}
	if total > MaxPoolAddresses {
		add(fieldErr("pools", "%d pool addresses, at most %d", total, MaxPoolAddresses))
	}
	return pools
}

// validateBehaviour judges the port ranges and the mapping and filtering
// behaviours.
func (c *Config) validateBehaviour(add func(error)) {
	for p := Proto(0); p < NumProtos; p++ {
		r := c.Ports[p]
		f := "ports." + p.String()
		if r.Min == 0 || r.Max < r.Min {
			add(fieldErr(f, "range %d-%d is empty or starts at 0", r.Min, r.Max))
		}
		if c.Filtering[p] > FilterAddressAndPortDependent {
			add(fieldErr("filtering."+p.String(), "unknown filtering behaviour %d", c.Filtering[p]))
		}
		if c.Mapping == AddressAndPortDependent && c.Filtering[p] != FilterAddressAndPortDependent {
			// With port overlap, an external port may stand for several
			// internal endpoints; only the full 5-tuple says which.
			add(fieldErr("filtering."+p.String(),
				"address-and-port-dependent mapping needs address-and-port-dependent filtering"))
		}
	}
	if c.Mapping > AddressAndPortDependent {
		add(fieldErr("mapping", "unknown mapping behaviour %d", c.Mapping))
	}
}

// validateTimeouts judges the timeouts against the RFCs' minimums.
func (c *Config) validateTimeouts(add func(error)) {
	t := c.Timeouts
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		// RFC 5382 REQ-5: established idle timeout not less than 2h4m.
		{"timeouts.tcp_established", t.TCPEstablished, 124 * time.Minute},
		// RFC 5382 REQ-5: transitory not less than 4 minutes.
		{"timeouts.tcp_transitory", t.TCPTransitory, 4 * time.Minute},
		// RFC 4787 REQ-5: UDP mapping timer not less than 2 minutes.
		{"timeouts.udp", t.UDP, 2 * time.Minute},
		// RFC 5508 REQ-1: ICMP query timeout not less than 60 s.
		{"timeouts.icmp", t.ICMP, 60 * time.Second},
		{"timeouts.port_hold_down", t.PortHoldDown, 0},
		{"timeouts.fragment", t.Fragment, 100 * time.Millisecond},
	} {
		switch {
		case d.v < d.min:
			add(fieldErr(d.name, "%v is below the minimum %v", d.v, d.min))
		case d.v > maxTimeout:
			add(fieldErr(d.name, "%v is above the maximum %v", d.v, maxTimeout))
		}
	}
}

// validateLimits judges the limits.
func (c *Config) validateLimits(add func(error)) {
	l := c.Limits
	if l.MaxSessions < 1 || l.MaxSessions > 1<<30 {
		add(fieldErr("limits.max_sessions", "%d is out of range 1..%d", l.MaxSessions, 1<<30))
	}
	if l.MaxSubscribers < 1 || l.MaxSubscribers > 1<<26 {
		add(fieldErr("limits.max_subscribers", "%d is out of range 1..%d", l.MaxSubscribers, 1<<26))
	}
	if l.SessionsPerSubscriber < 0 {
		add(fieldErr("limits.sessions_per_subscriber", "must not be negative"))
	}
	if l.PortsPerSubscriber < 0 {
		add(fieldErr("limits.ports_per_subscriber", "must not be negative"))
	}
	for _, v := range []struct {
		name   string
		v, max int
	}{
		{"limits.held_fragments", l.HeldFragments, MaxHeldFragments},
		{"limits.held_fragments_per_source", l.HeldFragmentsPerSource, MaxHeldFragments},
		{"limits.held_fragment_bytes", l.HeldFragmentBytes, MaxHeldFragmentBytes},
		{"limits.held_fragment_bytes_per_source", l.HeldFragmentBytesPerSource, MaxHeldFragmentBytes},
		{"limits.inbound_sessions", l.InboundSessions, 1 << 30},
		{"limits.inbound_sessions_per_rule", l.InboundSessionsPerRule, 1 << 30},
	} {
		if v.v < 0 || v.v > v.max {
			add(fieldErr(v.name, "%d is out of range 0..%d", v.v, v.max))
		}
	}
	if l.ICMPErrorsPerSecond < 0 {
		add(fieldErr("limits.icmp_errors_per_second", "must not be negative"))
	}
}

// validateStaticMappings judges the static mappings against the inside
// prefixes, the pools and each other, and returns their outside addresses
// (address -> index).
func (c *Config) validateStaticMappings(add func(error), pools []ownedPrefix) map[netip.Addr]int {
	staticIn := map[netip.Addr]int{}  // inside address -> index
	staticOut := map[netip.Addr]int{} // outside address -> index
	for i, m := range c.StaticMappings {
		f := fmt.Sprintf("static_mappings[%d]", i)
		if !m.Inside.Is4() {
			add(fieldErr(f+".inside", "inside %v is not an IPv4 address", m.Inside))
		}
		if !m.Outside.Is4() {
			add(fieldErr(f+".outside", "outside %v is not an IPv4 address", m.Outside))
		}
		if !m.Inside.Is4() || !m.Outside.Is4() {
			continue
		}
		if !c.isInside(m.Inside) {
			add(fieldErr(f+".inside", "inside %s is not in an inside prefix %v", m.Inside, c.InsidePrefixes))
		}
		if in, k := c.insidePrefixOverlapping(netip.PrefixFrom(m.Outside, 32)); k >= 0 {
			add(fieldErr(f+".outside", "outside %s is in inside prefix %s (inside_prefixes[%d])", m.Outside, in, k))
		}
		if j, ok := staticIn[m.Inside]; ok {
			add(conflictErr(f+".inside", fmt.Sprintf("static_mappings[%d].inside", j),
				"%s already has a static mapping to %s (static_mappings[%d])", m.Inside, c.StaticMappings[j].Outside, j))
		} else {
			staticIn[m.Inside] = i
		}
		if j, ok := staticOut[m.Outside]; ok {
			add(conflictErr(f+".outside", fmt.Sprintf("static_mappings[%d].outside", j),
				"%s is already the outside address of the static mapping for %s (static_mappings[%d])", m.Outside, c.StaticMappings[j].Inside, j))
		} else {
			staticOut[m.Outside] = i
		}
		for _, o := range pools {
			if o.p.Contains(m.Outside) {
				add(conflictErr(f+".outside", o.field, "%s is in pool %q (%s, %s)", m.Outside, o.pool, o.p, o.field))
			}
		}
	}
	return staticOut
}

// validatePortForwards judges the port forwards against the inside
// prefixes, the static mappings' outside addresses and each other.
func (c *Config) validatePortForwards(add func(error), staticOut map[netip.Addr]int) {
	type fwdEnd struct {
		proto Proto
		ap    netip.AddrPort
	}
	fwdOut, fwdIn := map[fwdEnd]int{}, map[fwdEnd]int{}
	for i, r := range c.PortForwards {
		f := fmt.Sprintf("port_forwards[%d]", i)
		ok := true
		if r.Proto != TCP && r.Proto != UDP {
			add(fieldErr(f+".proto", "port forwards are for tcp or udp, not %s", r.Proto))
			ok = false
		}
		if !r.Outside.Addr().Is4() || r.Outside.Port() == 0 {
			add(fieldErr(f+".outside", "outside %v must be an IPv4 address:port with a non-zero port", r.Outside))
			ok = false
		}
		if !r.Inside.Addr().Is4() || r.Inside.Port() == 0 {
			add(fieldErr(f+".inside", "inside %v must be an IPv4 address:port with a non-zero port", r.Inside))
			ok = false
		}
		if !ok {
			continue
		}
		if !c.isInside(r.Inside.Addr()) {
			add(fieldErr(f+".inside", "inside %s is not in an inside prefix %v", r.Inside.Addr(), c.InsidePrefixes))
		}
		if in, k := c.insidePrefixOverlapping(netip.PrefixFrom(r.Outside.Addr(), 32)); k >= 0 {
			add(fieldErr(f+".outside", "outside %s is in inside prefix %s (inside_prefixes[%d])", r.Outside.Addr(), in, k))
		}
		if j, ok := staticOut[r.Outside.Addr()]; ok {
			add(conflictErr(f+".outside", fmt.Sprintf("static_mappings[%d].outside", j),
				"%s is the outside address of the static mapping for %s (static_mappings[%d])", r.Outside.Addr(), c.StaticMappings[j].Inside, j))
		}
		if j, ok := fwdOut[fwdEnd{r.Proto, r.Outside}]; ok {
			add(conflictErr(f, fmt.Sprintf("port_forwards[%d]", j),
				"%s %s is already forwarded to %s (port_forwards[%d])", r.Proto, r.Outside, c.PortForwards[j].Inside, j))
		} else {
			fwdOut[fwdEnd{r.Proto, r.Outside}] = i
		}
		// Outbound packets from a forwarded inside endpoint are translated
		// by its rule; two rules for one inside endpoint would make the
		// source address ambiguous.
		if j, ok := fwdIn[fwdEnd{r.Proto, r.Inside}]; ok {
			add(conflictErr(f+".inside", fmt.Sprintf("port_forwards[%d].inside", j),
				"%s %s is already the target of the forward from %s (port_forwards[%d])", r.Proto, r.Inside, c.PortForwards[j].Outside, j))
		} else {
			fwdIn[fwdEnd{r.Proto, r.Inside}] = i
		}
	}
}

func (c *Config) isInside(a netip.Addr) bool {
	_, k := c.insidePrefixOverlapping(netip.PrefixFrom(a, a.BitLen()))
	return k >= 0
}

// insidePrefixOverlapping returns the first inside prefix that shares an
// address with p, and its index, or -1. Checking every address of p, not
// only its first: a pool 10.0.0.0/16 overlaps the inside prefix
// 10.0.5.0/24.
func (c *Config) insidePrefixOverlapping(p netip.Prefix) (netip.Prefix, int) {
	for k, q := range c.InsidePrefixes {
		if q.IsValid() && q.Overlaps(p) {
			return q, k
		}
	}
	return netip.Prefix{}, -1
}

// ownedPrefix is a pool prefix Validate has seen, for overlap checks.
type ownedPrefix struct {
	p     netip.Prefix
	pool  string
	field string
}

// prefixAddrs yields every address of an IPv4 prefix.
func prefixAddrs(p netip.Prefix) func(func(netip.Addr) bool) {
	return func(yield func(netip.Addr) bool) {
		a := p.Addr()
		n := uint64(1) << (32 - p.Bits())
		for i := uint64(0); i < n; i++ {
			if !yield(a) {
				return
			}
			a = a.Next()
		}
	}
}

// Notices returns remarks about legal choices an operator should know about,
// for natd to log at start-up and on reload.
func (c *Config) Notices() []string {
	var out []string
	for _, p := range []Proto{TCP, UDP} {
		if r := c.Ports[p]; r.Min >= 1024 {
			out = append(out, fmt.Sprintf(
				"ports.%s: range %d-%d excludes 0-1023, so well-known source ports are mapped into it "+
					"(RFC 4787 REQ-3a recommends mapping them into 0-1023; add ports below 1024 to the range to do so)",
				p, r.Min, r.Max))
		}
	}
	if c.Mapping == AddressAndPortDependent {
		out = append(out, "mapping: address-and-port-dependent (NAT44-ED style): external ports overlap across destinations; "+
			"RFC 4787 REQ-1 asks for endpoint-independent mapping")
	}
	return out
}
