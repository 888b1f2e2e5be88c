package nat

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"

	"github.com/xnat/xnat/checksum"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/internal/enumtext"
)

// MSSClamp is the TCP MSS clamping option: rewrite the Maximum Segment
// Size option of SYN and SYN-ACK segments, in both directions, so that
// neither end sends segments larger than the path through the NAT takes.
// A PPPoE link (MTU 1492) behind a host that believes in 1500 needs it
// where ICMP Fragmentation Needed is filtered somewhere on the path
// (RFC 2923 section 2.1, "PMTUD black hole"; RFC 4459 section 3.2).
//
// The zero value is off. MSSClampAuto clamps to the smaller interface
// MTU minus 40 (20 bytes of IPv4 header and 20 of TCP header, RFC 879 and
// RFC 6691 section 2); any other value is the MSS to clamp to.
type MSSClamp uint16

// MSSClamp values with a meaning of their own. Explicit values are at
// least minMSS, so they never collide with these.
const (
	MSSClampOff  MSSClamp = 0
	MSSClampAuto MSSClamp = 1
)

// minMSS is the smallest MSS accepted as a configured value: the default
// MSS every IPv4 host must accept (RFC 879, RFC 1122 section 4.2.2.6).
const minMSS = 536

// maxMSS is the largest MSS an IPv4 segment can carry (65535 - 40).
const maxMSS = 65495

// mssNames are the MSSClamp values that are words; the rest are numbers.
var mssNames = []string{MSSClampOff: "off", MSSClampAuto: "auto"}

// String returns "off", "auto" or the value.
func (m MSSClamp) String() string {
	if s := enumtext.Or(mssNames, m, ""); s != "" {
		return s
	}
	return strconv.Itoa(int(m))
}

// MarshalText implements encoding.TextMarshaler.
func (m MSSClamp) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText accepts off, auto or an MSS in 536..65495.
func (m *MSSClamp) UnmarshalText(b []byte) error {
	switch s := string(b); s {
	case "", "off":
		*m = MSSClampOff
	case "auto":
		*m = MSSClampAuto
	default:
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return fmt.Errorf("mss_clamp %q is not off, auto or an MSS like 1452", s)
		}
		if n < minMSS || n > maxMSS {
			return fmt.Errorf("mss_clamp %d is out of range %d..%d (or off, auto)", n, minMSS, maxMSS)
		}
		*m = MSSClamp(n)
	}
	return nil
}

func (m MSSClamp) check() error {
	if m > MSSClampAuto && (m < minMSS || m > maxMSS) {
		return fieldErr("mss_clamp", "%d is out of range %d..%d (or off, auto)", uint16(m), minMSS, maxMSS)
	}
	return nil
}

// mssLimit is the MSS that SYNs are clamped to, or 0 for none. Auto
// takes the smaller of the two interfaces' MTUs, whichever way the SYN
// goes: the MSS a SYN announces limits the segments that come back the
// other way, so both links must take them (as Linux's TCPMSS
// --clamp-mss-to-pmtu does, with the route MTU and the reverse MTU).
func (s *Snapshot) mssLimit() uint16 {
	switch m := s.Config.MSSClamp; m {
	case MSSClampOff:
		return 0
	case MSSClampAuto:
		if mtu := min(s.mtu[Inside], s.mtu[Outside]); mtu > 40+minMSS {
			return uint16(min(mtu-40, maxMSS))
		}
		return minMSS
	default:
		return uint16(m)
	}
}

// clampMSS clamps the MSS option of a SYN (or SYN-ACK) the worker
// forwards. Called per packet: no allocation, no error (a malformed option
// list is left alone; the parser has already checked the data offset).
func (w *Worker) clampMSS(b *port.Buf, p *header.Parsed) {
	if p.TCPFlags&tcpSYN == 0 {
		return
	}
	if lim := w.snap.mssLimit(); lim != 0 && ClampMSS(b.Data[p.L4Off:p.End], lim) {
		w.c[MSSClamped]++
	}
}

// ClampMSS lowers the MSS option of the TCP segment seg (header and
// payload) to max if it is larger, and fixes the TCP checksum
// incrementally. It reports whether it changed the segment.
func ClampMSS(seg []byte, max uint16) bool {
	if len(seg) < header.TCPMinHeaderLen {
		return false
	}
	off := int(seg[12]>>4) * 4
	if off < header.TCPMinHeaderLen || off > len(seg) {
		return false
	}
	// RFC 9293 section 3.1: options are a kind byte, then (except for
	// End of Option List, kind 0, and No-Operation, kind 1) a length
	// byte counting kind and length; MSS is kind 2, length 4.
	for i := header.TCPMinHeaderLen; i < off; {
		switch seg[i] {
		case 0:
			return false
		case 1:
			i++
			continue
		}
		if i+1 >= off {
			return false
		}
		l := int(seg[i+1])
		if l < 2 || i+l > off {
			return false
		}
		if seg[i] == 2 && l == 4 {
			old := binary.BigEndian.Uint16(seg[i+2:])
			if old <= max {
				return false
			}
			binary.BigEndian.PutUint16(seg[i+2:], max)
			o, n := old, max
			if (i+2)&1 == 1 {
				// The value sits at an odd offset (after a single NOP, say):
				// its bytes fall into two checksum words. The one's
				// complement sum does not depend on byte order (RFC 1071
				// section 2(B)), so the value's contribution is its
				// byte-swapped self, at an even offset.
				o, n = bits.ReverseBytes16(o), bits.ReverseBytes16(n)
			}
			ck := binary.BigEndian.Uint16(seg[16:])
			binary.BigEndian.PutUint16(seg[16:], checksum.Update16(ck, o, n))
			return true
		}
		i += l
	}
	return false
}
