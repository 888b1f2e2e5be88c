// Package scaleoutlab runs the scale-out lab (docs/scaleout.md): three natd
// appliances between an inside and an outside router that run BIRD 2 in
// their namespaces and spread subscribers over the appliances by ECMP,
// hashed on the source address alone. It drives real kernel TCP and UDP
// flows from 300 subscriber addresses and measures what failovers, a drain
// and a rejoin cost them. `xnatlab scaleout` and the package's test run the
// same scenario (Run).
package scaleoutlab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xnat/xnat/bench/lab"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
	"github.com/xnat/xnat/mgmt/client"
)

// ASes of the lab: the appliances share one, as in a real deployment.
const (
	InsideAS    = 65001
	OutsideAS   = 65002
	ApplianceAS = 65010
	// HoldTime is short so that a silently dead appliance is noticed
	// quickly: RFC 4271's minimum.
	HoldTime = 3 * time.Second
)

// Pool returns appliance i's pool.
func Pool(i int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/28", 10+i)) }

// Env is a built scale-out lab with its routers running.
type Env struct {
	*lab.ScaleOut
	Dir        string
	natd       string
	log        io.Writer
	appliances []*Appliance
}

// Options configure New.
type Options struct {
	Natd        string // natd binary
	Appliances  int    // default 3
	Subscribers int    // default 300
	// Log receives natd's and BIRD's logs (default: kept per process).
	Log io.Writer
}

// New builds the lab and starts BIRD in both routers; the appliances are
// configured but not started.
func New(opts Options) (_ *Env, err error) {
	if opts.Appliances == 0 {
		opts.Appliances = 3
	}
	if opts.Subscribers == 0 {
		opts.Subscribers = 300
	}
	if _, err := exec.LookPath("bird"); err != nil {
		return nil, fmt.Errorf("scaleoutlab: BIRD 2 not installed (Debian: bird2): %w", err)
	}
	so, err := lab.NewScaleOut(opts.Appliances, 2, opts.Subscribers, 16)
	if err != nil {
		return nil, err
	}
	e := &Env{ScaleOut: so, natd: opts.Natd, log: opts.Log}
	defer func() {
		if err != nil {
			so.Close()
		}
	}()
	if err := so.VerifySourceHash(); err != nil {
		return nil, err
	}
	if e.Dir, err = so.TempDir("scaleout"); err != nil {
		return nil, err
	}
	if err := e.installStickiness(); err != nil {
		return nil, err
	}
	so.OnClose(func() error {
		for _, a := range e.appliances {
			if a.Running() {
				a.Stop(syscall.SIGKILL, 5*time.Second)
			}
		}
		return nil
	})
	for _, r := range []struct {
		ns, name string
		as       int
	}{{so.InRouter, "rin", InsideAS}, {so.OutRouter, "rout", OutsideAS}} {
		if err := e.startBIRD(r.ns, r.name, r.as); err != nil {
			return nil, err
		}
	}
	for i := range so.Appliances {
		a := &Appliance{env: e, Index: i, NS: so.Appliances[i], natd: lab.Daemon{Name: "scaleoutlab: natd"}, log: &lab.LogBuffer{W: opts.Log, Prefix: fmt.Sprintf("a%d: ", i)}}
		a.Socket = filepath.Join(e.Dir, fmt.Sprintf("a%d.sock", i))
		a.Config = filepath.Join(e.Dir, fmt.Sprintf("a%d.yaml", i))
		if err := os.WriteFile(a.Config, []byte(a.render()), 0o644); err != nil {
			return nil, err
		}
		e.appliances = append(e.appliances, a)
	}
	return e, nil
}

// Appliance returns appliance i.
func (e *Env) Appliance(i int) *Appliance { return e.appliances[i] }

// birdConfig is a router's BIRD 2 configuration: one passive eBGP session
// per appliance (the appliances connect), the kernel table fed with
// equal-cost routes merged into one multipath route, and timers short
// enough for a lab (BIRD's default error wait of 60 s would keep a
// restarted appliance out for a minute).
func (e *Env) birdConfig(name string, as int) string {
	var b strings.Builder
	_, _, rin, rout := lab.ScaleOutApplianceAddrs(0)
	id := rin.Addr()
	if as == OutsideAS {
		id = rout.Addr()
	}
	fmt.Fprintf(&b, "router id %s;\nlog stderr all;\n", id)
	b.WriteString(`protocol device { scan time 1; }
protocol direct { ipv4; }
protocol kernel {
	ipv4 { import none; export filter { if source = RTS_BGP then accept; reject; }; };
	merge paths yes;
}
`)
	fmt.Fprintf(&b, `template bgp appliance {
	local as %d;
	passive on;
	direct;
	hold time %d;
	keepalive time 1;
	connect retry time 1;
	error wait time 1, 2;
	ipv4 { import all; export none; };
}
`, as, int(HoldTime/time.Second))
	for i := range e.Appliances {
		in, out, _, _ := lab.ScaleOutApplianceAddrs(i)
		peer := in.Addr()
		if as == OutsideAS {
			peer = out.Addr()
		}
		fmt.Fprintf(&b, "protocol bgp a%d from appliance { neighbor %s as %d; }\n", i, peer, ApplianceAS)
	}
	return b.String()
}

func (e *Env) startBIRD(ns, name string, as int) error {
	conf := filepath.Join(e.Dir, name+".conf")
	if err := os.WriteFile(conf, []byte(e.birdConfig(name, as)), 0o644); err != nil {
		return err
	}
	cmd := lab.Command(ns, "bird", "-f", "-c", conf, "-s", filepath.Join(e.Dir, name+".ctl"), "-P", filepath.Join(e.Dir, name+".pid"))
	logw := &lab.LogBuffer{W: e.log, Prefix: name + ": "}
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start BIRD in %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	// The lab kills every process in its namespaces at Close; this only
	// reaps it.
	e.OnClose(func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
		}
		return nil
	})
	// BIRD is up when its control socket answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := lab.Exec(ns, "birdc", "-s", filepath.Join(e.Dir, name+".ctl"), "show", "status"); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("BIRD in %s exited; log:\n%s", name, logw.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("BIRD in %s does not answer on its control socket; log:\n%s", name, logw.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// installStickiness keeps established flows on the appliance they started
