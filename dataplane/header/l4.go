package header

import (
	"encoding/binary"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/drop"
)

// What TCP and UDP have in common, in one place. Both begin with the source
// port and then the destination port (RFC 9293 section 3.1, RFC 768), and
// both protect the ports and, through the pseudo-header, the IPv4 addresses
// with a checksum; they differ only in where that checksum lies and in
// UDP's zero rule. So the parser reads the ports of both the same way, and
// the rewrite of a port quoted in an ICMP error goes through fixL4Sum for
// both. (The rewrite of a packet's own port, setL4, keeps the two apart so
// that the TCP update stays inlined: fixL4Sum is beyond the inlining
// budget.)

// takePorts records the ports of l4, a TCP segment or UDP datagram whose
// header Parse has checked, and its kind.
func (p *Parsed) takePorts(l4 []byte, kind L4Kind) drop.Reason {
	p.SrcPort = binary.BigEndian.Uint16(l4[tcpSrcPort:])
	p.DstPort = binary.BigEndian.Uint16(l4[tcpDstPort:])
	p.L4 = kind
	return drop.None
}

// fixL4Sum fixes the checksum of l4, a TCP segment (udp false) or UDP
// datagram, for a port that changed from oldPort to newPort and an address
// that changed from oldA to newA, with one fold (checksum.UpdateAddrPort),
// and returns the field before and after. l4 must hold the checksum field.
func fixL4Sum(l4 []byte, udp bool, oldA, newA [4]byte, oldPort, newPort uint16) (oc, nc uint16) {
	off := tcpChecksum
	if udp {
		off = udpChecksum
	}
	oc = binary.BigEndian.Uint16(l4[off:])
	if udp {
		// RFC 768: an absent checksum stays absent; a zero is sent as
		// 0xFFFF.
		nc = checksum.UpdateUDPAddrPort(oc, oldA, newA, oldPort, newPort)
	} else {
		nc = checksum.UpdateAddrPort(oc, oldA, newA, oldPort, newPort)
	}
	binary.BigEndian.PutUint16(l4[off:], nc)
	return oc, nc
}

// sumAround returns the sum (initial included) of b with the 16-bit
// checksum field at off taken as zero: the first step of computing a
// checksum from scratch (RFC 1071). It sums around the field rather than
// zeroing it, so the view is only read.
func sumAround(b []byte, off int, initial uint16) uint16 {
	s := checksum.Checksum(b[:off], initial)
	return checksum.Checksum(b[off+2:], s)
}
