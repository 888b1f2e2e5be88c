package nat

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestConcurrentWorkersExpiryAndReloads runs two workers on their own
// goroutines, as natd does, with every flow's outbound packets on one
// worker and its replies on the other (as RSS may do), while a third
// goroutine expires sessions, flushes some, and swaps the configuration.
// Under -race this checks the lock-free sharing of the tables, port sets
// and snapshots; in any mode it checks that every reply reaches the inside
// endpoint that opened the flow and that no frame leaks.
func TestConcurrentWorkersExpiryAndReloads(t *testing.T) {
	c := poolConfig("198.18.1.0/30")
	c.Limits.MaxSessions = 1 << 14
	c.Timeouts.UDP = 2 * time.Minute
	h := newHarnessN(t, c, 2)
	dur := 2 * time.Second
	if testing.Short() {
		dur = 300 * time.Millisecond
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var misrouted, answered atomic.Int64
	errs := make(chan error, 16)

	// Outbound on worker 0: learn each flow's external endpoint from what
	// comes out, and reply to it through worker 1.
	type ext struct {
		addr string
		port uint16
	}
	replies := make(chan struct {
		host  string
		sport uint16
		e     ext
	}, 4096)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(replies)
		for i := 0; !stop.Load(); i++ {
			host := fmt.Sprintf("10.0.%d.%d", (i/200)%4, 2+i%200)
			sport := uint16(10000 + i%3000)
			h.wports[0][Inside].Inject(udp(host, sport, "198.18.0.2", 7000))
			h.workers[0].Poll()
			for _, f := range h.wports[0][Outside].Drain() {
				pk := verifyFrame(t, f)
				e := eps(pk)
				select {
				case replies <- struct {
					host  string
					sport uint16
					e     ext
				}{host, sport, ext{e.src, e.sport}}:
				default:
				}
			}
			h.wports[0][Inside].Drain()
		}
	}()
	// Replies on worker 1.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := range replies {
			h.wports[1][Outside].Inject(udp("198.18.0.2", 7000, r.e.addr, r.e.port))
			h.workers[1].Poll()
			for _, f := range h.wports[1][Inside].Drain() {
				e := eps(verifyFrame(t, f))
				// The session may have expired or been flushed and the
				// port reused by another flow only after hold-down, which
				// the fake clock never reaches here, or before it when
				// more ports are held than the port table has room for
				// (holddown.go), which these few thousand flows never
				// are: a delivered reply must go to the flow's own
				// endpoint.
				if e.dst != r.host || e.dport != r.sport {
					misrouted.Add(1)
					select {
					case errs <- fmt.Errorf("reply to %s:%d delivered to %s:%d, flow was %s:%d", r.e.addr, r.e.port, e.dst, e.dport, r.host, r.sport):
					default:
					}
				} else {
					answered.Add(1)
				}
			}
			h.wports[1][Outside].Drain()
		}
	}()
	// Control plane: expiry, flushes and reloads.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			h.clock.Advance(10 * time.Second)
			h.eng.Housekeep(1024)
			if i%20 == 0 {
				h.eng.FlushSessions(SessionFilter{InsideAddr: netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", 2+i%200))})
			}
			if i%15 == 0 {
				c2 := c
				c2.Timeouts.UDP = time.Duration(2+i%3) * time.Minute
				if err := h.eng.ApplyConfig(c2); err != nil {
					errs <- err
					return
				}
			}
			h.eng.Sessions(SessionFilter{}, 0, 100)
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if answered.Load() == 0 {
		t.Fatal("no reply was delivered: the test exercised nothing")
	}
	t.Logf("%d replies delivered, %d misrouted", answered.Load(), misrouted.Load())
	// Everything expires in the end and all state is returned.
	h.expireAll()
}

// TestConcurrentSameFlowOnTwoWorkers makes both workers create the same
// sessions at the same time (a retransmitted first packet landing on
// another queue): exactly one session and one mapping per flow must
// result, and both copies must be translated identically.
func TestConcurrentSameFlowOnTwoWorkers(t *testing.T) {
	h := newHarnessN(t, testConfig(), 2)
	const flows = 300
	var wg sync.WaitGroup
	got := make([]map[string]string, 2)
	for w := 0; w < 2; w++ {
		got[w] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < flows; i++ {
				src := fmt.Sprintf("10.0.1.%d", 1+i%250)
				f := pkt(src, "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: uint16(20000 + i), dport: 53})
				h.wports[w][Inside].Inject(f)
				h.workers[w].Poll()
				for _, out := range h.wports[w][Outside].Drain() {
					e := eps(verifyFrame(t, out))
					got[w][fmt.Sprintf("%s:%d", src, 20000+i)] = fmt.Sprintf("%s:%d", e.src, e.sport)
				}
			}
		}()
	}
	wg.Wait()
	if len(got[0]) != flows || len(got[1]) != flows {
		t.Fatalf("translated %d and %d of %d", len(got[0]), len(got[1]), flows)
	}
	for k, v := range got[0] {
		if got[1][k] != v {
			t.Fatalf("flow %s translated to %s by one worker and %s by the other", k, v, got[1][k])
		}
	}
	if n := h.eng.sessions.Len(); n != flows {
		t.Fatalf("%d sessions for %d flows", n, flows)
	}
	if n := h.eng.bindings.Len(); n != flows {
		t.Fatalf("%d mappings for %d flows", n, flows)
	}
}
