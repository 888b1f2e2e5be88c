package nat

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/checksum"
)

// MSS clamping golden packets: the exact frames the worker must emit.

// mssSynOut is a SYN from 10.0.0.2:40000 to 198.18.0.2:80 whose options
// are NOP, MSS 1460, NOP, NOP, NOP: the MSS value sits at an odd offset
// (23) of the TCP header, across two checksum words.
var mssSynOut = []byte{
	// Ethernet: dst 02:00:00:00:01:01 src 02:00:00:00:00:10 type 0x0800
	0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x10, 0x08, 0x00,
	// IPv4: ihl 20 len 48 id 0x1111 flags/frag 0x4000 (DF) ttl 64 proto 6 csum 0x59a1 10.0.0.2 -> 198.18.0.2
	0x45, 0x00, 0x00, 0x30, 0x11, 0x11, 0x40, 0x00, 0x40, 0x06, 0x59, 0xa1, 0x0a, 0x00, 0x00, 0x02, 0xc6, 0x12, 0x00, 0x02,
	// TCP: 40000 -> 80 seq 1000 ack 0 data offset 28 flags 0x02 (SYN) win 65535 csum 0x6542 urg 0
	0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x70, 0x02, 0xff, 0xff, 0x65, 0x42, 0x00, 0x00,
	// TCP options: NOP; MSS (kind 2 len 4) 1460 = 0x05b4; NOP NOP NOP
	0x01, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x01,
}

// mssSynOutClamped is mssSynOut translated (source 198.18.0.100:40000,
// TTL 63, outside MACs) with its MSS clamped to the configured 1452.
var mssSynOutClamped = []byte{
	// Ethernet: dst 02:00:00:00:00:fe src 02:00:00:00:01:02 type 0x0800
	0x02, 0x00, 0x00, 0x00, 0x00, 0xfe, 0x02, 0x00, 0x00, 0x00, 0x01, 0x02, 0x08, 0x00,
	// IPv4: ihl 20 len 48 id 0x1111 flags/frag 0x4000 ttl 63 proto 6 csum 0x9e2c 198.18.0.100 -> 198.18.0.2
	0x45, 0x00, 0x00, 0x30, 0x11, 0x11, 0x40, 0x00, 0x3f, 0x06, 0x9e, 0x2c, 0xc6, 0x12, 0x00, 0x64, 0xc6, 0x12, 0x00, 0x02,
	// TCP: 40000 -> 80 seq 1000 ack 0 data offset 28 flags 0x02 win 65535 csum 0xb0cd (address and MSS both folded in)
	0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x70, 0x02, 0xff, 0xff, 0xb0, 0xcd, 0x00, 0x00,
	// TCP options: NOP; MSS 1452 = 0x05ac; NOP NOP NOP
	0x01, 0x02, 0x04, 0x05, 0xac, 0x01, 0x01, 0x01,
}

// mssSynAckIn is the SYN-ACK from 198.18.0.2:80 to 198.18.0.100:40000
// offering MSS 8960 (a jumbo-frame server), the option at an even offset.
var mssSynAckIn = []byte{
	// Ethernet: dst 02:00:00:00:01:02 src 02:00:00:00:00:fe type 0x0800
	0x02, 0x00, 0x00, 0x00, 0x01, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0xfe, 0x08, 0x00,
	// IPv4: ihl 20 len 44 id 0x2222 flags/frag 0x4000 ttl 64 proto 6 csum 0x8c1f 198.18.0.2 -> 198.18.0.100
	0x45, 0x00, 0x00, 0x2c, 0x22, 0x22, 0x40, 0x00, 0x40, 0x06, 0x8c, 0x1f, 0xc6, 0x12, 0x00, 0x02, 0xc6, 0x12, 0x00, 0x64,
	// TCP: 80 -> 40000 seq 7000 ack 1001 data offset 24 flags 0x12 (SYN ACK) win 65535 csum 0x326e urg 0
	0x00, 0x50, 0x9c, 0x40, 0x00, 0x00, 0x1b, 0x58, 0x00, 0x00, 0x03, 0xe9, 0x60, 0x12, 0xff, 0xff, 0x32, 0x6e, 0x00, 0x00,
	// TCP options: MSS (kind 2 len 4) 8960 = 0x2300; EOL EOL
	0x02, 0x04, 0x23, 0x00, 0x00, 0x00,
}

// mssSynAckInClamped is mssSynAckIn translated to 10.0.0.2:40000 with the
// MSS clamped automatically to the smaller MTU 1500 - 40 = 1460.
var mssSynAckInClamped = []byte{
	// Ethernet: dst 02:00:00:00:00:02 src 02:00:00:00:01:01 type 0x0800
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x08, 0x00,
	// IPv4: ihl 20 len 44 id 0x2222 flags/frag 0x4000 ttl 63 proto 6 csum 0x4994 198.18.0.2 -> 10.0.0.2
	0x45, 0x00, 0x00, 0x2c, 0x22, 0x22, 0x40, 0x00, 0x3f, 0x06, 0x49, 0x94, 0xc6, 0x12, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x02,
	// TCP: 80 -> 40000 seq 7000 ack 1001 data offset 24 flags 0x12 win 65535 csum 0x0c2f
	0x00, 0x50, 0x9c, 0x40, 0x00, 0x00, 0x1b, 0x58, 0x00, 0x00, 0x03, 0xe9, 0x60, 0x12, 0xff, 0xff, 0x0c, 0x2f, 0x00, 0x00,
	// TCP options: MSS 1460 = 0x05b4; EOL EOL
	0x02, 0x04, 0x05, 0xb4, 0x00, 0x00,
}

