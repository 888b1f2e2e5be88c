package mgmttest

import (
	"context"
	"testing"

	"github.com/xnat/xnat/mgmt"
)

// Serve runs serve (a server's Serve, an exporter's Run) in its own
// goroutine until the test ends; then it cancels serve's context, waits
// for it to return and fails the test if it returned an error.
func Serve(t testing.TB, serve func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

// Server starts a management server over core with opts, as natd does,
// and serves until the test ends (Serve). It fails the test when the
// server cannot be made.
func Server(t testing.TB, core mgmt.Core, opts mgmt.ServerOptions) *mgmt.Server {
	t.Helper()
	srv, err := mgmt.NewServer(core, opts)
	if err != nil {
		t.Fatal(err)
	}
	Serve(t, srv.Serve)
	return srv
}
