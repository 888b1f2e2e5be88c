package nat

import (
	"github.com/xnat/xnat/flowtable"
	"github.com/xnat/xnat/internal/enumtext"
	"github.com/xnat/xnat/ring"
)

// EventType says what an Event records.
type EventType uint8

const (
	// SessionCreated: a new session (flow) through the NAT.
	SessionCreated EventType = iota + 1
	// SessionDeleted: a session ended (idle timeout or operator).
	SessionDeleted
	// AddressBound: a subscriber was paired with an external address
	// (RFC 6888 REQ-12 allows logging per address binding).
	AddressBound
	// AddressReleased: a subscriber's last mapping ended.
	AddressReleased
	// PortsExhausted: a new mapping found no free external port.
	PortsExhausted
	// AddressesExhausted: no external address could take a new subscriber.
	AddressesExhausted
	// QuotaExceeded: a subscriber hit its session or port limit.
	QuotaExceeded
	// TableFull: the session table refused a session.
	TableFull
	// BlockAllocated: a subscriber was given a port block (block mode):
	// OutsideAddr, ports OutsidePort..PortEnd.
	BlockAllocated
	// BlockReleased: a port block was freed, after the hold-down.
	BlockReleased
)

var eventNames = [...]string{
	SessionCreated:     "session_created",
	SessionDeleted:     "session_deleted",
	AddressBound:       "address_bound",
	AddressReleased:    "address_released",
	PortsExhausted:     "ports_exhausted",
	AddressesExhausted: "addresses_exhausted",
	QuotaExceeded:      "quota_exceeded",
	TableFull:          "table_full",
	BlockAllocated:     "block_allocated",
	BlockReleased:      "block_released",
}

func (t EventType) String() string { return enumtext.Or(eventNames[:], t, "unknown") }

// Event is one entry of the engine's event stream, exported by the
// management plane as JSON lines. It is pointer-free so that rings of
// events cost the garbage collector nothing.
type Event struct {
	// UnixNano is the batch clock when the event happened.
	UnixNano int64
	Type     EventType
	Proto    Proto
	// Reason qualifies exhaustion and quota events (a drop reason) and
	// session deletions (DeleteReason).
	Reason uint8
	Worker uint8
	// Inside and Outside are the endpoints of the mapping; Remote is the
	// external peer, all-zero unless LogDestinations is set (RFC 6888
	// REQ-12 leaves destination logging to the operator).
	InsideAddr  [4]byte
	OutsideAddr [4]byte
	RemoteAddr  [4]byte
	InsidePort  uint16
	OutsidePort uint16
	RemotePort  uint16
	// PortEnd is the last port of a block (block events); OutsidePort is
	// its first.
	PortEnd      uint16
	SessionCount uint32 // subscriber's sessions, on quota events
}

// DeleteReason says why a session was deleted.
type DeleteReason uint8

const (
	DeletedIdle DeleteReason = iota + 1
	DeletedByOperator
	// DeletedPressure: an embryonic session opened from outside,
	// reclaimed early because sessions from outside reached their limit
	// (reclaim.go).
	DeletedPressure
)

// eventRing is one producer's event queue. Each worker, the expirer and
// the control plane produce into their own single-producer ring, and one
// exporter goroutine drains them all, so no producer ever contends with
// another and a full ring costs a counted event, never a packet.
type eventRing struct {
	q *ring.SPSC[Event]
}

func newEventRing(capacity int) *eventRing {
	q, err := ring.NewSPSC[Event](capacity)
	if err != nil {
		panic(err) // capacity is a constant power of two
	}
	return &eventRing{q: q}
}

// DrainEvents appends every queued event to buf and returns it: first each
// worker's, in worker order, then the control plane's (deletions by expiry
// or operator). Within one producer, events are in the order they
// happened. Only one goroutine (the event exporter) may call it.
func (e *Engine) DrainEvents(buf []Event) []Event {
	e.ctl.Lock()
	workers := append([]*Worker(nil), e.workers...)
	e.ctl.Unlock()
	var tmp [256]Event
	drain := func(r *eventRing) {
		for {
			n := r.q.DequeueBurst(tmp[:])
			if n == 0 {
				return
			}
			buf = append(buf, tmp[:n]...)
		}
	}
	for _, w := range workers {
		if w != nil {
			drain(w.events)
		}
	}
	drain(e.ctlEvents)
	return buf
}

// EventsDropped returns how many events were lost to full rings.
func (e *Engine) EventsDropped() uint64 {
	n := e.evDropped.Load()
	var c Counters
	e.ctl.Lock()
	defer e.ctl.Unlock()
	for _, w := range e.workers {
		if w != nil {
			w.Counters(&c)
			n += c[EventsDropped]
		}
	}
	return n
}

// event queues an event on the worker's ring; a full ring counts it lost.
func (w *Worker) event(ev Event) {
	if w.snap.muted(ev.Type) {
		return
	}
	ev.UnixNano = w.nowNano
	ev.Worker = w.id
	if !w.events.q.Enqueue(ev) {
		w.c[EventsDropped]++
	}
}

// sessionEvent queues an event about session x, as event does. It is
// the event of every new session, so it writes the event in place, in the
// ring's slot (Reserve, Commit), where event's two copies of it by value
// cost about forty instructions a new session (bench-instr).
func (w *Worker) sessionEvent(t EventType, x *flowtable.Entry) {
	if w.snap.muted(t) {
		return
	}
	ev := w.events.q.Reserve()
	if ev == nil {
		w.c[EventsDropped]++
		return
	}
	*ev = Event{UnixNano: w.nowNano, Type: t, Worker: w.id}
	ev.Proto, _ = ProtoOfNumber(x.Keys[0].Proto)
	fillEndpoints(ev, x, w.snap.Config.LogDestinations)
	w.events.q.Commit()
}
