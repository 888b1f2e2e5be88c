package nat

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/drop"
)

func trailText(t *Trail) string {
	var b strings.Builder
	for _, s := range t.List() {
		fmt.Fprintf(&b, "  %-9s %s\n", s.Stage(), s.Text())
	}
	return b.String()
}

func hasCode(t *Trail, c Code) bool {
	for _, s := range t.List() {
		if s.Code == c {
			return true
		}
	}
	return false
}

// startVis starts a capture or a trace (start is an engine's StartCapture
// or StartTrace), failing the test if it cannot, and stops it when the
// test ends.
func startVis[T interface{ Stop() }](t *testing.T, start func(VisFilter, int) (T, error), f VisFilter, n int) T {
	t.Helper()
	v, err := start(f, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	return v
}

// TestCaptureBothStages captures a UDP packet through the NAT: the frame as
// it arrived on the inside and as it left on the outside, both decoded and
// checksum-verified, with the translation between them.
func TestCaptureBothStages(t *testing.T) {
	h := newHarness(t, testConfig())
	c := startVis(t, h.eng.StartCapture, VisFilter{Inside: netip.MustParseAddr("10.0.0.2"), AnyProto: true}, 64)
	if _, err := h.eng.StartCapture(VisFilter{AnyProto: true}, 64); err == nil {
		t.Fatal("a second capture started while one runs")
	}
	h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 53), Outside)
	h.one(Inside, udp("10.0.0.3", 5000, "198.18.0.2", 53), Outside) // not matching
	buf := make([]CaptureFrame, 16)
	n := c.Read(buf)
	if n != 2 {
		t.Fatalf("captured %d frames, want 2 (rx inside, tx outside)", n)
	}
	rx, tx := buf[0], buf[1]
	if rx.Stage != StageRx || rx.Side != Inside || tx.Stage != StageTx || tx.Side != Outside || rx.Packet != tx.Packet {
		t.Fatalf("frames: rx %v/%v pkt %d, tx %v/%v pkt %d", rx.Stage, rx.Side, rx.Packet, tx.Stage, tx.Side, tx.Packet)
	}
	in, out := eps(verifyFrame(t, rx.Bytes())), eps(verifyFrame(t, tx.Bytes()))
	if in.src != "10.0.0.2" || out.src != "198.18.0.100" || out.sport != 5000 || out.dst != "198.18.0.2" {
		t.Fatalf("captured %v then %v", in, out)
	}
	if int(tx.OrigLen) != len(tx.Bytes()) {
		t.Fatalf("orig len %d, captured %d", tx.OrigLen, len(tx.Bytes()))
	}
	c.Stop()
	h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 53), Outside)
	if n := c.Read(buf); n != 0 {
		t.Fatalf("%d frames captured after Stop", n)
	}
	if h.eng.vis.Load() != nil {
		t.Fatal("vis config left published after the capture stopped")
	}
}

// adfConfig: endpoint-independent mapping with address-dependent filtering
// for UDP, what a full-cone STUN check trips over.
func adfConfig() Config {
	c := testConfig()
	c.Filtering[UDP] = FilterAddressDependent
	return c
}

// TestTraceFilteredAndExplainAgree traces a packet dropped by
// address-dependent filtering: the trail names the filter and the remote
// without permission, and explain said the same before the packet came;
// explain of the permitted remote agrees with that packet passing.
func TestTraceFilteredAndExplainAgree(t *testing.T) {
	h := newHarness(t, adfConfig())
	h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 3478), Outside)

	stranger := netip.MustParseAddrPort("198.18.0.3:3479")
	ext := netip.MustParseAddrPort("198.18.0.100:5000")
	ex, err := h.eng.Explain(Outside, UDP, stranger, ext)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Verdict() != drop.Filtered || !hasCode(&ex, CodeFilterADFDeny) {
		t.Fatalf("explain:\n%s", trailText(&ex))
	}
	if !strings.Contains(trailText(&ex), "address-dependent filtering and no permission for 198.18.0.3") {
		t.Fatalf("explain does not name the filter:\n%s", trailText(&ex))
	}

	tr := startVis(t, h.eng.StartTrace, VisFilter{Outside: stranger.Addr(), AnyProto: true}, 1)
	h.none(Outside, pkt("198.18.0.3", "198.18.0.100", l4spec{proto: layers.IPProtocolUDP, sport: 3479, dport: 5000, srcMAC: macGateway, dstMAC: macNATOut}), drop.Filtered)
	recs := make([]TraceRecord, 4)
	if n := tr.Read(recs); n != 1 {
		t.Fatalf("%d trace records, want 1", n)
	}
	got := &recs[0].Trail
	if !hasCode(got, CodeFilterADFDeny) || got.Verdict() != drop.Filtered || !hasCode(got, CodeParsed) || !hasCode(got, CodeSessionMiss) {
		t.Fatalf("trace:\n%s", trailText(got))
	}
	t.Logf("explain:\n%s\ntrace:\n%s", trailText(&ex), trailText(got))
	if !tr.Done() {
		t.Fatal("trace of 1 packet not done after 1 record")
	}

	// The remote the mapping sent to is let in, as explain says.
	friend := netip.MustParseAddrPort("198.18.0.2:3478")
	ex, _ = h.eng.Explain(Outside, UDP, friend, ext)
	if ex.Verdict() != drop.None {
		t.Fatalf("explain of the permitted remote:\n%s", trailText(&ex))
	}
	in := h.one(Outside, pkt("198.18.0.2", "198.18.0.100", l4spec{proto: layers.IPProtocolUDP, sport: 3478, dport: 5000, srcMAC: macGateway, dstMAC: macNATOut}), Inside)
	if e := eps(in); e.dst != "10.0.0.2" || e.dport != 5000 {
		t.Fatalf("inbound went to %v", e)
	}
}

