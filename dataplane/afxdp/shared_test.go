package afxdp

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/xdpprog"
	"github.com/xnat/xnat/internal/wait"
)

// pairFixture is the NAT lab with the XDP program on both of the box's
// veths and a port on queue 0 of each, as l2fwd and natd open them: the
// server has a route back to the inside, so a forwarder between the two
// ports is all the box needs to carry in1's traffic.
type pairFixture struct {
	n      *lab.NAT
	prog   *xdpprog.Program
	ports  [2]*Port // inside, outside
	srvMAC [6]byte
	boxMAC [2][6]byte
	mu     sync.Mutex
	att    [2]*xdpprog.Attachment // under mu
	regs   [2]int                 // successful registrations, under mu
}

// register (re-)attaches the program on side s when its interface changed
// and puts the socket into its XSKMAP, in the box's namespace (New and the
// port's recovery call it there).
func (f *pairFixture) register(s int, ifindex, queue, fd int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.att[s] == nil || f.att[s].Ifindex() != ifindex {
		if f.att[s] != nil {
			f.att[s].Detach()
		}
		var err error
		if f.att[s], err = f.prog.Attach(ifindex, [2]xdpprog.Role{xdpprog.RoleInside, xdpprog.RoleOutside}[s]); err != nil {
			return err
		}
	}
	if err := f.att[s].Register(queue, fd); err != nil {
		return err
	}
	f.regs[s]++
	return nil
}

func (f *pairFixture) registrations(s int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.regs[s]
}

