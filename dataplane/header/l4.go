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
// UDP's zero rule. So the parser reads the ports of both the same way. The
// rewrites (setL4, setInner) keep TCP and UDP apart on purpose: one helper
// for both is beyond the inlining budget, and the call costs the TCP
// update, inlined where it stands, measurably.

// takePorts records the ports of l4, a TCP segment or UDP datagram whose
// header Parse has checked, and its kind.
func (p *Parsed) takePorts(l4 []byte, kind L4Kind) drop.Reason {
	p.SrcPort = binary.BigEndian.Uint16(l4[tcpSrcPort:])
	p.DstPort = binary.BigEndian.Uint16(l4[tcpDstPort:])
	p.L4 = kind
	return drop.None
}

// sumAround returns the sum (initial included) of b with the 16-bit
// checksum field at off taken as zero: the first step of computing a
// checksum from scratch (RFC 1071). It sums around the field rather than
// zeroing it, so the view is only read.
func sumAround(b []byte, off int, initial uint16) uint16 {
	s := checksum.Checksum(b[:off], initial)
	return checksum.Checksum(b[off+2:], s)
}
