package natdlab

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
)

// fakeNatdEnv makes this test binary a natd that ignores SIGTERM (see
// fakeNatd).
const fakeNatdEnv = "XNAT_NATDLAB_FAKE_NATD"

func TestMain(m *testing.M) {
	if os.Getenv(fakeNatdEnv) != "" {
		fakeNatd()
	}
	os.Exit(m.Run())
}

// fakeNatd stands in for a natd that hangs on shutdown: it is ready as
// soon as it serves /readyz on natdlab's default metrics address (in the
// nat namespace, where `ip netns exec` started it) and never exits on
// SIGTERM.
func fakeNatd() {
	signal.Ignore(syscall.SIGTERM)
	ln, err := net.Listen("tcp", "127.0.0.1:9469")
	if err != nil {
		os.Exit(3)
	}
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	os.Exit(4)
}

// A natd deaf to SIGTERM must not hold up Close: it is SIGKILLed after
// stopDeadline, and the lab goes with it.
func TestCloseKillsNatdIgnoringSIGTERM(t *testing.T) {
	lab.Require(t)
	t.Setenv(fakeNatdEnv, "1")
	e, err := New(Options{Natd: os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := e.natd.Pid()
	had := lab.FootprintOf(os.Getpid())
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Logf("Close: %v", err) // it says natd had to be killed
	}
	took := time.Since(start)
	if took < stopDeadline {
		t.Errorf("Close took %v: natd was not given %v to stop on SIGTERM", took, stopDeadline)
	}
	// The bound: the SIGTERM deadline, the wait after SIGKILL, and the
	// namespaces' deletion, with room for a loaded machine.
	if limit := stopDeadline + time.Minute; took > limit {
		t.Errorf("Close took %v, more than %v", took, limit)
	}
	if h := had.Holders(); len(h) > 0 {
		t.Errorf("after Close, processes still hold the lab: %v", h)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("fake natd %d still exists after Close", pid)
	}
	if _, err := os.Stat(e.Dir); err == nil {
		t.Errorf("lab directory %s left after Close", e.Dir)
	}
}
