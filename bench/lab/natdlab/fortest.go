package natdlab

import (
	"testing"

	"github.com/xnat/xnat/bench/lab"
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
		}
		e.Close()
	})
	return e
}
