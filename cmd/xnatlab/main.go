// Command xnatlab runs xnat in a lab of network namespaces on this machine.
//
//	xnatlab demo [-natd bin/natd] [-natctl bin/natctl] [-config deploy/examples/lab.yaml]
//	xnatlab scaleout [-natd bin/natd] [-natctl bin/natctl]
//
// scaleout runs three natd appliances behind BIRD routers, spreads 300
// subscribers over them by ECMP and shows a SIGKILL, a SIGTERM, a drain
// and a rejoin under traffic, with what each cost (docs/scaleout.md).
//
// demo builds the lab (two inside hosts, the NAT box, an outside server and
// a host one router beyond it), starts natd in the NAT box's namespace, and
// shows in plain words what the NAT does to real kernel TCP, UDP and ICMP
// traffic. Then it tears everything down. It exits non-zero if any step
// fails. It needs root (namespaces, XDP).
//
// Interrupted (Ctrl-C, SIGTERM, SIGHUP) or cut off from its output
// (`xnatlab demo | head`), it stops natd, removes the whole lab and exits
// by the signal; a lab left by a killed demo is removed by the next one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "scaleout" {
		os.Exit(scaleoutMain(os.Args[2:])) // scaleout.go
	}
	if len(os.Args) < 2 || os.Args[1] != "demo" {
		fmt.Fprintln(os.Stderr, "usage: xnatlab demo [-natd PATH] [-natctl PATH] [-config FILE] [-v]\n       xnatlab scaleout [-natd PATH] [-natctl PATH] [-v]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	natd := fs.String("natd", "bin/natd", "natd binary")
	natctl := fs.String("natctl", "bin/natctl", "natctl binary")
	config := fs.String("config", "deploy/examples/lab.yaml", "natd configuration for the lab")
	verbose := fs.Bool("v", false, "show natd's log")
	fs.Parse(os.Args[2:])
	if err := demo(*natd, *natctl, *config, *verbose); err != nil {
		// A signal's teardown makes the steps fail; it also ends the
		// process, by the signal.
		lab.WaitIfInterrupted()
		fmt.Printf("\nFAILED: %v\n", err)
		os.Exit(1)
	}
}

type step struct {
	n      int
	failed []string
}

func (s *step) title(format string, args ...any) {
	s.n++
	fmt.Printf("\n%d. %s\n", s.n, fmt.Sprintf(format, args...))
}

func say(format string, args ...any) { fmt.Printf("   "+format+"\n", args...) }

func (s *step) check(ok bool, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if ok {
		fmt.Printf("   ok: %s\n", msg)
		return
	}
	// A step fails when a signal tears the lab down under it: say
	// nothing then, the teardown ends the process.
	lab.WaitIfInterrupted()
	fmt.Printf("   FAILED: %s\n", msg)
	s.failed = append(s.failed, fmt.Sprintf("step %d: %s", s.n, msg))
}

// canRun checks what every lab needs before it builds anything: root, and
// the files it runs (natd, natctl, a configuration).
func canRun(files ...string) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, XDP): run it with sudo")
	}
	for _, p := range files {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w (run `make build` first)", p, err)
		}
	}
	return nil
}

