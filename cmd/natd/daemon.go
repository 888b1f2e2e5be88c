package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/dataplane/afxdp"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/neigh"
	"github.com/xnat/xnat/dataplane/poller"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/xdpprog"
	"github.com/xnat/xnat/mgmt"
)

// daemon is a running natd. Start builds it in order; Close tears it down in
// reverse, restoring the interfaces.
type daemon struct {
	log     *slog.Logger
	cfg     *Config
	started time.Time

	links [nat.NumSides]linkInfo
	eng   *nat.Engine
	store *mgmt.ConfigStore
	prog  *xdpprog.Program
	att   [nat.NumSides]*xdpprog.Attachment
	nb    *neigh.Table
	wk    []*workerState
	masq  *masq      // masquerade.go
	attMu sync.Mutex // guards att once workers run (ifwatch.go)

	// addrMu guards the addresses natd added to the outside link.
	addrMu sync.Mutex
	added  map[netip.Addr]bool
	gen    uint64 // snapshot generation last synced to XDP and the link

	mgmt    *mgmtPlane
	bgp     *bgpGlue // bgp.go; nil without a bgp section
	stopHK  chan struct{}
	hkDone  chan struct{}
	fatal   chan error
	closeMu sync.Mutex
	closed  bool
}

type linkInfo struct {
	name    string
	ifindex int
	mac     [6]byte
	mtu     int
	addrs   []netip.Prefix // IPv4 addresses natd did not add
	queues  []int
	generic bool
}

type workerState struct {
	id     int
	cpu    int
	queues [nat.NumSides]int
	w      *nat.Worker
	run    *poller.Runner
	ports  [nat.NumSides]*afxdp.Port

	// Port counters, published by the worker goroutine every few bursts,
	// and the kernel's statistics of each socket (frames the kernel could
	// not hand to us: RX ring full, no fill-ring frame, invalid
	// descriptors).
	statsMu sync.Mutex
	stats   [nat.NumSides]afxdp.Stats
	kstats  [nat.NumSides]unix.XDPStatistics
}

func (d *daemon) Fatal() <-chan error { return d.fatal }

// start brings natd up. On error, whatever was set up is torn down again.
// baseProcs is GOMAXPROCS as the runtime chose it (the CPUs natd may use).
var baseProcs = runtime.GOMAXPROCS(0)

func start(ctx context.Context, cfg *Config, log *slog.Logger) (_ *daemon, err error) {
	d := &daemon{log: log, cfg: cfg, started: time.Now(), added: map[netip.Addr]bool{}, fatal: make(chan error, 1)}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	log.Info("natd starting", "version", buildVersion(), "config", cfg.File, "workers", len(cfg.CPUs), "poll_mode", cfg.PollMode.String())
	for _, n := range cfg.NAT.Notices() {
		log.Warn("configuration note", "note", n)
	}

	if err := d.lookupLinks(); err != nil {
		return nil, err
	}
	if err := d.startEngine(); err != nil {
		return nil, err
	}
	if err := d.attachXDP(); err != nil {
		return nil, err
	}
	d.nb, err = neigh.New(ctx, neigh.Config{
		Inside:  neigh.Link{Name: d.links[nat.Inside].name},
		Outside: neigh.Link{Name: d.links[nat.Outside].name},
	})
	if err != nil {
		return nil, fmt.Errorf("neighbour table: %w", err)
	}

	for i, cpu := range cfg.CPUs {
		ws, err := d.newWorker(i, cpu)
		if err != nil {
			return nil, err
		}
		d.wk = append(d.wk, ws)
	}
	if err := d.startWorkers(); err != nil {
		return nil, err
	}

	d.stopHK, d.hkDone = make(chan struct{}), make(chan struct{})
	go d.housekeep()

	d.mgmt, err = startMgmt(ctx, d)
	if err != nil {
		return nil, err
	}
	if err := d.watchAddrs(); err != nil {
		return nil, err
	}
	if err := d.startBGP(); err != nil {
		return nil, err
	}
	log.Info("natd running", "config_generation", d.eng.Snapshot().Generation)
	return d, nil
}

// The steps of start, in order. Each leaves what it made in d, for Close
// to undo when a later step fails.

