package events_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/internal/wait"
	"github.com/xnat/xnat/mgmt/events"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

var sample = []nat.Event{
	{UnixNano: 1_767_323_045_123_456_789, Type: nat.SessionCreated, Proto: nat.UDP, Worker: 3,
		InsideAddr: [4]byte{10, 0, 0, 5}, InsidePort: 40000, OutsideAddr: [4]byte{198, 18, 0, 100}, OutsidePort: 1025},
	{UnixNano: 1_767_323_045_000_000_000, Type: nat.SessionDeleted, Proto: nat.TCP, Reason: uint8(nat.DeletedIdle),
		InsideAddr: [4]byte{10, 0, 0, 5}, InsidePort: 40001, OutsideAddr: [4]byte{198, 18, 0, 100}, OutsidePort: 1026,
		RemoteAddr: [4]byte{203, 0, 113, 9}, RemotePort: 443},
	{UnixNano: 1_767_323_045_000_000_001, Type: nat.AddressBound, Worker: 1,
		InsideAddr: [4]byte{10, 0, 0, 5}, OutsideAddr: [4]byte{198, 18, 0, 100}},
	{UnixNano: 1_767_323_045_000_000_002, Type: nat.QuotaExceeded, Proto: nat.TCP, Reason: uint8(drop.SubscriberPorts),
		InsideAddr: [4]byte{10, 0, 0, 6}, InsidePort: 5000, SessionCount: 77},
	{UnixNano: 1_767_323_045_000_000_003, Type: nat.PortsExhausted, Proto: nat.ICMP,
		InsideAddr: [4]byte{10, 0, 0, 7}, InsidePort: 9, OutsideAddr: [4]byte{198, 18, 0, 100}},
	{UnixNano: 1_767_323_045_000_000_004, Type: nat.BlockAllocated, Worker: 2,
		InsideAddr: [4]byte{10, 0, 0, 8}, OutsideAddr: [4]byte{198, 18, 0, 100}, OutsidePort: 39936, PortEnd: 40447},
}

var sampleLines = []string{
	`{"time":"2026-01-02T03:04:05.123456789Z","type":"session_created","protocol":"udp","inside":"10.0.0.5:40000","outside":"198.18.0.100:1025","worker":3}`,
	`{"time":"2026-01-02T03:04:05Z","type":"session_deleted","protocol":"tcp","inside":"10.0.0.5:40001","outside":"198.18.0.100:1026","remote":"203.0.113.9:443","reason":"idle","worker":0}`,
	`{"time":"2026-01-02T03:04:05.000000001Z","type":"address_bound","inside":"10.0.0.5","outside":"198.18.0.100","worker":1}`,
	`{"time":"2026-01-02T03:04:05.000000002Z","type":"quota_exceeded","protocol":"tcp","inside":"10.0.0.6:5000","reason":"subscriber_port_limit","worker":0,"sessions":77}`,
	`{"time":"2026-01-02T03:04:05.000000003Z","type":"ports_exhausted","protocol":"icmp","inside":"10.0.0.7:9","outside":"198.18.0.100:0","worker":0}`,
	`{"time":"2026-01-02T03:04:05.000000004Z","type":"block_allocated","inside":"10.0.0.8","outside":"198.18.0.100","worker":2,"ports":"39936-40447"}`,
}

func TestAppendJSON(t *testing.T) {
	for i := range sample {
		line := events.AppendJSON(nil, &sample[i])
		if got := strings.TrimSuffix(string(line), "\n"); got != sampleLines[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, sampleLines[i])
		}
		// The hand-written encoder and Record agree.
		var r events.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("line %d does not decode: %v", i, err)
		}
		want := events.ToRecord(&sample[i])
		if !r.Time.Equal(want.Time) {
			t.Errorf("event %d time %v, want %v", i, r.Time, want.Time)
		}
		r.Time = want.Time
		if r != want {
			t.Errorf("event %d decodes to %+v, ToRecord gives %+v", i, r, want)
		}
		re, _ := json.Marshal(want)
		if string(re) != sampleLines[i] {
			t.Errorf("event %d: encoding/json of Record gives\n%s\nnot\n%s", i, re, sampleLines[i])
		}
	}
}

func TestAppendJSONAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	n := testing.AllocsPerRun(1000, func() {
		buf = buf[:0]
		for i := range sample {
			buf = events.AppendJSON(buf, &sample[i])
		}
	})
	if n != 0 {
		t.Errorf("AppendJSON allocates %v times per run", n)
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = events.AppendJSON(buf[:0], &sample[1])
	}
}

