// Package export turns the NAT engine's events into records for the
// operator's collectors: IPFIX (RFC 7011, with the NAT information
// elements of RFC 8158; package ipfix) and syslog (RFC 5424; package
// syslog). Both formats carry the same fields, named after the IPFIX
// information elements (docs/cgn.md).
//
// Events reach an exporter from the event exporter's drain goroutine
// (mgmt/events), which hands each drained batch to every Sink without
// blocking: a Queue copies the events into a bounded channel and counts
// the ones that do not fit. A slow or unreachable collector therefore
// costs counted records, never packets and never the JSON log.
package export

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
)

// NAT event values of the IANA "natEvent Values" registry (RFC 8158
// section 4.1 and its IANA considerations).
const (
	NATAddressesExhausted = 3
	NAT44SessionCreate    = 4
	NAT44SessionDelete    = 5
	NATPortsExhausted     = 12
	NATQuotaExceeded      = 13
	AddressBindingCreate  = 14
	AddressBindingDelete  = 15
	PortBlockAllocation   = 16
	PortBlockDeallocation = 17
)

// natQuotaExceededEvent values (IANA registry, RFC 8158 section 4.1.4).
const (
	QuotaMaxSessionEntries = 1
	QuotaMaxEntriesPerUser = 3
)

// Kind is the shape of a record: which fields it carries. Each kind has
// its own IPFIX template (ipfix.TemplateID).
type Kind uint8

const (
	KindNone    Kind = iota
	KindSession      // NAT44 session create and delete
	KindBinding      // address binding create and delete
	KindBlock        // port block allocation and de-allocation
	KindAddrExhausted
	KindPortsExhausted
	KindQuota
	NumKinds
)

// Record is one exported record: an event in IPFIX terms. Fields a kind
// does not carry are zero.
type Record struct {
	Kind Kind
	// TimeMs is observationTimeMilliseconds: when the event happened
	// (the worker's batch clock), Unix milliseconds.
	TimeMs int64
	// NATEvent is natEvent (IE 230).
	NATEvent uint8
	// Proto is protocolIdentifier (IE 4): 6, 17 or 1.
	Proto uint8
	// Src and SrcPort are sourceIPv4Address (IE 8) and
	// sourceTransportPort (IE 7): the subscriber's inside endpoint.
	Src     [4]byte
	SrcPort uint16
	// PostSrc and PostSrcPort are postNATSourceIPv4Address (IE 225) and
	// postNAPTSourceTransportPort (IE 227): the outside endpoint.
	PostSrc     [4]byte
	PostSrcPort uint16
	// Dst and DstPort are destinationIPv4Address (IE 12) and
	// destinationTransportPort (IE 11): the remote endpoint, zero unless
	// natd logs destinations.
	Dst     [4]byte
	DstPort uint16
	// PortStart and PortEnd are portRangeStart and portRangeEnd (IEs 361,
	// 362) of a port block.
	PortStart, PortEnd uint16
	// Quota is natQuotaExceededEvent (IE 466) and Limit
	// maxEntriesPerUser (IE 473) or maxSessionEntries (IE 471).
	Quota uint32
	Limit uint32
	// Name is xnat's name of the event (syslog's event= key).
	Name string
}

// FromEvent converts an engine event; ok is false for events that have no
// record (none today).
func FromEvent(ev *nat.Event) (Record, bool) {
	r := Record{
		TimeMs:  ev.UnixNano / 1e6,
		Proto:   ev.Proto.Number(),
		Src:     ev.InsideAddr,
		SrcPort: ev.InsidePort,
		PostSrc: ev.OutsideAddr,
		Name:    ev.Type.String(),
	}
	switch ev.Type {
	case nat.SessionCreated, nat.SessionDeleted:
		r.Kind, r.NATEvent = KindSession, NAT44SessionCreate
		if ev.Type == nat.SessionDeleted {
			r.NATEvent = NAT44SessionDelete
		}
		r.PostSrcPort, r.Dst, r.DstPort = ev.OutsidePort, ev.RemoteAddr, ev.RemotePort
	case nat.AddressBound, nat.AddressReleased:
		r.Kind, r.NATEvent = KindBinding, AddressBindingCreate
		if ev.Type == nat.AddressReleased {
			r.NATEvent = AddressBindingDelete
		}
		r.Proto, r.SrcPort = 0, 0
	case nat.BlockAllocated, nat.BlockReleased:
		r.Kind, r.NATEvent = KindBlock, PortBlockAllocation
		if ev.Type == nat.BlockReleased {
			r.NATEvent = PortBlockDeallocation
		}
		r.Proto, r.SrcPort = 0, 0
		r.PortStart, r.PortEnd = ev.OutsidePort, ev.PortEnd
	case nat.AddressesExhausted:
		r.Kind, r.NATEvent = KindAddrExhausted, NATAddressesExhausted
	case nat.PortsExhausted:
		r.Kind, r.NATEvent = KindPortsExhausted, NATPortsExhausted
	case nat.QuotaExceeded, nat.TableFull:
		r.Kind, r.NATEvent = KindQuota, NATQuotaExceeded
		r.Quota, r.Limit = QuotaMaxEntriesPerUser, ev.SessionCount
		if ev.Type == nat.TableFull || drop.Reason(ev.Reason) == drop.TableFull {
			r.Quota = QuotaMaxSessionEntries
		}
	default:
		return Record{}, false
	}
	return r, true
}
