package nat

// Proto is a protocol the NAT translates, used as an array index.
type Proto uint8

const (
	TCP Proto = iota
	UDP
	ICMP
	NumProtos
)

// IP protocol numbers.
const (
	ipProtoICMP = 1
	ipProtoTCP  = 6
	ipProtoUDP  = 17
)

// Number returns the IP protocol number.
func (p Proto) Number() uint8 {
	switch p {
	case TCP:
		return ipProtoTCP
	case UDP:
		return ipProtoUDP
	default:
		return ipProtoICMP
	}
}

// ProtoOfNumber maps an IP protocol number to a Proto; ok is false for
// protocols the NAT does not translate. With Proto's String it is the one
// place that names a protocol number (natctl's drop samples use it too).
func ProtoOfNumber(n uint8) (Proto, bool) {
	switch n {
	case ipProtoTCP:
		return TCP, true
	case ipProtoUDP:
		return UDP, true
	case ipProtoICMP:
		return ICMP, true
	}
	return 0, false
}