// lookupLinks finds both interfaces, with their MACs, MTUs and addresses.
func (d *daemon) lookupLinks() error {
	for s, ic := range [nat.NumSides]ifaceConfig{d.cfg.Inside, d.cfg.Outside} {
		li, err := lookupLink(ic.Name)
		if err != nil {
			return fmt.Errorf("%s interface: %w", nat.Side(s), err)
		}
		li.queues = ic.Queues
		li.generic = d.cfg.GenericXDP
		d.links[s] = li
		d.log.Info("interface", "side", nat.Side(s).String(), "name", li.name, "ifindex", li.ifindex,
			"mac", net.HardwareAddr(li.mac[:]).String(), "mtu", li.mtu, "addrs", li.addrs, "queues", li.queues)
	}
	if len(d.links[nat.Inside].addrs) == 0 {
		d.log.Warn("the inside interface has no IPv4 address: ICMP errors natd originates there (TTL, MTU) cannot be sent")
	}
	return nil
}

// startEngine creates the NAT engine and the configuration store over it.
func (d *daemon) startEngine() (err error) {
	natCfg, err := d.startMasq(d.cfg.NAT)
	if err != nil {
		return err
	}
	d.eng, err = nat.New(natCfg, nat.Options{Workers: len(d.cfg.CPUs)})
	if err != nil {
		return err
	}
	if err := d.eng.SetLinks(d.natLinks()); err != nil {
		return err
	}
	d.store = mgmt.NewConfigStore(d.cfg.NAT, d.applyNAT)
	return nil
}

// attachXDP loads the XDP program, fills its public-address map and
// attaches it to both interfaces.
func (d *daemon) attachXDP() (err error) {
	d.prog, err = xdpprog.Load()
	if err != nil {
		return fmt.Errorf("load XDP program: %w", err)
	}
	if err := d.syncPublic(); err != nil {
		return err
	}
	for s, role := range [nat.NumSides]xdpprog.Role{xdpprog.RoleInside, xdpprog.RoleOutside} {
		d.att[s], err = d.prog.Attach(d.links[s].ifindex, role)
		if err != nil {
			return fmt.Errorf("attach XDP to %s: %w", d.links[s].name, err)
		}
		d.log.Info("XDP program attached", "interface", d.links[s].name, "role", role.String())
	}
	return nil
}

// newWorker opens worker i's AF_XDP sockets, one on its queue of each
// side, and creates its NAT worker and poll loop, pinned to cpu.
func (d *daemon) newWorker(i, cpu int) (_ *workerState, err error) {
	ws := &workerState{id: i, cpu: cpu}
	u, err := d.workerUMEM()
	if err != nil {
		return nil, err
	}
	defer u.Close()
	for s := nat.Inside; s < nat.NumSides; s++ {
		q := d.links[s].queues[i]
		ws.queues[s] = q
		opts := d.cfg.Port
		opts.Register = func(ifindex, queue, fd int) error { return d.register(s, ifindex, queue, fd) }
		opts.UMEM = u
		p, err := afxdp.New(d.links[s].ifindex, q, &opts)
		if err != nil {
			return nil, fmt.Errorf("AF_XDP socket on %s queue %d: %w", d.links[s].name, q, err)
		}
		ws.ports[s] = p
	}
	ws.w, err = d.eng.NewWorker(i, nat.WorkerConfig{
		Ports:     [nat.NumSides]port.Port{ws.ports[nat.Inside], ws.ports[nat.Outside]},
		MACs:      [nat.NumSides][6]byte{d.links[nat.Inside].mac, d.links[nat.Outside].mac},
		Neighbors: d.nb,
		Burst:     d.cfg.BatchSize,
	})
	if err != nil {
		return nil, err
	}
	ws.run, err = poller.New(poller.Config{
		Worker: ws.w, Ports: [nat.NumSides]port.Port{ws.ports[nat.Inside], ws.ports[nat.Outside]},
		CPU: cpu, Mode: d.cfg.PollMode, PortStats: ws.publishPortStats,
	})
	if err != nil {
		return nil, err
	}
	return ws, nil
}

