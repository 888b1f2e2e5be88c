package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/port"
)

// pending holds frames whose next hop is being resolved by the kernel. It
// is bounded (WorkerConfig.PendingFrames): what overflows is dropped and
// counted as NeighPending, and a frame that waited longer than
// neighWait is dropped as NeighFailed.
type pending struct {
	q []pendEntry
	n int
}

type pendEntry struct {
	buf           port.Buf
	owner, egress Side
	dst           [4]byte
	since         uint32
	vis           uint64 // a capture's packet number, if captured (vis_worker.go)
}

// neighWait is how long a frame waits for its neighbour: the kernel gives
// up on ARP after about three seconds (3 probes, 1 s apart).
const neighWait = 3000

func (p *pending) init(n int) { p.q = make([]pendEntry, n) }

func (p *pending) hold(b *port.Buf, owner, egress Side, dst [4]byte, now uint32) bool {
	if p.n == len(p.q) {
		return false
	}
	p.q[p.n] = pendEntry{buf: *b, owner: owner, egress: egress, dst: dst, since: now}
	p.n++
	return true
}

// retry resolves waiting frames again, sending those now resolved in the
// order they arrived.
func (p *pending) retry(w *Worker) {
	if p.n == 0 {
		return
	}
	kept := 0
	for i := 0; i < p.n; i++ {
		e := p.q[i]
		mac, r := w.l2.Resolve(e.egress, e.dst)
		switch {
		case r == Resolved:
			w.sendTo(e.owner, e.egress, &e.buf, mac)
			if e.vis != 0 {
				w.captureHeld(&e)
			}
		case r == Pending && w.now-e.since < neighWait:
			p.q[kept] = e
			kept++
		case r == Unreachable:
			w.dropFrame(e.owner, &e.buf, drop.NoRoute)
		default:
			w.dropFrame(e.owner, &e.buf, drop.NeighFailed)
		}
	}
	for i := kept; i < p.n; i++ {
		p.q[i] = pendEntry{}
	}
	p.n = kept
}
