package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
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
			// Mostly the subscribers keep their sessions, so their next
			// mappings re-pair them with a live address; sometimes
			// everything goes, so they pair afresh.
			if i%4 == 0 {
				h.eng.FlushSessions(SessionFilter{})
			}
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
	// Every removed address has drained and left the registry; the last
	// pool's four remain, with nothing in use.
	if n := len(h.eng.registered()); n != 4 {
		t.Fatalf("%d addresses registered, want the last /30's 4", n)
	}
	for _, a := range h.eng.registered() {
		if a.busy() {
			t.Fatalf("%v still busy: refs %#x", a.addr, a.refs.Load())
		}
	}
	if n := h.eng.portTab.Len(); n != 0 {
		t.Fatalf("%d port records left", n)
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

// usageOf returns the PoolUsage entry of address a.
func usageOf(e *Engine, a string) (AddressUsage, bool) {
	for _, u := range e.PoolUsage() {
		if u.Addr == netip.MustParseAddr(a) {
			return u, true
		}
	}
	return AddressUsage{}, false
}

func isPublicAddr(e *Engine, a string) bool {
	for _, p := range e.Snapshot().PublicAddrs() {
		if p == netip.MustParseAddr(a) {
			return true
		}
	}
	return false
}

// TestRemovedPoolAddressDrains renumbers a pool under an active
// subscriber (issue 11, defect 3): its old mapping lives on, its new
// mappings go to the live address, and the old address is released, no
// longer answered for and no longer listed once its last session ends.
func TestRemovedPoolAddressDrains(t *testing.T) {
	h := newHarness(t, poolConfig("198.18.1.1/32"))
	old := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside))
	if old.src != "198.18.1.1" {
		t.Fatalf("first mapping on %s", old.src)
	}
	if err := h.eng.ApplyConfig(poolConfig("198.18.1.2/32")); err != nil {
		t.Fatal(err)
	}
	// The old session lives on, both ways.
	if e := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)); e.src != old.src || e.sport != old.sport {
		t.Fatalf("old session now leaves as %s:%d, was %s:%d", e.src, e.sport, old.src, old.sport)
	}
	if e := eps(h.one(Outside, udp("198.18.0.2", 7000, old.src, old.sport), Inside)); e.dst != "10.0.0.2" || e.dport != 5000 {
		t.Fatalf("reply to the draining address delivered to %s:%d", e.dst, e.dport)
	}
	// Every new mapping of the same subscriber goes to the live address.
	for i := 0; i < 5; i++ {
		if e := eps(h.one(Inside, udp("10.0.0.2", uint16(6000+i), "198.18.0.3", 53), Outside)); e.src != "198.18.1.2" {
			t.Fatalf("new mapping %d of a subscriber paired with a removed address left from %s", i, e.src)
		}
	}
	if e := eps(h.one(Inside, tcp("10.0.0.2", 6100, "198.18.0.3", 80, "S"), Outside)); e.src != "198.18.1.2" {
		t.Fatalf("new TCP mapping left from %s", e.src)
	}
	u, ok := usageOf(h.eng, old.src)
	if !ok || !u.Draining || u.InUse[UDP] != 1 || u.Pool != "" {
		t.Fatalf("draining address listed as %+v (listed %v)", u, ok)
	}
	if !isPublicAddr(h.eng, old.src) {
		t.Fatal("the draining address is no longer answered for")
	}
	// Keep the new mappings alive while the old one expires: the old
	// address must drain although its subscriber stays active.
	h.clock.Advance(200 * time.Second)
	for i := 0; i < 5; i++ {
		h.one(Inside, udp("10.0.0.2", uint16(6000+i), "198.18.0.3", 53), Outside)
	}
	h.clock.Advance(200 * time.Second) // the old session is idle past the UDP timeout
	h.housekeep()
	h.clock.Advance(3 * time.Minute) // its port past hold-down
	h.housekeep()
	if _, ok := usageOf(h.eng, old.src); ok {
		t.Fatalf("drained address still listed: %+v", h.eng.PoolUsage())
	}
	if isPublicAddr(h.eng, old.src) {
		t.Fatal("drained address still answered for")
	}
	h.none(Outside, udp("198.18.0.2", 7000, old.src, old.sport), drop.NotForwarded)
	if _, ok := h.eng.addrIndex[netip.MustParseAddr(old.src).As4()]; ok {
		t.Fatal("drained address still holds its registry slot")
	}
	h.checkNoLeaks()
}

