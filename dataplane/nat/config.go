package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
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
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks the config and returns every problem found, each naming
// its field, joined with errors.Join.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }

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

	public := map[netip.Addr]string{} // address -> what claims it
	claim := func(a netip.Addr, who, field string) {
		if prev, ok := public[a]; ok {
			add(fieldErr(field, "%s is already used by %s", a, prev))
			return
		}
		public[a] = who
	}
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
			if !p.IsValid() || !p.Addr().Is4() {
				add(fieldErr(af, "not a valid IPv4 prefix or address"))
				continue
			}
			if p.Bits() < 16 {
				add(fieldErr(af, "%s is larger than a /16", p))
				continue
			}
			if c.isInside(p.Addr()) {
				add(fieldErr(af, "%s overlaps an inside prefix", p))
			}
			for a := range prefixAddrs(p.Masked()) {
				total++
				claim(a, "pool "+pool.Name, af)
			}
		}
	}
	if len(c.Pools) == 0 && len(c.StaticMappings) == 0 && len(c.PortForwards) == 0 {
		add(fieldErr("pools", "at least one pool, static mapping or port forward is required"))
	}
	if total > MaxPoolAddresses {
		add(fieldErr("pools", "%d pool addresses, at most %d", total, MaxPoolAddresses))
	}

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
	if c.OnExhaustion > ReplyAdminProhibited {
		add(fieldErr("on_exhaustion", "unknown reply %d", c.OnExhaustion))
	}

	insideStatic := map[netip.Addr]bool{}
	for i, m := range c.StaticMappings {
		f := fmt.Sprintf("static_mappings[%d]", i)
		if !m.Inside.Is4() || !m.Outside.Is4() {
			add(fieldErr(f, "inside and outside must be IPv4 addresses"))
			continue
		}
		if !c.isInside(m.Inside) {
			add(fieldErr(f+".inside", "%s is not in an inside prefix", m.Inside))
		}
		if insideStatic[m.Inside] {
			add(fieldErr(f+".inside", "%s already has a static mapping", m.Inside))
		}
		insideStatic[m.Inside] = true
		claim(m.Outside, "static mapping for "+m.Inside.String(), f+".outside")
	}
	fwd := map[[3]uint32]bool{}
	for i, r := range c.PortForwards {
		f := fmt.Sprintf("port_forwards[%d]", i)
		if r.Proto != TCP && r.Proto != UDP {
			add(fieldErr(f+".proto", "port forwards are for tcp or udp"))
			continue
		}
		if !r.Outside.Addr().Is4() || !r.Inside.Addr().Is4() || r.Outside.Port() == 0 || r.Inside.Port() == 0 {
			add(fieldErr(f, "outside and inside must be IPv4 address:port with a non-zero port"))
			continue
		}
		if !c.isInside(r.Inside.Addr()) {
			add(fieldErr(f+".inside", "%s is not in an inside prefix", r.Inside.Addr()))
		}
		if c.isInside(r.Outside.Addr()) {
			add(fieldErr(f+".outside", "%s is in an inside prefix", r.Outside.Addr()))
		}
		if who, ok := public[r.Outside.Addr()]; ok && strings.HasPrefix(who, "static mapping") {
			add(fieldErr(f+".outside", "%s is used by a %s", r.Outside.Addr(), who))
		}
		k := [3]uint32{uint32(r.Proto), addrU32(r.Outside.Addr()), uint32(r.Outside.Port())}
		if fwd[k] {
			add(fieldErr(f, "%s/%s is forwarded twice", r.Proto, r.Outside))
		}
		fwd[k] = true
	}
	return errors.Join(errs...)
}

func (c *Config) isInside(a netip.Addr) bool {
	for _, p := range c.InsidePrefixes {
		if p.IsValid() && p.Contains(a) {
			return true
		}
	}
	return false
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

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
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
