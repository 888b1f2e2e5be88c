package scaleoutlab

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xnat/xnat/bench/lab"
)

// Check is one claim the scenario verified.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// Report is what Run measured.
type Report struct {
	Checks []Check
	// Home is the appliance each subscriber left from in the steady state.
	Home []int
	// PerAppliance counts subscribers by home appliance.
	PerAppliance []int
	// Figures, by failover: the time from the signal until the inside
	// router dropped the appliance, and until the last of its
	// subscribers had a new flow working through a survivor; what its
	// subscribers lost (failed flows each, as a histogram "n failed:
	// subscribers"), and what the others lost.
	Freeze, Kill, Term Failover
	// Drain: the inside route's withdrawal after the drain call, the
	// long sessions that completed, and how long until no TCP session
	// was left open.
	DrainWithdraw   time.Duration
	DrainLongOK     int
	DrainLongTotal  int
	DrainEmpty      time.Duration
	DrainOtherFails int
	// HealthWithdrawn: XDP detached -> both routers dropped the routes.
	HealthWithdrawn time.Duration
	Flows, Failed   int
	// FailedAfter counts failed flows by the last scenario event before
	// their start.
	FailedAfter map[string]int
	// FailedSample describes the first failed flows.
	FailedSample []string
	events       []event
}

type event struct {
	name string
	at   time.Time
}

func (r *Report) at(name string) time.Time {
	for _, ev := range r.events {
		if ev.name == name {
			return ev.at
		}
	}
	return time.Time{}
}

func (r *Report) mark(name string) {
	r.events = append(r.events, event{name, time.Now()})
}

// Failover is what one failover cost.
type Failover struct {
	Withdrawn    time.Duration // signal -> inside router dropped the next hop
	WithdrawnOut time.Duration // signal -> outside router dropped the pool
	Exited       time.Duration // signal -> natd exited
	RecoverMax   time.Duration // signal -> last victim's first good new flow
	RecoverMed   time.Duration
	Victims      int
	VictimLost   map[int]int // failed flows -> subscribers
	OthersFailed int
}