// startWorkers gives the workers their Ps and CPUs and starts their poll
// loops.
func (d *daemon) startWorkers() error {
	// Every worker holds a P (GOMAXPROCS) all the time. The scheduler
	// still preempts it every 10 ms, and it then waits for a free P: with
	// only the CPUs' worth of Ps, management goroutines busy with a large
	// listing keep it waiting for whole slices, and frames pile up in its
	// RX ring (bench/mgmtload). One more P per worker leaves the others
	// as many as there are CPUs. An explicit GOMAXPROCS wins.
	if os.Getenv("GOMAXPROCS") == "" {
		procs := baseProcs + len(d.cfg.CPUs)
		runtime.GOMAXPROCS(procs)
		d.log.Info("GOMAXPROCS raised for the workers", "gomaxprocs", procs)
	}
	// Management, metrics, the expirer and the GC run on the CPUs the
	// workers leave free, so they never take a busy-polling worker's core.
	switch other, err := poller.ConfineOthers(d.cfg.CPUs); {
	case err != nil:
		d.log.Warn("could not keep natd's other threads off the workers' CPUs", "err", err)
	case other == nil:
		d.log.Warn("workers on every CPU natd may use: management and housekeeping share their cores")
	default:
		d.log.Info("natd's other threads kept off the workers' CPUs", "cpus", other)
	}
	for _, ws := range d.wk {
		if err := ws.run.Start(); err != nil {
			return err
		}
		d.log.Info("worker started", "worker", ws.id, "cpu", ws.cpu, "inside_queue", ws.queues[nat.Inside],
			"outside_queue", ws.queues[nat.Outside], "zerocopy", ws.ports[nat.Inside].ZeroCopy(), "shared_umem", ws.w.SharesFrames())
	}
	return nil
}

func (ws *workerState) publishPortStats() {
	var ks [nat.NumSides]unix.XDPStatistics
	for s, p := range ws.ports {
		if k, err := p.KernelStats(); err == nil {
			ks[s] = k
		}
	}
	ws.statsMu.Lock()
	for s, p := range ws.ports {
		p.Snapshot(&ws.stats[s])
	}
	ws.kstats = ks
	ws.statsMu.Unlock()
}

func (ws *workerState) portStats() ([nat.NumSides]afxdp.Stats, [nat.NumSides]unix.XDPStatistics) {
	ws.statsMu.Lock()
	defer ws.statsMu.Unlock()
	return ws.stats, ws.kstats
}

// natLinks describes the appliance's own addresses for the engine: the
// first address natd did not add, per side.
func (d *daemon) natLinks() [nat.NumSides]nat.Link {
	var l [nat.NumSides]nat.Link
	for s, li := range d.links {
		l[s].MTU = li.mtu
		if len(li.addrs) > 0 {
			l[s].Addr = li.addrs[0].Addr()
		}
	}
	return l
}

// lookupLink reads an interface's identity and its IPv4 addresses.
func lookupLink(name string) (linkInfo, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return linkInfo{}, fmt.Errorf("%q: %w", name, err)
	}
	a := l.Attrs()
	li := linkInfo{name: a.Name, ifindex: a.Index, mtu: a.MTU}
	if len(a.HardwareAddr) != 6 {
		return linkInfo{}, fmt.Errorf("%q is not an Ethernet interface", name)
	}
	copy(li.mac[:], a.HardwareAddr)
	if a.Flags&net.FlagUp == 0 {
		return linkInfo{}, fmt.Errorf("%q is down", name)
	}
	if li.addrs, err = linkAddrs(l, name); err != nil {
		return linkInfo{}, fmt.Errorf("%q addresses: %w", name, err)
	}
	return li, nil
}

// xnatLabel is the label natd puts on the public addresses it adds to the
// outside interface, so that a later natd (after a crash) recognises them.
// Labels must start with the interface name and fit IFNAMSIZ.
func xnatLabel(ifname string) string {
	if len(ifname) > 12 {
		return ""
	}
	return ifname + ":xn"
}

// applyNAT is the ConfigStore's publisher: the engine takes the new
// configuration, then XDP maps and outside addresses follow it.
func (d *daemon) applyNAT(c nat.Config) error {
	c, err := d.resolveNAT(c)
	if err != nil {
		return err
	}
	old := d.eng.Snapshot().Config
	if err := d.eng.ApplyConfig(c); err != nil {
		return err
	}
	warnDetMoves(d.log, &old, &c)
	if err := d.syncPublic(); err != nil {
		return fmt.Errorf("%w: configuration applied but the dataplane did not follow: %v", mgmt.ErrUnavailable, err)
	}
	d.log.Info("configuration applied", "generation", d.eng.Snapshot().Generation)
	return nil
}

