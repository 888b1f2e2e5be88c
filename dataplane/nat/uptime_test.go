package nat

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/dataplane/drop"
)

// Long uptime (issue 11, defect 6). The tables keep 32-bit millisecond
// ticks, which wrap every 49.7 days; appliances run for years. Each test
// runs an engine that has been up for one of these times and checks that
// timers fire when they should and that every time the engine reports
// (events for the RFC 6888 REQ-12 log, a session's last-seen time) is the
// clock's, not 49.7 days (or a multiple) earlier.
var uptimes = []struct {
	name string
	d    time.Duration
}{
	{"60d", 60 * 24 * time.Hour},
	{"400d", 400 * 24 * time.Hour},
	// 150 s before the first wrap: the tick wraps during the timeouts,
	// hold-downs and waits below.
	{"wrap", (1<<32)*time.Millisecond - 150*time.Second},
}

// agedHarness returns a harness whose engine has been up for d, having
// seen no traffic at all.
func agedHarness(t *testing.T, cfg Config, d time.Duration) *harness {
	t.Helper()
	h := newHarness(t, cfg)
	h.clock.Advance(d)
	h.housekeep()
	return h
}

func forUptimes(t *testing.T, f func(t *testing.T, d time.Duration)) {
	for _, u := range uptimes {
		t.Run(u.name, func(t *testing.T) { f(t, u.d) })
	}
}

func TestUptimeSessionTimeouts(t *testing.T) {
	forUptimes(t, func(t *testing.T, d time.Duration) {
		h := agedHarness(t, testConfig(), d)
		h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside)
		h.expectExpiry(t, 300*time.Second)

		h.establish()
		h.one(Inside, tcp("10.0.0.2", 5000, "198.18.0.2", 80, "A"), Outside)
		h.expectExpiry(t, 7440*time.Second)

		h.one(Inside, echo("10.0.0.2", "198.18.0.2", 4242, false), Outside)
		h.expectExpiry(t, 60*time.Second)

		// A refreshed session lives a full timeout from its last packet.
		h.one(Inside, udp("10.0.0.2", 1001, "198.18.0.2", 9), Outside)
		h.clock.Advance(200 * time.Second)
		h.one(Inside, udp("10.0.0.2", 1001, "198.18.0.2", 9), Outside)
		h.expectExpiry(t, 300*time.Second)
		if h.eng.subs.Len() != 0 || h.eng.bindings.Len() != 0 {
			t.Fatalf("left behind: %d subscribers, %d bindings", h.eng.subs.Len(), h.eng.bindings.Len())
		}
	})
}

func TestUptimePortHoldDown(t *testing.T) {
	forUptimes(t, func(t *testing.T, d time.Duration) {
		h := agedHarness(t, onePortConfig(), d)
		expectPortHoldDown(t, h)
	})
}

// onePortConfig is testConfig with a single UDP port, 40000.
func onePortConfig() Config {
	c := testConfig()
	c.Ports[UDP] = PortRange{Min: 40000, Max: 40000}
	return c
}

// expectPortHoldDown maps the only port, lets the session expire, and
// checks that the port stays out of use for the hold-down, 120 s, and
// returns at its end (RFC 6888 REQ-8). A new subscriber meanwhile finds no
// address with a free port.
func expectPortHoldDown(t *testing.T, h *harness) {
	t.Helper()
	if e := eps(h.one(Inside, udp("10.0.0.2", 40000, "198.18.0.2", 9), Outside)); e.sport != 40000 {
		t.Fatalf("got port %d", e.sport)
	}
	h.clock.Advance(300 * time.Second)
	if h.housekeep() != 1 {
		t.Fatal("session did not expire")
	}
	h.none(Inside, udp("10.0.0.3", 40000, "198.18.0.2", 9), drop.AddressExhausted)
	h.clock.Advance(120*time.Second - time.Millisecond)
	h.housekeep()
	h.none(Inside, udp("10.0.0.3", 40000, "198.18.0.2", 9), drop.AddressExhausted)
	h.clock.Advance(time.Millisecond)
	h.housekeep()
	if e := eps(h.one(Inside, udp("10.0.0.3", 40000, "198.18.0.2", 9), Outside)); e.sport != 40000 {
		t.Fatalf("port after hold-down: %d", e.sport)
	}
}

func TestUptimeFragmentTimeout(t *testing.T) {
	forUptimes(t, func(t *testing.T, d time.Duration) {
		h := agedHarness(t, testConfig(), d)
		frags := fragments(bigUDP(false, 1000), 400)
		// A later fragment waits for its first for the fragment timeout
		// (2 s), and no longer.
		h.inject(Inside, frags[2])
		h.clock.Advance(2*time.Second - time.Millisecond)
		h.w.Poll()
		if n := h.counters().Drops(drop.FragTimeout); n != 0 {
			t.Fatalf("a held fragment timed out %v early", time.Millisecond)
		}
		h.inject(Inside, frags[1])
		h.clock.Advance(time.Millisecond)
		h.w.Poll()
		if n := h.counters().Drops(drop.FragTimeout); n != 1 {
			t.Fatalf("%d held fragments timed out at the timeout, want 1", n)
		}
		// The other one is still held and leaves with its first.
		h.inject(Inside, frags[0])
		if got := h.ports[Outside].Drain(); len(got) != 2 {
			t.Fatalf("%d fragments left after the first arrived, want 2", len(got))
		}
		h.checkNoLeaks()
	})
}

