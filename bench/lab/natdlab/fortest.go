package natdlab

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/internal/wait"
)

// logTail is how much of natd's log RequireEnv shows for a failed test:
// the end, where the failure is, without flooding the test output.
const logTail = 20000

// RequireEnv is New for a test: it applies lab.Require, builds the lab
// with opts (natd is not started) and fails tb when that fails. When the
// test and its subtests end (tb.Cleanup) it logs the tail of natd's log
// if the test failed, then closes the lab.
func RequireEnv(tb testing.TB, opts Options) *Env {
	tb.Helper()
	lab.Require(tb)
	e, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			log := e.Log()
			if len(log) > logTail {
				log = "...\n" + log[len(log)-logTail:]
			}
			tb.Logf("natd log (tail):\n%s", log)
			if mfs, err := e.Scrape(); err == nil {
				tb.Logf("natd's nonzero drop counters:\n%s", dropCounters(mfs))
			}
		}
		e.Close()
	})
	return e
}

// dropCounters lists the nonzero samples of every metric family whose
// name says drop, one per line: where a failed test's lost packet went
// (a counted drop, a socket's ring, or not natd at all).
func dropCounters(mfs map[string]*dto.MetricFamily) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(mfs)) {
		if !strings.Contains(name, "drop") {
			continue
		}
		for _, m := range mfs[name].GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			if v == 0 {
				continue
			}
			fmt.Fprintf(&b, "%s{", name)
			for i, l := range m.GetLabel() {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, "%s=%q", l.GetName(), l.GetValue())
			}
			fmt.Fprintf(&b, "} %g\n", v)
		}
	}
	if b.Len() == 0 {
		return "(none)\n"
	}
	return b.String()
}

// EchoUDP serves a UDP echo in ns on addr until the test ends: the far
// end most flow tests talk to. It fails tb when it cannot listen.
func EchoUDP(tb testing.TB, ns string, addr netip.AddrPort) {
	tb.Helper()
	c, err := ListenUDP(ns, addr)
	go Echo(lab.CloseAtEnd(tb, c, err))
}

// EchoTCP serves a TCP echo (any number of connections) in ns on addr
// until the test ends. It fails tb when it cannot listen.
func EchoTCP(tb testing.TB, ns string, addr netip.AddrPort) {
	tb.Helper()
	ln, err := ListenTCP(ns, addr)
	go lab.ServeTCP(lab.CloseAtEnd(tb, ln, err), func(c net.Conn) { io.Copy(c, c) })
}

// MustUDPFlow is NewUDPFlow for a test: it fails tb when the socket cannot
// be opened and closes the flow when the test ends.
func MustUDPFlow(tb testing.TB, ns string, local netip.Addr, server netip.AddrPort) *UDPFlow {
	tb.Helper()
	f, err := NewUDPFlow(ns, local, server)
	return lab.CloseAtEnd(tb, f, err)
}

// WaitLog waits, with a generous deadline, for natd to log a line
// containing want, and fails tb if it does not. RequireEnv shows the log
// of a failed test.
func (e *Env) WaitLog(tb testing.TB, want string) {
	tb.Helper()
	wait.Until(tb, fmt.Sprintf("natd to log %q", want), 10*time.Second, func() bool { return strings.Contains(e.Log(), want) })
}
