package memport

// This file holds the test side of a Port: the methods a test (or a
// benchmark's traffic generator) uses to feed frames to the worker and take
// transmitted frames away. One goroutine at a time may call Inject,
// InjectBurst, Collect, Drain and SetLinkUp; Stats and InUse are safe from
// any goroutine.

// Inject copies frame into a free frame of the pool and queues it for the
// worker's RxBurst. It returns false, and counts the frame in RxDropped, if
// frame is empty or longer than FrameSize, if the pool has no free frame, or
// if the RX ring is full. It does not allocate. It panics on a paired port,
// whose RX ring belongs to the peer.
func (p *Port) Inject(frame []byte) bool {
	return p.InjectBurst([][]byte{frame}) == 1
}

// InjectBurst injects frames in order, as Inject does, stopping at the
// first that cannot be queued, and returns how many it queued. Every frame
// it did not queue counts in RxDropped (so a frame offered again after a
// failure counts again).
func (p *Port) InjectBurst(frames [][]byte) int {
	if p.peer != nil {
		badFrame("Inject on port %d, which is paired with port %d", p.id, p.peer.id)
	}
	total := 0
	for total < len(frames) {
		batch := frames[total:min(len(frames), total+chunk)]
		// Accept the prefix of valid lengths.
		k := 0
		for k < len(batch) && len(batch[k]) > 0 && len(batch[k]) <= p.fs {
			k++
		}
		got := p.pool.DequeueBurst(p.tidx[:k])
		for i, f := range batch[:got] {
			idx := p.tidx[i]
			copy(p.frame(idx)[:len(f)], f)
			p.tdesc[i] = desc{idx: idx, n: uint32(len(f))}
		}
		sent := p.rx.EnqueueBurst(p.tdesc[:got])
		if sent < got {
			p.release(p.tidx[sent:got])
		}
		total += sent
		if sent < len(batch) {
			break
		}
	}
	p.injected.Add(uint64(total))
	if total < len(frames) {
		p.rxDropped.Add(uint64(len(frames) - total))
	}
	return total
}

// Collect takes every frame the worker has flushed to the TX ring, calls fn
// with each (in transmission order) and returns the frames to the pool. fn
// must not retain the slice, which is reused. It returns how many frames it
// collected. Collect itself does not allocate.
func (p *Port) Collect(fn func(frame []byte)) int {
	total := 0
	for {
		n := p.tx.DequeueBurst(p.tdesc[:])
		for i, d := range p.tdesc[:n] {
			fn(p.frame(d.idx)[d.off : d.off+d.n : d.off+d.n])
			p.tidx[i] = d.idx
		}
		if n > 0 {
			p.release(p.tidx[:n])
		}
		total += n
		if n < len(p.tdesc) {
			break
		}
	}
	p.collected.Add(uint64(total))
	return total
}

// Drain is Collect returning copies of the frames.
func (p *Port) Drain() [][]byte {
	var out [][]byte
	p.Collect(func(f []byte) { out = append(out, append([]byte(nil), f...)) })
	return out
}

// SetLinkUp sets the simulated link state (ports start up). While the link
// is down, TxBurst accepts nothing and Flush drops the frames it had
// accepted, counting them in TxDropped, and returns ErrLinkDown. Reception
// is unaffected.
func (p *Port) SetLinkUp(up bool) { p.linkDown.Store(!up) }

// LinkDown implements port.LinkDowner: it reports the state SetLinkUp set.
// Any goroutine.
func (p *Port) LinkDown() bool { return p.linkDown.Load() }

// Stats are a Port's counters. Each is written by one side and read
// atomically, so a snapshot taken while the worker runs is consistent per
// counter but not across counters.
type Stats struct {
	// Injected counts frames queued on the RX ring, by Inject or by the
	// peer's Flush.
	Injected uint64
	// RxDropped counts frames that could not be queued on the RX ring:
	// empty or longer than FrameSize, no free frame, or RX ring full.
	RxDropped uint64
	// RxPackets counts frames handed to the worker by RxBurst.
	RxPackets uint64
	// TxPackets counts frames published by Flush (to the TX ring, or to the
	// peer, which may still drop them).
	TxPackets uint64
	// TxDropped counts frames TxBurst had accepted that Flush dropped
	// because the link was down. Frames TxBurst refused are not counted
	// here: they stay with the caller, which counts its own drop.
	TxDropped uint64
	// Collected counts frames taken from the TX ring by Collect or Drain.
	Collected uint64
	// AllocFailed counts frames Alloc was asked for but could not supply.
	AllocFailed uint64
	// Held is the number of frames the worker holds: received or
	// allocated, and neither transmitted nor freed.
	Held int64
	// FreeFrames is the number of frames in the pool.
	FreeFrames int
	// RxQueued and TxQueued are the frames on the RX ring (not yet
	// received by the worker) and on the TX ring (flushed, not yet
	// collected).
	RxQueued, TxQueued int
}

// Stats returns the port's counters. Any goroutine.
func (p *Port) Stats() Stats {
	return Stats{
		Injected:    p.injected.Load(),
		RxDropped:   p.rxDropped.Load(),
		RxPackets:   p.rxPackets.Load(),
		TxPackets:   p.txPackets.Load(),
		TxDropped:   p.txDropped.Load(),
		Collected:   p.collected.Load(),
		AllocFailed: p.allocFailed.Load(),
		Held:        p.heldCount.Load(),
		FreeFrames:  p.pool.Len(),
		RxQueued:    p.rx.Len(),
		TxQueued:    p.tx.Len(),
	}
}

// InUse returns the number of frames outside the pool: held by the worker,
// queued on the RX ring, accepted by TxBurst but not flushed, or on the TX
// ring. After the worker has received everything and flushed, and the test
// has collected, a non-zero InUse is a leak. It is exact when neither side
// is running, a snapshot otherwise. Any goroutine.
func (p *Port) InUse() int { return p.n - p.pool.Len() }
