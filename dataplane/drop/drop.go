// Package drop names every reason the dataplane may discard a frame.
//
// It sits underneath the whole pipeline: the header parser, the NAT engine,
// the neighbour resolver and the port layer all report a discarded frame as a
// Reason, and per-worker counters (nat.Counters) are plain arrays indexed by
// it. Nothing in the dataplane drops a frame without naming one of these
// reasons, so the sum of the drop counters always explains the gap between
// frames received and frames sent.
package drop

import "github.com/xnat/xnat/internal/enumtext"

// Reason is why a frame was discarded. The zero value means "not dropped".
type Reason uint8

// Keep this list append-only within a release: the management API exports
// the numeric values, and docs/operations.md documents each one.
const (
	None Reason = iota

	// Parsing (dataplane/header).
	Truncated           // frame shorter than the headers it claims
	NotIPv4             // EtherType is neither IPv4 nor a VLAN tag carrying IPv4
	BadVersion          // IPv4 version field is not 4
	BadIHL              // IHL < 5 or header longer than the frame
	BadTotalLength      // IPv4 total length < IHL*4 or larger than the frame
	BadHeaderChecksum   // IPv4 header checksum does not verify
	TTLExpired          // TTL would reach zero on forwarding
	UnsupportedProtocol // not TCP, UDP or ICMP
	NonFirstFragment    // fragment with offset > 0 and no known mapping
	BadL4Header         // TCP data offset < 5, UDP length lies, L4 header truncated
	BadL4Checksum       // never produced: TCP/UDP checksums are updated incrementally (RFC 1624), not verified, so a bad one reaches the receiver, which drops it; kept so that the values after it keep their numbers
	BadICMPChecksum     // ICMP checksum does not verify
	BadEmbeddedPacket   // ICMP error whose embedded IPv4 header is malformed or its checksum is bad
	UnsupportedICMP     // ICMP type the NAT does not translate
	BadAddress          // martian source or destination (0/8, 127/8, multicast, broadcast)

	// NAT engine (dataplane/nat).
	NoSession          // inbound packet with no mapping and no static rule
	Filtered           // inbound packet refused by the filtering behaviour (RFC 4787 REQ-8)
	PortExhausted      // no free external port in the subscriber's address
	AddressExhausted   // no pool address could be paired with a new subscriber
	SubscriberSessions // per-subscriber session limit (RFC 6888 REQ-5)
	SubscriberPorts    // per-subscriber port limit (RFC 6888 REQ-4)
	TableFull          // session table at capacity; no eviction (RFC 6888 REQ-11)
	NotInside          // inside-side packet whose source is outside every inside prefix
	FragCacheFull      // out-of-order fragment cache full (RFC 4787 REQ-14)
	FragTimeout        // fragment held past the reassembly-free cache timeout
	FragNeeded         // DF set and larger than the egress MTU; ICMP sent back
	Contention         // a mapping was being torn down concurrently; retry bound reached

	// Forwarding and I/O (dataplane/nat's forwarding, dataplane/neigh, ports).
	NoRoute      // no route to the destination
	NeighPending // neighbour unresolved and its wait queue is full
	NeighFailed  // neighbour resolution failed or the wait timed out
	NoFrame      // egress port had no free frame to copy into
	TxFull       // egress TX ring full after retries
	LinkDown     // egress link is down (ENETDOWN, ENXIO)
	NotForwarded // frame addressed to the appliance or unforwardable (e.g. broadcast)

	// NAT engine, hostile input (appended to keep the values above stable).
	InboundSessions  // sessions opened from outside reached limits.inbound_sessions
	RuleSessions     // sessions opened from outside through one forward or static mapping reached limits.inbound_sessions_per_rule
	ErrorForbidden   // would need an ICMP error that RFC 1122 3.2.2 / RFC 1812 4.3.2.7 forbid (about an ICMP error, a later fragment, a broadcast or a non-unicast source)
	ErrorWrongSender // outbound ICMP error whose sender is not the inside host of the session it quotes (RFC 5508 REQ-4)
	FragSourceLimit  // out-of-order fragments of one source exceed its per-source share (RFC 4787 REQ-14a)

	// NumReasons is the number of reasons, for sizing counter arrays.
	NumReasons
)

var names = [NumReasons]string{
	None:                "none",
	Truncated:           "truncated",
	NotIPv4:             "not_ipv4",
	BadVersion:          "bad_version",
	BadIHL:              "bad_ihl",
	BadTotalLength:      "bad_total_length",
	BadHeaderChecksum:   "bad_header_checksum",
	TTLExpired:          "ttl_expired",
	UnsupportedProtocol: "unsupported_protocol",
	NonFirstFragment:    "non_first_fragment",
	BadL4Header:         "bad_l4_header",
	BadL4Checksum:       "bad_l4_checksum",
	BadICMPChecksum:     "bad_icmp_checksum",
	BadEmbeddedPacket:   "bad_embedded_packet",
	UnsupportedICMP:     "unsupported_icmp",
	BadAddress:          "bad_address",
	NoSession:           "no_session",
	Filtered:            "filtered",
	PortExhausted:       "port_exhausted",
	AddressExhausted:    "address_exhausted",
	SubscriberSessions:  "subscriber_session_limit",
	SubscriberPorts:     "subscriber_port_limit",
	TableFull:           "table_full",
	NotInside:           "not_inside",
	FragCacheFull:       "frag_cache_full",
	FragTimeout:         "frag_timeout",
	FragNeeded:          "frag_needed",
	Contention:          "contention",
	NoRoute:             "no_route",
	NeighPending:        "neigh_pending_overflow",
	NeighFailed:         "neigh_failed",
	NoFrame:             "no_frame",
	TxFull:              "tx_full",
	LinkDown:            "link_down",
	NotForwarded:        "not_forwarded",
	InboundSessions:     "inbound_session_limit",
	RuleSessions:        "rule_session_limit",
	ErrorForbidden:      "icmp_error_forbidden",
	ErrorWrongSender:    "icmp_error_wrong_sender",
	FragSourceLimit:     "frag_source_limit",
}

// String returns the stable snake_case name used as the Prometheus label
// value and in the management API.
func (r Reason) String() string { return enumtext.Or(names[:], r, "unknown") }
