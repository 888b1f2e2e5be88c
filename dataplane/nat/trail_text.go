package nat

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/internal/enumtext"
)

// Rendering of trails, for the management plane only: workers write codes
// and numbers (trail.go); words are made here.

var codeStage = [numCodes]string{
	CodeParsed: "parse", CodeParseFailed: "parse",
	CodeMartian: "route", CodeNotInside: "route", CodeForUs: "route", CodeInsideRoute: "route",
	CodeOutbound: "route", CodeInbound: "route", CodeNotPublic: "route", CodeTTLExpired: "route",
	CodeICMPError: "route", CodeLaterFrag: "route",
	CodeSessionHit: "session", CodeSessionMiss: "session",
	CodeForwardRule: "mapping", CodeStaticRule: "mapping", CodeEIMExisting: "mapping", CodeEIMNew: "mapping",
	CodeAPDMNew: "mapping", CodeNoMapping: "mapping", CodeReplyOnly: "mapping", CodeNoInboundICMP: "mapping",
	CodeAddrPaired: "address", CodeAddrNew: "address", CodeAddrRepair: "address", CodeNoAddress: "address",
	CodePortKept: "port", CodePortRandom: "port", CodePortOverlap: "port",
	CodeFilterEIF: "filter", CodeFilterADFOK: "filter", CodeFilterADFDeny: "filter", CodeFilterAPDF: "filter",
	CodeFilterNotSYN: "filter", CodePermNew: "filter",
	CodeQuotaOK: "quota", CodeQuotaSessions: "quota", CodeQuotaPorts: "quota", CodeInboundLimit: "quota",
	CodeCreate: "session", CodeRewriteSrc: "rewrite", CodeRewriteDst: "rewrite", CodeHairpin: "route",
	CodeNextHop: "next-hop", CodeTransmit: "transmit", CodeICMPSent: "icmp", CodeHeld: "held",
	CodeDrop: "drop", CodeWouldPass: "verdict", CodeWouldDrop: "verdict", CodeFragmented: "transmit",
}

// Stage returns the pipeline stage the step belongs to ("parse",
// "session", "mapping", ...).
func (s Step) Stage() string { return enumtext.Or(codeStage[:], s.Code, "unknown") }

func ap(a [4]byte, p uint16) string { return netip.AddrPortFrom(netip.AddrFrom4(a), p).String() }
func ad(a [4]byte) string           { return netip.AddrFrom4(a).String() }

func protoName(n uint8) string {
	if p, ok := ProtoOfNumber(n); ok {
		return p.String()
	}
	return fmt.Sprintf("proto %d", n)
}

