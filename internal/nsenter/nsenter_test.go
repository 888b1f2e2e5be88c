package nsenter

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// The switch itself needs root and a second namespace; bench/lab's tests
// and every lab test exercise it. These cases need neither.

func TestRunInOwnNamespaceCallsF(t *testing.T) {
	self, err := netns.Get()
	if err != nil {
		t.Skipf("no netns support: %v", err)
	}
	defer self.Close()
	want := errors.New("from f")
	called := false
	if err := Run(self, func() error { called = true; return want }); err != want {
		t.Fatalf("Run = %v, want f's error returned as it is", err)
	}
	if !called {
		t.Fatal("f not called")
	}
}

func TestRunNamed(t *testing.T) {
	called := false
	if err := RunNamed("", func() error { called = true; return nil }); err != nil || !called {
		t.Fatalf(`RunNamed("") = %v, called %v; want f called where the thread is`, err, called)
	}
	err := RunNamed("xnat-no-such-netns", func() error { t.Fatal("f called"); return nil })
	if err == nil || !strings.Contains(err.Error(), "xnat-no-such-netns") {
		t.Fatalf("RunNamed(missing) = %v, want an error naming the namespace", err)
	}
}
