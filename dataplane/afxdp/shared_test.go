package afxdp

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/port"
	"github.com/xnat/xnat/dataplane/xdpprog"
)

// pairFixture is the NAT lab with the XDP program on both of the box's
// veths and a port on queue 0 of each, as l2fwd and natd open them: the
// server has a route back to the inside, so a forwarder between the two
// ports is all the box needs to carry in1's traffic.
type pairFixture struct {
	n      *lab.NAT
	ports  [2]*Port // inside, outside
	srvMAC [6]byte
	boxMAC [2][6]byte
}

func newPairFixture(t *testing.T, o Options, u *UMEM) *pairFixture {
	t.Helper()
	lab.Require(t)
	n, err := lab.NewNAT(lab.WithReturnRoute())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	f := &pairFixture{n: n}
	srv, err := lab.Link(n.Out, lab.HostDev)
	if err != nil {
		t.Fatal(err)
	}
	copy(f.srvMAC[:], srv.MAC)
	prog, err := xdpprog.Load()
	if err != nil {
		t.Fatal(err)
	}
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
		for s, x := range []struct {
			dev  string
			role xdpprog.Role
		}{{lab.NATInside, xdpprog.RoleInside}, {lab.NATOutside, xdpprog.RoleOutside}} {
			li, err := lab.Link(n.Box, x.dev)
			if err != nil {
				return err
			}
			copy(f.boxMAC[s][:], li.MAC)
			att, err := prog.Attach(li.Index, x.role)
			if err != nil {
				return err
			}
			o.Register = func(_, queue, fd int) error { return att.Register(queue, fd) }
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
	done := make(chan []error, 1)
	go func() {
		var errs []error
		for {
			select {
			case <-stop:
				done <- errs
				return
			default:
			}
			n1, e1 := w.step(0, 1)
			n2, e2 := w.step(1, 0)
			for _, e := range []error{e1, e2} {
				if e != nil {
					errs = append(errs, e)
				}
			}
			if n1+n2 == 0 {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	return done
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
