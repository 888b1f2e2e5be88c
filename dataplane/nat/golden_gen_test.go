package nat

import (
	"encoding/binary"
	"flag"
	"fmt"
	"strings"
	"testing"
)

// -golden.print prints every golden case's input and the engine's output as
// annotated Go byte literals, for a reviewer to check field by field when a
// golden case is added or the translation changes on purpose.
var goldenPrint = flag.Bool("golden.print", false, "print golden frames as annotated literals")

// annotate renders a frame as a Go byte literal with one commented line per
// header.
func annotate(f []byte) string {
	var b strings.Builder
	line := func(comment string, bs []byte) {
		fmt.Fprintf(&b, "\t// %s\n\t", comment)
		for i, x := range bs {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "0x%02x,", x)
		}
		b.WriteString("\n")
	}
	mac := func(m []byte) string {
		return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
	}
	ip4s := func(a []byte) string { return fmt.Sprintf("%d.%d.%d.%d", a[0], a[1], a[2], a[3]) }
	line(fmt.Sprintf("Ethernet: dst %s src %s type 0x%04x", mac(f[0:6]), mac(f[6:12]), binary.BigEndian.Uint16(f[12:])), f[:14])
	ipp := f[14:]
	ihl := int(ipp[0]&0xf) * 4
	tl := int(binary.BigEndian.Uint16(ipp[2:]))
	ff := binary.BigEndian.Uint16(ipp[6:])
	line(fmt.Sprintf("IPv4: ihl %d len %d id 0x%04x flags/frag 0x%04x ttl %d proto %d csum 0x%04x %s -> %s",
		ihl, tl, binary.BigEndian.Uint16(ipp[4:]), ff, ipp[8], ipp[9], binary.BigEndian.Uint16(ipp[10:]),
		ip4s(ipp[12:16]), ip4s(ipp[16:20])), ipp[:ihl])
	l4 := ipp[ihl:tl]
	switch ipp[9] {
	case 6:
		line(fmt.Sprintf("TCP: %d -> %d seq %d ack %d flags 0x%02x win %d csum 0x%04x",
			binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:]), binary.BigEndian.Uint32(l4[4:]),
			binary.BigEndian.Uint32(l4[8:]), l4[13], binary.BigEndian.Uint16(l4[14:]), binary.BigEndian.Uint16(l4[16:])), l4[:20])
		l4 = l4[20:]
	case 17:
		line(fmt.Sprintf("UDP: %d -> %d len %d csum 0x%04x", binary.BigEndian.Uint16(l4[0:]),
			binary.BigEndian.Uint16(l4[2:]), binary.BigEndian.Uint16(l4[4:]), binary.BigEndian.Uint16(l4[6:])), l4[:8])
		l4 = l4[8:]
	case 1:
		line(fmt.Sprintf("ICMP: type %d code %d csum 0x%04x rest 0x%08x", l4[0], l4[1],
			binary.BigEndian.Uint16(l4[2:]), binary.BigEndian.Uint32(l4[4:])), l4[:8])
		l4 = l4[8:]
		if t := f[14+ihl]; t == 3 || t == 11 {
			q := l4
			qihl := int(q[0]&0xf) * 4
			line(fmt.Sprintf("  embedded IPv4: len %d ttl %d proto %d csum 0x%04x %s -> %s",
				binary.BigEndian.Uint16(q[2:]), q[8], q[9], binary.BigEndian.Uint16(q[10:]), ip4s(q[12:16]), ip4s(q[16:20])), q[:qihl])
			q = q[qihl:]
			line(fmt.Sprintf("  embedded L4 (8 bytes): ports/id %d -> %d, len/seq 0x%04x csum 0x%04x",
				binary.BigEndian.Uint16(q[0:]), binary.BigEndian.Uint16(q[2:]), binary.BigEndian.Uint16(q[4:]),
				binary.BigEndian.Uint16(q[6:])), q[:8])
			l4 = q[8:]
		}
	}
	if len(l4) > 0 {
		line(fmt.Sprintf("payload %q", l4), l4)
	}
	if pad := f[14+tl:]; len(pad) > 0 {
		line("Ethernet padding", pad)
	}
	return b.String()
}

func TestPrintGolden(t *testing.T) {
	if !*goldenPrint {
		t.Skip("run with -golden.print to print the golden frames")
	}
	for _, g := range goldenCases() {
		h := newHarness(t, g.config())
		for _, s := range g.setup {
			h.inject(s.side, s.frame)
			h.ports[Inside].Drain()
			h.ports[Outside].Drain()
		}
		h.inject(g.side, g.in)
		out := h.ports[g.outSide].Drain()
		fmt.Printf("=== %s\nin: []byte{\n%s},\n", g.name, annotate(g.in))
		for _, o := range out {
			fmt.Printf("out: []byte{\n%s},\n", annotate(o))
		}
	}
}
