package mgmttest

import (
	"context"
	"testing"
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
