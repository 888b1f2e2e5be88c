package mgmt_test

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/client"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

type env struct {
	core  *mgmttest.Core
	srv   *mgmt.Server
	admin *client.Client
	ro    *client.Client
	sock  string
	rosk  string
	log   *lab.LogBuffer
}

// newCore returns a test core with the default options, closed when the
// test ends.
func newCore(tb testing.TB) *mgmttest.Core {
	tb.Helper()
	return mgmttest.Start(tb, mgmttest.Options{})
}

// newEnv serves a test core on an admin and a read-only socket in a
// temporary directory and dials both.
func newEnv(t *testing.T, mod func(*mgmt.ServerOptions)) *env {
	t.Helper()
	core := newCore(t)
	dir := t.TempDir()
	e := &env{core: core, sock: filepath.Join(dir, "natd.sock"), rosk: filepath.Join(dir, "natd-ro.sock"), log: &lab.LogBuffer{}}
	opts := mgmt.ServerOptions{
		SocketPath:         e.sock,
		ReadOnlySocketPath: e.rosk,
		Logger:             slog.New(slog.NewJSONHandler(e.log, nil)),
		Now:                func() time.Time { return mgmttest.StartTime.Add(90 * time.Minute) },
	}
	if mod != nil {
		mod(&opts)
	}
	e.srv = mgmttest.Server(t, core, opts)
	var err error
	if e.admin, err = client.Dial(client.Options{Socket: e.sock}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.admin.Close() })
	if e.ro, err = client.Dial(client.Options{Socket: e.rosk}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ro.Close() })
	return e
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func mgmttestFrame(side nat.Side, src, dst string) []byte {
	return mgmttest.Frame(side, nat.UDP, netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst))
}
