package events

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
)

// Record is one line of the event log, as documented in docs/events.md.
// AppendJSON writes it without reflection; Record exists so that consumers
// (natctl, tests) decode lines with encoding/json into a stable type.
type Record struct {
	// Time is RFC 3339 with nanoseconds, UTC.
	Time time.Time `json:"time"`
	// Type is the event type: session_created, session_deleted,
	// address_bound, address_released, ports_exhausted,
	// addresses_exhausted, quota_exceeded, table_full.
	Type string `json:"type"`
	// Protocol is tcp, udp or icmp; absent on address events.
	Protocol string `json:"protocol,omitempty"`
	// Inside, Outside and Remote are "addr:port" ("addr" on address
	// events); absent when unknown. Remote is present only when natd logs
	// destinations.
	Inside  string `json:"inside,omitempty"`
	Outside string `json:"outside,omitempty"`
	Remote  string `json:"remote,omitempty"`
	// Reason qualifies deletions (idle, operator) and exhaustion and quota
	// events (a drop reason name).
	Reason string `json:"reason,omitempty"`
	// Worker is the worker that produced the event. Control-plane events
	// (expiry and operator deletions, and the address releases they cause)
	// report worker 0.
	Worker int `json:"worker"`
	// Sessions is the subscriber's session count on quota events.
	Sessions uint32 `json:"sessions,omitempty"`
	// Ports is a port block's range, "first-last", on block events.
	Ports string `json:"ports,omitempty"`
}

// addressOnly reports whether events of type t name addresses without
// ports (and without a protocol).
func addressOnly(t nat.EventType) bool {
	return t == nat.AddressBound || t == nat.AddressReleased || isBlock(t)
}

func isBlock(t nat.EventType) bool { return t == nat.BlockAllocated || t == nat.BlockReleased }

// ReasonName returns the text of an event's reason, or "" if it has none.
func ReasonName(ev *nat.Event) string {
	if ev.Reason == 0 {
		return ""
	}
	if ev.Type == nat.SessionDeleted {
		switch nat.DeleteReason(ev.Reason) {
		case nat.DeletedIdle:
			return "idle"
		case nat.DeletedByOperator:
			return "operator"
		case nat.DeletedPressure:
			return "early_drop"
		}
		return "unknown"
	}
	return drop.Reason(ev.Reason).String()
}

// ProtocolName returns the event's protocol, or "" for address events.
func ProtocolName(ev *nat.Event) string {
	if addressOnly(ev.Type) {
		return ""
	}
	return ev.Proto.String()
}

// Endpoints returns the event's inside, outside and remote endpoints as
// written in the log ("" when absent).
func Endpoints(ev *nat.Event) (inside, outside, remote string) {
	ao := addressOnly(ev.Type)
	return endpoint(ev.InsideAddr, ev.InsidePort, ao),
		endpoint(ev.OutsideAddr, ev.OutsidePort, ao),
		endpoint(ev.RemoteAddr, ev.RemotePort, ao)
}

func endpoint(a [4]byte, port uint16, addrOnly bool) string {
	if a == ([4]byte{}) {
		return ""
	}
	if addrOnly {
		return netip.AddrFrom4(a).String()
	}
	return netip.AddrPortFrom(netip.AddrFrom4(a), port).String()
}

// ToRecord converts an event to its log record.
func ToRecord(ev *nat.Event) Record {
	in, out, rem := Endpoints(ev)
	r := Record{
		Time:     time.Unix(0, ev.UnixNano).UTC(),
		Type:     ev.Type.String(),
		Protocol: ProtocolName(ev),
		Inside:   in,
		Outside:  out,
		Remote:   rem,
		Reason:   ReasonName(ev),
		Worker:   int(ev.Worker),
	}
	if ev.Type == nat.QuotaExceeded {
		r.Sessions = ev.SessionCount
	}
	if isBlock(ev.Type) {
		r.Ports = strconv.Itoa(int(ev.OutsidePort)) + "-" + strconv.Itoa(int(ev.PortEnd))
	}
	return r
}

// AppendJSON appends ev as one JSON line (with its newline) in the format
// of Record, with fields in a fixed order. Every string it writes is
// generated from fixed names and digits, so nothing needs escaping.
func AppendJSON(b []byte, ev *nat.Event) []byte {
	b = append(b, `{"time":"`...)
	b = time.Unix(0, ev.UnixNano).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":"`...)
	b = append(b, ev.Type.String()...)
	b = append(b, '"')
	if p := ProtocolName(ev); p != "" {
		b = append(b, `,"protocol":"`...)
		b = append(b, p...)
		b = append(b, '"')
	}
	ao := addressOnly(ev.Type)
	b = appendEndpoint(b, `,"inside":"`, ev.InsideAddr, ev.InsidePort, ao)
	b = appendEndpoint(b, `,"outside":"`, ev.OutsideAddr, ev.OutsidePort, ao)
	b = appendEndpoint(b, `,"remote":"`, ev.RemoteAddr, ev.RemotePort, ao)
	if r := ReasonName(ev); r != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, r...)
		b = append(b, '"')
	}
	b = append(b, `,"worker":`...)
	b = strconv.AppendUint(b, uint64(ev.Worker), 10)
	if ev.Type == nat.QuotaExceeded && ev.SessionCount != 0 {
		b = append(b, `,"sessions":`...)
		b = strconv.AppendUint(b, uint64(ev.SessionCount), 10)
	}
	if isBlock(ev.Type) {
		b = append(b, `,"ports":"`...)
		b = strconv.AppendUint(b, uint64(ev.OutsidePort), 10)
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(ev.PortEnd), 10)
		b = append(b, '"')
	}
	return append(b, "}\n"...)
}

func appendEndpoint(b []byte, key string, a [4]byte, port uint16, addrOnly bool) []byte {
	if a == ([4]byte{}) {
		return b
	}
	b = append(b, key...)
	for i, x := range a {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, uint64(x), 10)
	}
	if !addrOnly {
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(port), 10)
	}
	return append(b, '"')
}