// queue is a fake engine: Drain takes whatever was pushed.
type queue struct {
	mu  sync.Mutex
	evs []nat.Event
}

func (q *queue) push(evs ...nat.Event) {
	q.mu.Lock()
	q.evs = append(q.evs, evs...)
	q.mu.Unlock()
}

func (q *queue) drain(buf []nat.Event) []nat.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	buf = append(buf, q.evs...)
	q.evs = q.evs[:0]
	return buf
}

func run(t *testing.T, e *events.Exporter) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, what, 10*time.Second, cond)
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	q := &queue{}
	e, err := events.New(events.Options{Drain: q.drain, Interval: time.Millisecond, Path: path, MaxSize: 4096, MaxBackups: 2})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, e)
	const n = 200 // ~150 bytes a line: about 7 files' worth
	for i := 0; i < n; i++ {
		ev := sample[0]
		ev.InsidePort = uint16(i)
		q.push(ev)
		if i%10 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitFor(t, "all events written", func() bool { return e.Stats().Written == n })
	stop()
	st := e.Stats()
	if st.Rotations < 4 || st.WriteErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	var ports []int
	for _, name := range []string{path + ".2", path + ".1", path} {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		if fi.Size() > 4096 {
			t.Errorf("%s is %d bytes, above MaxSize", name, fi.Size())
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r events.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: bad line %q", name, sc.Bytes())
			}
			var port int
			fmt.Sscanf(r.Inside[strings.LastIndexByte(r.Inside, ':')+1:], "%d", &port)
			ports = append(ports, port)
		}
		f.Close()
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.3 exists beyond MaxBackups", path)
	}
	// The kept files hold the newest events, in order, without gaps.
	for i := 1; i < len(ports); i++ {
		if ports[i] != ports[i-1]+1 {
			t.Fatalf("events out of order or missing: %v", ports)
		}
	}
	if ports[len(ports)-1] != n-1 {
		t.Errorf("last event %d, want %d", ports[len(ports)-1], n-1)
	}

	// A restarted exporter appends to the current file.
	fi0, _ := os.Stat(path)
	e2, err := events.New(events.Options{Drain: q.drain, Path: path, MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	stop = run(t, e2)
	q.push(sample[2])
	waitFor(t, "appended", func() bool { return e2.Stats().Written == 1 })
	stop()
	fi1, _ := os.Stat(path)
	if fi1.Size() != fi0.Size()+int64(len(sampleLines[2])+1) {
		t.Errorf("file went from %d to %d bytes", fi0.Size(), fi1.Size())
	}
}

func TestSubscribers(t *testing.T) {
	q := &queue{}
	e, err := events.New(events.Options{Drain: q.drain, Interval: time.Millisecond, SubscriberBuffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, e)
	fastCtx, cancelFast := context.WithCancel(context.Background())
	fast := e.Subscribe(fastCtx)
	slow := e.Subscribe(context.Background())
	// Feed four events at a time and let the fast subscriber take them
	// before the next four, so it never falls behind its buffer of 8.
	for i := 0; i < 25; i++ {
		q.push(sample[0], sample[0], sample[0], sample[0])
		for j := 0; j < 4; j++ {
			select {
			case <-fast:
			case <-time.After(10 * time.Second):
				t.Fatalf("fast subscriber starved at batch %d", i)
			}
		}
	}
	// The slow subscriber never read: it kept its buffer's worth and lost
	// the rest, counted; the fast one lost nothing.
	waitFor(t, "drops counted", func() bool { return e.Stats().SubscriberDropped == 92 })
	if len(slow) != 8 {
		t.Errorf("slow subscriber holds %d events, want 8", len(slow))
	}
	if e.Stats().Subscribers != 2 {
		t.Errorf("%d subscribers", e.Stats().Subscribers)
	}
	cancelFast()
	waitFor(t, "unsubscribed", func() bool { return e.Stats().Subscribers == 1 })
	if _, ok := <-fast; ok {
		t.Error("cancelled subscriber's channel still open")
	}
	stop()
	n := 0
	for range slow { // closed by Run's exit after its buffered events
		n++
	}
	if n != 8 {
		t.Errorf("drained %d from the slow subscriber", n)
	}
	// After the exporter stops, new subscribers get a closed channel.
	if _, ok := <-e.Subscribe(context.Background()); ok {
		t.Error("subscription after stop is open")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorsCounted(t *testing.T) {
	q := &queue{}
	logs := &bytes.Buffer{}
	var mu sync.Mutex
	e, err := events.New(events.Options{Drain: q.drain, Interval: time.Millisecond, Writer: failWriter{},
		Logger: newLogger(logs, &mu)})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, e)
	q.push(sample...)
	waitFor(t, "errors counted", func() bool { return e.Stats().FileDropped == uint64(len(sample)) })
	stop()
	st := e.Stats()
	if st.WriteErrors != 1 || st.Written != 0 || st.Drained != uint64(len(sample)) {
		t.Errorf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "disk full") {
		t.Errorf("write error not logged: %s", logs)
	}
}

func TestOptionErrors(t *testing.T) {
	q := &queue{}
	for _, tc := range []struct {
		o    events.Options
		want string
	}{
		{events.Options{}, "Drain is required"},
		{events.Options{Drain: q.drain, MaxSize: 100}, "below 4096"},
		{events.Options{Drain: q.drain, Path: filepath.Join(t.TempDir(), "no", "such", "dir", "f")}, "no such file"},
	} {
		if _, err := events.New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v", tc.o, err)
		}
	}
}

// blockingWriter blocks every write until released.
type blockingWriter struct {
	release chan struct{}
	once    sync.Once
	entered atomic.Bool // a Write is (or was) blocked
	mu      sync.Mutex
	buf     bytes.Buffer
}

// unblock releases every write, now and later; safe to call twice.
func (w *blockingWriter) unblock() { w.once.Do(func() { close(w.release) }) }

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.entered.Store(true)
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// A stuck disk stalls the exporter, never the worker: the engine's event
// ring fills and the engine counts what it could not queue, while packets
// keep flowing; once the disk recovers the queued events are written.
func TestSlowDiskNeverBlocksTheWorker(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	core := mgmttest.Start(t, mgmttest.Options{EventWriter: w, EventRing: 64})
	// Close waits for the exporter, which a failed test would leave
	// stuck in Write: release it first (defers run last first).
	defer w.unblock()
	// One event gets the writer stuck. The session's two events (address
	// bound, session created) may reach the exporter in one round or two:
	// wait for the stuck Write, not for a count.
	if err := core.Open(nat.UDP, netip.MustParseAddrPort("10.0.0.5:1000"), netip.MustParseAddrPort("203.0.113.9:53")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "exporter stuck in Write", w.entered.Load)
	const n = 300
	for i := 0; i < n; i++ {
		in := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.6"), uint16(2000+i))
		if err := core.Open(nat.UDP, in, netip.MustParseAddrPort("203.0.113.9:53")); err != nil {
			t.Fatal(err) // the worker translated every packet
		}
	}
	lost := core.Engine.EventsDropped()
	if lost == 0 {
		t.Fatal("the engine's ring never filled")
	}
	stuck := core.Events.Stats().Drained // the batch in the stuck Write
	w.unblock()
	// Then the worker's full ring (64) is drained and written.
	waitFor(t, "backlog written", func() bool {
		st := core.Events.Stats()
		return st.Drained >= stuck+64 && st.Written == st.Drained
	})
	t.Logf("engine dropped %d events while the disk was stuck; %d written after", lost, core.Events.Stats().Written)
}

// The hand-written encoder against the reference, encoding/json of
// ToRecord, on random events.
func TestAppendJSONMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		ev := nat.Event{
			UnixNano:     r.Int64N(4e18),
			Type:         nat.EventType(r.IntN(10)), // includes 0 and unknown types
			Proto:        nat.Proto(r.IntN(3)),
			Reason:       uint8(r.IntN(40)),
			Worker:       uint8(r.IntN(256)),
			InsidePort:   uint16(r.Uint32()),
			OutsidePort:  uint16(r.Uint32()),
			RemotePort:   uint16(r.Uint32()),
			SessionCount: r.Uint32() >> uint(r.IntN(32)),
		}
		for _, a := range []*[4]byte{&ev.InsideAddr, &ev.OutsideAddr, &ev.RemoteAddr} {
			if r.IntN(4) != 0 {
				*a = [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
			}
		}
		got := events.AppendJSON(nil, &ev)
		want, err := json.Marshal(events.ToRecord(&ev))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want)+"\n" {
			t.Fatalf("event %+v:\n got %s want %s", ev, got, want)
		}
	}
}

func BenchmarkRecordJSONMarshal(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r := events.ToRecord(&sample[1])
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}