func TestMSSClampGolden(t *testing.T) {
	t.Run("configured-out", func(t *testing.T) {
		cfg := testConfig()
		cfg.MSSClamp = 1452
		h := newHarness(t, cfg)
		pk := h.one(Inside, bytes.Clone(mssSynOut), Outside)
		if !bytes.Equal(pk.Data(), mssSynOutClamped) {
			t.Fatalf("emitted\n% x\nwant\n% x", pk.Data(), mssSynOutClamped)
		}
		if c := h.counters()[MSSClamped]; c != 1 {
			t.Fatalf("mss_clamped = %d, want 1", c)
		}
	})
	t.Run("auto-in", func(t *testing.T) {
		cfg := testConfig()
		cfg.MSSClamp = MSSClampAuto
		h := newHarness(t, cfg)
		h.one(Inside, pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolTCP, sport: 40000, dport: 80, tcpFlags: "S", df: true}), Outside)
		pk := h.one(Outside, bytes.Clone(mssSynAckIn), Inside)
		if !bytes.Equal(pk.Data(), mssSynAckInClamped) {
			t.Fatalf("emitted\n% x\nwant\n% x", pk.Data(), mssSynAckInClamped)
		}
	})
	t.Run("off", func(t *testing.T) {
		h := newHarness(t, testConfig())
		pk := h.one(Inside, bytes.Clone(mssSynOut), Outside)
		opt := pk.Layer(layers.LayerTypeTCP).(*layers.TCP).Options[1]
		if binary.BigEndian.Uint16(opt.OptionData) != 1460 {
			t.Fatalf("MSS changed with clamping off: %v", opt)
		}
	})
	t.Run("smaller-untouched", func(t *testing.T) {
		cfg := testConfig()
		cfg.MSSClamp = 1460
		h := newHarness(t, cfg)
		want := bytes.Clone(mssSynOutClamped)
		in := bytes.Clone(mssSynOut)
		// An MSS of 1400 is below the clamp: left alone.
		setMSS(t, in[14+20:], 1400)
		setMSS(t, want[14+20:], 1400)
		pk := h.one(Inside, in, Outside)
		opt := pk.Layer(layers.LayerTypeTCP).(*layers.TCP).Options[1]
		if binary.BigEndian.Uint16(opt.OptionData) != 1400 {
			t.Fatalf("MSS 1400 rewritten to %v", opt)
		}
	})
}

// setMSS rewrites the MSS of seg (options NOP, MSS ...) and recomputes its
// checksum from scratch over the IPv4 pseudo-header of mssSynOut.
func setMSS(t *testing.T, seg []byte, mss uint16) {
	t.Helper()
	binary.BigEndian.PutUint16(seg[23:], mss)
	fixTCPChecksum(seg, [4]byte{10, 0, 0, 2}, [4]byte{198, 18, 0, 2})
}

func fixTCPChecksum(seg []byte, src, dst [4]byte) {
	binary.BigEndian.PutUint16(seg[16:], 0)
	ps := checksum.PseudoHeaderSum(src, dst, 6, uint16(len(seg)))
	binary.BigEndian.PutUint16(seg[16:], checksum.Finish(checksum.Checksum(seg, ps)))
}

// TestClampMSSMatchesRecompute checks the incremental checksum against a
// recomputation, with the MSS option at every offset the option space
// allows (odd and even), behind NOPs.
func TestClampMSSMatchesRecompute(t *testing.T) {
	src, dst := [4]byte{198, 18, 0, 100}, [4]byte{198, 18, 0, 2}
	for nops := 0; nops <= 36; nops++ {
		for _, payload := range []int{0, 1, 7} {
			optLen := (nops + 4 + 3) &^ 3
			seg := make([]byte, 20+optLen+payload)
			seg[12] = byte((20+optLen)/4) << 4
			seg[13] = tcpSYN
			for i := 0; i < nops; i++ {
				seg[20+i] = 1
			}
			copy(seg[20+nops:], []byte{2, 4, 0x23, 0x00})
			for i := 20 + optLen; i < len(seg); i++ {
				seg[i] = byte(i * 7)
			}
			fixTCPChecksum(seg, src, dst)
			if !ClampMSS(seg, 1452) {
				t.Fatalf("nops %d: not clamped", nops)
			}
			if got := binary.BigEndian.Uint16(seg[20+nops+2:]); got != 1452 {
				t.Fatalf("nops %d: MSS %d", nops, got)
			}
			got := binary.BigEndian.Uint16(seg[16:])
			fixTCPChecksum(seg, src, dst)
			if want := binary.BigEndian.Uint16(seg[16:]); got != want {
				t.Fatalf("nops %d payload %d: incremental checksum %#04x, recomputed %#04x", nops, payload, got, want)
			}
		}
	}
}

