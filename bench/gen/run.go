package gen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/dataplane/afxdp"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/xdpprog"
	"github.com/xnat/xnat/internal/nsenter"
)

// engine is one Run: the sockets, XDP programs and workers, and the
// control goroutine's view of them.
type engine struct {
	cfg Config

	srcMAC, dstMAC net.HardwareAddr
	b              *Builder

	txPorts, rxPorts []*afxdp.Port
	rxProg, txProg   *xdpprog.Program
	rxAtt            *xdpprog.Attachment

	tx    []*txWorker
	rx    []*rxWorker
	lives []*live
	learn *MappingTable

	stopTx, stopRx atomic.Bool
	workers        sync.WaitGroup
	txRunning      atomic.Int32
	txAllDone      chan struct{}
	// txSending counts the TX workers that have not yet sent their first
	// burst; txAllSending closes when none is left. The run's duration
	// counts from then, so that a sender the scheduler keeps off the CPU
	// for longer than the duration (a loaded 2-core machine) still sends.
	txSending    atomic.Int32
	txAllSending chan struct{}
}

func newEngine(c Config) *engine {
	return &engine{cfg: c, txAllDone: make(chan struct{}), txAllSending: make(chan struct{})}
}

// Run performs one generator run as cfg describes and returns its Result.
// It needs root (AF_XDP, XDP programs, namespaces). ctx cancels the run
// early (the Result then covers the time actually run). Run may be called
// from any goroutine; it starts and stops its own workers.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	e := newEngine(c)
	if err := e.setup(); err != nil {
		_ = e.close()
		return nil, fmt.Errorf("gen: %w", err)
	}
	r := e.run(ctx)
	if err := e.close(); err != nil {
		r.Warnings = append(r.Warnings, "cleanup: "+err.Error())
	}
	return r, nil
}

