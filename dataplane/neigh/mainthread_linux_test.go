package neigh

import (
	"os"
	"runtime"
	"testing"
)

// The main goroutine keeps the process's main thread (the thread group
// leader, whose namespace /proc/self/ns/net shows) so that a test can run
// code on it: onMainThread. TestMain runs the tests on other goroutines and
// serves those calls.
func init() { runtime.LockOSThread() }

var mainCalls = make(chan func())

func TestMain(m *testing.M) {
	done := make(chan int)
	go func() { done <- m.Run() }()
	for {
		select {
		case f := <-mainCalls:
			f()
		case code := <-done:
			os.Exit(code)
		}
	}
}

// onMainThread runs f on the process's main thread and waits for it.
func onMainThread(f func()) {
	finished := make(chan struct{})
	mainCalls <- func() {
		defer close(finished)
		f()
	}
	<-finished
}
