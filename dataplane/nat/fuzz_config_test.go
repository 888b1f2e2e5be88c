package nat

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// FuzzEngineReconfig drives an engine with two workers through a program of
// operations decoded from the fuzzer's input: frames from inside or outside
// on either worker, configuration changes (pool addresses, port forwards,
// static mappings, timeouts, limits, port ranges, mapping and filtering
// behaviour, MTUs), clock steps, housekeeping, and operator deletes and
// flushes.
//
// Everything runs on the test goroutine, so a failing input replays
// exactly. Interleavings that matter for concurrency come from running
// operations inside a neighbour lookup, that is in the middle of a
// worker's Poll, after it has loaded its configuration snapshot and between
// two frames of its burst, followed there by the other worker's Poll: what
// natd's control goroutine and other workers may do to a worker at any
// moment. Two ways lead there: a control operation (a configuration
// change, housekeeping, a delete or a flush) met while frames wait on an RX
// ring is deferred into the next Poll that looks up a neighbour, and the
// "arm" operation sets the next few operations of any kind aside for it.
//
// After every top-level operation: no panic; every emitted frame decodes
// and has valid IPv4, TCP/UDP, ICMP and embedded checksums (verifyFrame);
// every frame taken from a port is back in it, queued on its RX ring, or
// held by a worker; and the counters account for every frame received. At
// the end, after every session is flushed and every hold-down has expired,
// no session, mapping, subscriber, permission, port or address pairing is
// left.
func FuzzEngineReconfig(f *testing.F) {
	for _, s := range reconfigSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		r := newReconfigRig(t)
		r.run(prog)
		r.finish()
	})
}

// Operations. The opcode is the program byte modulo numOps; arguments
// follow it, and a program that ends early reads zeros.
const (
	opFrame     = iota // frame spec: inject on its worker, then poll that worker
	opQueue            // frame spec: inject without polling (bursts)
	opPoll             // w: poll worker w&1
	opArm              // n: set the next 1+n%4 operations aside for the next neighbour lookup
	opPool             // x: toggle pool address x%4; x&0x10 replaces the pool by that address
	opForward          // x y z: toggle a port forward
	opStatic           // x: toggle a static mapping
	opTimeout          // x y: set timeout x%6 to its y-th value (some invalid)
	opLimit            // x y: set limit x%5 to its y-th value (some invalid)
	opPorts            // x y: set the port range of protocol x%3 (some invalid)
	opBehaviour        // x y: mapping, filtering, logging and exhaustion reply
	opMTU              // x y: set the MTU of side x&1
	opAdvance          // x: advance the clock
	opHousekeep        // x: expire sessions (whole table, or a few records)
	opDelete           // x y: delete a listed session, with its generation or a stale one
	opFlush            // x y: flush sessions by filter
	opNeighbour        // x: cycle an address's neighbour resolution
	numOps
)

// maxOps bounds the work of one input.
const maxOps = 400

// Address book of the programs. Inside 10.0.0.0/8; the rest in
// 198.18.0.0/15, as the lab uses.
var (
	fzInside   = [8][4]byte{{10, 0, 0, 2}, {10, 0, 0, 3}, {10, 0, 0, 4}, {10, 0, 0, 5}, {10, 0, 0, 6}, {10, 0, 0, 7}, {10, 0, 0, 8}, {10, 0, 0, 9}}
	fzRemote   = [4][4]byte{{198, 18, 0, 2}, {198, 18, 0, 3}, {198, 18, 0, 4}, {198, 18, 0, 5}}
	fzPool     = [4][4]byte{{198, 18, 0, 100}, {198, 18, 0, 101}, {198, 18, 0, 102}, {198, 18, 0, 103}}
	fzStatic   = [2][4]byte{{198, 18, 0, 160}, {198, 18, 0, 161}}
	fzFwd      = [4]byte{198, 18, 0, 200}
	fzLinkIn   = [4]byte{10, 0, 0, 1}
	fzLinkOut  = [4]byte{198, 18, 0, 1}
	fzPorts    = [16]uint16{1024, 1025, 5000, 53, 80, 8080, 22, 40000, 65535, 1, 123, 2000, 3000, 4000, 4001, 0}
	fzPayloads = [8]int{0, 4, 12, 64, 256, 560, 1100, 1460}
	// fzFinalStatic keeps the final configuration valid once every forward
	// is removed; no program uses its addresses.
	fzFinalStatic = StaticMapping{Inside: netip.AddrFrom4([4]byte{10, 0, 0, 250}), Outside: netip.AddrFrom4([4]byte{198, 18, 0, 250})}
)

// fzNeighbors resolves every address at once unless a program set it
// otherwise, and runs the hook, once, at the next lookup. Test goroutine
// only.
type fzNeighbors struct {
	mode map[[4]byte]Resolution
	hook func()
}

func (n *fzNeighbors) Resolve(side Side, dst [4]byte) ([6]byte, Resolution) {
	if h := n.hook; h != nil {
		n.hook = nil
		h()
	}
	if r := n.mode[dst]; r != Resolved {
		return [6]byte{}, r
	}
	if side == Inside {
		return insideMAC(dst), Resolved
	}
	return macGateway, Resolved
}

// learned is an external endpoint seen on a translated outbound frame, for
// inbound frames to aim at.
type learned struct {
	addr  [4]byte
	port  uint16
	proto layers.IPProtocol
}