func (e *engine) setup() error {
	c := &e.cfg
	var txLink linkInfo
	err := nsenter.RunNamed(c.TxNetns, func() error {
		var err error
		if txLink, err = lookupLink(c.TxDev); err != nil {
			return err
		}
		e.srcMAC = c.SrcMAC
		if e.srcMAC == nil {
			e.srcMAC = txLink.mac
		}
		e.dstMAC = c.DstMAC
		if e.dstMAC == nil {
			e.dstMAC, err = resolveNextHop(c.TxDev, txLink.index, c.Flows.Dst.First)
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(e.srcMAC) != 6 {
		return fmt.Errorf("interface %s has no Ethernet address; give -src-mac", c.TxDev)
	}
	e.b, err = NewBuilder(FrameConfig{
		SrcMAC: [6]byte(e.srcMAC), DstMAC: [6]byte(e.dstMAC), Proto: c.Proto, TTL: c.TTL, Sizes: c.Sizes,
	})
	if err != nil {
		return err
	}
	opts := c.Port
	opts.BatchSize = c.Batch
	opts.Register = nil

	// The far side first, so it is listening before anything is sent.
	if c.RxDev != "" {
		addrs, err := c.Flows.Dst.Addrs(maxPublicAddrs)
		if err != nil {
			return err
		}
		if e.rxProg, err = xdpprog.Load(); err != nil {
			return err
		}
		if err := e.rxProg.SetPublicAddrs(addrs); err != nil {
			return err
		}
		err = nsenter.RunNamed(c.RxNetns, func() error {
			l, err := lookupLink(c.RxDev)
			if err != nil {
				return err
			}
			if e.rxAtt, err = e.rxProg.Attach(l.index, xdpprog.RoleOutside); err != nil {
				return err
			}
			o := rxOptions(opts, c.Port)
			o.Register = func(_, q, fd int) error { return e.rxAtt.Register(q, fd) }
			return openQueues(&e.rxPorts, c.RxDev, l.index, c.RxQueues, &o)
		})
		if err != nil {
			return err
		}
	}
	err = nsenter.RunNamed(c.TxNetns, func() error {
		o := opts
		if c.Mode.Reflects() {
			// Replies come from the destination range: redirect frames
			// whose source is in it (the "inside" role's test).
			var err error
			if e.txProg, err = xdpprog.Load(); err != nil {
				return err
			}
			if err := e.txProg.SetInsidePrefixes(c.Flows.Dst.Prefixes()); err != nil {
				return err
			}
			att, err := e.txProg.Attach(txLink.index, xdpprog.RoleInside)
			if err != nil {
				return err
			}
			o.Register = func(_, q, fd int) error { return att.Register(q, fd) }
		}
		return openQueues(&e.txPorts, c.TxDev, txLink.index, c.TxQueues, &o)
	})
	if err != nil {
		return err
	}
	if e.b.MaxFrameLen() > e.txPorts[0].FrameSize() {
		return fmt.Errorf("frames of %d bytes do not fit UMEM frames of %d", e.b.MaxFrameLen(), e.txPorts[0].FrameSize())
	}
	var tx, rx []port.Port
	for _, p := range e.txPorts {
		tx = append(tx, p)
	}
	for _, p := range e.rxPorts {
		rx = append(rx, p)
	}
	e.makeWorkers(tx, rx)
	return nil
}

// makeWorkers creates a TX worker per tx port and an RX worker per rx
// port (the AF_XDP ports of setup, or in-memory ports in tests).
// openQueues opens a port on each of the first n queues of the link with
// index ifindex (dev names it in errors) and appends it to ports, where the
// engine's close finds it even when a later queue fails.
func openQueues(ports *[]*afxdp.Port, dev string, ifindex, n int, o *afxdp.Options) error {
	for q := range n {
		p, err := newPort(ifindex, q, o)
		if err != nil {
			return fmt.Errorf("%s queue %d: %w", dev, q, err)
		}
		*ports = append(*ports, p)
	}
	return nil
}

func (e *engine) makeWorkers(txPorts, rxPorts []port.Port) {
	c := &e.cfg
	ncpu := runtime.NumCPU()
	cpuOf := func(list []int, i, def int) int {
		switch {
		case c.NoPin:
			return -1
		case i < len(list):
			return list[i]
		}
		return def % ncpu
	}
	bufs := func() []port.Buf { return make([]port.Buf, c.Batch) }
	if c.Mode.Reflects() && c.LearnMax > 0 {
		e.learn = NewMappingTable(int(min(uint64(c.Flows.Count), uint64(c.LearnMax))))
	}
	for q, p := range rxPorts {
		l := &live{}
		e.lives = append(e.lives, l)
		e.rx = append(e.rx, &rxWorker{
			poller: poller{cpu: cpuOf(c.RxCPUs, q, c.TxQueues+q), rtPrio: c.RTPriority, busy: c.BusyPoll, port: p, wait: waiter(p)},
			id:     q, mode: c.Mode,
			rec: NewRecorder(c.Streams), learn: e.learn, live: l,
			rxb: bufs(), txq: bufs(), freeq: bufs(),
		})
	}
	for q, p := range txPorts {
		l := &live{}
		e.lives = append(e.lives, l)
		w := &txWorker{
			poller: poller{cpu: cpuOf(c.TxCPUs, q, q), rtPrio: c.RTPriority, busy: c.BusyPoll, port: p, wait: waiter(p)},
			id:     q, mode: c.Mode, tcp: c.Proto == header.ProtocolTCP, b: e.b, spec: &c.Flows, cur: NewCursor(&c.Flows, uint32(q), uint32(c.TxQueues)),
			batch: c.Batch, live: l,
			nstreams: uint32(c.Streams), step: uint32(c.TxQueues), stream: uint32(q),
			seqs:     make([]uint64, c.Streams),
			ownFlows: uint64((c.Flows.Count - uint32(q) + uint32(c.TxQueues) - 1) / uint32(c.TxQueues)),
			bufs:     bufs(), held: bufs(), rxb: bufs(), txq: bufs(), freeq: bufs(),
		}
		if c.Mode.Reflects() {
			w.ret = NewRecorder(c.Streams)
		}
		e.tx = append(e.tx, w)
	}
}

// rxOptions gives the receivers deeper rings than afxdp's defaults unless
// the caller chose sizes: a receiver thread descheduled for a few
// milliseconds (two cores shared with the DUT and the sender) must not
// lose frames because its fill ring ran dry. 16 Ki frames and 8 Ki-entry
// rings hold about 30 ms at 250 kpps, in 32 MiB of UMEM per socket.
func rxOptions(o, user afxdp.Options) afxdp.Options {
	if user.NumFrames == 0 {
		o.NumFrames = 16384
	}
	if user.RxRingSize == 0 && user.FillRingSize == 0 {
		o.RxRingSize, o.FillRingSize, o.CompletionRingSize, o.TxRingSize = 8192, 8192, 8192, 8192
	}
	return o
}

// newPort opens an AF_XDP port, retrying while the queue is still busy: a
// socket closed just before (the previous run's) releases its queue from
// a kernel work item (xp_release_deferred), so for a moment after close
// a new bind fails with EBUSY.
func newPort(ifindex, queue int, o *afxdp.Options) (*afxdp.Port, error) {
	for try := 0; ; try++ {
		p, err := afxdp.New(ifindex, queue, o)
		if err == nil || !errors.Is(err, unix.EBUSY) || try == 40 {
			return p, err
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func waiter(p port.Port) port.Waiter {
	w, _ := p.(port.Waiter)
	return w
}

// txSent is called by each TX worker once, after its first burst.
func (e *engine) txSent() {
	if e.txSending.Add(-1) == 0 {
		close(e.txAllSending)
	}
}

// txFinished is called by each TX worker when its send phase ends.
func (e *engine) txFinished() {
	if e.txRunning.Add(-1) == 0 {
		close(e.txAllDone)
	}
}

func (e *engine) run(ctx context.Context) *Result {
	c := &e.cfg
	started := time.Now()
	e.workers.Add(len(e.rx) + len(e.tx))
	for _, w := range e.rx {
		go w.run(e)
	}
	now := nanotime()
	per := c.Rate / float64(len(e.tx))
	for _, w := range e.tx {
		if c.Rate > 0 {
			w.pacer = NewPacer(per, c.Batch, now)
		}
	}
	e.txRunning.Store(int32(len(e.tx)))
	e.txSending.Store(int32(len(e.tx)))
	if len(e.tx) == 0 {
		close(e.txAllSending)
	}
	for _, w := range e.tx {
		go w.run(e)
	}
	progDone := make(chan struct{})
	progStop := make(chan struct{})
	go e.progress(started, progStop, progDone)

	var warnings []string
	// The duration counts from the first burst of every sender (see
	// txSending); one that finishes or is cancelled first ends the wait.
	select {
	case <-e.txAllSending:
	case <-e.txAllDone:
	case <-ctx.Done():
	}
	timer := time.NewTimer(c.Duration)
	select {
	case <-timer.C:
	case <-e.txAllDone:
	case <-ctx.Done():
		warnings = append(warnings, "run cancelled before its duration: "+context.Cause(ctx).Error())
	}
	timer.Stop()
	e.stopTx.Store(true)
	<-e.txAllDone
	// In-flight frames still arrive; the receivers count them for Drain.
	select {
	case <-time.After(c.Drain):
	case <-ctx.Done():
	}
	e.stopRx.Store(true)
	e.workers.Wait()
	close(progStop)
	<-progDone
	r := e.result(started)
	r.Warnings = append(warnings, r.Warnings...)
	return r
}

// progress prints a line per interval: rates over the interval and the
// cumulative loss.
func (e *engine) progress(started time.Time, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	c := &e.cfg
	if c.Progress == nil {
		return
	}
	t := time.NewTicker(c.ProgressEvery)
	defer t.Stop()
	var ptx, ptb, prx, prb, pret uint64
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			// Receivers first: a frame is counted by its sender before
			// anyone can receive it, so reading in this order never
			// shows more received than sent.
			var tx, tb, rx, rb, ret uint64
			for _, w := range e.tx {
				ret += w.live.rxPkts.Load()
			}
			for _, w := range e.rx {
				rx += w.live.rxPkts.Load()
				rb += w.live.rxBytes.Load()
			}
			for _, w := range e.tx {
				tx += w.live.txPkts.Load()
				tb += w.live.txBytes.Load()
			}
			dt := now.Sub(last).Seconds()
			last = now
			line := fmt.Sprintf("[%6.1fs] tx %s %s", now.Sub(started).Seconds(), FormatPPS(float64(tx-ptx)/dt), fmtGbps(float64(tb-ptb)*8/dt))
			if len(e.rx) > 0 {
				loss := 0.0
				if tx > 0 {
					loss = 100 * (float64(tx) - float64(rx)) / float64(tx)
				}
				line += fmt.Sprintf(" | rx %s %s | loss %.3f%%", FormatPPS(float64(rx-prx)/dt), fmtGbps(float64(rb-prb)*8/dt), loss)
			}
			if c.Mode.Reflects() {
				line += fmt.Sprintf(" | returned %s", FormatPPS(float64(ret-pret)/dt))
			}
			fmt.Fprintln(c.Progress, line)
			ptx, ptb, prx, prb, pret = tx, tb, rx, rb, ret
		}
	}
}

// FormatPPS formats a packet rate for progress lines and logs (Mpps,
// kpps or pps).
func FormatPPS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3f Mpps", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f kpps", v/1e3)
	}
	return fmt.Sprintf("%.0f pps", v)
}

func fmtGbps(bits float64) string { return fmt.Sprintf("%.3f Gbps", bits/1e9) }

func counts(pkts, bytes uint64, secs float64) Counts {
	c := Counts{Packets: pkts, Bytes: bytes}
	if secs > 0 {
		c.PPS = float64(pkts) / secs
		c.Gbps = float64(bytes) * 8 / secs / 1e9
		c.WireGbps = float64(bytes+pkts*(fcsLen+wireOverhead)) * 8 / secs / 1e9
	}
	return c
}

func ratio(a int64, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// result gathers the stopped workers' counters.
func (e *engine) result(started time.Time) *Result {
	c := &e.cfg
	r := &Result{Started: started.UTC().Format(time.RFC3339)}
	r.Config = e.resultConfig()

	var first, last int64
	var txp, txb uint64
	sent := make([]uint64, c.Streams)
	d := &r.Diag
	for _, w := range e.tx {
		txp += w.txPkts
		txb += w.txBytes
		if w.firstNs != 0 && (first == 0 || w.firstNs < first) {
			first = w.firstNs
		}
		last = max(last, w.lastNs)
		for s, v := range w.seqs {
			sent[s] += v
		}
		d.AllocShort += w.allocShort
		d.TxUnsent += w.unsent
		d.Foreign += w.foreign
		if w.err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("tx worker %d: %v", w.id, w.err))
		}
	}
	// The span first..last send misses the last batch's own duration;
	// with one batch (or none) fall back to the configured duration.
	secs := float64(last-first) / 1e9
	if secs <= 0 {
		secs = c.Duration.Seconds()
	}
	r.Seconds = secs
	r.TX = counts(txp, txb, secs)

	var fwd *Recorder
	if len(e.rx) > 0 {
		fwd = NewRecorder(c.Streams)
		for _, w := range e.rx {
			fwd.Merge(w.rec)
			d.Foreign += w.foreign
			if w.err != nil {
				r.Warnings = append(r.Warnings, fmt.Sprintf("rx worker %d: %v", w.id, w.err))
			}
		}
		rx := counts(fwd.Packets, fwd.Bytes, secs)
		r.RX = &rx
		r.Lost = int64(txp) - int64(fwd.Packets)
		r.LossRatio = ratio(r.Lost, txp)
		r.Reordered = fwd.Reordered()
		lat := fwd.Latency()
		r.Latency = &lat
		d.BadStream += fwd.BadStream
		d.ClockSkew += fwd.ClockSkew
	}

	var ret *Recorder
	if c.Mode.Reflects() {
		ret = NewRecorder(c.Streams)
		rr := &ReturnResult{}
		var timeouts uint64
		for _, w := range e.tx {
			ret.Merge(w.ret)
			rr.Mismatched += w.mismatched
			timeouts += w.gateTimeouts
		}
		if timeouts > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("TCP data started before every SYN-ACK had come back (%d of %d workers waited %d ms in vain): a stateful DUT may have seen data on half-open flows",
				timeouts, len(e.tx), handshakeWait/1e6))
		}
		for _, w := range e.rx {
			rr.Reflected += w.reflected
			rr.ReflectDrops += w.reflectDrops
			rr.SynAcks += w.synAcks
		}
		rr.RX = counts(ret.Packets, ret.Bytes, secs)
		rr.Lost = int64(txp) - int64(ret.Packets)
		rr.LossRatio = ratio(rr.Lost, txp)
		rr.Reordered = ret.Reordered()
		rr.Latency = ret.Latency()
		r.Return = rr
		d.BadStream += ret.BadStream
		d.ClockSkew += ret.ClockSkew
		if e.learn != nil {
			r.Mappings = e.mappings()
		}
	}

	if c.Mode.NewFlows() {
		s := &SessionResult{NewFlows: txp, Exhausted: true}
		for _, w := range e.tx {
			s.Exhausted = s.Exhausted && w.exhausted
			s.Established += w.established
			s.HandshakeAcks += w.hsAcks
			s.HandshakeAckDrops += w.hsAckDrops
		}
		if fwd != nil {
			s.Through = fwd.Packets
			s.ThroughPerSecond = float64(s.Through) / secs
		}
		for _, w := range e.rx {
			s.HandshakesDone += w.handshakes
		}
		s.EstablishedPerS = float64(s.Established) / secs
		r.Sessions = s
	}

	if c.Streams <= c.PerStreamMax {
		for s := range c.Streams {
			sr := StreamResult{ID: s, TX: sent[s]}
			if fwd != nil {
				sr.RX, sr.Reordered, _ = fwd.Stream(s)
				sr.Lost = int64(sr.TX) - int64(sr.RX)
			}
			if ret != nil {
				sr.Returned, _, _ = ret.Stream(s)
			}
			r.Streams = append(r.Streams, sr)
		}
	}

	var ps afxdp.Stats
	for _, p := range append(append([]*afxdp.Port(nil), e.txPorts...), e.rxPorts...) {
		ps.Add(&p.Stats)
		if ks, err := p.KernelStats(); err == nil {
			d.RxKernelDrops += ks.Rx_dropped + ks.Rx_ring_full
			d.RxFillEmpty += ks.Rx_fill_ring_empty_descs
		}
	}
	d.TxRingFull = ps.TxRingFull
	d.TxKicks = ps.TxKicks
	d.LinkErrors = ps.LinkErrors
	if e.rxAtt != nil {
		if xc, err := e.rxAtt.Counters(); err == nil {
			d.XDPRedirected, d.XDPPassed, d.XDPNoSocket = xc.Redirected, xc.Passed, xc.RedirectFailed
		}
	}
	if d.RxKernelDrops > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("our own receivers dropped %d frames (RX or fill ring exhausted: a receiver thread fell behind): the loss is not all the DUT's", d.RxKernelDrops))
	}
	if r.Sessions != nil && r.Sessions.Exhausted {
		r.Warnings = append(r.Warnings, fmt.Sprintf("every one of the %d flows was used after %.3f s of the %s asked for: rates are over that shorter time",
			c.Flows.Count, secs, c.Duration))
	}
	return r
}

