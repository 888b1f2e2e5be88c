package export

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/internal/enumtext"
)

// Transport is the transport of an exporter: udp or tcp.
type Transport uint8

const (
	UDP Transport = iota
	TCP
)

var transportNames = []string{UDP: "udp", TCP: "tcp"}

func (t Transport) String() string { return enumtext.String(transportNames, "transport", t) }

// MarshalText implements encoding.TextMarshaler.
func (t Transport) MarshalText() ([]byte, error) {
	return enumtext.Marshal(transportNames, "transport", t)
}

// UnmarshalText implements encoding.TextUnmarshaler ("" is udp).
func (t *Transport) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*t = UDP
		return nil
	}
	return enumtext.Unmarshal(transportNames, b, t)
}

// Stats count what one exporter did, for /metrics.
type Stats struct {
	// Name is the exporter ("ipfix", "syslog").
	Name string
	// Sent counts records that left in a message; Dropped, records lost
	// to a full queue or a failed send; Templates, IPFIX template
	// records sent; Messages, messages (datagrams or TCP frames) sent;
	// Errors, failed sends or connection attempts.
	Sent, Dropped, Templates, Messages, Errors uint64
	// Up is whether the last send succeeded.
	Up bool
}

// Encoder writes records in one format to one collector. Run's goroutine
// is its only user.
type Encoder interface {
	// Send delivers a batch; it returns how many records left, and an
	// error for the rest.
	Send(recs []Record) (int, error)
	// Tick is called about once a second (IPFIX template refresh).
	Tick(now time.Time) error
	// Templates is the template records sent so far.
	Templates() uint64
	Messages() uint64
	Close() error
}

// Queue feeds one Encoder from the event stream: Offer (the events
// drainer's goroutine) copies events into a bounded channel and never
// blocks; Run (its own goroutine) sends them.
type Queue struct {
	name string
	enc  Encoder
	ch   chan nat.Event
	log  *slog.Logger

	dropped, sent, errs atomic.Uint64
	up                  atomic.Bool
}

// NewQueue returns a queue of capacity events in front of enc.
func NewQueue(name string, enc Encoder, capacity int, log *slog.Logger) *Queue {
	if capacity <= 0 {
		capacity = 65536
	}
	if log == nil {
		log = slog.Default()
	}
	return &Queue{name: name, enc: enc, ch: make(chan nat.Event, capacity), log: log.With("component", "export", "exporter", name)}
}

// Offer queues events without blocking; those that do not fit are
// counted as dropped.
func (q *Queue) Offer(evs []nat.Event) {
	for i := range evs {
		select {
		case q.ch <- evs[i]:
		default:
			q.dropped.Add(1)
		}
	}
}

// Stats returns the exporter's counters. Any goroutine.
func (q *Queue) Stats() Stats {
	return Stats{Name: q.name, Sent: q.sent.Load(), Dropped: q.dropped.Load(), Templates: q.enc.Templates(),
		Messages: q.enc.Messages(), Errors: q.errs.Load(), Up: q.up.Load()}
}

// Run sends queued events in batches until ctx ends, then sends what is
// left and closes the encoder.
func (q *Queue) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer q.enc.Close()
	batch := make([]Record, 0, 256)
	var lastErr time.Time
	flush := func() {
		if len(batch) == 0 {
			return
		}
		n, err := q.enc.Send(batch)
		q.sent.Add(uint64(n))
		if err != nil {
			q.dropped.Add(uint64(len(batch) - n))
			q.errs.Add(1)
			q.up.Store(false)
			if now := time.Now(); now.Sub(lastErr) > 10*time.Second {
				lastErr = now
				q.log.Error("export failed; records are being lost", "err", err, "lost", len(batch)-n)
			}
		} else {
			q.up.Store(true)
		}
		batch = batch[:0]
	}
	add := func(ev *nat.Event) {
		if r, ok := FromEvent(ev); ok {
			batch = append(batch, r)
		}
		if len(batch) == cap(batch) {
			flush()
		}
	}
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case ev := <-q.ch:
					add(&ev)
				default:
					flush()
					return
				}
			}
		case ev := <-q.ch:
			add(&ev)
			// Take what else is queued, then send.
			for more := true; more; {
				select {
				case ev := <-q.ch:
					add(&ev)
				default:
					more = false
				}
			}
			flush()
		case now := <-tick.C:
			if err := q.enc.Tick(now); err != nil && !errors.Is(err, context.Canceled) {
				q.errs.Add(1)
				q.up.Store(false)
			}
		}
	}
}
