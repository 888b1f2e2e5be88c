package events_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/internal/wait"
	"github.com/xnat/xnat/mgmt/events"
	"github.com/xnat/xnat/mgmt/export"
)

type countingSink struct {
	mu  sync.Mutex
	evs []nat.Event
}

func (s *countingSink) Offer(evs []nat.Event) {
	s.mu.Lock()
	s.evs = append(s.evs, evs...)
	s.mu.Unlock()
}

func (s *countingSink) Stats() export.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return export.Stats{Name: "test", Sent: uint64(len(s.evs))}
}

// TestSinksGetEveryBatch: every drained event reaches every sink, beside
// the JSON lines, and the sinks' counters appear in Stats.
func TestSinksGetEveryBatch(t *testing.T) {
	var mu sync.Mutex
	queued := []nat.Event{{Type: nat.BlockAllocated}, {Type: nat.SessionCreated}}
	a, b := &countingSink{}, &countingSink{}
	var lines syncWriter
	x, err := events.New(events.Options{
		Drain: func(buf []nat.Event) []nat.Event {
			mu.Lock()
			defer mu.Unlock()
			buf = append(buf, queued...)
			queued = nil
			return buf
		},
		Interval: time.Millisecond,
		Writer:   &lines,
		Sinks:    []events.Sink{a, b},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { x.Run(ctx); close(done) }()
	wait.Until(t, "2 events written", 10*time.Second, func() bool { return x.Stats().Written >= 2 })
	cancel()
	<-done
	s := x.Stats()
	if len(s.Sinks) != 2 || s.Sinks[0].Sent != 2 || s.Sinks[1].Sent != 2 {
		t.Fatalf("sinks %+v", s.Sinks)
	}
}

type syncWriter struct {
	mu sync.Mutex
	n  int
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.n += len(p)
	w.mu.Unlock()
	return len(p), nil
}