type reconfigRig struct {
	t        *testing.T
	h        *harness
	neigh    *fzNeighbors
	cfg      Config // the configuration in force
	rd       progReader
	ops      int
	depth    int // 1 while running set-aside operations inside a Poll
	aside    []progReader
	polling  [2]bool
	injected int // frames injected
	clock    time.Duration
	learned  [8]learned
	nlearn   int
}

// newReconfigRig builds a two-worker harness with small tables and ports,
// so that every limit (table, subscribers, frames, held fragments) is
// within a program's reach and an input costs little to set up.
func newReconfigRig(t *testing.T) *reconfigRig {
	cfg := testConfig()
	cfg.Limits.MaxSessions = 128
	cfg.Limits.MaxSubscribers = 16
	r := &reconfigRig{t: t, cfg: cfg, neigh: &fzNeighbors{mode: map[[4]byte]Resolution{}}}
	r.h = newHarnessSpec(t, cfg, harnessSpec{workers: 2, copyPorts: true, frames: 256, eventRing: 256, neigh: r.neigh})
	r.setLinks(1500, 1500)
	for i, w := range r.h.workers {
		// Random port choices replay the same for the same input.
		w.rng = uint64(i+1)*0x9e3779b97f4a7c15 | 1
	}
	return r
}

func (r *reconfigRig) setLinks(inMTU, outMTU int) {
	if err := r.h.eng.SetLinks([NumSides]Link{
		{Addr: netip.AddrFrom4(fzLinkIn), MTU: inMTU},
		{Addr: netip.AddrFrom4(fzLinkOut), MTU: outMTU},
	}); err != nil {
		r.t.Fatal(err)
	}
}

// controlOp reports whether op is one of natd's control goroutines' work:
// configuration changes, housekeeping, and operator deletes and flushes.
func controlOp(op byte) bool {
	switch op {
	case opPool, opForward, opStatic, opTimeout, opLimit, opPorts, opBehaviour, opMTU,
		opHousekeep, opDelete, opFlush:
		return true
	}
	return false
}

// opLength returns the length of the operation that b starts with.
func opLength(b []byte) int {
	switch b[0] % numOps {
	case opFrame, opQueue:
		if len(b) > 7 && b[7] >= 0xe0 {
			return 9 // with the mutation's xor byte
		}
		return 8
	case opForward:
		return 4
	case opTimeout, opLimit, opPorts, opBehaviour, opMTU, opDelete, opFlush:
		return 3
	default:
		return 2
	}
}

type progReader struct {
	b []byte
	i int
}

func (p *progReader) more() bool { return p.i < len(p.b) }

func (p *progReader) next() byte {
	if p.i >= len(p.b) {
		return 0
	}
	p.i++
	return p.b[p.i-1]
}

func (r *reconfigRig) run(prog []byte) {
	r.rd = progReader{b: prog}
	for r.rd.more() && r.ops < maxOps {
		r.step()
		r.check()
	}
}

// step decodes and runs one operation.
func (r *reconfigRig) step() {
	r.ops++
	h := r.h
	op := r.rd.b[r.rd.i] % numOps
	if r.depth == 0 && controlOp(op) && r.waiting() > 0 {
		// A control operation while frames wait: it meets the next Poll.
		start := r.rd.i
		r.rd.i += opLength(r.rd.b[r.rd.i:])
		r.setAside(start, min(r.rd.i, len(r.rd.b)))
		return
	}
	r.rd.i++
	switch op {
	case opFrame, opQueue:
		w, side, f := r.frame()
		if h.wports[w][side].Inject(f) {
			r.injected++
		}
		if op == opFrame {
			r.poll(w)
		}
	case opPoll:
		r.poll(int(r.rd.next() & 1))
	case opArm:
		n := 1 + int(r.rd.next()%4)
		if r.depth > 0 {
			return // no nesting
		}
		start := r.rd.i
		for i := 0; i < n && r.rd.more(); i++ {
			r.rd.i += opLength(r.rd.b[r.rd.i:])
		}
		r.setAside(start, min(r.rd.i, len(r.rd.b)))
	case opPool:
		r.togglePool(r.rd.next())
	case opForward:
		r.toggleForward(r.rd.next(), r.rd.next(), r.rd.next())
	case opStatic:
		r.toggleStatic(r.rd.next())
	case opTimeout:
		r.setTimeout(r.rd.next(), r.rd.next())
	case opLimit:
		r.setLimit(r.rd.next(), r.rd.next())
	case opPorts:
		r.setPorts(r.rd.next(), r.rd.next())
	case opBehaviour:
		r.setBehaviour(r.rd.next(), r.rd.next())
	case opMTU:
		x, y := r.rd.next(), r.rd.next()
		mtu := [4]int{1500, 1000, 576, 9000}[y%4]
		links := h.eng.Snapshot().Links
		in, out := links[Inside].MTU, links[Outside].MTU
		if x&1 == 0 {
			in = mtu
		} else {
			out = mtu
		}
		r.setLinks(in, out)
	case opAdvance:
		// Programs stay far below the 49.7-day wrap of the millisecond
		// tick; long uptime has its own tests.
		d := [8]time.Duration{time.Millisecond, 50 * time.Millisecond, time.Second, 2500 * time.Millisecond,
			30 * time.Second, 121 * time.Second, 5 * time.Minute, 125 * time.Minute}[r.rd.next()%8]
		if r.clock+d < 20*24*time.Hour {
			r.clock += d
			h.clock.Advance(d)
		}
	case opHousekeep:
		budget := 8
		if r.rd.next()&1 == 0 {
			budget = h.eng.sessions.Cap()
		}
		h.eng.Housekeep(budget)
	case opDelete:
		r.deleteSession(r.rd.next(), r.rd.next())
	case opFlush:
		r.flush(r.rd.next(), r.rd.next())
	case opNeighbour:
		x := r.rd.next()
		a := fzInside[x%8]
		if x&8 != 0 {
			a = fzRemote[x%4]
		}
		r.neigh.mode[a] = (r.neigh.mode[a] + 1) % 4 // Resolved, Pending, Unreachable, Failed
	}
}

