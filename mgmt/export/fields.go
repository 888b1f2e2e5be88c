package export

// Information element IDs of the IANA "IPFIX Information Elements"
// registry that records carry.
const (
	IEProtocolIdentifier          = 4
	IESourceTransportPort         = 7
	IESourceIPv4Address           = 8
	IEDestinationTransportPort    = 11
	IEDestinationIPv4Address      = 12
	IEPostNATSourceIPv4Address    = 225
	IEPostNAPTSourceTransportPort = 227
	IENatEvent                    = 230
	IEObservationTimeMilliseconds = 323
	IEPortRangeStart              = 361
	IEPortRangeEnd                = 362
	IEPortRangeStepSize           = 363
	IEPortRangeNumPorts           = 364
	IENatQuotaExceededEvent       = 466
	IEMaxEntriesPerUser           = 473
)

// Field is one information element of a record: its ID, its length in an
// IPFIX record, and its name (the syslog key).
type Field struct {
	ID, Length uint16
	Name       string
}

var (
	fTime     = Field{IEObservationTimeMilliseconds, 8, "observationTimeMilliseconds"}
	fEvent    = Field{IENatEvent, 1, "natEvent"}
	fProto    = Field{IEProtocolIdentifier, 1, "protocolIdentifier"}
	fSrc      = Field{IESourceIPv4Address, 4, "sourceIPv4Address"}
	fSrcPort  = Field{IESourceTransportPort, 2, "sourceTransportPort"}
	fPost     = Field{IEPostNATSourceIPv4Address, 4, "postNATSourceIPv4Address"}
	fPostPort = Field{IEPostNAPTSourceTransportPort, 2, "postNAPTSourceTransportPort"}
	fDst      = Field{IEDestinationIPv4Address, 4, "destinationIPv4Address"}
	fDstPort  = Field{IEDestinationTransportPort, 2, "destinationTransportPort"}
	fStart    = Field{IEPortRangeStart, 2, "portRangeStart"}
	fEnd      = Field{IEPortRangeEnd, 2, "portRangeEnd"}
	fStep     = Field{IEPortRangeStepSize, 2, "portRangeStepSize"}
	fNum      = Field{IEPortRangeNumPorts, 2, "portRangeNumPorts"}
	fQuota    = Field{IENatQuotaExceededEvent, 4, "natQuotaExceededEvent"}
	fMaxUser  = Field{IEMaxEntriesPerUser, 4, "maxEntriesPerUser"}
)

// kindFields are the fields of each record kind, in record order: the
// IPFIX templates and the syslog keys (docs/cgn.md). They follow the
// NAT44 templates of RFC 8158 section 4.1, with the inside address in
// every record so that each names its subscriber.
var kindFields = [NumKinds][]Field{
	KindSession:        {fTime, fEvent, fProto, fSrc, fSrcPort, fPost, fPostPort, fDst, fDstPort},
	KindBinding:        {fTime, fEvent, fSrc, fPost},
	KindBlock:          {fTime, fEvent, fSrc, fPost, fStart, fEnd, fStep, fNum},
	KindAddrExhausted:  {fTime, fEvent, fProto, fSrc},
	KindPortsExhausted: {fTime, fEvent, fProto, fSrc, fPost},
	KindQuota:          {fTime, fEvent, fQuota, fSrc, fMaxUser},
}

// Fields returns the fields of kind k.
func Fields(k Kind) []Field { return kindFields[k] }

func be32(a [4]byte) uint64 {
	return uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
}

// Value returns field id of r as a number (addresses in network order).
func (r *Record) Value(id uint16) uint64 {
	switch id {
	case IEObservationTimeMilliseconds:
		return uint64(r.TimeMs)
	case IENatEvent:
		return uint64(r.NATEvent)
	case IEProtocolIdentifier:
		return uint64(r.Proto)
	case IESourceIPv4Address:
		return be32(r.Src)
	case IESourceTransportPort:
		return uint64(r.SrcPort)
	case IEPostNATSourceIPv4Address:
		return be32(r.PostSrc)
	case IEPostNAPTSourceTransportPort:
		return uint64(r.PostSrcPort)
	case IEDestinationIPv4Address:
		return be32(r.Dst)
	case IEDestinationTransportPort:
		return uint64(r.DstPort)
	case IEPortRangeStart:
		return uint64(r.PortStart)
	case IEPortRangeEnd:
		return uint64(r.PortEnd)
	case IEPortRangeStepSize:
		return 1
	case IEPortRangeNumPorts:
		return uint64(r.PortEnd) - uint64(r.PortStart) + 1
	case IENatQuotaExceededEvent:
		return uint64(r.Quota)
	case IEMaxEntriesPerUser:
		return uint64(r.Limit)
	}
	return 0
}

// IsAddress reports whether field id is an IPv4 address.
func IsAddress(id uint16) bool {
	return id == IESourceIPv4Address || id == IEPostNATSourceIPv4Address || id == IEDestinationIPv4Address
}
