package gen

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/port/memport"
)

// memEngine builds an engine whose single TX worker and single RX worker
// (sink or reflector) run on two back-to-back in-memory ports, so the
// whole per-burst path can be driven step by step without a lab.
func memEngine(t *testing.T, mode Mode, proto uint8, flows uint32, sizes Sizes) *engine {
	t.Helper()
	a, err := memport.New(memport.Config{Frames: 1024})
	if err != nil {
		t.Fatal(err)
	}
	b, err := memport.New(memport.Config{Frames: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if err := memport.Pair(a, b); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Mode: mode, Proto: proto, TxDev: "mem-a", RxDev: "mem-b", Flows: *testSpec(flows), Sizes: sizes,
		Duration: 1, Streams: 4, NoPin: true,
	}
	c, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(c)
	if e.b, err = NewBuilder(FrameConfig{SrcMAC: testSrcMAC, DstMAC: testDstMAC, Proto: proto, Sizes: sizes}); err != nil {
		t.Fatal(err)
	}
	e.makeWorkers([]port.Port{a}, []port.Port{b})
	return e
}

// step runs one burst of each side: send, flush, receive at the far side
// (reflecting), flush, receive the replies, flush.
func step(e *engine, now int64) {
	tx, rx := e.tx[0], e.rx[0]
	tx.send(now)
	_ = tx.port.Flush()
	rx.burst()
	_ = rx.port.Flush()
	if tx.mode.Reflects() {
		tx.receive()
		_ = tx.port.Flush()
		rx.burst() // handshake ACKs
		_ = rx.port.Flush()
	}
}

// TestPipelineBidirInMemory drives the bidirectional mode through
// memport: every frame reaches the reflector, comes back to its flow, and
// every flow's mapping is learned (untranslated here: no NAT between).
func TestPipelineBidirInMemory(t *testing.T) {
	for _, proto := range []uint8{header.ProtocolUDP, header.ProtocolTCP} {
		z, _ := ParseSizes("imix")
		e := memEngine(t, Bidir, proto, 300, z)
		tx, rx := e.tx[0], e.rx[0]
		for i := range 40 {
			step(e, int64(1000+i))
		}
		tx.finishTx()
		want := uint64(40 * 64)
		if proto == header.ProtocolTCP {
			// Round 0 ends 44 frames into the fifth burst; data waits
			// for the SYN-ACKs, which come back within the same step.
			want -= 64 - 300%64
		}
		if tx.txPkts != want || tx.gateTimeouts != 0 || rx.rec.Packets != tx.txPkts || rx.reflected != tx.txPkts || tx.ret.Packets != tx.txPkts {
			t.Fatalf("proto %d: sent %d, reflector got %d and sent %d, returned %d", proto, tx.txPkts, rx.rec.Packets, rx.reflected, tx.ret.Packets)
		}
		if tx.mismatched != 0 || tx.foreign != 0 || rx.foreign != 0 || tx.ret.Reordered() != 0 {
			t.Fatalf("mismatched %d foreign %d/%d reordered %d", tx.mismatched, tx.foreign, rx.foreign, tx.ret.Reordered())
		}
		if rx.learned != 300 || rx.changed != 0 {
			t.Fatalf("learned %d changed %d", rx.learned, rx.changed)
		}
		m := e.mappings()
		if m.Translated != 0 || m.PortKept != 300 || m.ExternalAddrs != 256 {
			t.Fatalf("mappings %+v", m)
		}
		if proto == header.ProtocolTCP && rx.synAcks != 300 {
			t.Fatalf("%d SYN-ACKs for 300 flows", rx.synAcks)
		}
		var sent uint64
		for _, v := range tx.seqs {
			sent += v
		}
		if sent != tx.txPkts {
			t.Fatalf("per-stream sent %d, total %d", sent, tx.txPkts)
		}
	}
}

// TestPipelineConnRateInMemory: each flow is sent once; over TCP each
// SYN-ACK is answered with the handshake ACK, which the reflector counts.
func TestPipelineConnRateInMemory(t *testing.T) {
	e := memEngine(t, ConnRateBidir, header.ProtocolTCP, 1000, FixedSize(64))
	tx, rx := e.tx[0], e.rx[0]
	for i := 0; i < 100 && !tx.exhausted; i++ {
		step(e, int64(1000+i))
	}
	step(e, 5000)
	if !tx.exhausted || tx.txPkts != 1000 || rx.rec.Packets != 1000 || tx.established != 1000 ||
		tx.hsAcks != 1000 || rx.handshakes != 1000 || rx.synAcks != 1000 {
		t.Fatalf("exhausted %v sent %d through %d established %d acks %d done %d synacks %d",
			tx.exhausted, tx.txPkts, rx.rec.Packets, tx.established, tx.hsAcks, rx.handshakes, rx.synAcks)
	}
}

// TestPipelineHeldFrames: with a TX ring that holds less than a burst,
// frames wait in the worker, are restamped and sent later, and the
// per-stream counts stay exact (frames left waiting at the end are not
// counted as sent).
func TestPipelineHeldFrames(t *testing.T) {
	a, _ := memport.New(memport.Config{Frames: 1024, TxRing: 16})
	b, _ := memport.New(memport.Config{Frames: 1024})
	if err := memport.Pair(a, b); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Mode: OneWay, TxDev: "a", RxDev: "b", Flows: *testSpec(100), Duration: 1, Streams: 4, NoPin: true}
	c, _ := cfg.withDefaults()
	e := newEngine(c)
	e.b = mustBuilder(t, header.ProtocolUDP, FixedSize(64))
	e.makeWorkers([]port.Port{a}, []port.Port{b})
	tx, rx := e.tx[0], e.rx[0]
	for i := range 20 {
		tx.send(int64(1000 + i))
		if tx.nheld == 0 {
			t.Fatalf("burst %d: a 16-slot TX ring took a whole 64-frame burst", i)
		}
		_ = tx.port.Flush()
		rx.burst()
	}
	tx.finishTx()
	rx.burst()
	var sent uint64
	for s, v := range tx.seqs {
		got, reord, hi := rx.rec.Stream(s)
		if got != v || reord != 0 || hi != int64(v)-1 {
			t.Fatalf("stream %d: sent %d, received %d (max seq %d, %d reordered)", s, v, got, hi, reord)
		}
		sent += v
	}
	if sent != tx.txPkts || tx.unsent == 0 || tx.txPkts != rx.rec.Packets {
		t.Fatalf("sent %d (counted %d), unsent %d, received %d", sent, tx.txPkts, tx.unsent, rx.rec.Packets)
	}
}

