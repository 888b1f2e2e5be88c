package poller

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/port/memport"
	"github.com/xnat/xnat/internal/wait"
)

type oneMAC struct{}

func (oneMAC) Resolve(nat.Side, [4]byte) ([6]byte, nat.Resolution) {
	return [6]byte{2, 0, 0, 0, 0, 9}, nat.Resolved
}

// udpFrame is a minimal valid UDP frame from 10.0.0.2:5000 to 198.18.0.2:7.
func udpFrame() []byte {
	f := make([]byte, 60)
	copy(f[12:], []byte{0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 198, 18, 0, 2,
		0x13, 0x88, 0, 7, 0, 8, 0, 0})
	var s uint32
	for i := 14; i < 34; i += 2 {
		s += uint32(f[i])<<8 | uint32(f[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	c := ^uint16(s)
	f[24], f[25] = byte(c>>8), byte(c)
	return f
}

func TestRunnerForwardsAndStops(t *testing.T) {
	for _, mode := range []PollMode{Adaptive, Busy} {
		w, in, out := testWorker(t)
		statsCalls := 0
		r, err := New(Config{Worker: w, Ports: [2]port.Port{in, out}, CPU: 0, Mode: mode, PortStats: func() { statsCalls++ }})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			in.Inject(udpFrame())
		}
		got := 0
		wait.For(5*time.Second, func() bool {
			got += len(out.Drain())
			return got >= 10
		})
		if got != 10 {
			t.Fatalf("%v: forwarded %d of 10", mode, got)
		}
		r.Stop()
		if r.Running() {
			t.Fatal("still running after Stop")
		}
		var c nat.Counters
		w.Counters(&c)
		if c[nat.Polls] == 0 || c[nat.BusyPolls] == 0 || c[nat.PollNanos] == 0 {
			t.Fatalf("%v: polls %d busy %d nanos %d", mode, c[nat.Polls], c[nat.BusyPolls], c[nat.PollNanos])
		}
		if mode == Adaptive && c[nat.Polls] > 1_000_000 {
			t.Fatalf("adaptive worker spun %d times while idle", c[nat.Polls])
		}
		if statsCalls == 0 {
			t.Fatal("port stats never published")
		}
	}
}

func TestRunnerRejectsMissingCPU(t *testing.T) {
	eng, _ := nat.New(func() nat.Config {
		c := nat.DefaultConfig()
		c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		c.Pools = []nat.Pool{{Name: "p", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}}}
		c.Limits.MaxSessions = 16
		c.Limits.HeldFragments = 16 // a quarter of the 64-frame ports below, or NewWorker refuses
		return c
	}(), nat.Options{Workers: 1})
	in, _ := memport.New(memport.Config{Frames: 64})
	out, _ := memport.New(memport.Config{Frames: 64})
	w, err := eng.NewWorker(0, nat.WorkerConfig{Ports: [2]port.Port{in, out}, Neighbors: oneMAC{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Worker: w, Ports: [2]port.Port{in, out}, CPU: 4096}); err == nil {
		t.Fatal("CPU 4096 accepted")
	}
}