// syncPublic makes the XDP maps and the outside interface's addresses match
// the engine's snapshot: public addresses are added (new first) before stale
// ones are removed, so traffic to an address that stays is never passed to
// the kernel in between.
func (d *daemon) syncPublic() error {
	d.addrMu.Lock()
	defer d.addrMu.Unlock()
	snap := d.eng.Snapshot()
	public := snap.PublicAddrs()
	var local []netip.Addr
	for _, li := range d.links {
		for _, p := range li.addrs {
			local = append(local, p.Addr())
			if p.Bits() < 31 {
				local = append(local, lastAddr(p))
			}
		}
	}
	if err := d.prog.SetLocalAddrs(local); err != nil {
		return fmt.Errorf("XDP local addresses: %w", err)
	}
	if err := d.prog.SetInsidePrefixes(snap.InsidePrefixes()); err != nil {
		return fmt.Errorf("XDP inside prefixes: %w", err)
	}
	if err := d.syncMasq(snap.Config); err != nil {
		return err
	}
	if err := d.prog.SetPublicAddrs(public); err != nil {
		return fmt.Errorf("XDP public addresses: %w", err)
	}
	// The kernel answers ARP for addresses on the outside link.
	out := d.links[nat.Outside]
	link, err := netlink.LinkByIndex(out.ifindex)
	if err != nil {
		return fmt.Errorf("outside link: %w", err)
	}
	own := map[netip.Addr]bool{}
	for _, p := range out.addrs {
		own[p.Addr()] = true
	}
	want := map[netip.Addr]bool{}
	for _, a := range public {
		want[a] = true
		if own[a] || d.added[a] || d.masq.neverAdd(a) {
			continue
		}
		ad := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}, Label: xnatLabel(out.name), Flags: 0}
		if err := netlink.AddrReplace(link, ad); err != nil {
			return fmt.Errorf("add %s to %s: %w", a, out.name, err)
		}
		d.added[a] = true
	}
	for a := range d.added {
		if !want[a] {
			d.removeAddr(link, a)
		}
	}
	d.gen = snap.Generation
	return nil
}