func (r *Report) check(name string, ok bool, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// Failed returns the checks that failed.
func (r *Report) FailedChecks() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// RunOptions configure Run.
type RunOptions struct {
	// Victim is the appliance killed, stopped and drained. The default, 1,
	// is the middle next hop of the inside router's multipath route:
	// Linux's hash-threshold ECMP then moves only the victim's
	// subscribers (docs/scaleout.md).
	Victim int
	// Interval between a subscriber's flows (default 1 s).
	Interval time.Duration
	// Say receives a line per step in plain words (nil: silent).
	Say io.Writer
}

// Run starts the appliances and the traffic and plays the scenario:
// spread, SIGKILL, rejoin, SIGTERM, rejoin, drain, rejoin. It returns an
// error only when the lab itself fails; claims that do not hold are failed
// Checks in the report.
func (e *Env) Run(ctx context.Context, o RunOptions) (*Report, error) {
	if o.Victim == 0 {
		o.Victim = 1
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	say := func(format string, args ...any) {
		if o.Say != nil {
			fmt.Fprintf(o.Say, format+"\n", args...)
		}
	}
	all := make([]int, len(e.Appliances))
	for i := range all {
		all[i] = i
	}
	var others []int
	for _, i := range all {
		if i != o.Victim {
			others = append(others, i)
		}
	}
	v := e.Appliance(o.Victim)
	r := &Report{PerAppliance: make([]int, len(all))}

	say("Starting %d natd appliances; each announces its pool to the outside router and a default route to the inside router over BGP.", len(all))
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i := range all {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = e.Appliance(i).Start(ctx) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if err := e.waitRoutes(ctx, all, all, 20*time.Second); err != nil {
		return nil, err
	}
	say("The inside router has a %d-way multipath default route; the outside router routes every pool.", len(all))

	t, err := e.StartTraffic(o.Interval)
	if err != nil {
		return nil, err
	}
	defer t.Stop()
	r.mark("traffic")
	say("%d subscribers on %d inside hosts now open a TCP or UDP flow every %v each, to %d server addresses.", len(t.Subs), len(e.Hosts), o.Interval, len(e.Destinations))

	// 1. Spread.
	sleep(ctx, 1500*time.Millisecond)
	w0 := time.Now()
	sleep(ctx, 4*time.Second)
	w1 := time.Now()
	sleep(ctx, flowTimeout+200*time.Millisecond)
	r.Home = make([]int, len(t.Subs))
	multi, failed, fewDest := 0, 0, 0
	for k, s := range t.Subs {
		aps, dests := map[int]bool{}, 0
		for _, f := range s.Flows(w0, w1) {
			if !f.OK {
				failed++
				continue
			}
			aps[f.Appliance] = true
			dests++
		}
		r.Home[k] = -1
		for a := range aps {
			r.Home[k] = a
		}
		if len(aps) != 1 {
			multi++
		} else {
			r.PerAppliance[r.Home[k]]++
		}
		if dests < 3 {
			fewDest++
		}
	}
	spreadOK := multi == 0 && failed == 0 && fewDest == 0
	for _, n := range r.PerAppliance {
		spreadOK = spreadOK && n > 0
	}
	r.check("spread", spreadOK, "subscribers per appliance %v; %d subscribers seen on other than exactly one appliance, %d with fewer than 3 destinations, %d failed flows",
		r.PerAppliance, multi, fewDest, failed)
	say("Spread: subscribers per appliance %v; every subscriber's flows, to several destinations, left from one appliance's pool.", r.PerAppliance)
	victims := e.subsOf(t, r.Home, o.Victim)

	// 2. A silent death: natd frozen (SIGSTOP), found out by the routers'
	// hold timers, then killed.
	say("\nFreeze natd a%d (SIGSTOP): it stops answering but keeps its BGP connections open, like a hung box.", o.Victim)
	r.Freeze, err = e.failover(ctx, t, r, v, syscall.SIGSTOP, others, HoldTime+2*time.Second, o.Interval)
	if err != nil {
		return nil, err
	}
	say("  the routers' hold timers (%v) dropped it after %v (inside) / %v (outside); its subscribers' new flows worked again after %v at most (median %v); each lost %s; the others lost %d flows.",
		HoldTime, r.Freeze.Withdrawn.Round(time.Millisecond), r.Freeze.WithdrawnOut.Round(time.Millisecond), r.Freeze.RecoverMax.Round(time.Millisecond), r.Freeze.RecoverMed.Round(time.Millisecond), lossString(r.Freeze.VictimLost), r.Freeze.OthersFailed)
	if _, err := v.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
		return nil, err
	}
	if err := e.rejoin(ctx, t, r, v, "after the freeze", all); err != nil {
		return nil, err
	}
	say("  killed and restarted: a%d rejoined.", o.Victim)

	// 3. SIGKILL.
	say("\nSIGKILL natd a%d (carrying %d subscribers) under traffic: its BGP sessions die with it.", o.Victim, len(victims))
	r.Kill, err = e.failover(ctx, t, r, v, syscall.SIGKILL, others, HoldTime+2*time.Second, o.Interval)
	if err != nil {
		return nil, err
	}
	say("  routers dropped it after %v (inside) / %v (outside); its subscribers' new flows worked again through the survivors after %v at most (median %v); each lost %s; the other subscribers lost %d flows.",
		r.Kill.Withdrawn.Round(time.Millisecond), r.Kill.WithdrawnOut.Round(time.Millisecond), r.Kill.RecoverMax.Round(time.Millisecond), r.Kill.RecoverMed.Round(time.Millisecond), lossString(r.Kill.VictimLost), r.Kill.OthersFailed)
	if err := e.rejoin(ctx, t, r, v, "after SIGKILL", all); err != nil {
		return nil, err
	}
	say("  restarted: a%d rejoined and took its subscribers back.", o.Victim)

	// 4. SIGTERM.
	say("\nSIGTERM natd a%d: it withdraws its routes, waits 1 s, then detaches.", o.Victim)
	r.Term, err = e.failover(ctx, t, r, v, syscall.SIGTERM, others, 2*time.Second, o.Interval)
	if err != nil {
		return nil, err
	}
	r.check("sigterm withdraws before detaching", r.Term.Withdrawn < r.Term.Exited,
		"inside route withdrawn %v after SIGTERM, natd exited (after detaching) %v after", r.Term.Withdrawn.Round(time.Millisecond), r.Term.Exited.Round(time.Millisecond))
	say("  routes withdrawn after %v, natd exited after %v; new flows moved after %v at most (median %v); its subscribers lost %s; the others lost %d.",
		r.Term.Withdrawn.Round(time.Millisecond), r.Term.Exited.Round(time.Millisecond), r.Term.RecoverMax.Round(time.Millisecond), r.Term.RecoverMed.Round(time.Millisecond), lossString(r.Term.VictimLost), r.Term.OthersFailed)
	if err := e.rejoin(ctx, t, r, v, "after SIGTERM", all); err != nil {
		return nil, err
	}
	say("  restarted: a%d rejoined.", o.Victim)

	// 5. Drain.
	if err := e.drain(ctx, t, r, v, victims, others, say); err != nil {
		return nil, err
	}
	if err := e.rejoin(ctx, t, r, v, "after drain", all); err != nil {
		return nil, err
	}
	say("  restarted undrained: a%d rejoined and took subscribers again.", o.Victim)

	// 6. Health gate.
	say("\nDetach the XDP program from a%d's inside interface behind natd's back: its dataplane is no longer healthy.", o.Victim)
	inW, outW := e.watchWithdrawal(ctx, o.Victim)
	r.mark("xdp detached")
	th := time.Now()
	if err := lab.Run(v.NS, "ip", "link", "set", "dev", lab.ScaleOutApplianceInside, "xdp", "off"); err != nil {
		return nil, err
	}
	if err := e.waitRoutes(ctx, others, others, 10*time.Second); err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	ti := <-inW
	to := <-outW
	r.HealthWithdrawn = max(ti.Sub(th), to.Sub(th))
	r.check("health gate withdraws within 1 s", !ti.IsZero() && !to.IsZero() && r.HealthWithdrawn <= time.Second,
		"inside route gone after %v, pool route after %v", ti.Sub(th).Round(time.Millisecond), to.Sub(th).Round(time.Millisecond))
	say("  natd withdrew both routes within %v.", r.HealthWithdrawn.Round(time.Millisecond))
	if _, err := v.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
		return nil, err
	}

	t.Stop()
	r.FailedAfter = map[string]int{}
	for _, s := range t.Subs {
		for _, f := range s.Flows(time.Time{}, time.Now()) {
			r.Flows++
			if !f.OK {
				r.Failed++
				phase := "start"
				for _, ev := range r.events {
					if ev.at.Before(f.Start) {
						phase = ev.name
					}
				}
				r.FailedAfter[phase]++
				if len(r.FailedSample) < 40 {
					home := -1
					for k := range t.Subs {
						if t.Subs[k] == s {
							home = r.Home[k]
						}
					}
					r.FailedSample = append(r.FailedSample, fmt.Sprintf("%s (home a%d) %s udp=%v long=%v started %v after %q: %s",
						s.Addr, home, f.Start.Format("15:04:05.000"), f.UDP, f.Long, f.Start.Sub(r.at(phase)).Round(time.Millisecond), phase, f.Err))
				}
			}
		}
	}
	say("\n%d flows in all, %d failed; failed flows by the last event before they started: %v.", r.Flows, r.Failed, r.FailedAfter)
	return r, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (e *Env) waitRoutes(ctx context.Context, in, out []int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return e.WaitRoutes(ctx, in, out)
}

func (e *Env) subsOf(t *Traffic, home []int, a int) []*Subscriber {
	var out []*Subscriber
	for k, s := range t.Subs {
		if home[k] == a {
			out = append(out, s)
		}
	}
	return out
}

// watchWithdrawal polls both routers every 20 ms from now until the
// appliance is gone from both, and returns when each happened.
func (e *Env) watchWithdrawal(ctx context.Context, a int) (in, out chan time.Time) {
	in, out = make(chan time.Time, 1), make(chan time.Time, 1)
	go func() {
		var inDone, outDone bool
		deadline := time.Now().Add(30 * time.Second)
		for (!inDone || !outDone) && time.Now().Before(deadline) && ctx.Err() == nil {
			if nh, err := e.NextHops(); err == nil && !inDone && !slices.Contains(nh, a) {
				in <- time.Now()
				inDone = true
			}
			if pr, err := e.PoolRoutes(); err == nil && !outDone && !slices.Contains(pr, a) {
				out <- time.Now()
				outDone = true
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(in)
		close(out)
	}()
	return in, out
}

// failover stops appliance v with sig and measures what it cost.
func (e *Env) failover(ctx context.Context, t *Traffic, r *Report, v *Appliance, sig syscall.Signal, others []int, limit, interval time.Duration) (Failover, error) {
	var f Failover
	name := map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGSTOP: "SIGSTOP"}[sig]
	inW, outW := e.watchWithdrawal(ctx, v.Index)
	r.mark(name)
	t0 := time.Now()
	if sig == syscall.SIGSTOP {
		// Frozen, natd keeps its sockets open and sends nothing: only
		// the routers' hold timers notice.
		if err := v.Signal(sig); err != nil {
			return f, err
		}
	} else {
		exitAt, err := v.Stop(sig, 10*time.Second)
		if err != nil {
			return f, err
		}
		f.Exited = exitAt.Sub(t0)
	}
	if err := e.waitRoutes(ctx, others, others, 15*time.Second); err != nil {
		return f, err
	}
	if ti, ok := <-inW; ok {
		f.Withdrawn = ti.Sub(t0)
	}
	if to, ok := <-outW; ok {
		f.WithdrawnOut = to.Sub(t0)
	}
	// Wait until every victim had a good flow through a survivor (or the
	// limit passed), then for the flows under way to end.
	for time.Since(t0) < limit+interval && ctx.Err() == nil {
		done := true
		for k, s := range t.Subs {
			if r.Home[k] != v.Index {
				continue
			}
			ok := false
			for _, fl := range s.Flows(t0, time.Now()) {
				ok = ok || (fl.OK && fl.Appliance != v.Index)
			}
			done = done && ok
		}
		if done {
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	end := time.Now()
	sleep(ctx, flowTimeout+200*time.Millisecond)
	f.VictimLost = map[int]int{}
	var recov []time.Duration
	notRecovered := 0
	for k, s := range t.Subs {
		flows := s.Flows(t0.Add(-flowTimeout-time.Second), end)
		if r.Home[k] != v.Index {
			for _, fl := range flows {
				if !fl.OK || fl.Appliance != r.Home[k] {
					f.OthersFailed++
				}
			}
			continue
		}
		f.Victims++
		lost, rec := 0, time.Duration(-1)
		for _, fl := range flows {
			if fl.OK && fl.Appliance != v.Index && !fl.Start.Before(t0) && rec < 0 {
				rec = fl.Start.Sub(t0)
			}
			if !fl.OK {
				lost++
			}
		}
		f.VictimLost[lost]++
		if rec < 0 {
			notRecovered++
			continue
		}
		recov = append(recov, rec)
	}
	sort.Slice(recov, func(i, j int) bool { return recov[i] < recov[j] })
	if len(recov) > 0 {
		f.RecoverMax, f.RecoverMed = recov[len(recov)-1], recov[len(recov)/2]
	}
	r.check(name+": victims recover", notRecovered == 0 && f.RecoverMax <= limit && f.Victims > 0,
		"%d subscribers of a%d; %d never recovered; the last recovered %v after the signal (limit %v)", f.Victims, v.Index, notRecovered, f.RecoverMax.Round(time.Millisecond), limit)
	r.check(name+": others lose nothing", f.OthersFailed == 0, "%d of the other subscribers' flows failed or moved", f.OthersFailed)
	return f, nil
}

// rejoin restarts v and checks that it takes back exactly its subscribers.
func (e *Env) rejoin(ctx context.Context, t *Traffic, r *Report, v *Appliance, when string, all []int) error {
	r.mark("restart " + when)
	if err := v.Start(ctx); err != nil {
		return err
	}
	r.mark("natd answering " + when)
	if err := e.waitRoutes(ctx, all, all, 20*time.Second); err != nil {
		return err
	}
	r.mark("routes back " + when)
	t0 := time.Now()
	sleep(ctx, 2*time.Second+flowTimeout)
	back, wrong := 0, 0
	for k, s := range t.Subs {
		// Flows that started a little after the route came back.
		for _, fl := range s.Flows(t0.Add(200*time.Millisecond), t0.Add(2*time.Second)) {
			if !fl.OK || fl.Appliance != r.Home[k] {
				wrong++
			} else if r.Home[k] == v.Index {
				back++
			}
		}
	}
	r.check("rejoin "+when, back > 0 && wrong == 0, "a%d served %d flows of its own subscribers again; %d flows failed or left from another appliance than their subscriber's", v.Index, back, wrong)
	return nil
}

// drain opens long TCP sessions through v, drains v, and checks that no
// new flow lands on it, the long sessions complete, and that it can then
// stop without loss.
func (e *Env) drain(ctx context.Context, t *Traffic, r *Report, v *Appliance, victims []*Subscriber, others []int, say func(string, ...any)) error {
	long := victims
	if len(long) > 10 {
		long = long[:10]
	}
	const longFor = 3 * time.Second
	tl := time.Now()
	results := t.LongSessions(long, longFor)
	sleep(ctx, 600*time.Millisecond)
	say("\nDrain a%d (natctl drain) while %d of its subscribers hold %v TCP sessions through it.", v.Index, len(long), longFor)
	inW, _ := e.watchWithdrawal(ctx, v.Index)
	r.mark("drain")
	td := time.Now()
	if err := v.SetDrain(ctx, true); err != nil {
		return err
	}
	all := make([]int, len(e.Appliances))
	for i := range all {
		all[i] = i
	}
	// The outside route stays: existing sessions need their return
	// traffic.
	if err := e.waitRoutes(ctx, others, all, 10*time.Second); err != nil {
		return fmt.Errorf("after drain: %w", err)
	}
	tw, ok := <-inW
	if !ok {
		return fmt.Errorf("drain: inside route not withdrawn")
	}
	r.DrainWithdraw = tw.Sub(td)
	r.DrainLongTotal = len(long)
	var longErrs []string
	for range long {
		select {
		case f := <-results:
			if f.OK && f.Appliance == v.Index {
				r.DrainLongOK++
			} else {
				longErrs = append(longErrs, fmt.Sprintf("appliance %d: %s", f.Appliance, f.Err))
			}
		case <-time.After(longFor + 5*time.Second):
			return fmt.Errorf("drain: long sessions did not end")
		}
	}
	r.check("drain: existing TCP sessions complete", r.DrainLongOK == len(long) && len(long) > 0, "%d of %d long sessions completed through a%d; %v", r.DrainLongOK, len(long), v.Index, longErrs)
	// Drain progress until no TCP session is left open.
	for {
		st, err := v.BGP(ctx)
		if err != nil {
			return err
		}
		if st.Drained && st.TcpOpen == 0 {
			r.DrainEmpty = time.Since(td)
			break
		}
		if time.Since(td) > 20*time.Second {
			return fmt.Errorf("drain: %d TCP sessions still open after 20 s: %s", st.TcpOpen, v.openTCP(ctx))
		}
		sleep(ctx, 100*time.Millisecond)
	}
	say("  inside route withdrawn %v after the drain, outside route kept; %d/%d long sessions completed; natctl status showed no TCP session left after %v.",
		r.DrainWithdraw.Round(time.Millisecond), r.DrainLongOK, len(long), r.DrainEmpty.Round(time.Millisecond))
	tq := time.Now()
	sleep(ctx, flowTimeout+200*time.Millisecond)
	newOn := 0
	for _, s := range t.Subs {
		for _, f := range s.Flows(tw.Add(100*time.Millisecond), tq) {
			if !f.Long && f.Appliance == v.Index {
				newOn++
			}
		}
	}
	r.check("drain: no new subscribers land on it", newOn == 0, "%d new flows left from a%d after its inside route was withdrawn", newOn, v.Index)
	r.mark("stop drained")
	if _, err := v.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
		return err
	}
	ts := time.Now()
	sleep(ctx, flowTimeout+time.Second)
	for _, s := range t.Subs {
		for _, f := range s.Flows(tl, ts.Add(time.Second)) {
			if !f.OK {
				r.DrainOtherFails++
			}
		}
	}
	r.check("drain: stops with nothing lost", r.DrainOtherFails == 0, "%d flows failed from the long sessions' start to 1 s after a%d stopped", r.DrainOtherFails, v.Index)
	say("  stopped a%d: %d flows lost.", v.Index, r.DrainOtherFails)
	return nil
}

func lossString(m map[int]int) string {
	var keys []int
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d flows: %d subscribers", k, m[k]))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