// setAside keeps operations b[start:end] of the program for the next
// neighbour lookup.
func (r *reconfigRig) setAside(start, end int) {
	r.aside = append(r.aside, progReader{b: r.rd.b[start:end]})
	r.neigh.hook = r.runAside
}

// runAside runs the operations set aside, then the Poll of a worker that
// is not polling: from inside a Poll, or at the top level when no Poll
// looked up a neighbour before the frames waiting were gone.
func (r *reconfigRig) runAside() {
	r.neigh.hook = nil
	top := r.rd
	r.depth++
	for len(r.aside) > 0 {
		r.rd = r.aside[0]
		r.aside = r.aside[1:]
		for r.rd.more() && r.ops < maxOps {
			r.step()
		}
	}
	for w := range r.polling {
		if !r.polling[w] {
			r.poll(w)
			break
		}
	}
	r.depth--
	r.rd = top
}

// waiting returns the number of frames injected and not yet received. The
// workers publish their counters at the end of a Poll: call it between
// top-level operations only.
func (r *reconfigRig) waiting() int {
	c := r.h.counters()
	return r.injected - int(c[RxPackets]+c[RxPackets+1])
}

// poll runs worker w's Poll unless it is the worker whose Poll is running
// the armed operations (a worker is one goroutine; it cannot re-enter).
func (r *reconfigRig) poll(w int) {
	if r.polling[w] {
		return
	}
	r.polling[w] = true
	r.h.workers[w].Poll()
	r.polling[w] = false
}

// apply publishes cfg and keeps it as the configuration in force, or checks
// that a refused change changed nothing.
func (r *reconfigRig) apply(cfg Config) {
	eng := r.h.eng
	gen := eng.Snapshot().Generation
	if err := eng.ApplyConfig(cfg); err != nil {
		if !errors.Is(err, ErrInvalidConfig) {
			r.t.Fatalf("refused change without a config error: %v", err)
		}
		if g := eng.Snapshot().Generation; g != gen {
			r.t.Fatalf("refused change published generation %d (was %d): %v", g, gen, err)
		}
		return
	}
	r.cfg = cfg
}

// clone copies the slices of a config so that a change never writes into a
// published snapshot's config.
func clone(c Config) Config {
	c.InsidePrefixes = append([]netip.Prefix(nil), c.InsidePrefixes...)
	pools := make([]Pool, len(c.Pools))
	for i, p := range c.Pools {
		pools[i] = Pool{Name: p.Name, Addresses: append([]netip.Prefix(nil), p.Addresses...)}
	}
	c.Pools = pools
	c.StaticMappings = append([]StaticMapping(nil), c.StaticMappings...)
	c.PortForwards = append([]PortForward(nil), c.PortForwards...)
	return c
}

func (r *reconfigRig) togglePool(x byte) {
	c := clone(r.cfg)
	a := netip.PrefixFrom(netip.AddrFrom4(fzPool[x%4]), 32)
	switch {
	case x&0x10 != 0: // renumber: the pool becomes this one address
		c.Pools = []Pool{{Name: "main", Addresses: []netip.Prefix{a}}}
	case len(c.Pools) == 0:
		c.Pools = []Pool{{Name: "main", Addresses: []netip.Prefix{a}}}
	default:
		p := &c.Pools[0]
		i := 0
		for i < len(p.Addresses) && p.Addresses[i] != a {
			i++
		}
		if i < len(p.Addresses) {
			p.Addresses = append(p.Addresses[:i], p.Addresses[i+1:]...)
		} else {
			p.Addresses = append(p.Addresses, a)
		}
		if len(p.Addresses) == 0 {
			c.Pools = nil
		}
	}
	r.apply(c)
}

func (r *reconfigRig) toggleForward(x, y, z byte) {
	c := clone(r.cfg)
	proto := Proto(x & 1)
	out := [4][4]byte{fzPool[0], fzPool[1], fzFwd, fzStatic[0]}[y%4]
	fw := PortForward{
		Proto:   proto,
		Outside: netip.AddrPortFrom(netip.AddrFrom4(out), fzPorts[(x>>1)%16]),
		Inside:  netip.AddrPortFrom(netip.AddrFrom4(fzInside[z%8]), fzPorts[(z>>3)%16]),
	}
	for i, f := range c.PortForwards {
		if f.Proto == fw.Proto && f.Outside == fw.Outside {
			c.PortForwards = append(c.PortForwards[:i], c.PortForwards[i+1:]...)
			r.apply(c)
			return
		}
	}
	c.PortForwards = append(c.PortForwards, fw)
	r.apply(c)
}

