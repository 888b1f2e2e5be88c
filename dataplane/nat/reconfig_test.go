package nat

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolChangesUnderTrafficTwoWorkers runs two workers on their own
// goroutines over the same subscribers while a third goroutine adds and
// removes pool addresses in a loop and flushes sessions, so subscribers are
// paired again and again with addresses that only the newest snapshot
// knows. A worker still on an older snapshot must never index a registry
// slot it does not hold (issue 11, defect 1: index out of range). Every
// emitted frame is decoded and its checksums checked, and it must leave
// from an address that a configuration listed.
func TestPoolChangesUnderTrafficTwoWorkers(t *testing.T) {
	c := poolConfig("198.18.1.0/30")
	c.Limits.MaxSessions = 1 << 14
	h := newHarnessN(t, c, 2)
	dur := 2 * time.Second
	if testing.Short() {
		dur = 500 * time.Millisecond
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent [2]atomic.Int64
	errs := make(chan error, 16)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	// Every address any configuration of the loop lists: 198.18.1.0/24
	// and 198.18.2.0/24.
	valid := func(a string) bool {
		p := netip.MustParseAddr(a)
		return netip.MustParsePrefix("198.18.1.0/24").Contains(p) || netip.MustParsePrefix("198.18.2.0/24").Contains(p)
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				// The same 64 subscribers on both workers, new flows.
				host := fmt.Sprintf("10.0.7.%d", 2+i%64)
				h.wports[w][Inside].Inject(udp(host, uint16(1024+(i*2+w)%60000), "198.18.0.2", 7000))
				h.workers[w].Poll()
				for _, f := range h.wports[w][Outside].Drain() {
					e := eps(verifyFrame(t, f))
					if !valid(e.src) {
						report(fmt.Errorf("worker %d: frame left from %s, never a pool address", w, e.src))
					}
					sent[w].Add(1)
				}
				h.wports[w][Inside].Drain()
			}
		}()
	}
	// Control plane: a different pool every round, so every round
	// registers addresses no earlier snapshot held; flushes re-pair the
	// subscribers.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			c2 := c
			pfx := fmt.Sprintf("198.18.%d.%d/30", 1+i%2, (i*4)%256)
			c2.Pools = []Pool{{Name: "main", Addresses: []netip.Prefix{netip.MustParsePrefix(pfx)}}}
			if err := h.eng.ApplyConfig(c2); err != nil {
				report(err)
				return
			}
			h.eng.FlushSessions(SessionFilter{})
			h.clock.Advance(5 * time.Minute) // past hold-down
			h.eng.Housekeep(1024)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if sent[0].Load() == 0 || sent[1].Load() == 0 {
		t.Fatalf("frames translated per worker %d, %d: the test exercised nothing", sent[0].Load(), sent[1].Load())
	}
	t.Logf("frames translated: %d, %d", sent[0].Load(), sent[1].Load())
	h.eng.FlushSessions(SessionFilter{})
	h.clock.Advance(time.Hour)
	h.housekeep()
	if n := h.eng.sessions.Len() + h.eng.bindings.Len() + h.eng.subs.Len(); n != 0 {
		t.Fatalf("%d entries left after a flush", n)
	}
	h.checkNoLeaks()
}

// registered lists the addresses in the registry.
func (e *Engine) registered() []*addrState {
	e.ctl.Lock()
	defer e.ctl.Unlock()
	var out []*addrState
	for _, idx := range e.addrIndex {
		out = append(out, e.addr(idx))
	}
	return out
}