func tcpFlagString(f uint8) string {
	var b strings.Builder
	for i, c := range "FSRPAU" {
		if f&(1<<i) != 0 {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// Text renders the step on one line, naming the rule or the RFC behaviour
// that decided.
func (s Step) Text() string { return s.TextPools(nil) }

// The texts of the steps that say the same every time, and of those that
// name address A alone (their one %s); TextPools writes the rest case by
// case.
var (
	fixedTexts = [numCodes]string{
		CodeSessionMiss:   "miss",
		CodeEIMNew:        "new endpoint-independent mapping (RFC 4787 REQ-1)",
		CodeAPDMNew:       "new address-and-port-dependent mapping (mapping: address_and_port_dependent)",
		CodeReplyOnly:     "ICMP query that is not a request: only requests open a mapping (RFC 5508 3.1)",
		CodeNoInboundICMP: "ICMP request to a dynamic address: no mapping to follow (RFC 5508 3.1)",
		CodeNoAddress:     "no pool address can take a new subscriber: address_exhausted",
		CodeFilterEIF:     "endpoint-independent filtering: anyone may reach the mapping (RFC 4787 REQ-8)",
		CodeFilterNotSYN:  "dropped: filtered, only a lone TCP SYN opens a connection from outside (RFC 5382)",
		CodeCreate:        "new session",
	}
	addrTexts = [numCodes]string{
		CodeNotInside:   "source %s is in no inside prefix",
		CodeForUs:       "to the appliance's own address %s: not forwarded",
		CodeInsideRoute: "to inside network %s: routed without translation",
		CodeInbound:     "inbound to public address %s: translate the destination",
		CodeNotPublic:   "to %s, not an address this NAT answers for",
		CodeFilterADFOK: "address-dependent filtering: the mapping has sent to %s (RFC 4787 REQ-8)",
		CodeHairpin:     "%s is one of our public addresses: hairpinned back inside (RFC 4787 REQ-9)",
	}
)

// TextPools is Text naming pools by pools, the names of Config.Pools.
func (s Step) TextPools(pools []string) string {
	if t := enumtext.Or(fixedTexts[:], s.Code, ""); t != "" {
		return t
	}
	if f := enumtext.Or(addrTexts[:], s.Code, ""); f != "" {
		return fmt.Sprintf(f, ad(s.A))
	}
	switch s.Code {
	case CodeParsed:
		t := fmt.Sprintf("%s %s -> %s, %d bytes", protoName(s.Proto), ap(s.A, s.PA), ap(s.B, s.PB), s.Y)
		if s.Proto == ipProtoTCP {
			t += ", flags " + tcpFlagString(uint8(s.X))
		}
		return t
	case CodeParseFailed:
		return fmt.Sprintf("failed: %s (%d bytes)", s.Reason, s.Y)
	case CodeMartian:
		return fmt.Sprintf("martian address in %s -> %s", ad(s.A), ad(s.B))
	case CodeOutbound:
		return fmt.Sprintf("outbound %s -> %s: translate the source", ad(s.A), ad(s.B))
	case CodeTTLExpired:
		return fmt.Sprintf("TTL %d expires here: Time Exceeded (RFC 1812 5.3.1)", s.X)
	case CodeICMPError:
		return fmt.Sprintf("ICMP error about %s %s -> %s: translated by that packet's session (RFC 5508 REQ-3)",
			protoName(s.Proto), ap(s.A, s.PA), ap(s.B, s.PB))
	case CodeLaterFrag:
		return fmt.Sprintf("later fragment (IP ID %d): follows its first fragment (RFC 4787 REQ-14)", s.X)
	case CodeSessionHit:
		return fmt.Sprintf("hit: session %d, translates to %s", s.X, ap(s.A, s.PA))
	case CodeForwardRule:
		return fmt.Sprintf("port forward %s <-> inside %s", ap(s.A, s.PA), ap(s.B, s.PB))
	case CodeStaticRule:
		return fmt.Sprintf("static mapping %s <-> inside %s, ports kept", ad(s.A), ad(s.B))
	case CodeEIMExisting:
		return fmt.Sprintf("existing endpoint-independent mapping %s (RFC 4787 REQ-1: same mapping for every destination)", ap(s.A, s.PA))
	case CodeNoMapping:
		return fmt.Sprintf("no mapping, port forward or static mapping for %s", ap(s.B, s.PB))
	case CodeAddrPaired:
		return fmt.Sprintf("%s%s, paired with this subscriber (RFC 4787 REQ-2)", ad(s.A), poolText(pools, s.X))
	case CodeAddrNew:
		return fmt.Sprintf("%s%s, a new pairing for this subscriber, chosen by hashing its address (RFC 4787 REQ-2)", ad(s.A), poolText(pools, s.X))
	case CodeAddrRepair:
		return fmt.Sprintf("%s%s: the paired address left the pools, so the subscriber is paired again", ad(s.A), poolText(pools, s.X))
	case CodePortKept:
		return fmt.Sprintf("%d kept (RFC 4787 REQ-3 port preservation)", s.PA)
	case CodePortRandom:
		return fmt.Sprintf("%d taken or out of range: a random free port in %d-%d from this worker's share (RFC 6056)", s.PA, s.X, s.Y)
	case CodePortOverlap:
		return fmt.Sprintf("no free port in %d-%d: shares a port in use (address-and-port-dependent mapping)", s.X, s.Y)
	case CodeFilterADFDeny:
		return fmt.Sprintf("dropped: filtered, address-dependent filtering and no permission for %s (the mapping %s never sent to it)", ad(s.A), ap(s.B, s.PB))
	case CodeFilterAPDF:
		return fmt.Sprintf("dropped: filtered, address-and-port-dependent filtering admits only the sessions' own remote endpoints, not %s", ap(s.A, s.PA))
	case CodePermNew:
		return fmt.Sprintf("address-dependent filtering: %s may answer to %s from now on", ad(s.A), ap(s.B, s.PB))
	case CodeQuotaOK:
		if s.Y == 0 {
			return fmt.Sprintf("subscriber %s has %d sessions (no limit)", ad(s.A), s.X)
		}
		return fmt.Sprintf("subscriber %s has %d sessions (limit %d)", ad(s.A), s.X, s.Y)
	case CodeQuotaSessions:
		return fmt.Sprintf("dropped: subscriber %s is at its session limit %d (RFC 6888 REQ-5)", ad(s.A), s.Y)
	case CodeQuotaPorts:
		return fmt.Sprintf("dropped: subscriber %s holds %d ports, its limit is %d (RFC 6888 REQ-4)", ad(s.A), s.X, s.Y)
	case CodeInboundLimit:
		return fmt.Sprintf("dropped: %d sessions opened from outside, limits.inbound_sessions is %d", s.X, s.Y)
	case CodeRewriteSrc:
		return fmt.Sprintf("source %s -> %s", ap(s.A, s.PA), portOrRandom(s.B, s.PB))
	case CodeRewriteDst:
		return fmt.Sprintf("destination %s -> %s", ap(s.A, s.PA), ap(s.B, s.PB))
	case CodeNextHop:
		return fmt.Sprintf("%s via %02x:%02x:%02x:%02x:%02x:%02x", s.Side, s.A[0], s.A[1], s.A[2], s.A[3], byte(s.PA>>8), byte(s.PA))
	case CodeTransmit:
		return "queued on " + s.Side.String()
	case CodeFragmented:
		return fmt.Sprintf("larger than the egress MTU: sent as %d fragments", s.X)
	case CodeICMPSent:
		return "ICMP error sent back on " + s.Side.String()
	case CodeHeld:
		if s.X > 0 {
			return "held until the next hop's neighbour resolves"
		}
		return "held until its first fragment arrives (RFC 4787 REQ-14)"
	case CodeDrop:
		return "dropped: " + s.Reason.String()
	case CodeWouldPass:
		return "would be forwarded on " + s.Side.String()
	case CodeWouldDrop:
		return "would be dropped: " + s.Reason.String()
	}
	return fmt.Sprintf("code %d", s.Code)
}

func poolText(pools []string, x uint32) string {
	if x == 0 || int(x) > len(pools) {
		return ""
	}
	return " from pool " + pools[x-1]
}

func portOrRandom(a [4]byte, p uint16) string {
	if p == 0 {
		return ad(a) + ":(random)"
	}
	return ap(a, p)
}

// Verdict returns the trail's conclusion: the drop reason, or drop.None if
// the packet passed (or would).
func (t *Trail) Verdict() drop.Reason {
	for _, s := range t.List() {
		switch s.Code {
		case CodeDrop, CodeWouldDrop:
			return s.Reason
		}
	}
	return drop.None
}

var codeNames = [numCodes]string{
	CodeNone: "none", CodeParsed: "parsed", CodeParseFailed: "parse_failed",
	CodeMartian: "martian", CodeNotInside: "not_inside", CodeForUs: "for_us", CodeInsideRoute: "inside_route",
	CodeOutbound: "outbound", CodeInbound: "inbound", CodeNotPublic: "not_public", CodeTTLExpired: "ttl_expired",
	CodeICMPError: "icmp_error", CodeLaterFrag: "later_fragment",
	CodeSessionHit: "session_hit", CodeSessionMiss: "session_miss",
	CodeForwardRule: "port_forward", CodeStaticRule: "static_mapping", CodeEIMExisting: "eim_existing",
	CodeEIMNew: "eim_new", CodeAPDMNew: "apdm_new", CodeNoMapping: "no_mapping", CodeReplyOnly: "icmp_reply_only",
	CodeNoInboundICMP: "no_inbound_icmp",
	CodeAddrPaired:    "address_paired", CodeAddrNew: "address_new", CodeAddrRepair: "address_repaired", CodeNoAddress: "no_address",
	CodePortKept: "port_kept", CodePortRandom: "port_random", CodePortOverlap: "port_overlap",
	CodeFilterEIF: "filter_eif", CodeFilterADFOK: "filter_adf_permitted", CodeFilterADFDeny: "filter_adf_denied",
	CodeFilterAPDF: "filter_apdf_denied", CodeFilterNotSYN: "filter_not_syn", CodePermNew: "permission_new",
	CodeQuotaOK: "quota_ok", CodeQuotaSessions: "quota_sessions", CodeQuotaPorts: "quota_ports", CodeInboundLimit: "inbound_limit",
	CodeCreate: "session_create", CodeRewriteSrc: "rewrite_source", CodeRewriteDst: "rewrite_destination",
	CodeHairpin: "hairpin", CodeNextHop: "next_hop", CodeTransmit: "transmit", CodeICMPSent: "icmp_sent",
	CodeHeld: "held", CodeDrop: "drop", CodeWouldPass: "would_forward", CodeWouldDrop: "would_drop", CodeFragmented: "fragmented",
}

// String returns the code's stable snake_case name, for -o json.
func (c Code) String() string { return enumtext.Or(codeNames[:], c, "unknown") }