// TestClampMSSMalformed: option lists the parser let through but that
// make no sense are left alone, never read past the header.
func TestClampMSSMalformed(t *testing.T) {
	for _, opts := range [][]byte{
		{2},                         // kind without length at the end
		{2, 0, 0, 0},                // length 0
		{2, 1, 0, 0},                // length 1
		{3, 9, 0, 0},                // length past the header
		{0, 2, 4, 0x23},             // MSS after End of Option List
		{2, 3, 0x23, 0},             // MSS of the wrong length
		{8, 2, 2, 4, 0x23, 0, 0, 0}, // odd option of length 2, then MSS 8960 kept? (clamped: valid)
	} {
		seg := make([]byte, 20+(len(opts)+3)&^3)
		seg[12] = byte(len(seg)/4) << 4
		copy(seg[20:], opts)
		before := bytes.Clone(seg)
		changed := ClampMSS(seg, 1000)
		if opts[0] == 8 {
			if !changed {
				t.Fatalf("%x: MSS after a 2-byte option not clamped", opts)
			}
			continue
		}
		if changed || !bytes.Equal(seg, before) {
			t.Fatalf("%x: changed to %x", opts, seg)
		}
	}
	if ClampMSS(make([]byte, 10), 1000) {
		t.Fatal("short segment clamped")
	}
}

// TestClampMSSAllocs: the clamping path, translation included, allocates
// nothing.
func TestClampMSSAllocs(t *testing.T) {
	cfg := testConfig()
	cfg.MSSClamp = 1452
	h := newHarness(t, cfg)
	h.one(Inside, bytes.Clone(mssSynOut), Outside)
	frame := bytes.Clone(mssSynOut)
	in := make([]byte, len(frame))
	h.ports[Outside].Drain()
	allocs := testing.AllocsPerRun(100, func() {
		copy(in, frame)
		h.ports[Inside].Inject(in)
		h.w.Poll()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per clamped SYN", allocs)
	}
	out := h.ports[Outside].Drain()
	if len(out) != 101 {
		t.Fatalf("%d frames out of 101 SYNs (drops %v)", len(out), h.drops())
	}
	if !bytes.Equal(out[0], mssSynOutClamped) {
		t.Fatalf("emitted\n% x\nwant\n% x", out[0], mssSynOutClamped)
	}
	seg := bytes.Clone(mssSynOut[14+20:])
	if a := testing.AllocsPerRun(100, func() { ClampMSS(seg, 1000) }); a != 0 {
		t.Fatalf("ClampMSS: %v allocations", a)
	}
}

func TestMSSClampText(t *testing.T) {
	for in, want := range map[string]MSSClamp{"": MSSClampOff, "off": MSSClampOff, "auto": MSSClampAuto, "1452": 1452, "536": 536} {
		var m MSSClamp
		if err := m.UnmarshalText([]byte(in)); err != nil || m != want {
			t.Fatalf("%q: %v %v", in, m, err)
		}
		if b, _ := m.MarshalText(); in != "" && string(b) != in {
			t.Fatalf("%q marshals to %q", in, b)
		}
	}
	for _, bad := range []string{"1", "535", "65496", "big", "-5"} {
		var m MSSClamp
		if err := m.UnmarshalText([]byte(bad)); err == nil {
			t.Fatalf("%q accepted as %v", bad, m)
		}
	}
	c := testConfig()
	c.MSSClamp = 100
	if err := c.Validate(); err == nil {
		t.Fatal("MSS 100 validated")
	}
}

// FuzzClampMSS: whatever the option bytes, ClampMSS stays inside the
// segment and, when it changes it, leaves a checksum equal to a
// recomputation and an MSS not above the clamp.
func FuzzClampMSS(f *testing.F) {
	f.Add(bytes.Clone(mssSynOut[14+20:]), uint16(1452))
	f.Add(bytes.Clone(mssSynAckIn[14+20:]), uint16(1000))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 2, 0, 0, 0, 0, 0, 0, 2, 4, 0xff, 0xff}, uint16(536))
	f.Fuzz(func(t *testing.T, seg []byte, max uint16) {
		src, dst := [4]byte{198, 18, 0, 100}, [4]byte{198, 18, 0, 2}
		if len(seg) >= 20 && len(seg)%2 == 0 {
			fixTCPChecksum(seg, src, dst)
		}
		before := bytes.Clone(seg)
		if !ClampMSS(seg, max) {
			if !bytes.Equal(seg, before) {
				t.Fatal("changed but reported no change")
			}
			return
		}
		if len(seg)%2 == 0 {
			got := binary.BigEndian.Uint16(seg[16:])
			fixTCPChecksum(seg, src, dst)
			if want := binary.BigEndian.Uint16(seg[16:]); got != want {
				t.Fatalf("checksum %#04x, recomputed %#04x", got, want)
			}
		}
	})
}