// TestRemovedRulesKeepTheirSessions removes a port forward and a static
// mapping while sessions they opened are established (issue 11, defect 4):
// those sessions keep working both ways, the rules open no new ones, and
// their addresses stay public until the last session ends.
func TestRemovedRulesKeepTheirSessions(t *testing.T) {
	h := newHarness(t, forwardConfig())
	// Forward on an address of its own, and a static mapping.
	if e := eps(h.one(Outside, tcp("198.18.0.2", 50000, "198.18.0.200", 22, "S"), Inside)); e.dst != "10.0.0.52" {
		t.Fatalf("forwarded to %v", e)
	}
	h.one(Inside, tcp("10.0.0.52", 22, "198.18.0.2", 50000, "SA"), Outside)
	h.one(Outside, tcp("198.18.0.2", 50000, "198.18.0.200", 22, "A"), Inside)
	if e := eps(h.one(Outside, udp("198.18.0.3", 4000, "198.18.0.160", 53), Inside)); e.dst != "10.0.0.60" {
		t.Fatalf("static mapping delivered to %v", e)
	}
	c := testConfig() // no forwards, no static mappings
	if err := h.eng.ApplyConfig(c); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"198.18.0.200", "198.18.0.160"} {
		if !isPublicAddr(h.eng, a) {
			t.Fatalf("%s is no longer public while its sessions live", a)
		}
		if u, ok := usageOf(h.eng, a); !ok || !u.Draining || u.RuleSessions != 1 {
			t.Fatalf("%s listed as %+v (listed %v)", a, u, ok)
		}
	}
	// Established sessions keep working in both directions.
	if e := eps(h.one(Outside, tcp("198.18.0.2", 50000, "198.18.0.200", 22, "A"), Inside)); e.dst != "10.0.0.52" || e.dport != 22 {
		t.Fatalf("established forward session delivered to %v", e)
	}
	if e := eps(h.one(Inside, tcp("10.0.0.52", 22, "198.18.0.2", 50000, "A"), Outside)); e.src != "198.18.0.200" || e.sport != 22 {
		t.Fatalf("established forward session left as %v", e)
	}
	if e := eps(h.one(Outside, udp("198.18.0.3", 4000, "198.18.0.160", 53), Inside)); e.dst != "10.0.0.60" {
		t.Fatalf("static session delivered to %v", e)
	}
	if e := eps(h.one(Inside, udp("10.0.0.60", 53, "198.18.0.3", 4000), Outside)); e.src != "198.18.0.160" {
		t.Fatalf("static session left as %v", e)
	}
	// The removed rules open nothing new.
	h.none(Outside, tcp("198.18.0.4", 50001, "198.18.0.200", 22, "S"), drop.NoSession)
	h.none(Outside, udp("198.18.0.4", 4001, "198.18.0.160", 53), drop.NoSession)
	// The static host's new flows are ordinary dynamic ones now.
	if e := eps(h.one(Inside, udp("10.0.0.60", 5353, "198.18.0.5", 53), Outside)); e.src != "198.18.0.100" {
		t.Fatalf("new flow of the former static host left from %s", e.src)
	}
	// Once the sessions end (and the forward's port its hold-down), the
	// addresses go.
	h.clock.Advance(3 * time.Hour)
	h.housekeep()
	h.clock.Advance(5 * time.Minute)
	h.housekeep()
	for _, a := range []string{"198.18.0.200", "198.18.0.160"} {
		if isPublicAddr(h.eng, a) {
			t.Fatalf("%s still public after its sessions ended", a)
		}
		if _, ok := usageOf(h.eng, a); ok {
			t.Fatalf("%s still listed after its sessions ended", a)
		}
	}
	h.none(Outside, tcp("198.18.0.2", 50000, "198.18.0.200", 22, "A"), drop.NotForwarded)
	h.checkNoLeaks()
}

// TestRemovedForwardKeepsItsPort: a port forward on a pool address is
// removed while a session it opened lives on. Past the hold-down time the
// port must still be the session's: a dynamic mapping that would like the
// same port (port preservation) gets another, and the session's packets
// still reach the forwarded server.
func TestRemovedForwardKeepsItsPort(t *testing.T) {
	h := newHarness(t, forwardConfig())
	h.one(Outside, tcp("198.18.0.2", 40000, "198.18.0.100", 8080, "S"), Inside)
	h.one(Inside, tcp("10.0.0.50", 80, "198.18.0.2", 40000, "SA"), Outside)
	h.one(Outside, tcp("198.18.0.2", 40000, "198.18.0.100", 8080, "A"), Inside)
	if err := h.eng.ApplyConfig(testConfig()); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(5 * time.Minute) // past hold-down, within the TCP timeout
	h.housekeep()
	if e := eps(h.one(Inside, tcp("10.0.0.9", 8080, "198.18.0.3", 443, "S"), Outside)); e.sport == 8080 {
		t.Fatal("a dynamic mapping took the port of a live forward session")
	}
	if e := eps(h.one(Outside, tcp("198.18.0.2", 40000, "198.18.0.100", 8080, "A"), Inside)); e.dst != "10.0.0.50" || e.dport != 80 {
		t.Fatalf("the forward session's packet went to %v", e)
	}
	// When the session ends, the port returns to the pool after hold-down.
	h.clock.Advance(3 * time.Hour)
	h.housekeep()
	h.clock.Advance(5 * time.Minute)
	h.housekeep()
	if e := eps(h.one(Inside, tcp("10.0.0.10", 8080, "198.18.0.3", 443, "S"), Outside)); e.sport != 8080 {
		t.Fatalf("port 8080 not preserved once free: got %d", e.sport)
	}
}

// TestRegistryFullRefusesChange: a change whose new addresses do not fit
// beside those still draining is refused whole, with a precise error, and
// the configuration in force stays.
func TestRegistryFullRefusesChange(t *testing.T) {
	h := newHarness(t, poolConfig("198.18.1.0/30"))
	h.eng.ctl.Lock()
	h.eng.nextSlot = maxAddrSlots - 2
	h.eng.ctl.Unlock()
	gen := h.eng.Snapshot().Generation
	err := h.eng.ApplyConfig(poolConfig("198.18.2.0/30"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "pools" || !strings.Contains(fe.Reason, "registry slots") {
		t.Fatalf("err %v, want a pools error about registry slots", err)
	}
	if h.eng.Snapshot().Generation != gen {
		t.Fatal("a refused change was published")
	}
	if e := eps(h.one(Inside, udp("10.0.0.2", 5000, "198.18.0.2", 7000), Outside)); !strings.HasPrefix(e.src, "198.18.1.") {
		t.Fatalf("left from %s after a refused change", e.src)
	}
}
