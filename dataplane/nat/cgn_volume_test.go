package nat

import (
	"fmt"
	"testing"
	"time"
)

// TestCGNLogVolume measures what each mode logs for the same traffic:
// 100,000 UDP flows from 1,000 subscribers (100 each), opened and then
// expired. Every event is one exported record (IPFIX, syslog or JSON
// line), so the events drained are the records an operator stores.
func TestCGNLogVolume(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a measurement: make test runs it without the race detector")
	}
	counts := map[PortAllocation]int{}
	for _, mode := range []PortAllocation{AllocDynamic, AllocBlock} {
		c := cgnConfig(CGN{PortAllocation: mode, BlockSize: DefaultBlockSize, MaxBlocks: DefaultMaxBlocks}, "198.18.0.0/28")
		c.Limits.MaxSessions = 1 << 17
		h := newHarness(t, c)
		byType := map[EventType]int{}
		drain := func() {
			for _, ev := range h.eng.DrainEvents(nil) {
				byType[ev.Type]++
			}
		}
		out := 0
		batch := make([][]byte, 0, 64)
		flush := func() {
			for _, f := range batch {
				if !h.ports[Inside].Inject(f) {
					t.Fatal("inject")
				}
			}
			h.w.Poll()
			out += len(h.ports[Outside].Drain())
			batch = batch[:0]
			drain()
		}
		for i := 0; i < 100; i++ {
			for s := 0; s < 1000; s++ {
				batch = append(batch, udp(fmt.Sprintf("10.0.%d.%d", s/250, s%250+1), uint16(10000+i), "198.18.1.2", 53))
				if len(batch) == cap(batch) {
					flush()
				}
			}
		}
		flush()
		if out != 100000 {
			t.Fatalf("%v: %d of 100000 flows translated (drops %v)", mode, out, h.drops())
		}
		// Everything expires, then the hold-down ends. The expirer runs
		// in slices, drained in between, as natd's 100 ms rounds are.
		sweep := func() {
			for v := 0; v <= h.eng.sessions.Cap(); v += 1024 {
				h.eng.Housekeep(1024)
				drain()
			}
		}
		h.clock.Advance(301 * time.Second)
		sweep()
		h.clock.Advance(121 * time.Second)
		sweep()
		if n := h.sessionCount(); n != 0 {
			t.Fatalf("%v: %d sessions left", mode, n)
		}
		if n := h.eng.EventsDropped(); n != 0 {
			t.Fatalf("%v: %d events dropped", mode, n)
		}
		total := 0
		for _, n := range byType {
			total += n
		}
		counts[mode] = total
		t.Logf("%s: %d records for 100000 flows from 1000 subscribers: %v", mode, total, byType)
	}
	if counts[AllocBlock]*100 > counts[AllocDynamic] {
		t.Fatalf("block mode logged %d records, dynamic %d: not two orders of magnitude fewer", counts[AllocBlock], counts[AllocDynamic])
	}
}
