package nat

import (
	"sync/atomic"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/internal/enumtext"
)

// Counter indexes a worker's counters.
type Counter int

// Per-side counters are laid out side by side: counter+Side.
const (
	RxPackets Counter = iota // + Side
	_
	RxBytes
	_
	TxPackets
	_
	TxBytes
	_
	SessionsCreated // + Proto
	_
	_
	PortAllocFailures
	Hairpinned
	ICMPErrorsSent
	ICMPErrorsSuppressed // rate-limited (the original is counted as a drop)
	FragmentsTranslated
	FragmentsHeld
	FragmentsMade
	EventsDropped
	Polls     // calls to Poll
	BusyPolls // calls to Poll that moved at least one frame
	PollNanos // wall time between the first and the latest Poll
	BusyNanos // the part of PollNanos that followed a Poll that moved frames
	LinkErrors
	MSSClamped // SYNs whose MSS option was lowered (mss.go)
	dropBase
	NumCounters = dropBase + Counter(drop.NumReasons)
)

var counterNames = [dropBase]string{
	RxPackets: "rx_packets_inside", RxPackets + 1: "rx_packets_outside",
	RxBytes: "rx_bytes_inside", RxBytes + 1: "rx_bytes_outside",
	TxPackets: "tx_packets_inside", TxPackets + 1: "tx_packets_outside",
	TxBytes: "tx_bytes_inside", TxBytes + 1: "tx_bytes_outside",
	SessionsCreated: "sessions_created_tcp", SessionsCreated + 1: "sessions_created_udp",
	SessionsCreated + 2:  "sessions_created_icmp",
	PortAllocFailures:    "port_alloc_failures",
	Hairpinned:           "hairpinned",
	ICMPErrorsSent:       "icmp_errors_sent",
	ICMPErrorsSuppressed: "icmp_errors_suppressed",
	FragmentsTranslated:  "fragments_translated",
	FragmentsHeld:        "fragments_held",
	FragmentsMade:        "fragments_made",
	EventsDropped:        "events_dropped",
	Polls:                "polls",
	BusyPolls:            "busy_polls",
	LinkErrors:           "link_errors",
	MSSClamped:           "mss_clamped",
}

func (c Counter) String() string {
	if c >= dropBase && c < NumCounters {
		return "drop_" + drop.Reason(c-dropBase).String()
	}
	return enumtext.Or(counterNames[:], c, "unknown")
}

// DropCounter returns the counter of drop reason r.
func DropCounter(r drop.Reason) Counter { return dropBase + Counter(r) }

// Counters is a snapshot of one worker's counters.
type Counters [NumCounters]uint64

// Drops returns the drop count of reason r.
func (c Counters) Drops(r drop.Reason) uint64 { return c[DropCounter(r)] }

// Add adds o into c.
func (c *Counters) Add(o *Counters) {
	for i := range c {
		c[i] += o[i]
	}
}

// published is a worker's counters as other goroutines see them. The worker
// stores into it once per burst, and only the counters that changed; the
// management plane loads from it at scrape time. Padding keeps two workers'
// arrays off each other's cache lines.
type published struct {
	_ [64]byte
	v [NumCounters]atomic.Uint64
	_ [64]byte
}

// publish copies the counters that changed since the last call.
func (p *published) publish(local, shadow *Counters) {
	for i := range local {
		if local[i] != shadow[i] {
			p.v[i].Store(local[i])
			shadow[i] = local[i]
		}
	}
}

func (p *published) load(out *Counters) {
	for i := range out {
		out[i] = p.v[i].Load()
	}
}