func demo(natd, natctl, config string, verbose bool) error {
	if err := canRun(natd, natctl, config); err != nil {
		return err
	}
	fmt.Println("xnat demo: a NAT in a lab of network namespaces")
	fmt.Println()
	fmt.Println("  in1 10.0.0.2 ─┐")
	fmt.Println("                ├─ nat-in 10.0.0.1 [natd] nat-out 198.18.0.1 ─ 198.18.0.2 [server] ─ router ─ 198.18.1.2 [far]")
	fmt.Println("  in2 10.0.0.3 ─┘        public address 198.18.0.100")
	fmt.Println()
	fmt.Printf("Building the lab and starting natd with %s ...\n", config)

	var log io.Writer = io.Discard
	if verbose {
		log = os.Stderr
	}
	env, err := natdlab.New(natdlab.Options{Natd: natd, ConfigFile: config, Log: log})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	// On Ctrl-C, SIGTERM, SIGHUP or a closed stdout (`make demo | head`),
	// package lab tears the lab down, natd first, and exits by the signal.
	defer func() {
		fmt.Println("\nTearing the lab down ...")
		env.Close()
	}()
	ctx := context.Background()
	if err := env.Start(ctx); err != nil {
		return err
	}
	fmt.Println("natd is running.")
	s := &step{}

	s.title("TCP hello world: in1 (10.0.0.2) connects to the server at 198.18.0.2:7000")
	greeting, seen, err := natdlab.TCPHello(env.In1, env.Out, netip.AddrPortFrom(natdlab.Server, 7000))
	if err == nil {
		say("the server answered: %q", greeting)
		say("the server saw the client as %s", seen)
	}
	s.check(err == nil && seen.Addr() == natdlab.PoolAddr,
		"the server saw the NAT's public address %s, not 10.0.0.2 (%v)", natdlab.PoolAddr, errOr(err))

	s.title("UDP: in1 sends 5 datagrams, from 5 source ports, to an echo server at 198.18.0.2:7001")
	answered, srcs, err := natdlab.UDPExchange(env.In1, env.Out, netip.AddrPortFrom(natdlab.Server, 7001), natdlab.In1, 5)
	for src := range srcs {
		say("the server saw a datagram from %s", src)
	}
	allPublic := len(srcs) > 0
	for src := range srcs {
		allPublic = allPublic && src.Addr() == natdlab.PoolAddr
	}
	s.check(err == nil && answered == 5 && allPublic, "%d of 5 answered, every one from the public address (%v)", answered, errOr(err))

	s.title("ping: in1 pings the server 3 times")
	out, err := natdlab.Ping(env.In1, natdlab.Server, 3)
	say("%s", lastLines(out, 2))
	s.check(err == nil && strings.Contains(out, "3 received"), "3 echo replies came back through the NAT")

	s.title("TTL-limited probe: in1 pings the far host 198.18.1.2 with TTL 2")
	say("the NAT forwards it with TTL 1; the router at 198.18.0.2 drops it and answers Time Exceeded")
	say("to the public address; the NAT must translate that error back to in1")
	out, err = natdlab.TTLProbe(env.In1)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "Time to live exceeded") {
			say("in1 received: %s", strings.TrimSpace(l))
		}
	}
	s.check(err == nil && strings.Contains(out, "From 198.18.0.2"), "the router's Time Exceeded reached in1")

	s.title("Port forward: the server connects to the public address 198.18.0.100:8080")
	say("deploy/examples/lab.yaml forwards tcp 198.18.0.100:8080 to in2's web server 10.0.0.3:80")
	greeting, seen, err = natdlab.TCPHelloVia(env.Out, env.In2, netip.AddrPortFrom(natdlab.In2, 80), netip.AddrPortFrom(natdlab.PoolAddr, natdlab.ForwardPort))
	if err == nil {
		say("in2's server answered: %q", greeting)
	}
	s.check(err == nil && seen.Addr() == natdlab.Server, "in2 accepted the connection from the outside client %s (%v)", natdlab.Server, errOr(err))

	s.title("Stats: what natd counted, through its management API (natctl)")
	for _, args := range [][]string{{"status"}, {"stats"}, {"sessions"}} {
		cmd := exec.Command(natctl, append([]string{"--socket", env.Socket}, args...)...)
		b, err := cmd.CombinedOutput()
		fmt.Printf("\n   $ natctl %s\n", strings.Join(args, " "))
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			fmt.Printf("   %s\n", l)
		}
		s.check(err == nil, "natctl %s", args[0])
	}
	mfs, err := env.Scrape()
	if err == nil {
		created := 0.0
		if mf := mfs["xnat_sessions_created_total"]; mf != nil {
			for _, m := range mf.Metric {
				created += m.GetCounter().GetValue()
			}
		}
		say("Prometheus /metrics reports %v sessions created", created)
		s.check(created >= 8, "the metrics count the demo's flows")
	} else {
		s.check(false, "scrape /metrics: %v", err)
	}

	masqueradeStep(ctx, s, env)

	fmt.Println("\nStopping natd (SIGTERM) ...")
	if err := env.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		s.failed = append(s.failed, fmt.Sprintf("natd stop: %v", err))
	} else {
		out, _ := lab.Exec(env.Box, "ip", "-d", "link", "show", lab.NATOutside)
		s.check(!strings.Contains(out, "xdp"), "natd detached its XDP programs and left the interfaces as they were")
	}
	if len(s.failed) > 0 {
		return fmt.Errorf("%d check(s) failed:\n  %s", len(s.failed), strings.Join(s.failed, "\n  "))
	}
	fmt.Printf("\nAll %d steps passed.\n", s.n)
	return nil
}

func errOr(err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return "no error"
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n   ")
}
