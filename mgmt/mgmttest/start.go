package mgmttest

import "testing"

// Start is New for a test: it fails tb when the core cannot start and
// closes the core when the test and its subtests end (tb.Cleanup), after
// the test function's own defers.
func Start(tb testing.TB, opts Options) *Core {
	tb.Helper()
	core, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(core.Close)
	return core
}
