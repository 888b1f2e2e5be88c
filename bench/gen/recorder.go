package gen

import (
	"sync/atomic"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histogram range: 1 ns to 10 s at 3 significant digits (0.1%
// resolution), about 200 KiB of counters per histogram.
const (
	histMin     = 1
	histMax     = 10_000_000_000
	histSigFigs = 3
)

// Recorder is the receive-side measurement of one RX worker: per-stream
// packets received, highest sequence seen and packets that arrived after a
// higher sequence number of their stream (reordered, RFC 4737's "reordered
// packet": its sequence number is below the next expected), plus a latency
// histogram of now - TX timestamp.
//
// Per-stream state is three pointer-free arrays indexed by stream id, so a
// packet costs a bounds check, three array updates and one histogram
// increment. Sequence numbers arrive as 32 bits and are extended to 64
// against the stream's highest one, which is correct while a stream's
// reordering depth stays below 2^31 packets.
//
// Duplicates cannot be told from reordered packets without a bitmap per
// stream; a duplicate counts as received and reordered, so "lost" (sent
// minus received) can understate loss by the number of duplicates.
//
// A Recorder is owned by one worker goroutine; Merge combines workers'
// recorders after they stop.
type Recorder struct {
	rx     []uint64
	maxSeq []int64 // highest extended sequence seen; -1 before the first
	reord  []uint64
	hist   *hdrhistogram.Histogram

	Packets, Bytes uint64
	// ClockSkew counts packets stamped later than they were received
	// (a stamp from another clock); they are not in the histogram.
	ClockSkew uint64
	// BadStream counts frames whose stream id is out of range.
	BadStream uint64
}

// NewRecorder returns a recorder for stream ids [0, streams).
func NewRecorder(streams int) *Recorder {
	r := &Recorder{
		rx:     make([]uint64, streams),
		maxSeq: make([]int64, streams),
		reord:  make([]uint64, streams),
		hist:   hdrhistogram.New(histMin, histMax, histSigFigs),
	}
	for i := range r.maxSeq {
		r.maxSeq[i] = -1
	}
	return r
}

// Observe records one received frame of frameLen bytes carrying m, at time
// now (ns, the batch's clock reading). It reports false, recording nothing
// per stream, if m's stream is out of range.
func (r *Recorder) Observe(m *Mark, frameLen int, now int64) bool {
	s := int(m.Stream)
	if s >= len(r.rx) {
		r.BadStream++
		return false
	}
	r.Packets++
	r.Bytes += uint64(frameLen)
	r.rx[s]++
	hi := r.maxSeq[s]
	ext := hi + int64(int32(m.Seq-uint32(hi)))
	if ext > hi {
		r.maxSeq[s] = ext
	} else {
		r.reord[s]++
	}
	lat := now - int64(m.TxNs)
	switch {
	case lat < 0:
		r.ClockSkew++
	default:
		// RecordValue fails (and allocates its error) only out of range:
		// clamp so it never does.
		_ = r.hist.RecordValue(min(max(lat, histMin), histMax))
	}
	return true
}

// Streams is the number of stream ids the recorder tracks.
func (r *Recorder) Streams() int { return len(r.rx) }

// Stream returns stream s's received and reordered counts and the highest
// extended sequence number seen (-1 if none).
func (r *Recorder) Stream(s int) (received, reordered uint64, maxSeq int64) {
	return r.rx[s], r.reord[s], r.maxSeq[s]
}

// Reordered is the total of reordered packets over all streams.
func (r *Recorder) Reordered() uint64 {
	var t uint64
	for _, v := range r.reord {
		t += v
	}
	return t
}

// Merge adds o's counts and histogram into r. Both must track the same
// number of streams. Reordering across recorders (a stream spread over
// several RX queues) is not detected, only reordering seen by each one.
func (r *Recorder) Merge(o *Recorder) {
	for i := range r.rx {
		r.rx[i] += o.rx[i]
		r.reord[i] += o.reord[i]
		r.maxSeq[i] = max(r.maxSeq[i], o.maxSeq[i])
	}
	r.hist.Merge(o.hist)
	r.Packets += o.Packets
	r.Bytes += o.Bytes
	r.ClockSkew += o.ClockSkew
	r.BadStream += o.BadStream
}

// Latency summarises a latency histogram, in nanoseconds.
type Latency struct {
	Samples int64   `json:"samples"`
	Min     int64   `json:"min"`
	Mean    float64 `json:"mean"`
	P50     int64   `json:"p50"`
	P90     int64   `json:"p90"`
	P99     int64   `json:"p99"`
	P999    int64   `json:"p99_9"`
	Max     int64   `json:"max"`
}

// Latency returns the summary of the recorder's histogram.
func (r *Recorder) Latency() Latency {
	h := r.hist
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Samples: h.TotalCount(), Min: h.Min(), Mean: h.Mean(),
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), Max: h.Max(),
	}
}

// MappingTable records, per flow, the translated source address and port
// the reflector saw: the NAT's mapping of that flow. It is one
// preallocated, pointer-free array of atomic words shared by the RX
// workers (a flow's frames may arrive on any queue), written only when a
// flow is first seen or its mapping changes.
type MappingTable struct {
	slots []atomic.Uint64
}

const mappingValid = 1 << 63

// NewMappingTable returns a table for flows [0, n).
func NewMappingTable(n int) *MappingTable {
	return &MappingTable{slots: make([]atomic.Uint64, n)}
}

// Len is the number of flows the table covers.
func (t *MappingTable) Len() int { return len(t.slots) }

// Observe records that flow's frame arrived from addr:port. It returns
// learned = the first mapping seen for the flow, changed = a different
// mapping from the one recorded (a NAT that re-mapped the flow). Flows
// beyond the table are ignored.
func (t *MappingTable) Observe(flow uint32, addr [4]byte, port uint16) (learned, changed bool) {
	if int(flow) >= len(t.slots) {
		return false, false
	}
	v := mappingValid | uint64(be32(addr))<<16 | uint64(port)
	s := &t.slots[flow]
	old := s.Load()
	if old == v {
		return false, false
	}
	if old == 0 && s.CompareAndSwap(0, v) {
		return true, false
	}
	s.Store(v)
	return false, true
}

// Lookup returns flow's recorded mapping.
func (t *MappingTable) Lookup(flow uint32) (addr [4]byte, port uint16, ok bool) {
	if int(flow) >= len(t.slots) {
		return addr, 0, false
	}
	v := t.slots[flow].Load()
	if v&mappingValid == 0 {
		return addr, 0, false
	}
	return put32(uint32(v >> 16)), uint16(v), true
}
