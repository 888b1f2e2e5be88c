package header

import "encoding/binary"

// EtherType values (IEEE 802.3, IANA "IEEE 802 Numbers").
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86DD
	// EtherTypeVLAN is the 802.1Q customer tag (C-TAG) TPID.
	EtherTypeVLAN = 0x8100
	// EtherTypeQinQ is the 802.1ad service tag (S-TAG) TPID. Parse accepts
	// it as a single tag, like EtherTypeVLAN, for links where the provider
	// tag is the only one left on the wire.
	EtherTypeQinQ = 0x88A8
)

// Ethernet II header layout.
const (
	ethDst  = 0
	ethSrc  = 6
	ethType = 12

	// EthernetHeaderLen is the length of an untagged Ethernet II header.
	EthernetHeaderLen = 14
)

// Ethernet is a view of an Ethernet II header: destination MAC, source MAC,
// EtherType. When the frame is VLAN-tagged the EtherType field holds the tag
// protocol identifier and the VLAN view follows.
type Ethernet []byte

// Dst returns the destination MAC address.
func (b Ethernet) Dst() [6]byte { return [6]byte(b[ethDst : ethDst+6]) }

// Src returns the source MAC address.
func (b Ethernet) Src() [6]byte { return [6]byte(b[ethSrc : ethSrc+6]) }

// Type returns the EtherType (or the TPID of a VLAN tag).
func (b Ethernet) Type() uint16 { return binary.BigEndian.Uint16(b[ethType:]) }

// SetDst sets the destination MAC address.
func (b Ethernet) SetDst(m [6]byte) { copy(b[ethDst:ethDst+6], m[:]) }

// SetSrc sets the source MAC address.
func (b Ethernet) SetSrc(m [6]byte) { copy(b[ethSrc:ethSrc+6], m[:]) }

// EthernetAddrs is an Ethernet header's two addresses as they lie in it:
// destination, then source. Set both with SetAddrs.
type EthernetAddrs [12]byte

// MakeEthernetAddrs returns the addresses dst and src in header order.
func MakeEthernetAddrs(dst, src [6]byte) EthernetAddrs {
	var a EthernetAddrs
	copy(a[ethDst:], dst[:])
	copy(a[ethSrc:], src[:])
	return a
}

// SetAddrs sets the destination and source MAC addresses at once: the
// next hop's and the egress interface's, which a burst's frames to one
// next hop share.
func (b Ethernet) SetAddrs(a *EthernetAddrs) { *(*EthernetAddrs)(b[:len(a)]) = *a }

// SetType sets the EtherType.
func (b Ethernet) SetType(t uint16) { binary.BigEndian.PutUint16(b[ethType:], t) }

// 802.1Q tag layout, after the TPID that sits in the Ethernet type field.
const (
	vlanTCI  = 0
	vlanType = 2

	// VLANTagLen is the length a tag adds to an Ethernet header (TPID plus
	// TCI); VLAN views are the last 4 bytes of that: TCI and the
	// encapsulated EtherType.
	VLANTagLen = 4
)

// VLAN is a view of the 4 bytes that follow a VLAN TPID in a tagged frame:
// the tag control information (PCP, DEI, VLAN ID) and the encapsulated
// EtherType, as in Linux's struct vlan_hdr. Parse handles one tag level
// (TPID 0x8100, or 0x88A8 standing alone); a second, stacked tag is reported
// as drop.NotIPv4, since the appliance is not configured for Q-in-Q and the
// XDP program hands such frames to the kernel.
type VLAN []byte

// TCI returns the whole tag control information field.
func (b VLAN) TCI() uint16 { return binary.BigEndian.Uint16(b[vlanTCI:]) }

// ID returns the 12-bit VLAN identifier.
func (b VLAN) ID() uint16 { return b.TCI() & 0x0FFF }

// PCP returns the 3-bit priority code point.
func (b VLAN) PCP() uint8 { return uint8(b.TCI() >> 13) }

// DEI returns the drop eligible indicator.
func (b VLAN) DEI() bool { return b.TCI()&0x1000 != 0 }

// EtherType returns the encapsulated EtherType.
func (b VLAN) EtherType() uint16 { return binary.BigEndian.Uint16(b[vlanType:]) }

// SetTCI sets the whole tag control information field.
func (b VLAN) SetTCI(tci uint16) { binary.BigEndian.PutUint16(b[vlanTCI:], tci) }

// SetID sets the VLAN identifier, keeping PCP and DEI. Bits of id above the
// low 12 are ignored.
func (b VLAN) SetID(id uint16) { b.SetTCI(b.TCI()&0xF000 | id&0x0FFF) }

// SetEtherType sets the encapsulated EtherType.
func (b VLAN) SetEtherType(t uint16) { binary.BigEndian.PutUint16(b[vlanType:], t) }