func (r *reconfigRig) toggleStatic(x byte) {
	c := clone(r.cfg)
	in := netip.AddrFrom4(fzInside[x%8])
	for i, m := range c.StaticMappings {
		if m.Inside == in {
			c.StaticMappings = append(c.StaticMappings[:i], c.StaticMappings[i+1:]...)
			r.apply(c)
			return
		}
	}
	out := [4][4]byte{fzStatic[0], fzStatic[1], fzPool[0], fzFwd}[(x>>3)%4]
	c.StaticMappings = append(c.StaticMappings, StaticMapping{Inside: in, Outside: netip.AddrFrom4(out)})
	r.apply(c)
}

func (r *reconfigRig) setTimeout(x, y byte) {
	c := clone(r.cfg)
	t := &c.Timeouts
	pick := func(d *time.Duration, vals ...time.Duration) { *d = vals[int(y)%len(vals)] }
	switch x % 6 {
	case 0:
		pick(&t.TCPEstablished, 124*time.Minute, 125*time.Minute, 24*time.Hour, time.Minute)
	case 1:
		pick(&t.TCPTransitory, 4*time.Minute, 5*time.Minute, time.Minute)
	case 2:
		pick(&t.UDP, 2*time.Minute, 5*time.Minute, 30*time.Second)
	case 3:
		pick(&t.ICMP, time.Minute, 2*time.Minute, time.Second)
	case 4:
		pick(&t.PortHoldDown, 0, time.Second, 2*time.Minute, 10*time.Minute)
	case 5:
		pick(&t.Fragment, 100*time.Millisecond, 2*time.Second, 30*time.Second, time.Millisecond)
	}
	r.apply(c)
}

func (r *reconfigRig) setLimit(x, y byte) {
	c := clone(r.cfg)
	l := &c.Limits
	pick := func(v *int, vals ...int) { *v = vals[int(y)%len(vals)] }
	switch x % 5 {
	case 0:
		pick(&l.SessionsPerSubscriber, 0, 1, 2, 8, -1)
	case 1:
		pick(&l.PortsPerSubscriber, 0, 1, 2, 8, -1)
	case 2:
		pick(&l.HeldFragments, 0, 1, 4, 64, 5000)
	case 3:
		pick(&l.ICMPErrorsPerSecond, 0, 1, 100)
	case 4:
		pick(&l.MaxSessions, 128, 256) // a change is refused: tables are fixed
	}
	r.apply(c)
}

func (r *reconfigRig) setPorts(x, y byte) {
	c := clone(r.cfg)
	c.Ports[x%3] = [6]PortRange{{1024, 65535}, {1, 65535}, {1024, 1087}, {40000, 40001}, {500, 1100}, {0, 10}}[y%6]
	r.apply(c)
}

func (r *reconfigRig) setBehaviour(x, y byte) {
	c := clone(r.cfg)
	switch x % 6 {
	case 0:
		c.Mapping, c.Filtering = EndpointIndependent, [NumProtos]Filtering{}
	case 1:
		c.Mapping = EndpointIndependent
		c.Filtering[y%3] = FilterAddressDependent
	case 2:
		c.Mapping = EndpointIndependent
		c.Filtering[y%3] = FilterAddressAndPortDependent
	case 3:
		c.Mapping = AddressAndPortDependent
		for p := range c.Filtering {
			c.Filtering[p] = FilterAddressAndPortDependent
		}
	case 4:
		c.LogDestinations = !c.LogDestinations
		c.UDPInboundRefresh = y&1 == 0
	case 5:
		c.OnExhaustion = ExhaustionReply(y % 3)
	}
	r.apply(c)
}

func (r *reconfigRig) deleteSession(x, y byte) {
	eng := r.h.eng
	list, _ := eng.Sessions(SessionFilter{}, 0, 64)
	if len(list) == 0 {
		return
	}
	s := list[int(x)%len(list)]
	if y&1 != 0 {
		if err := eng.DeleteSession(s.ID, s.Gen+2); !errors.Is(err, ErrNotFound) {
			r.t.Fatalf("delete of session %d at a stale generation: %v, want not found", s.ID, err)
		}
		return
	}
	// Only the control plane deletes, and it is this goroutine: a session
	// just listed is still there.
	if err := eng.DeleteSession(s.ID, s.Gen); err != nil {
		r.t.Fatalf("delete of listed session %d/%d: %v", s.ID, s.Gen, err)
	}
}

func (r *reconfigRig) flush(x, y byte) {
	var f SessionFilter
	switch x % 4 {
	case 1:
		f.InsideAddr = netip.AddrFrom4(fzInside[y%8])
	case 2:
		p := Proto(y % 3)
		f.Proto = &p
	case 3:
		f.OutsideAddr = netip.AddrFrom4(fzPool[y%4])
	}
	r.h.eng.FlushSessions(f)
}