func (d *daemon) removeAddr(link netlink.Link, a netip.Addr) {
	ad := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrDel(link, ad); err != nil {
		d.log.Warn("remove public address", "addr", a, "err", err)
	}
	delete(d.added, a)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// housekeep expires sessions and follows snapshot generations that the
// engine publishes by itself (a removed address finished draining).
func (d *daemon) housekeep() {
	defer close(d.hkDone)
	const interval = 100 * time.Millisecond
	budget := d.eng.HousekeepBudget(interval, 2*time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	linkErrs := make([]uint64, len(d.wk))
	for tick := 0; ; tick++ {
		select {
		case <-d.stopHK:
			return
		case <-t.C:
			d.eng.Housekeep(budget)
			if tick%10 == 0 {
				d.watchLinks(linkErrs)
			}
			if d.eng.Snapshot().Generation != d.syncedGen() {
				if err := d.syncPublic(); err != nil {
					d.log.Error("sync public addresses", "err", err)
				}
			}
		}
	}
}

// watchLinks logs link failures the workers counted since the last call
// (an interface down or gone: the ports count it and recover on their own
// when the link returns), once per second at most.
func (d *daemon) watchLinks(last []uint64) {
	for i, ws := range d.wk {
		var c nat.Counters
		ws.w.Counters(&c)
		if n := c[nat.LinkErrors]; n != last[i] {
			d.log.Warn("link errors on a worker's interfaces; forwarding resumes when the link is back",
				"worker", ws.id, "new_errors", n-last[i], "total", n)
			last[i] = n
		}
	}
}

func (d *daemon) syncedGen() uint64 {
	d.addrMu.Lock()
	defer d.addrMu.Unlock()
	return d.gen
}

// Reload re-reads the config file and applies its NAT section atomically
// (SIGHUP). The other sections are read only at start: a change to one is
// logged, one line per section, and ignored until natd restarts.
func (d *daemon) Reload() error {
	cfg, err := LoadConfig(d.cfg.File)
	if err != nil {
		return err
	}
	cfg.overrideLog(d.cfg.logFlags[0], d.cfg.logFlags[1])
	for _, c := range restartOnlyChanges(d.cfg, cfg) {
		args := []any{"section", c.Section}
		if c.Old != "" || c.New != "" {
			args = append(args, "old", c.Old, "new", c.New)
		}
		d.log.Warn("reload: section changed but is read only at start; ignored until restart", args...)
	}
	if err := d.store.Replace(cfg.NAT); err != nil {
		return err
	}
	d.log.Info("reloaded", "config", d.cfg.File, "generation", d.eng.Snapshot().Generation)
	return nil
}

// restartOnly lists the sections of natd.yaml that natd reads only at
// start, with the Config fields each fills and a rendering of its value.
// Every field of Config except File and NAT (and the command-line log
// overrides) belongs to one (TestRestartOnlyCoversConfig).
var restartOnly = []struct {
	section string
	fields  []string
	value   func(*Config) string
}{
	{"interfaces", []string{"Inside", "Outside"}, func(c *Config) string {
		return fmt.Sprintf("inside %s queues %v, outside %s queues %v", c.Inside.Name, c.Inside.Queues, c.Outside.Name, c.Outside.Queues)
	}},
	{"workers", []string{"CPUs"}, func(c *Config) string { return fmt.Sprintf("cpus %v", c.CPUs) }},
	{"poll_mode", []string{"PollMode"}, func(c *Config) string { return c.PollMode.String() }},
	{"batch_size", []string{"BatchSize"}, func(c *Config) string { return strconv.Itoa(c.BatchSize) }},
	{"xdp", []string{"GenericXDP", "SharedUMEM", "Port"}, func(c *Config) string {
		o := c.Port
		o.BatchSize, o.Register = 0, nil // batch_size's, and set at start
		return fmt.Sprintf("generic=%v shared_umem=%v %+v", c.GenericXDP, c.SharedUMEM, o)
	}},
	{"management", []string{"Mgmt"}, func(c *Config) string { return fmt.Sprintf("%+v", c.Mgmt) }},
	{"metrics", []string{"Metrics"}, func(c *Config) string { return "listen " + c.Metrics }},
	{"events", []string{"Events"}, func(c *Config) string { return fmt.Sprintf("%+v", c.Events) }},
	{"logging", []string{"Logging"}, func(c *Config) string { return c.Logging.String() }},
	{"log", []string{"LogLevel", "LogFormat"}, func(c *Config) string {
		return fmt.Sprintf("level %q format %q", c.LogLevel, c.LogFormat)
	}},
	{"bgp", []string{"BGP"}, func(c *Config) string { return bgpSummary(c.BGP) }},
	{"gc", []string{"GCHeapFloor"}, func(c *Config) string { return fmt.Sprintf("heap_floor_mb %d", c.GCHeapFloor>>20) }},
}

// ignoredChange is a restart-only section a reload found changed. Old and
// New are its values when short enough for a log line, else empty.
type ignoredChange struct{ Section, Old, New string }

// restartOnlyChanges returns the restart-only sections that differ between
// the running configuration and a reloaded one, in file order.
func restartOnlyChanges(running, reloaded *Config) []ignoredChange {
	const short = 100
	var out []ignoredChange
	for _, s := range restartOnly {
		o, n := s.value(running), s.value(reloaded)
		if o == n {
			continue
		}
		c := ignoredChange{Section: s.section}
		if len(o) <= short && len(n) <= short {
			c.Old, c.New = o, n
		}
		out = append(out, c)
	}
	return out
}

// Close stops natd and restores the interfaces: workers stop, sockets
// close, XDP programs detach, and the addresses natd added are removed.
func (d *daemon) Close() error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.stopBGP() // withdraw before the dataplane stops
	var errs []error
	if d.mgmt != nil {
		d.mgmt.close()
	}
	for _, ws := range d.wk {
		if ws.run != nil {
			ws.run.Stop()
		}
	}
	if d.stopHK != nil {
		close(d.stopHK)
		<-d.hkDone
	}
	d.closeMasq()
	for _, ws := range d.wk {
		for _, p := range ws.ports {
			if p != nil {
				if err := p.Close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if d.mgmt != nil {
		d.mgmt.flushEvents()
	}
	if d.prog != nil {
		if err := d.prog.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach XDP: %w", err))
		}
	}
	if d.nb != nil {
		d.nb.Close()
	}
	d.addrMu.Lock()
	if len(d.added) > 0 {
		if link, err := netlink.LinkByIndex(d.links[nat.Outside].ifindex); err == nil {
			for a := range d.added {
				d.removeAddr(link, a)
			}
		} else {
			errs = append(errs, fmt.Errorf("remove public addresses: %w", err))
		}
	}
	d.addrMu.Unlock()
	return errors.Join(errs...)
}
