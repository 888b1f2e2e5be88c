// Package events exports the NAT engine's event stream (session create and
// delete, address binding, exhaustion and quota events) off the dataplane.
//
// Workers and the engine's control plane queue events into single-producer
// rings (nat.Engine). One goroutine here, Exporter.Run, drains those rings
// every Interval, fans each event out to live subscribers (the gRPC
// WatchEvents streams, through natd's Core.SubscribeEvents), and appends it
// to a JSON-lines file with size-based rotation, or to stdout. Nothing here
// can slow a worker: if the file is slow, Run falls behind, the engine's
// rings fill and the engine counts the events it could not queue; a
// subscriber that reads too slowly loses events from its bounded channel,
// counted in Stats.SubscriberDropped. The line format is documented in
// docs/events.md.
package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt/export"
)

// Options configure an Exporter.
type Options struct {
	// Drain appends every queued engine event to buf and returns it
	// (nat.Engine.DrainEvents). Required. Only Run calls it.
	Drain func(buf []nat.Event) []nat.Event
	// Interval is how often Run drains; default 100 ms.
	Interval time.Duration
	// Path is the JSON-lines file; "-" writes to stdout; "" writes no file
	// (events still reach subscribers).
	Path string
	// Writer, if set and Path is "", receives the lines instead (tests).
	Writer io.Writer
	// MaxSize is the size in bytes at which the file is rotated; default
	// 100 MiB. Rotation happens between lines, so a file exceeds MaxSize
	// only if a single line does.
	MaxSize int64
	// MaxBackups is the number of rotated files kept (path.1 is the
	// newest); default 5. Negative keeps none.
	MaxBackups int
	// SubscriberBuffer is each subscriber's channel capacity; default 4096.
	SubscriberBuffer int
	// FileMode is the mode of new files; default 0640.
	FileMode os.FileMode
	Logger   *slog.Logger
	// Sinks receive every drained batch (IPFIX and syslog exporters,
	// sink.go); Offer must not block.
	Sinks []Sink
}

// Stats count what the exporter did, for the metrics collector.
type Stats struct {
	// Drained counts events taken from the engine.
	Drained uint64
	// Written counts events written to the file or writer.
	Written uint64
	// WriteErrors counts failed writes (each loses the lines it carried).
	WriteErrors uint64
	// FileDropped counts events lost to write errors.
	FileDropped uint64
	// SubscriberDropped counts events a slow subscriber lost.
	SubscriberDropped uint64
	// Rotations counts file rotations.
	Rotations uint64
	// Subscribers is the number of live subscribers.
	Subscribers int
	// Sinks are the exporters' own counters.
	Sinks []export.Stats
}

// Exporter drains engine events to a file and to subscribers. Run is its
// only writer goroutine; Subscribe and Stats may be called from any
// goroutine.
type Exporter struct {
	opts Options
	log  *slog.Logger
	out  lineWriter // nil when no file output

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
	done   chan struct{}

	drained, written, writeErrs, fileDropped, subDropped, rotations atomic.Uint64

	running atomic.Bool
	lastErr time.Time // last logged write error (Run only)
}

type subscriber struct {
	ch chan nat.Event
}

// lineWriter writes whole lines.
type lineWriter interface {
	WriteLines(p []byte) error
	Close() error
}

// New returns an exporter; the file, if any, is opened (and created) now
// so that a bad path fails at start-up.
func New(opts Options) (*Exporter, error) {
	if opts.Drain == nil {
		return nil, errors.New("events: Options.Drain is required")
	}
	if opts.Interval == 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.Interval < time.Millisecond {
		return nil, fmt.Errorf("events: interval %v is below 1ms", opts.Interval)
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = 100 << 20
	}
	if opts.MaxSize < 4096 {
		return nil, fmt.Errorf("events: max size %d is below 4096 bytes", opts.MaxSize)
	}
	if opts.MaxBackups == 0 {
		opts.MaxBackups = 5
	}
	if opts.MaxBackups < 0 {
		opts.MaxBackups = 0
	}
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = 4096
	}
	if opts.FileMode == 0 {
		opts.FileMode = 0o640
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Exporter{
		opts: opts,
		log:  opts.Logger.With("component", "events"),
		subs: map[*subscriber]struct{}{},
		done: make(chan struct{}),
	}
	switch {
	case opts.Path == "-":
		e.out = &plainWriter{w: os.Stdout}
	case opts.Path != "":
		f, err := openRotating(opts.Path, opts.MaxSize, opts.MaxBackups, opts.FileMode, &e.rotations)
		if err != nil {
			return nil, err
		}
		e.out = f
	case opts.Writer != nil:
		e.out = &plainWriter{w: opts.Writer}
	}
	return e, nil
}

