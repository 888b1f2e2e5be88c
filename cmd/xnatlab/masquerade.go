package main

import (
	"context"
	"net/netip"
	"syscall"
	"time"

	"github.com/xnat/xnat/bench/lab/natdlab"
)

// masqueradeStep restarts natd in the mode of deploy/examples/home.yaml:
// the pool is the box's own outside address, 198.18.0.1, as on a home
// router with one public address. The box keeps its own traffic on that
// address while natd translates the inside to it.
func masqueradeStep(ctx context.Context, s *step, env *natdlab.Env) {
	box := natdlab.BoxAddr
	s.title("Masquerade: natd restarts with nat-out's own address %s as its pool (deploy/examples/home.yaml's mode)", box)
	say("a home router has one public address, and it is its own: natd must share it with the box")
	if err := env.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		s.check(false, "stop natd: %v", err)
		return
	}
	if err := env.UseConfig(env.MasqueradeConfig("")); err != nil {
		s.check(false, "write the masquerade configuration: %v", err)
		return
	}
	if err := env.Start(ctx); err != nil {
		s.check(false, "start natd: %v", err)
		return
	}
	_, seen, err := natdlab.TCPHello(env.In1, env.Out, netip.AddrPortFrom(natdlab.Server, 7010))
	if err == nil {
		say("in1's connection reached the server from %s", seen)
	}
	s.check(err == nil && seen.Addr() == box, "in1 is translated to the box's own address %s (%v)", box, errOr(err))

	say("a service on the box itself (SSH or a web UI, say) listens on %s:2222", box)
	greeting, seen, err := natdlab.TCPHelloVia(env.Out, env.Box, netip.AddrPortFrom(box, 2222), netip.AddrPortFrom(box, 2222))
	if err == nil {
		say("the box's service answered the outside client %s: %q", seen, greeting)
	}
	s.check(err == nil, "the service on the box's public address stays reachable from outside while natd runs (%v)", errOr(err))

	_, seen, err = natdlab.TCPHelloVia(env.Box, env.Out, netip.AddrPortFrom(natdlab.Server, 7011), netip.AddrPortFrom(natdlab.Server, 7011))
	s.check(err == nil && seen.Addr() == box, "the box's own connections from %s still work (the server saw %s; %v)", box, seen, errOr(err))
}