// TestExplainAgreesWithPath asks explain about a set of 5-tuples, then
// sends each and checks that the packet did what explain said: the same
// drop reason, or translation to the same external endpoint.
func TestExplainAgreesWithPath(t *testing.T) {
	cfg := adfConfig()
	cfg.PortForwards = []PortForward{{Proto: TCP, Outside: netip.MustParseAddrPort("198.18.0.100:8080"), Inside: netip.MustParseAddrPort("10.0.0.9:80")}}
	cfg.Limits.SessionsPerSubscriber = 2
	h := newHarness(t, cfg)
	type probe struct {
		side     Side
		proto    Proto
		src, dst string
	}
	cases := []probe{
		{Inside, UDP, "10.0.0.2:5000", "198.18.0.2:3478"},   // new EIM mapping, port kept
		{Inside, UDP, "10.0.0.2:5000", "198.18.0.2:3478"},   // session hit
		{Inside, UDP, "10.0.0.2:5000", "198.18.0.4:3478"},   // existing mapping, new session
		{Inside, UDP, "10.0.0.2:5001", "198.18.0.4:3478"},   // subscriber at its session limit
		{Outside, UDP, "198.18.0.5:1", "198.18.0.100:5000"}, // filtered
		{Outside, UDP, "198.18.0.4:3478", "198.18.0.100:5000"},
		{Outside, UDP, "198.18.0.4:1", "198.18.0.100:6000"},    // no mapping
		{Outside, TCP, "198.18.0.6:1234", "198.18.0.100:8080"}, // port forward
		{Inside, UDP, "192.168.0.1:1", "198.18.0.2:53"},        // not inside
		{Inside, UDP, "10.0.0.3:7", "10.0.0.4:7"},              // inside route
		{Outside, UDP, "198.18.0.4:1", "198.18.0.77:1"},        // not public
	}
	for i, c := range cases {
		src, dst := netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst)
		ex, err := h.eng.Explain(c.side, c.proto, src, dst)
		if err != nil {
			t.Fatal(err)
		}
		l := l4spec{proto: layers.IPProtocolUDP, sport: src.Port(), dport: dst.Port()}
		if c.proto == TCP {
			l.proto, l.tcpFlags = layers.IPProtocolTCP, "S"
		}
		if c.side == Outside {
			l.srcMAC, l.dstMAC = macGateway, macNATOut
		}
		var c0 Counters
		h.w.Counters(&c0)
		other, same := h.send(c.side, pkt(src.Addr().String(), dst.Addr().String(), l))
		var c1 Counters
		h.w.Counters(&c1)
		got := drop.None
		for r := drop.Reason(1); r < drop.NumReasons; r++ {
			if c1.Drops(r) > c0.Drops(r) {
				got = r
			}
		}
		t.Logf("case %d:\n%s", i, trailText(&ex))
		if got != ex.Verdict() {
			t.Fatalf("case %d %v: explain says %v, the packet got %v\n%s", i, c, ex.Verdict(), got, trailText(&ex))
		}
		if got != drop.None {
			continue
		}
		out := append(other, same...)
		if len(out) != 1 {
			t.Fatalf("case %d: %d frames out", i, len(out))
		}
		// The rewrite explain announced is the one that happened.
		for _, s := range ex.List() {
			e := eps(out[0])
			switch s.Code {
			case CodeRewriteSrc:
				if want := ap(s.B, s.PB); s.PB != 0 && want != fmt.Sprintf("%s:%d", e.src, e.sport) {
					t.Fatalf("case %d: explain said source -> %s, packet left from %s:%d", i, want, e.src, e.sport)
				}
			case CodeRewriteDst:
				if want := ap(s.B, s.PB); want != fmt.Sprintf("%s:%d", e.dst, e.dport) {
					t.Fatalf("case %d: explain said destination -> %s, packet went to %s:%d", i, want, e.dst, e.dport)
				}
			}
		}
	}
}