// frame decodes a frame spec: a flags byte (bit 0 side, bit 1 worker, bits
// 2..4 kind, bits 5..7 variant), source, destination, source port,
// destination port, size-and-IP-ID, and a mutation byte (with one more
// byte when it mutates). Most specs give a valid frame that reaches a
// pool, forward or static address, or a learned mapping.
func (r *reconfigRig) frame() (w int, side Side, f []byte) {
	a, sb, db, spb, dpb, size, mut := r.rd.next(), r.rd.next(), r.rd.next(), r.rd.next(), r.rd.next(), r.rd.next(), r.rd.next()
	side, w = Side(a&1), int(a>>1&1)
	kind, variant := (a>>2)&7, a>>5
	var src, dst [4]byte
	sport, dport := fzPorts[spb%16], fzPorts[dpb%16]
	var lproto layers.IPProtocol
	if side == Inside {
		src = fzInside[sb%8]
		if sb >= 0xf0 {
			src = [4][4]byte{fzLinkIn, fzRemote[0], {0, 0, 0, 0}, {224, 0, 0, 1}}[sb&3]
		}
		switch c := db % 16; {
		case c < 4:
			dst = fzRemote[c]
		case c < 8:
			dst = fzPool[c-4]
		case c < 10:
			dst = fzStatic[c-8]
		case c == 10:
			dst = fzFwd
		case c == 11:
			dst = fzInside[db>>4%8]
		case c == 12:
			dst = fzLinkOut
		case c == 13:
			if l, ok := r.learn(db >> 4); ok {
				dst, dport = l.addr, l.port // hairpin to a live mapping
			} else {
				dst = fzPool[0]
			}
		case c == 14:
			dst = fzLinkIn
		default:
			dst = [4]byte{255, 255, 255, 255}
		}
	} else {
		src = fzRemote[sb%4]
		if sb >= 0xf0 {
			src = [4][4]byte{fzPool[0], fzInside[0], {127, 0, 0, 1}, fzLinkOut}[sb&3]
		}
		switch c := db % 16; {
		case c < 4:
			dst = fzPool[c]
		case c < 6:
			dst = fzStatic[c-4]
		case c == 6:
			dst = fzFwd
		case c == 7:
			dst = fzRemote[db>>4%4]
		default:
			if l, ok := r.learn(db); ok {
				dst, dport, lproto = l.addr, l.port, l.proto
			} else {
				dst = fzPool[db%4]
			}
		}
	}
	l := l4spec{ipID: uint16(size >> 3), payload: make([]byte, fzPayloads[size%8])}
	if kind == 7 { // TTL 1 or 2 on any kind of packet
		l.ttl = 1 + variant>>2
		kind = [4]byte{0, 1, 2, 4}[variant&3]
	}
	if lproto != 0 && kind < 2 {
		kind = map[layers.IPProtocol]byte{layers.IPProtocolTCP: 0, layers.IPProtocolUDP: 1, layers.IPProtocolICMPv4: 3}[lproto]
	}
	switch kind {
	case 0:
		l.proto, l.sport, l.dport = layers.IPProtocolTCP, sport, dport
		l.tcpFlags = [8]string{"S", "SA", "A", "FA", "R", "RA", "F", ""}[variant]
		l.df = variant&1 != 0
	case 1:
		l.proto, l.sport, l.dport = layers.IPProtocolUDP, sport, dport
		l.df = variant&1 != 0
		l.noUDPChecksum = variant == 7
	case 2, 3: // echo request or reply; the identifier plays the port
		id := sport
		if side == Outside {
			id = dport
		}
		l.proto, l.icmpType, l.icmpID = layers.IPProtocolICMPv4, layers.ICMPv4TypeEchoRequest, id
		if kind == 3 {
			l.icmpType = layers.ICMPv4TypeEchoReply
		}
	case 4: // an error quoting the packet this one answers: dst:dport -> src:sport
		il := l4spec{sport: dport, dport: sport, payload: []byte("quoted payload!!")}
		switch variant & 3 {
		case 0:
			il.proto = layers.IPProtocolUDP
		case 1:
			il.proto, il.tcpFlags = layers.IPProtocolTCP, "S"
		default:
			il.proto, il.icmpType, il.icmpID = layers.IPProtocolICMPv4, layers.ICMPv4TypeEchoRequest, dport
			if variant&3 == 3 {
				il.icmpType, il.icmpID = layers.ICMPv4TypeEchoReply, sport
			}
		}
		q := ipPacket(pkt(addrString(dst), addrString(src), il))
		if size&0x80 == 0 && len(q) > 28 {
			q = q[:28]
		}
		l.proto, l.inner, l.payload = layers.IPProtocolICMPv4, q, nil
		l.icmpType, l.icmpCode = [2]uint8{3, 11}[variant>>2], [2]uint8{3, 0}[variant>>2]
	case 5: // a first fragment
		l.proto, l.sport, l.dport, l.mf = layers.IPProtocolUDP, sport, dport, true
		if variant&1 != 0 {
			l.proto, l.tcpFlags = layers.IPProtocolTCP, "S"
		}
		if len(l.payload) < 16 {
			l.payload = make([]byte, 16)
		}
		l.payload = l.payload[:len(l.payload)&^7]
	case 6: // a later fragment
		l.proto = [2]layers.IPProtocol{layers.IPProtocolUDP, layers.IPProtocolTCP}[variant>>2&1]
		l.rawL4 = append(l.payload, 0, 0, 0, 0, 0, 0, 0, 0)
		l.fragOff, l.mf = 8*uint16(1+variant&3)*uint16(1+size%8), variant&1 != 0
	}
	f = pkt(addrString(src), addrString(dst), l)
	if mut >= 0xe0 {
		// Corrupt one byte of the IP header or the first transport
		// bytes, then make the checksums valid again, so the change
		// reaches the translator rather than the checksum check.
		x := r.rd.next()
		if i := 14 + int(mut&0x1f); i < len(f) {
			f[i] ^= x | 1
		}
		fixChecksums(f)
	}
	return w, side, f
}