func newPairFixture(t *testing.T, o Options, u *UMEM) *pairFixture {
	t.Helper()
	n := lab.RequireNAT(t, lab.WithReturnRoute())
	f := &pairFixture{n: n}
	copy(f.srvMAC[:], lab.MustLink(t, n.Out, lab.HostDev).MAC)
	prog, err := xdpprog.Load()
	if err != nil {
		t.Fatal(err)
	}
	f.prog = prog
	t.Cleanup(func() { prog.Close() })
	if err := prog.SetInsidePrefixes([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	if err := prog.SetLocalAddrs([]netip.Addr{netip.MustParseAddr("10.0.0.1"), boxAddr}); err != nil {
		t.Fatal(err)
	}
	if err := prog.SetPublicAddrs([]netip.Addr{netip.MustParseAddr("10.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	o.UMEM = u
	err = lab.Do(n.Box, func() error {
		for s, dev := range []string{lab.NATInside, lab.NATOutside} {
			li, err := lab.Link(n.Box, dev)
			if err != nil {
				return err
			}
			copy(f.boxMAC[s][:], li.MAC)
			o.Register = func(ifindex, queue, fd int) error { return f.register(s, ifindex, queue, fd) }
			if f.ports[s], err = New(li.Index, 0, &o); err != nil {
				return err
			}
		}
		return nil
	})
	t.Cleanup(func() {
		for _, p := range f.ports {
			if p != nil {
				p.Close()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// forwarder is a test worker between the two ports: frames received on one
// leave through the other, without a copy when the ports share a UMEM. It
// frees every dropEvery-th frame instead (a drop), and keeps some frames
// in held (frames a NAT worker holds for a neighbour), up to cap(held). Every frame it forwards is decoded with gopacket.
type forwarder struct {
	f         *pairFixture
	in1MAC    [6]byte // learned from the inside
	bufs      []port.Buf
	cp        []port.Buf
	held      []port.Buf
	dropEvery int
	seen      int
	dropped   int
	bad       int // frames gopacket could not decode as IPv4
	copied    int // frames copied because the ports do not share a UMEM
}

func (w *forwarder) step(from, to int) (int, error) {
	src, dst := w.f.ports[from], w.f.ports[to]
	n := src.RxBurst(w.bufs)
	k := 0
	for i := range n {
		b := w.bufs[i]
		w.seen++
		pk := gopacket.NewPacket(b.Data, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if eth == nil || pk.Layer(layers.LayerTypeIPv4) == nil || pk.ErrorLayer() != nil {
			w.bad++
		}
		switch {
		case w.dropEvery > 0 && w.seen%w.dropEvery == 0:
			src.Free(w.bufs[i : i+1])
			w.dropped++
			continue
		case w.seen > 40 && w.seen%11 == 0 && len(w.held) < cap(w.held):
			// Held once pings get through, so that waitPing does
			// not wait out the frames held.
			w.held = append(w.held, b)
			continue
		}
		if from == 0 && eth != nil {
			copy(w.in1MAC[:], eth.SrcMAC)
		}
		peer := w.in1MAC
		if to == 1 {
			peer = w.f.srvMAC
		}
		copy(b.Data[0:6], peer[:])
		copy(b.Data[6:12], w.f.boxMAC[to][:])
		w.bufs[k] = b
		k++
	}
	out := w.bufs[:k]
	if !port.SamePool(src, dst) {
		// Separate UMEMs: copy into frames of dst, as before.
		m := dst.Alloc(w.cp[:k])
		for i := range m {
			CopyFrame(&w.cp[i], out[i].Data)
		}
		src.Free(out)
		dst.Free(w.cp[m:k])
		out = w.cp[:m]
		w.copied += m
	}
	sent := dst.TxBurst(out)
	dst.Free(out[sent:])
	w.dropped += len(out) - sent
	return n, errors.Join(dst.Flush(), src.Flush())
}

// run forwards both ways until stop.
func (w *forwarder) run(stop <-chan struct{}) <-chan []error {
	return loop(stop, func(errs []error) []error {
		n1, e1 := w.step(0, 1)
		n2, e2 := w.step(1, 0)
		for _, e := range []error{e1, e2} {
			if e != nil {
				errs = append(errs, e)
			}
		}
		if n1+n2 == 0 {
			// Idle: sleep in poll(2), which also looks for a dead
			// socket and drives a down port's recovery.
			for _, p := range w.f.ports {
				if err := p.Wait(1); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return errs
	})
}

// census checks that every frame of u is in exactly one place: its state
// byte says free, user or one member's rings; the free stack holds exactly
// the free ones; the caller holds exactly the user ones; and each member's
// four rings hold exactly the frames marked as its own. The rings are
// compared once the kernel is done with the frames it was moving, so the
// check retries (flushing) until they agree or a generous deadline passes.
func census(t *testing.T, u *UMEM, held int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var counts [256]int
		for _, s := range u.state {
			counts[s]++
		}
		var msgs []string
		if counts[frameFree] != u.nfree {
			msgs = append(msgs, "free stack "+itoa(u.nfree)+" != free frames "+itoa(counts[frameFree]))
		}
		if counts[frameUser] != held {
			msgs = append(msgs, "frames with the caller "+itoa(counts[frameUser])+" != held "+itoa(held))
		}
		total := u.nfree + counts[frameUser]
		for k, m := range u.members {
			if m == nil {
				continue
			}
			nr := m.r.(*nativeRings)
			inRings := int(nr.fq.local-nr.fq.cons.Load()) + int(nr.rx.prod.Load()-nr.rx.local) +
				int(nr.tx.local-nr.tx.cons.Load()) + int(nr.cq.prod.Load()-nr.cq.local)
			if got := counts[int(frameKernel)+k]; got != inRings {
				msgs = append(msgs, "member "+itoa(k)+": "+itoa(got)+" frames marked, "+itoa(inRings)+" on its rings")
			}
			total += counts[int(frameKernel)+k]
		}
		if total != len(u.state) {
			msgs = append(msgs, "states account for "+itoa(total)+" of "+itoa(len(u.state))+" frames")
		}
		if len(msgs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("frame census: %v", msgs)
		}
		for _, m := range u.members {
			if m != nil {
				m.Flush()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSharedUMEMForwards binds the box's inside and outside sockets to one
// UMEM and forwards in1's pings and a UDP flood between them without a
// copy, dropping some frames and holding others, then checks that every
// frame of the UMEM is in exactly one place. The copy sub-test runs the
// same traffic through two private UMEMs.
func TestSharedUMEMForwards(t *testing.T) {
	for _, shared := range []bool{true, false} {
		name := map[bool]string{true: "shared", false: "copy"}[shared]
		t.Run(name, func(t *testing.T) {
			o := Options{NumFrames: 1024, FillRingSize: 256, CompletionRingSize: 256, RxRingSize: 256, TxRingSize: 256}
			var u *UMEM
			if shared {
				var err error
				if u, err = NewUMEM(&o, 2); err != nil {
					t.Fatal(err)
				}
				defer u.Close()
			}
			f := newPairFixture(t, o, u)
			if port.SamePool(f.ports[0], f.ports[1]) != shared {
				t.Fatalf("SamePool = %v, want %v", !shared, shared)
			}
			if shared && (f.ports[0].UMEM() != u || f.ports[1].UMEM() != u || u.Frames() != 2048) {
				t.Fatalf("ports not on the shared UMEM of 2048 frames")
			}
			w := &forwarder{f: f, bufs: make([]port.Buf, 64), cp: make([]port.Buf, 64), held: make([]port.Buf, 0, 7), dropEvery: 50}
			stop := make(chan struct{})
			done := w.run(stop)
			pingErr := waitPing(f.n.In1, "198.18.0.2", 10*time.Second)
			if pingErr == nil {
				pingErr = ping(f.n.In1, "198.18.0.2", 10)
				// A lost ping is a dropped frame: ping's exit status
				// does not distinguish; one answered round is enough.
				if pingErr != nil {
					pingErr = waitPing(f.n.In1, "198.18.0.2", 5*time.Second)
				}
			}
			if pingErr == nil {
				// Full-size frames, fast: some are dropped on purpose,
				// so only the forwarder's own counts are checked.
				_, _ = lab.Exec(f.n.In1, "ping", "-c", "300", "-i", "0.002", "-s", "1400", "-W", "1", "198.18.0.2")
			}
			close(stop)
			errs := <-done
			if pingErr != nil {
				t.Fatalf("no ping through the forwarder: %v", pingErr)
			}
			if len(errs) > 0 {
				t.Fatalf("worker errors: %v", errs)
			}
			if w.bad != 0 {
				t.Errorf("%d forwarded frames did not decode as Ethernet/IPv4", w.bad)
			}
			if shared != (w.copied == 0) {
				t.Errorf("copied %d frames with shared = %v", w.copied, shared)
			}
			for _, p := range f.ports {
				if p.BadFrames != 0 {
					t.Errorf("%s: %d bad frames", p.ifname, p.BadFrames)
				}
			}
			if w.seen < 20 || w.dropped == 0 || len(w.held) != cap(w.held) {
				t.Fatalf("traffic did not exercise drops and held frames: seen %d dropped %d held %d", w.seen, w.dropped, len(w.held))
			}
			t.Logf("%s: seen %d, dropped %d, held %d, copied %d; in %+v; out %+v", name, w.seen, w.dropped, len(w.held), w.copied, f.ports[0].Stats, f.ports[1].Stats)
			// Every frame in one place, with frames held, then without.
			umems := []*Port{f.ports[0]}
			if !shared {
				umems = f.ports[:]
			}
			for _, p := range umems {
				held := 0
				for _, b := range w.held {
					if dataOffset(p.umem, b.Data) >= 0 {
						held++
					}
				}
				census(t, p.UMEM(), held)
			}
			for _, b := range w.held {
				for _, p := range umems {
					if dataOffset(p.umem, b.Data) >= 0 {
						p.Free([]port.Buf{b})
					}
				}
			}
			for _, p := range umems {
				census(t, p.UMEM(), 0)
			}
			for _, p := range f.ports {
				if p.BadFrames != 0 {
					t.Errorf("%s: %d bad frames after freeing the held ones", p.ifname, p.BadFrames)
				}
			}
		})
	}
}

// TestSharedUMEMRecovery deletes and re-creates the outside interface
// under a pair of sockets on one UMEM: the outside port re-creates its
// socket and joins the UMEM again through the inside socket
// (XDP_SHARED_UMEM), the frames its old rings held go back to the free
// stack, and forwarding resumes with every frame in one place.
func TestSharedUMEMRecovery(t *testing.T) {
	o := Options{NumFrames: 1024, FillRingSize: 256, CompletionRingSize: 256, RxRingSize: 256, TxRingSize: 256,
		RecoverInterval: 20 * time.Millisecond}
	u, err := NewUMEM(&o, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	f := newPairFixture(t, o, u)
	w := &forwarder{f: f, bufs: make([]port.Buf, 64), cp: make([]port.Buf, 64)}
	stop := make(chan struct{})
	done := w.run(stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			<-done
		}
	}()
	if err := waitPing(f.n.In1, "198.18.0.2", 10*time.Second); err != nil {
		t.Fatalf("no ping through the forwarder: %v", err)
	}
	if err := lab.Run(f.n.Box, "ip", "link", "del", lab.NATOutside); err != nil {
		t.Fatal(err)
	}
	if err := f.n.AddVeth(lab.Veth{NS: f.n.Box, Name: lab.NATOutside, PeerNS: f.n.Out, PeerName: lab.HostDev}); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{f.n.Box, "ip", "addr", "add", lab.OutsideGW.String(), "dev", lab.NATOutside},
		{f.n.Out, "ip", "addr", "add", lab.OutAddr.String(), "dev", lab.HostDev},
		{f.n.Out, "ip", "route", "add", "10.0.0.0/8", "via", lab.OutsideGW.Addr().String()},
	} {
		if err := lab.Run(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	srv := lab.MustLink(t, f.n.Out, lab.HostDev)
	wait.Until(t, "the outside port to re-register its socket", 10*time.Second, func() bool { return f.registrations(1) >= 2 })
	// The server is a new interface with a new MAC: stop the forwarder to
	// tell it, then forward again.
	close(stop)
	errs := <-done
	copy(f.srvMAC[:], srv.MAC)
	box := lab.MustLink(t, f.n.Box, lab.NATOutside)
	copy(f.boxMAC[1][:], box.MAC)
	stop = make(chan struct{})
	done = w.run(stop)
	pingErr := waitPing(f.n.In1, "198.18.0.2", 10*time.Second)
	close(stop)
	errs = append(errs, <-done...)
	stopped = true
	if pingErr != nil {
		t.Fatalf("no ping after the outside interface came back: %v", pingErr)
	}
	for _, e := range errs {
		if !errors.Is(e, ErrLinkDown) {
			t.Errorf("unexpected worker error: %v", e)
		}
	}
	out := f.ports[1]
	if out.Recoveries == 0 || out.UMEM() != u || out.Pool() != f.ports[0].Pool() {
		t.Fatalf("outside port: recoveries %d, on the shared UMEM %v", out.Recoveries, out.UMEM() == u)
	}
	if w.bad != 0 || f.ports[0].BadFrames != 0 || out.BadFrames != 0 {
		t.Fatalf("bad frames: forwarded %d, inside %d, outside %d", w.bad, f.ports[0].BadFrames, out.BadFrames)
	}
	t.Logf("%d link errors while down; inside %+v; outside %+v", len(errs), f.ports[0].Stats, out.Stats)
	census(t, u, 0)
}