// on, in the inside router: the first packet of a connection takes the
// ECMP route and its conntrack entry remembers the appliance (ct mark);
// later packets from the subscribers are routed by that mark. Without it,
// withdrawing a drained appliance's inside route would move its
// subscribers' open connections to another appliance, which has no state
// for them (docs/scaleout.md: "Drain").
func (e *Env) installStickiness() error {
	var rules strings.Builder
	rules.WriteString("table ip xnatlab {\n chain pre {\n  type filter hook prerouting priority mangle; policy accept;\n")
	for h := range e.Hosts {
		// Every state: a retransmitted SYN is still "new" to conntrack
		// but must follow its first copy (a new entry's mark is 0: the
		// ECMP route).
		fmt.Fprintf(&rules, "  iifname \"h%d\" meta mark set ct mark\n", h)
	}
	rules.WriteString(" }\n chain post {\n  type filter hook postrouting priority mangle; policy accept;\n")
	for i := range e.Appliances {
		fmt.Fprintf(&rules, "  oifname \"ap%d\" ct state new ct mark set %d\n", i, i+1)
	}
	rules.WriteString(" }\n}\n")
	path := filepath.Join(e.Dir, "rin.nft")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		return err
	}
	if err := lab.Run(e.InRouter, "nft", "-f", path); err != nil {
		return err
	}
	for i := range e.Appliances {
		in, _, _, _ := lab.ScaleOutApplianceAddrs(i)
		table := fmt.Sprint(100 + i)
		if err := lab.Run(e.InRouter, "ip", "route", "add", "default", "via", in.Addr().String(), "dev", fmt.Sprintf("ap%d", i), "table", table); err != nil {
			return err
		}
		if err := lab.Run(e.InRouter, "ip", "rule", "add", "fwmark", fmt.Sprint(i+1), "lookup", table, "pref", fmt.Sprint(100+i)); err != nil {
			return err
		}
	}
	return nil
}

// NextHops returns the appliances (by index) the inside router's default
// route leads to.
func (e *Env) NextHops() ([]int, error) {
	out, err := lab.Exec(e.InRouter, "ip", "-4", "route", "show", "default")
	if err != nil {
		return nil, err
	}
	return viaAppliances(out, func(i int) netip.Addr { in, _, _, _ := lab.ScaleOutApplianceAddrs(i); return in.Addr() }, len(e.Appliances)), nil
}

// PoolRoutes returns the appliances whose pool the outside router routes.
func (e *Env) PoolRoutes() ([]int, error) {
	var got []int
	for i := range e.Appliances {
		out, err := lab.Exec(e.OutRouter, "ip", "-4", "route", "show", Pool(i).String())
		if err != nil {
			return nil, err
		}
		_, o, _, _ := lab.ScaleOutApplianceAddrs(i)
		if strings.Contains(out, "via "+o.Addr().String()+" ") {
			got = append(got, i)
		}
	}
	return got, nil
}

func viaAppliances(routes string, addr func(int) netip.Addr, n int) []int {
	var got []int
	for i := 0; i < n; i++ {
		if strings.Contains(routes, "via "+addr(i).String()+" ") {
			got = append(got, i)
		}
	}
	return got
}