func addrString(a [4]byte) string { return netip.AddrFrom4(a).String() }

// learn returns learned endpoint i, if any was seen.
func (r *reconfigRig) learn(i byte) (learned, bool) {
	if r.nlearn == 0 {
		return learned{}, false
	}
	return r.learned[int(i)%min(r.nlearn, len(r.learned))], true
}

// check drains and verifies every emitted frame, learns the external
// endpoints of translated frames, and checks frame conservation and
// accounting. It runs between top-level operations only: while an armed
// operation runs, a worker is in the middle of its Poll.
func (r *reconfigRig) check() {
	if r.depth > 0 {
		return
	}
	if len(r.aside) > 0 && r.waiting() == 0 {
		r.runAside()
	}
	h := r.h
	for w := range h.workers {
		for s := Side(0); s < NumSides; s++ {
			for _, f := range h.wports[w][s].Drain() {
				pk := verifyFrame(r.t, f)
				if s != Outside {
					continue
				}
				e := eps(pk)
				ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				a := netip.MustParseAddr(e.src).As4()
				if ip.FragOffset != 0 || !h.eng.Snapshot().isPublic(a) || e.icmpType > 0 && e.icmpType != layers.ICMPv4TypeEchoRequest {
					continue
				}
				r.learned[r.nlearn%len(r.learned)] = learned{addr: a, port: e.sport, proto: ip.Protocol}
				r.nlearn++
			}
		}
	}
	r.account(false)
}

// account checks that every frame is accounted for. Frames: each one taken
// from a port's pool is queued on an RX ring, held by a worker (waiting for
// a neighbour or its first fragment, or a spare copy target) or back in
// the pool (the TX rings were just drained). Counters: every frame
// received, plus every ICMP error built and every extra fragment made,
// was transmitted, dropped for a counted reason, or is held.
func (r *reconfigRig) account(final bool) {
	h := r.h
	c := h.counters()
	inUse, spare, held := 0, 0, 0
	for i, w := range h.workers {
		for s := range h.wports[i] {
			inUse += h.wports[i][s].InUse()
			spare += w.spare[s].n
		}
		held += w.frag.n + w.pend.n
	}
	rx := c[RxPackets] + c[RxPackets+1]
	queued := r.injected - int(rx)
	if inUse != queued+spare+held {
		r.t.Fatalf("%d frames out of the pools: %d queued + %d spare + %d held", inUse, queued, spare, held)
	}
	var tx, drops uint64
	for s := Side(0); s < NumSides; s++ {
		tx += c[TxPackets+Counter(s)]
	}
	for i := dropBase; i < NumCounters; i++ {
		drops += c[i]
	}
	// A packet split into n fragments adds n to FragmentsMade and n-1
	// frames: k, the number of packets split, is what is left over, at
	// least one and at most half of FragmentsMade when any were made.
	made, icmp := c[FragmentsMade], c[ICMPErrorsSent]
	k := int64(rx+icmp+made) - int64(tx+drops) - int64(held)
	if k < 0 || 2*k > int64(made) || (made == 0) != (k == 0) {
		r.t.Fatalf("frames unaccounted for: rx %d + ICMP errors %d + fragments made %d vs tx %d + drops %d + held %d (drops %v)",
			rx, icmp, made, tx, drops, held, h.drops())
	}
	if final && held+queued != 0 {
		r.t.Fatalf("%d frames still held and %d queued at the end", held, queued)
	}
}

// finish receives what is queued, flushes every session, removes every
// forward (which owns its port), lets every hold-down, fragment and
// neighbour wait expire, and then requires that nothing is left.
func (r *reconfigRig) finish() {
	h := r.h
	r.neigh.hook, r.aside = nil, nil
	clear(r.neigh.mode)
	for i := 0; i < 4; i++ {
		r.poll(0)
		r.poll(1)
	}
	r.check()
	h.eng.FlushSessions(SessionFilter{})
	c := clone(r.cfg)
	c.PortForwards = nil
	c.StaticMappings = append(c.StaticMappings, fzFinalStatic)
	if err := h.eng.ApplyConfig(c); err != nil {
		r.t.Fatalf("final config: %v", err)
	}
	h.clock.Advance(time.Hour)
	h.housekeep()
	h.housekeep()
	for i := 0; i < idleHousekeeping; i++ { // let idle Polls run their timers
		r.poll(0)
		r.poll(1)
	}
	r.check()
	r.account(true)
	for name, n := range map[string]int{
		"sessions": h.eng.sessions.Len(), "mappings": h.eng.bindings.Len(),
		"subscribers": h.eng.subs.Len(), "permissions": h.eng.permRecords(), "rule records": h.eng.ruleRecords(),
	} {
		if n != 0 {
			r.t.Errorf("%d %s left after every session was flushed", n, name)
		}
	}
	for _, u := range h.eng.PoolUsage() {
		if u.Subscribers != 0 || u.InUse != [NumProtos]int{} || u.Draining {
			r.t.Errorf("%v: %d subscribers, ports in use %v, draining %v after every session was flushed and every hold-down ended",
				u.Addr, u.Subscribers, u.InUse, u.Draining)
		}
	}
	h.checkNoLeaks()
}

