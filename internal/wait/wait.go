// Package wait is how the tests wait for what another goroutine or
// process does: poll a condition until it holds or a generous deadline
// passes (the project's rule: never sleep a fixed time and then assert).
// Polls start a millisecond apart, so that a cheap condition is seen at
// once, and back off to 50 ms, so that an expensive one (a natctl run, a
// metrics scrape) does not load a busy machine.
package wait

import (
	"testing"
	"time"
)

// For polls cond until it holds (true) or d passes (false).
func For(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
}

// Until fails tb unless cond holds within d; what names the awaited thing
// in the failure.
func Until(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	if !For(d, cond) {
		tb.Fatalf("timed out after %v waiting for %s", d, what)
	}
}