func TestUptimeNeighbourWait(t *testing.T) {
	forUptimes(t, func(t *testing.T, d time.Duration) {
		h := agedHarness(t, testConfig(), d)
		h.neigh.setPending([4]byte{198, 18, 0, 2}, true)
		h.inject(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9))
		h.clock.Advance(neighWait*time.Millisecond - time.Millisecond)
		h.w.Poll()
		if n := h.counters().Drops(drop.NeighFailed); n != 0 {
			t.Fatalf("a frame gave up on its neighbour %v early", time.Millisecond)
		}
		h.clock.Advance(time.Millisecond)
		h.w.Poll()
		if n := h.counters().Drops(drop.NeighFailed); n != 1 {
			t.Fatalf("%d frames gave up on their neighbour at %d ms, want 1", n, neighWait)
		}
		h.checkNoLeaks()
	})
}

// TestUptimeEventTimes checks the time of every event and the last-seen
// time of a listed session against the clock.
func TestUptimeEventTimes(t *testing.T) {
	forUptimes(t, func(t *testing.T, d time.Duration) {
		h := agedHarness(t, testConfig(), d)
		h.eng.DrainEvents(nil)
		created := h.clock.Now()
		h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside)
		h.clock.Advance(100 * time.Second)
		seen := h.clock.Now()
		h.one(Inside, udp("10.0.0.2", 1000, "198.18.0.2", 9), Outside)
		h.one(Inside, udp("10.0.0.3", 1000, "198.18.0.2", 9), Outside)
		h.clock.Advance(7 * time.Second)

		ss, _ := h.eng.Sessions(SessionFilter{InsideAddr: netip.MustParseAddr("10.0.0.2")}, 0, 10)
		if len(ss) != 1 || !ss[0].LastSeen.Equal(seen) {
			t.Fatalf("sessions %+v: want one, last seen %v", ss, seen.UTC())
		}

		// The operator deletes one session; the other expires.
		deleted := h.clock.Now()
		if err := h.eng.DeleteSession(ss[0].ID, ss[0].Gen); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(300 * time.Second)
		expired := h.clock.Now()
		if h.housekeep() != 1 {
			t.Fatal("session did not expire")
		}

		want := []struct {
			typ    EventType
			inside string
			at     time.Time
		}{
			{AddressBound, "10.0.0.2", created},
			{SessionCreated, "10.0.0.2", created},
			{AddressBound, "10.0.0.3", seen},
			{SessionCreated, "10.0.0.3", seen},
			// A session's last release frees its subscriber first.
			{AddressReleased, "10.0.0.2", deleted},
			{SessionDeleted, "10.0.0.2", deleted},
			{AddressReleased, "10.0.0.3", expired},
			{SessionDeleted, "10.0.0.3", expired},
		}
		evs := withoutBlockEvents(h.eng.DrainEvents(nil))
		if len(evs) != len(want) {
			t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
		}
		for i, w := range want {
			ev := evs[i]
			in := fmt.Sprintf("%d.%d.%d.%d", ev.InsideAddr[0], ev.InsideAddr[1], ev.InsideAddr[2], ev.InsideAddr[3])
			if ev.Type != w.typ || in != w.inside {
				t.Fatalf("event %d is %v for %s, want %v for %s", i, ev.Type, in, w.typ, w.inside)
			}
			if got := time.Unix(0, ev.UnixNano); !got.Equal(w.at) {
				t.Errorf("%v event for %s dated %v, want %v (off by %v)", ev.Type, in, got.UTC(), w.at.UTC(), w.at.Sub(got))
			}
		}
	})
}

// TestUptimeICMPErrorBucket: the ICMP error bucket refills after a quiet
// spell of exactly one lap of the 32-bit tick (which then shows no time
// elapsed at all).
func TestUptimeICMPErrorBucket(t *testing.T) {
	forUptimes(t, func(t *testing.T, d time.Duration) {
		c := testConfig()
		c.Limits.ICMPErrorsPerSecond = 2
		h := agedHarness(t, c, d)
		f := pkt("10.0.0.2", "198.18.0.2", l4spec{proto: layers.IPProtocolUDP, sport: 5000, dport: 7000, ttl: 1})
		if sent := h.sendCountingReturns(Inside, f, 3); sent != 2 {
			t.Fatalf("%d errors sent in one instant, limit 2/s", sent)
		}
		h.clock.Advance((1 << 32) * time.Millisecond)
		if _, same := h.send(Inside, f); len(same) != 1 {
			t.Fatal("no error after 49.7 quiet days: the bucket did not refill")
		}
		h.checkNoLeaks()
	})
}

// TestFragmentTranslationDoesNotComeBack checks that a first fragment's
// translation, long expired, does not come back to life when the 32-bit
// tick has moved half a lap (2^31 ms, 24.9 days) past it: a later fragment
// with the same (source, destination, id) must wait for its own first
// fragment, not follow a translation whose port may be someone else's.
func TestFragmentTranslationDoesNotComeBack(t *testing.T) {
	forUptimes(t, func(t *testing.T, d time.Duration) {
		h := agedHarness(t, testConfig(), d)
		frags := fragments(bigUDP(false, 1000), 400)
		h.inject(Inside, frags[0])
		if got := h.ports[Outside].Drain(); len(got) != 1 {
			t.Fatalf("%d frames out for a first fragment, want 1", len(got))
		}
		h.clock.Advance(1<<31*time.Millisecond + 10*time.Second)
		h.inject(Inside, frags[1])
		if got := h.ports[Outside].Drain(); len(got) != 0 {
			t.Fatalf("a later fragment followed a translation that expired %v ago", time.Duration(1<<31)*time.Millisecond)
		}
		h.clock.Advance(3 * time.Second)
		h.w.Poll()
		if n := h.counters().Drops(drop.FragTimeout); n != 1 {
			t.Fatalf("%d held fragments timed out, want 1", n)
		}
	})
}