// Seed programs. fzOp assembles an operation; fzPkt a frame operation:
// worker, side, kind (0 TCP, 1 UDP, 2 echo request, 3 echo reply, 4 ICMP
// error, 5 first fragment, 6 later fragment, 7 TTL 1 or 2), variant, and
// the indices of source, destination, ports and size as frame decodes them.
func fzOp(code byte, args ...byte) []byte { return append([]byte{code}, args...) }

func fzPkt(op byte, w int, side Side, kind, variant, src, dst, sport, dport, size byte) []byte {
	return []byte{op, byte(side) | byte(w)<<1 | kind<<2 | variant<<5, src, dst, sport, dport, size, 0}
}

func fzProg(ops ...[]byte) []byte {
	var p []byte
	for _, o := range ops {
		p = append(p, o...)
	}
	return p
}

// reconfigSeeds cover each kind of operation once at least, at the top
// level and inside a Poll. None of them changes the pools while a worker
// is in the middle of its Poll: that is the fuzzer's to find.
func reconfigSeeds() [][]byte {
	const in, out = Inside, Outside
	// Destination indices: inside side 0-3 remotes, 4-7 pool, 8-9 static,
	// 10 forward address, 13 a learned mapping (hairpin); outside side 0-3
	// pool, 4-5 static, 6 forward address, 8+ a learned mapping.
	return [][]byte{
		// Traffic both ways, replies on the other worker, then expiry.
		fzProg(
			fzPkt(opFrame, 0, in, 1, 0, 0, 0, 2, 3, 1),   // UDP 10.0.0.2:5000 -> 198.18.0.2:53
			fzPkt(opFrame, 1, out, 1, 0, 0, 8, 3, 0, 1),  // its reply
			fzPkt(opFrame, 1, in, 0, 0, 1, 1, 0, 4, 0),   // TCP SYN
			fzPkt(opFrame, 0, out, 0, 1, 1, 9, 4, 0, 0),  // SYN-ACK
			fzPkt(opFrame, 0, in, 0, 2, 1, 1, 0, 4, 0),   // ACK
			fzPkt(opFrame, 0, in, 2, 0, 2, 2, 7, 0, 2),   // echo request
			fzPkt(opFrame, 1, out, 3, 0, 2, 11, 0, 0, 2), // its reply
			fzPkt(opFrame, 0, in, 1, 0, 3, 13, 2, 0, 1),  // hairpin to a learned mapping
			fzOp(opAdvance, 6), fzOp(opHousekeep, 0), fzOp(opAdvance, 5), fzOp(opHousekeep, 0),
		),
		// Renumbering the pool between Polls, with sessions on the old
		// address; then a flush by outside address.
		fzProg(
			fzPkt(opFrame, 0, in, 1, 0, 0, 0, 2, 3, 1),
			fzPkt(opFrame, 1, in, 1, 0, 1, 1, 0, 3, 1),
			fzOp(opPool, 0x11),                         // the pool becomes 198.18.0.101 alone
			fzPkt(opFrame, 0, in, 1, 0, 0, 2, 2, 3, 1), // old subscriber, new flow
			fzPkt(opFrame, 1, in, 1, 0, 4, 0, 2, 3, 1), // new subscriber
			fzPkt(opFrame, 1, out, 1, 0, 0, 8, 3, 0, 1),
			fzOp(opPool, 0x02), // add 198.18.0.102
			fzOp(opFlush, 3, 0),
			fzOp(opAdvance, 7), fzOp(opHousekeep, 0),
		),
		// A port forward and a static mapping, used, then removed.
		fzProg(
			fzOp(opForward, 0x0a, 0, 0x23), // TCP 198.18.0.100:8080 -> 10.0.0.5:80
			fzPkt(opFrame, 1, out, 0, 0, 0, 0, 6, 5, 0),
			fzPkt(opFrame, 0, in, 0, 1, 3, 0, 4, 6, 0),
			fzOp(opStatic, 0x00), // 10.0.0.2 <-> 198.18.0.160
			fzPkt(opFrame, 0, out, 1, 0, 1, 4, 11, 2, 1),
			fzPkt(opFrame, 1, in, 1, 0, 0, 1, 2, 11, 1),
			fzOp(opForward, 0x0a, 0, 0x23),
			fzOp(opStatic, 0x00),
			fzPkt(opFrame, 1, out, 0, 2, 0, 0, 6, 5, 0),
			fzOp(opForward, 0x03, 2, 0x04), // UDP 198.18.0.200:1025 -> 10.0.0.6:1024
			fzPkt(opFrame, 0, out, 1, 0, 2, 6, 3, 1, 1),
			fzOp(opDelete, 0, 0), fzOp(opDelete, 1, 1),
		),
		// Fragments in and out of order, fragmentation at a small MTU,
		// and DF packets too big for it.
		fzProg(
			fzPkt(opFrame, 0, in, 6, 0, 0, 0, 2, 3, 0x1b), // later fragment first
			fzPkt(opFrame, 0, in, 5, 0, 0, 0, 2, 3, 0x1c), // then its first fragment
			fzOp(opMTU, 1, 2),                          // outside MTU 576
			fzPkt(opFrame, 1, in, 1, 0, 1, 1, 2, 3, 7), // 1460 bytes: fragmented
			fzPkt(opFrame, 1, in, 1, 1, 1, 1, 2, 3, 7), // DF: Fragmentation Needed
			fzOp(opLimit, 2, 1),                        // one held fragment
			fzPkt(opFrame, 0, out, 6, 1, 0, 0, 3, 2, 0x0a),
			fzPkt(opFrame, 0, out, 6, 1, 1, 0, 3, 2, 0x12),
			fzOp(opAdvance, 3), fzOp(opPoll, 0),
		),
		// ICMP errors both ways and TTL 1 of each kind.
		fzProg(
			fzPkt(opFrame, 0, in, 1, 0, 0, 0, 2, 3, 1),
			fzPkt(opFrame, 0, out, 4, 0, 0, 8, 3, 0, 0x81),
			fzPkt(opFrame, 1, in, 4, 4, 0, 0, 2, 3, 0),
			fzPkt(opFrame, 1, in, 7, 0, 0, 0, 2, 3, 1),
			fzPkt(opFrame, 0, out, 7, 3, 0, 8, 3, 0, 1),
			fzPkt(opFrame, 0, out, 7, 6, 0, 0, 3, 2, 1),
		),
		// Operations armed inside a Poll: a flush, a timeout change and
		// the other worker's Poll between two frames of a burst.
		fzProg(
			fzPkt(opQueue, 0, in, 1, 0, 0, 0, 2, 3, 1),
			fzPkt(opQueue, 0, in, 1, 0, 0, 1, 2, 3, 1),
			fzOp(opArm, 2),
			fzOp(opFlush, 0, 0),
			fzOp(opTimeout, 2, 1),
			fzPkt(opFrame, 1, in, 0, 0, 1, 0, 0, 4, 0),
			fzOp(opPoll, 0),
			fzPkt(opQueue, 1, out, 1, 0, 0, 8, 3, 0, 1),
			fzOp(opArm, 1),
			fzOp(opHousekeep, 0),
			fzOp(opPoll, 1),
		),
		// A static mapping added, and the other worker serving a new
		// subscriber, between two frames of a burst whose second frame
		// comes from that subscriber.
		fzProg(
			fzPkt(opQueue, 0, in, 1, 0, 0, 0, 2, 3, 1),
			fzPkt(opQueue, 0, in, 1, 0, 4, 0, 2, 3, 1),
			fzOp(opArm, 1),
			fzOp(opStatic, 0x09),
			fzPkt(opFrame, 1, in, 1, 0, 4, 1, 0, 3, 1),
			fzOp(opPoll, 0),
		),
		// Frames waiting on both workers when a pool change comes, which
		// is refused: removing the only pool address would leave nothing
		// to translate to.
		fzProg(
			fzPkt(opQueue, 1, in, 1, 0, 4, 1, 0, 3, 1),
			fzPkt(opQueue, 0, in, 1, 0, 0, 0, 2, 3, 1),
			fzPkt(opQueue, 0, in, 1, 0, 4, 0, 2, 3, 1),
			fzOp(opPool, 0x00),
			fzOp(opPoll, 0),
		),
		// Address-and-port-dependent mapping, then address-dependent
		// filtering, with limits per subscriber and small port ranges.
		fzProg(
			fzOp(opBehaviour, 3, 0),
			fzOp(opPorts, 1, 3), // UDP ports 40000-40001
			fzPkt(opFrame, 0, in, 1, 0, 0, 0, 2, 3, 1),
			fzPkt(opFrame, 0, in, 1, 0, 0, 1, 2, 3, 1),
			fzPkt(opFrame, 0, in, 1, 0, 0, 2, 2, 3, 1),
			fzOp(opBehaviour, 1, 1),
			fzOp(opLimit, 0, 1), // one session per subscriber
			fzPkt(opFrame, 1, in, 1, 0, 5, 0, 1, 3, 1),
			fzPkt(opFrame, 1, in, 1, 0, 5, 1, 1, 3, 1),
			fzPkt(opFrame, 1, out, 1, 0, 3, 8, 3, 1, 1),
			fzOp(opPorts, 1, 5), // invalid: refused
		),
		// Neighbours pending, unreachable and failed.
		fzProg(
			fzOp(opNeighbour, 8), // 198.18.0.2 pending
			fzPkt(opFrame, 0, in, 1, 0, 0, 0, 2, 3, 1),
			fzOp(opAdvance, 3), fzOp(opPoll, 0),
			fzOp(opNeighbour, 8), fzOp(opNeighbour, 1), // unreachable; 10.0.0.3 pending
			fzPkt(opFrame, 0, in, 1, 0, 0, 0, 2, 3, 1),
			fzPkt(opFrame, 1, out, 1, 0, 0, 8, 3, 0, 1),
			fzOp(opNeighbour, 8),
			fzPkt(opFrame, 0, in, 1, 0, 0, 0, 2, 3, 1),
		),
	}
}

// TestFuzzReconfigOpLength checks that opLength, which sets operations
// aside, agrees with what step reads.
func TestFuzzReconfigOpLength(t *testing.T) {
	for code := 0; code < numOps; code++ {
		for _, mut := range []byte{0, 0xe0} {
			prog := []byte{byte(code), 0, 0, 0, 0, 0, 0, mut, 0, 0xff}
			r := newReconfigRig(t)
			r.rd = progReader{b: prog}
			r.step()
			want := opLength(prog)
			if code == opArm {
				want += opLength(prog[want:]) // the one operation set aside
			}
			if r.rd.i != want {
				t.Errorf("opcode %d (mutation byte %#x): step read %d bytes, opLength says %d", code, mut, r.rd.i, want)
			}
		}
	}
}