// TestBurstPathAllocatesNothing: a whole bidirectional cycle (build and
// send a burst, reflect it, receive the replies) allocates nothing once
// running.
func TestBurstPathAllocatesNothing(t *testing.T) {
	for _, mode := range []Mode{OneWay, Bidir, ConnRateBidir} {
		for _, proto := range []uint8{header.ProtocolUDP, header.ProtocolTCP} {
			e := memEngine(t, mode, proto, 1<<20, Sizes{slots: IMIX[:], name: "imix"})
			now := int64(1000)
			step(e, now)
			if a := testing.AllocsPerRun(200, func() { now++; step(e, now) }); a != 0 {
				t.Errorf("%s/%d: %v allocations per cycle", mode, proto, a)
			}
			if e.tx[0].txPkts == 0 || e.rx[0].rec.Packets == 0 {
				t.Fatalf("%s/%d: nothing went through", mode, proto)
			}
		}
	}
}

// slowFirstAlloc is a port whose first Alloc takes delay: a sender that
// the scheduler keeps off the CPU at the start of a run.
type slowFirstAlloc struct {
	port.Port
	delay time.Duration
	once  sync.Once
}

func (p *slowFirstAlloc) Alloc(bufs []port.Buf) int {
	p.once.Do(func() { time.Sleep(p.delay) })
	return p.Port.Alloc(bufs)
}

// A run's duration counts from the senders' first burst: a sender held
// up for longer than the duration (CI once saw "sent 0 frames" on a
// loaded machine) still sends for the whole duration afterwards.
func TestRunDurationCountsFromFirstBurst(t *testing.T) {
	e := memEngine(t, OneWay, header.ProtocolUDP, 100, FixedSize(64))
	e.cfg.Duration = 50 * time.Millisecond
	e.cfg.Drain = 10 * time.Millisecond
	tx := e.tx[0]
	tx.port = &slowFirstAlloc{Port: tx.port, delay: 300 * time.Millisecond}
	r := e.run(context.Background())
	if r.TX.Packets <= uint64(e.cfg.Batch) {
		t.Fatalf("sent %d frames, want more than the first burst of %d", r.TX.Packets, e.cfg.Batch)
	}
}