// mappings summarises the learned-mapping table.
func (e *engine) mappings() *MappingResult {
	c := &e.cfg
	m := &MappingResult{Tracked: e.learn.Len()}
	for _, w := range e.rx {
		m.Learned += w.learned
		m.Changed += w.changed
	}
	ext := map[[4]byte]bool{}
	for f := range uint32(e.learn.Len()) {
		a, p, ok := e.learn.Lookup(f)
		if !ok {
			continue
		}
		t := c.Flows.Tuple(f)
		ext[a] = true
		if a != t.Src || p != t.SrcPort {
			m.Translated++
		}
		if p == t.SrcPort {
			m.PortKept++
		}
		if len(m.Examples) < 4 {
			m.Examples = append(m.Examples, fmt.Sprintf("flow %d: %s -> %s",
				f, netip.AddrPortFrom(netip.AddrFrom4(t.Src), t.SrcPort), netip.AddrPortFrom(netip.AddrFrom4(a), p)))
		}
	}
	m.ExternalAddrs = len(ext)
	return m
}

func (e *engine) resultConfig() ResultConfig {
	c := &e.cfg
	rc := ResultConfig{
		Mode: c.Mode.String(), Proto: protoName(c.Proto),
		TxNetns: c.TxNetns, TxDev: c.TxDev, RxNetns: c.RxNetns, RxDev: c.RxDev,
		SrcMAC: e.srcMAC.String(), DstMAC: e.dstMAC.String(),
		Src: c.Flows.Src.String(), SrcPorts: c.Flows.SrcPorts.String(),
		Dst: c.Flows.Dst.String(), DstPorts: c.Flows.DstPorts.String(),
		Flows: c.Flows.Count, Size: c.Sizes.String(), Rate: c.Rate, Duration: c.Duration.Seconds(),
		TxQueues: c.TxQueues, Batch: c.Batch, Streams: c.Streams, BusyPoll: c.BusyPoll, RTPriority: c.RTPriority,
		Backend: c.Port.Backend.String(),
	}
	for s := range c.Sizes.Slots() {
		rc.FrameLens = append(rc.FrameLens, e.b.FrameLen(s))
	}
	if len(e.rx) > 0 {
		rc.RxQueues = c.RxQueues
	}
	for _, w := range e.tx {
		rc.TxCPUs = append(rc.TxCPUs, w.cpu)
	}
	for _, w := range e.rx {
		rc.RxCPUs = append(rc.RxCPUs, w.cpu)
	}
	if len(e.txPorts) > 0 {
		rc.ZeroCopy = e.txPorts[0].ZeroCopy()
	}
	return rc
}

// close releases sockets and programs; safe after a failed setup.
func (e *engine) close() error {
	var errs []error
	for _, p := range append(e.txPorts, e.rxPorts...) {
		errs = append(errs, p.Close())
	}
	for _, p := range []*xdpprog.Program{e.rxProg, e.txProg} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}