// TestDropSamplesOncePerSecond: a drop reason keeps the 5-tuple of a
// dropped packet at most once a second per worker.
func TestDropSamplesOncePerSecond(t *testing.T) {
	h := newHarness(t, testConfig())
	h.none(Inside, udp("192.168.1.1", 1111, "198.18.0.2", 53), drop.NotInside)
	h.none(Inside, udp("192.168.1.2", 2222, "198.18.0.2", 53), drop.NotInside)
	s := h.eng.DropSamples()[drop.NotInside]
	if len(s) != 1 || s[0].Src != netip.MustParseAddrPort("192.168.1.1:1111") || s[0].Dst != netip.MustParseAddrPort("198.18.0.2:53") || s[0].Proto != 17 || s[0].Side != Inside {
		t.Fatalf("samples after two drops in one second: %+v", s)
	}
	h.clock.Advance(1100 * time.Millisecond)
	h.none(Inside, udp("192.168.1.3", 3333, "198.18.0.2", 53), drop.NotInside)
	s = h.eng.DropSamples()[drop.NotInside]
	if len(s) != 2 || s[0].Src.Port() != 3333 {
		t.Fatalf("samples a second later: %+v", s)
	}
}

// TestCaptureRingBounded leaves a capture running with nobody reading: the
// ring keeps its size, the overflow is counted, and every packet is still
// forwarded.
func TestCaptureRingBounded(t *testing.T) {
	r := newPerfRig(t, benchConfig(1000))
	r.establish(t, 1000)
	c := startVis(t, r.eng.StartCapture, VisFilter{AnyProto: true}, 16)
	start := r.ports[Outside].tx
	const bursts = 100
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range bursts {
		r.poll(Inside, MaxBurst, pollFill)
	}
	runtime.ReadMemStats(&m1)
	// Nothing on the packet path allocates: the heap cannot grow however
	// long the capture runs (a little slack for the runtime's own).
	if n := m1.Mallocs - m0.Mallocs; n > 16 {
		t.Fatalf("%d allocations while forwarding %d packets with a capture running", n, bursts*MaxBurst)
	}
	if got := r.ports[Outside].tx - start; got != bursts*MaxBurst {
		t.Fatalf("forwarded %d of %d with the capture ring full", got, bursts*MaxBurst)
	}
	// 16 frames fit; every other packet lost its two frames.
	if ov := c.Overflow(); ov != 2*bursts*MaxBurst-16 {
		t.Fatalf("overflow %d, want %d", ov, 2*bursts*MaxBurst-16)
	}
	buf := make([]CaptureFrame, 64)
	if n := c.Read(buf); n != 16 {
		t.Fatalf("read %d frames from a 16-frame ring", n)
	}
}

// TestZeroAllocCaptureAndTrace: with a capture and a trace running and
// matching every packet, the established path still allocates nothing.
func TestZeroAllocCaptureAndTrace(t *testing.T) {
	r := newPerfRig(t, benchConfig(1000))
	r.establish(t, 1000)
	c := startVis(t, r.eng.StartCapture, VisFilter{AnyProto: true}, 64)
	tr := startVis(t, r.eng.StartTrace, VisFilter{AnyProto: true}, MaxTrace)
	newFlow := 0
	// The new-session case first: the trace's 1000 packets go to it
	// before the established case uses up the rest.
	runAllocCases(t, r, []allocCase{
		// Every packet a new flow: the trace runs explain's decisions for
		// a new mapping (subscriber, paired address, port) before the
		// packet path makes them.
		//
		// The new flows' inside port, 40000, is outside the established
		// flows' (1024..2023, flowSrc): whichever pool address the first
		// new subscriber pairs with (the pairing hash is seeded per
		// engine), port preservation can keep its port. With 2000, one
		// run in a few hundred paired it with the address of the
		// established flow on port 2000, and the trace said "random".
		{name: "new session, capture and trace on", side: Inside, burst: 1, ran: SessionsCreated + Counter(UDP), fill: func(_ int, b []byte) int {
			newFlow++
			return writeUDP(b, [4]byte{10, 1, byte(newFlow >> 8), byte(newFlow)}, server, 40000, 7777, macInsideHost, macNATIn)
		}},
		{name: "established, capture and trace on", side: Inside, burst: MaxBurst, fill: pollFill},
		{name: "not inside, capture and trace on", side: Inside, burst: 8, ran: DropCounter(drop.NotInside), fill: func(i int, b []byte) int {
			return writeUDP(b, [4]byte{192, 168, 0, byte(i)}, server, 1, 7777, macInsideHost, macNATIn)
		}},
	})
	recs := make([]TraceRecord, MaxTrace)
	n := tr.Read(recs)
	portCode := CodePortKept
	if testAllocation != AllocDynamic {
		portCode = CodePortRandom // blocks and ranges preserve no port (docs/cgn.md)
	}
	if n != MaxTrace || !hasCode(&recs[0].Trail, CodeEIMNew) || !hasCode(&recs[0].Trail, portCode) || !hasCode(&recs[0].Trail, CodeTransmit) {
		t.Fatalf("%d trace records; first:\n%s", n, trailText(&recs[0].Trail))
	}
	if last := &recs[n-1].Trail; !hasCode(last, CodeSessionHit) || !hasCode(last, CodeTransmit) {
		t.Fatalf("last trace record:\n%s", trailText(last))
	}
	buf := make([]CaptureFrame, 128)
	if n := c.Read(buf); n == 0 {
		t.Fatal("nothing captured")
	}
}

