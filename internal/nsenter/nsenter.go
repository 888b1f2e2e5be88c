// Package nsenter runs a function inside another network namespace. It is
// the one place in the tree that switches an OS thread's namespace: the
// AF_XDP port (recovery), the XDP program (detach), the traffic generator
// and the namespace lab all use it.
//
// Sockets that the function opens (AF_XDP, netlink, UDP) belong to the
// namespace they were opened in for their whole life, whichever thread
// later uses them; only the opening needs the switch.
package nsenter

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run runs f on the calling goroutine's OS thread switched into ns, then
// switches back. If the thread is already in ns it calls f without
// setns(2), which would need CAP_SYS_ADMIN even to re-enter one's own
// namespace (natd's case). A thread that cannot be switched back stays
// locked, so the runtime retires it with its goroutine instead of reusing
// a thread in the wrong namespace. LockOSThread nests, so Run is safe on a
// worker that has already locked its thread.
func Run(ns netns.NsHandle, f func() error) error {
	return run(ns, "netns", f)
}

// RunNamed is Run for the namespace that `ip netns` knows as name; with
// name "" it calls f where the thread is.
func RunNamed(name string, f func() error) error {
	if name == "" {
		return f()
	}
	return RunPath(filepath.Join("/run/netns", name), f)
}

// RunPath is Run for the namespace file at path: a /run/netns name, or a
// /proc/PID/ns/net link to the namespace of a process.
func RunPath(path string, f func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	defer target.Close()
	return run(target, "netns "+path, f)
}

// run is Run; what names ns in its own errors (f's are returned as they
// are).
func run(ns netns.NsHandle, what string, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if orig.Equal(ns) {
		runtime.UnlockOSThread()
		return f()
	}
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", what, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(ferr, fmt.Errorf("restore netns after %s: %w", what, err))
	}
	runtime.UnlockOSThread()
	return ferr
}