// WaitRoutes waits until the inside router's default route leads to
// exactly the appliances want and the outside router routes exactly the
// pools of pools.
func (e *Env) WaitRoutes(ctx context.Context, want, pools []int) error {
	var nh, pr []int
	for {
		var err error
		if nh, err = e.NextHops(); err != nil {
			return err
		}
		if pr, err = e.PoolRoutes(); err != nil {
			return err
		}
		if equal(nh, want) && equal(pr, pools) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("routes: inside next hops %v (want %v), outside pools %v (want %v): %w", nh, want, pr, pools, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Appliance is one natd.
type Appliance struct {
	env    *Env
	Index  int
	NS     string
	Socket string
	Config string
	log    *lab.LogBuffer

	natd lab.Daemon
}

func (a *Appliance) render() string {
	_, out, rin, rout := lab.ScaleOutApplianceAddrs(a.Index)
	return fmt.Sprintf(`interfaces:
  inside: {name: %s, queues: [0]}
  outside: {name: %s, queues: [0]}
workers: [{cpu: -1}]
poll_mode: adaptive
xdp: {frames: 4096}
nat:
  inside_prefixes: [10.0.0.0/8]
  pools:
    - {name: a%d, addresses: [%s]}
  limits: {max_sessions: 32768, max_subscribers: 1024}
management:
  socket: %s
  readonly_socket: %s
metrics: {listen: "127.0.0.1:9469"}
bgp:
  local_as: %d
  router_id: %s
  hold_time: %s
  shutdown_delay: 1s
  neighbors:
    - {address: %s, as: %d, side: inside}
    - {address: %s, as: %d, side: outside}
  inside: {default_route: true}
  outside: {communities: ["%d:%d"]}
`, lab.ScaleOutApplianceInside, lab.ScaleOutApplianceOutside, a.Index, Pool(a.Index),
		a.Socket, a.Socket+".ro",
		ApplianceAS, out.Addr(), HoldTime, rin.Addr(), InsideAS, rout.Addr(), OutsideAS, ApplianceAS, 100+a.Index)
}

// Start runs natd and waits until its management API answers.
func (a *Appliance) Start(ctx context.Context) error {
	if err := a.natd.Start(a.NS, a.log, a.env.natd, "--config", a.Config); err != nil {
		return err
	}
	done := a.natd.Exited()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if st, err := a.BGP(ctx); err == nil && st.Enabled {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("natd a%d exited during start-up; log:\n%s", a.Index, a.Log())
		case <-ctx.Done():
			return fmt.Errorf("natd a%d not answering: %w; log:\n%s", a.Index, ctx.Err(), a.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Running reports whether natd runs.
func (a *Appliance) Running() bool { return a.natd.Running() }

// Stop sends sig to natd and waits for it to exit; it returns when natd
// exited. A natd still running after timeout is SIGKILLed.
func (a *Appliance) Stop(sig syscall.Signal, timeout time.Duration) (exitAt time.Time, err error) {
	killed, err := a.natd.Stop(sig, timeout)
	if err != nil {
		return time.Time{}, err
	}
	if killed {
		err = fmt.Errorf("natd a%d did not exit within %v of %v", a.Index, timeout, sig)
	}
	return a.natd.ExitAt(), err
}

// Signal sends sig to natd's process group without waiting.
func (a *Appliance) Signal(sig syscall.Signal) error { return a.natd.Signal(sig) }

// Log returns natd's log so far (all its runs).
func (a *Appliance) Log() string { return a.log.String() }

// call runs f with a client of natd's management API and a 2 s deadline:
// the one way the lab talks to an appliance, as natctl would.
func (a *Appliance) call(ctx context.Context, f func(context.Context, *client.Client) error) error {
	cl, err := client.Dial(client.Options{Socket: a.Socket})
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return f(ctx, cl)
}

// BGP returns natd's BGP status.
func (a *Appliance) BGP(ctx context.Context) (st *xnatv1.BGPStatus, err error) {
	err = a.call(ctx, func(ctx context.Context, cl *client.Client) error {
		r, err := cl.GetBGPStatus(ctx, &xnatv1.GetBGPStatusRequest{})
		if err == nil {
			st = r.Status
		}
		return err
	})
	return st, err
}

// SetDrain drains or undrains natd through its API (as natctl does).
func (a *Appliance) SetDrain(ctx context.Context, drain bool) error {
	return a.call(ctx, func(ctx context.Context, cl *client.Client) error {
		_, err := cl.SetDrain(ctx, &xnatv1.SetDrainRequest{Drain: drain})
		return err
	})
}

// openTCP lists natd's open TCP connections (established or closing), for
// a failure message; an error ends the list.
func (a *Appliance) openTCP(ctx context.Context) string {
	var b strings.Builder
	err := a.call(ctx, func(ctx context.Context, cl *client.Client) error {
		token := ""
		for {
			r, err := cl.ListSessions(ctx, &xnatv1.ListSessionsRequest{PageSize: 1000, PageToken: token})
			if err != nil {
				return err
			}
			for _, s := range r.Sessions {
				if s.Protocol == xnatv1.Protocol_PROTOCOL_TCP && (s.State == "established" || s.State == "closing") {
					fmt.Fprintf(&b, "\n  %s:%d -> %s:%d %s last seen %s", s.Inside.GetAddr(), s.Inside.GetPort(), s.Remote.GetAddr(), s.Remote.GetPort(), s.State, s.LastSeen.AsTime().Format("15:04:05.000"))
				}
			}
			if token = r.NextPageToken; token == "" {
				return nil
			}
		}
	})
	if err != nil {
		b.WriteString(err.Error())
	}
	return b.String()
}