// BenchmarkEstablishedVis measures the established path with capture
// compiled in: off (the normal case), and on with a filter that matches
// nothing or everything.
func BenchmarkEstablishedVis(b *testing.B) {
	const n = 1000
	for _, mode := range []string{"off", "on-nomatch", "on-match"} {
		var r *perfRig
		b.Run("capture="+mode, func(b *testing.B) {
			if r == nil {
				// Built once, as in BenchmarkEstablished: the function
				// runs several times with growing b.N.
				r = newPerfRig(b, benchConfig(n))
				r.establish(b, n)
			}
			switch mode {
			case "on-nomatch":
				c, err := r.eng.StartCapture(VisFilter{Inside: netip.MustParseAddr("10.255.255.255"), AnyProto: true}, 1024)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Stop()
			case "on-match":
				c, err := r.eng.StartCapture(VisFilter{AnyProto: true}, 1024)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Stop()
				buf := make([]CaptureFrame, 256)
				defer func() { c.Read(buf) }()
			}
			r.forwardWalk(b, n)
		})
	}
}

// TestCaptureHeldFrame: a frame that waits for its next hop's neighbour is
// captured when it leaves, under its packet's number, with the MAC it got.
func TestCaptureHeldFrame(t *testing.T) {
	h := newHarness(t, testConfig())
	c := startVis(t, h.eng.StartCapture, VisFilter{Inside: netip.MustParseAddr("10.0.0.2"), AnyProto: true}, 64)
	h.neigh.setPending([4]byte{198, 18, 0, 2}, true)
	h.inject(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 53))
	buf := make([]CaptureFrame, 8)
	if n := c.Read(buf); n != 1 || buf[0].Stage != StageRx {
		t.Fatalf("%d frames while the neighbour resolves, want the rx frame", n)
	}
	rx := buf[0].Packet
	h.neigh.setPending([4]byte{198, 18, 0, 2}, false)
	h.w.Poll()
	if out := h.collect(Outside); len(out) != 1 {
		t.Fatalf("%d frames out after the neighbour resolved", len(out))
	}
	if n := c.Read(buf); n != 1 || buf[0].Stage != StageTx || buf[0].Side != Outside || buf[0].Packet != rx {
		t.Fatalf("after resolution: %d frames, first %v/%v packet %d (rx was %d)", n, buf[0].Stage, buf[0].Side, buf[0].Packet, rx)
	}
	pk := verifyFrame(t, buf[0].Bytes())
	if eth := ethOf(pk); [6]byte(eth.DstMAC) != macGateway || eps(pk).src != "198.18.0.100" {
		t.Fatalf("held frame captured as %v from %v", eth.DstMAC, eps(pk))
	}
}

// TestCaptureTwoWorkers: each worker fills its own ring; Read takes from
// both, and each frame names its worker.
func TestCaptureTwoWorkers(t *testing.T) {
	h := newHarnessN(t, testConfig(), 2)
	c := startVis(t, h.eng.StartCapture, VisFilter{Proto: UDP}, 64)
	for i, w := range h.workers {
		if !h.wports[i][Inside].Inject(udp(fmt.Sprintf("10.0.0.%d", 2+i), 5000, "198.18.0.2", 53)) {
			t.Fatal("inject failed")
		}
		w.Poll()
	}
	buf := make([]CaptureFrame, 16)
	n := c.Read(buf)
	seen := map[[2]int]bool{}
	for _, f := range buf[:n] {
		seen[[2]int{int(f.Worker), int(f.Stage)}] = true
		verifyFrame(t, f.Bytes())
	}
	if n != 4 || len(seen) != 4 {
		t.Fatalf("%d frames from workers/stages %v, want rx and tx of each of 2 workers", n, seen)
	}
}
