package header

import "encoding/binary"

// ARP packet layout for Ethernet hardware and IPv4 protocol addresses
// (RFC 826).
const (
	arpHType = 0
	arpPType = 2
	arpHLen  = 4
	arpPLen  = 5
	arpOp    = 6
	arpSHA   = 8
	arpSPA   = 14
	arpTHA   = 18
	arpTPA   = 24

	// ARPLen is the length of an Ethernet/IPv4 ARP packet.
	ARPLen = 28

	// ARPHardwareEthernet is the hardware type of Ethernet (RFC 826
	// ar$hrd, IANA "Hardware Types").
	ARPHardwareEthernet = 1

	ARPRequest = 1
	ARPReply   = 2
)

// ARP is a view of an Ethernet/IPv4 ARP packet. Parse reports ARP frames as
// drop.NotIPv4 and leaves them alone (in the deployed appliance the XDP
// program passes ARP to the kernel); the view is for the neighbour resolver,
// which must call IsValid before using any other accessor.
type ARP []byte

// IsValid reports whether b is long enough and describes Ethernet addresses
// and IPv4 protocol addresses, the only kind of ARP the accessors support.
func (b ARP) IsValid() bool {
	return len(b) >= ARPLen &&
		b.HardwareType() == ARPHardwareEthernet &&
		b.ProtocolType() == EtherTypeIPv4 &&
		b[arpHLen] == 6 && b[arpPLen] == 4
}

// HardwareType returns ar$hrd.
func (b ARP) HardwareType() uint16 { return binary.BigEndian.Uint16(b[arpHType:]) }

// ProtocolType returns ar$pro.
func (b ARP) ProtocolType() uint16 { return binary.BigEndian.Uint16(b[arpPType:]) }

// Op returns the opcode (ARPRequest or ARPReply).
func (b ARP) Op() uint16 { return binary.BigEndian.Uint16(b[arpOp:]) }

// SenderMAC returns the sender hardware address.
func (b ARP) SenderMAC() [6]byte { return [6]byte(b[arpSHA : arpSHA+6]) }

// SenderIP returns the sender protocol address.
func (b ARP) SenderIP() [4]byte { return [4]byte(b[arpSPA : arpSPA+4]) }

// TargetMAC returns the target hardware address.
func (b ARP) TargetMAC() [6]byte { return [6]byte(b[arpTHA : arpTHA+6]) }

// TargetIP returns the target protocol address.
func (b ARP) TargetIP() [4]byte { return [4]byte(b[arpTPA : arpTPA+4]) }

// Encode writes a complete Ethernet/IPv4 ARP packet of the given opcode into
// b[:ARPLen].
func (b ARP) Encode(op uint16, senderMAC [6]byte, senderIP [4]byte, targetMAC [6]byte, targetIP [4]byte) {
	binary.BigEndian.PutUint16(b[arpHType:], ARPHardwareEthernet)
	binary.BigEndian.PutUint16(b[arpPType:], EtherTypeIPv4)
	b[arpHLen] = 6
	b[arpPLen] = 4
	binary.BigEndian.PutUint16(b[arpOp:], op)
	copy(b[arpSHA:arpSHA+6], senderMAC[:])
	copy(b[arpSPA:arpSPA+4], senderIP[:])
	copy(b[arpTHA:arpTHA+6], targetMAC[:])
	copy(b[arpTPA:arpTPA+4], targetIP[:])
}