// Subscribe returns a channel that receives every event drained from now
// on, until ctx ends or the exporter stops; then it is closed. A subscriber
// that falls SubscriberBuffer events behind loses the newest ones
// (counted), never blocking the exporter.
func (e *Exporter) Subscribe(ctx context.Context) <-chan nat.Event {
	s := &subscriber{ch: make(chan nat.Event, e.opts.SubscriberBuffer)}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		close(s.ch)
		return s.ch
	}
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-e.done:
		}
		e.mu.Lock()
		delete(e.subs, s)
		e.mu.Unlock()
		close(s.ch)
	}()
	return s.ch
}

// Stats returns the exporter's counters.
func (e *Exporter) Stats() Stats {
	e.mu.Lock()
	n := len(e.subs)
	e.mu.Unlock()
	return Stats{
		Drained:           e.drained.Load(),
		Written:           e.written.Load(),
		WriteErrors:       e.writeErrs.Load(),
		FileDropped:       e.fileDropped.Load(),
		SubscriberDropped: e.subDropped.Load(),
		Rotations:         e.rotations.Load(),
		Subscribers:       n,
		Sinks:             sinkStats(e.opts.Sinks),
	}
}

// Run drains the engine every Interval until ctx ends, then drains once
// more, closes the file and every subscriber channel, and returns. Call it
// once, from one goroutine.
func (e *Exporter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("events: Run called twice")
	}
	defer e.stop()
	t := time.NewTicker(e.opts.Interval)
	defer t.Stop()
	var evs []nat.Event
	var line []byte
	for {
		evs, line = e.round(evs[:0], line[:0])
		select {
		case <-ctx.Done():
			e.round(evs[:0], line[:0])
			return nil
		case <-t.C:
		}
	}
}

// round drains once, fans out and writes. It returns its buffers for reuse.
func (e *Exporter) round(evs []nat.Event, buf []byte) ([]nat.Event, []byte) {
	evs = e.opts.Drain(evs)
	if len(evs) == 0 {
		return evs, buf
	}
	e.drained.Add(uint64(len(evs)))
	e.fanOut(evs)
	for _, s := range e.opts.Sinks {
		s.Offer(evs)
	}
	if e.out == nil {
		return evs, buf
	}
	// Write in chunks of about 64 KiB: few syscalls, bounded memory.
	start := 0
	for i := range evs {
		buf = AppendJSON(buf, &evs[i])
		if len(buf) >= 64<<10 || i == len(evs)-1 {
			e.write(buf, i+1-start)
			buf, start = buf[:0], i+1
		}
	}
	return evs, buf
}

func (e *Exporter) write(lines []byte, n int) {
	if err := e.out.WriteLines(lines); err != nil {
		e.writeErrs.Add(1)
		e.fileDropped.Add(uint64(n))
		if now := time.Now(); now.Sub(e.lastErr) > 10*time.Second {
			e.lastErr = now
			e.log.Error("writing events failed; events are being lost", "err", err, "lost", n)
		}
		return
	}
	e.written.Add(uint64(n))
}

func (e *Exporter) fanOut(evs []nat.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		lost := 0
		for i := range evs {
			select {
			case s.ch <- evs[i]:
			default:
				lost++
			}
		}
		if lost > 0 {
			e.subDropped.Add(uint64(lost))
		}
	}
}

func (e *Exporter) stop() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	close(e.done)
	if e.out != nil {
		if err := e.out.Close(); err != nil {
			e.log.Error("closing the event file", "err", err)
		}
	}
}

// plainWriter writes lines to an io.Writer without rotation.
type plainWriter struct{ w io.Writer }

func (p *plainWriter) WriteLines(b []byte) error {
	_, err := p.w.Write(b)
	return err
}

func (p *plainWriter) Close() error { return nil }
