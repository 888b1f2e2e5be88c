package nat

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/header"
	"github.com/xnat/xnat/flowtable"
)

// TestRefCountChurn drives acquireRef and releaseRef as the workers and
// the expirer do, on a few keys shared by every goroutine in a table so
// small that records are recycled all the time: entries are created,
// referenced, released to death and created again, concurrently, and
// lookups are acted on a little later, when the record may hold another
// entry. Each entry stands for a claimed port: its creator claims one, and
// whoever releases its last reference frees it, as cleanup does. At the end
// every reference is released, so the table must be empty and no port
// claimed: a reference counted on a recycled record, or lost from one,
// shows up as a port never freed (or freed twice) or an entry left behind.
func TestRefCountChurn(t *testing.T) {
	const (
		capacity = 8
		nkeys    = 6
		workers  = 4
		maxHeld  = 3
	)
	tb, err := flowtable.New(capacity)
	if err != nil {
		t.Fatal(err)
	}
	var ports, created, acquired, stale atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	keyOf := func(i int) flowtable.Key {
		return flowtable.Key{Src: [4]byte{10, 0, 0, byte(i)}, Proto: 255}
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 31))
			type ref struct {
				id    uint32
				delta uint64
			}
			var held []ref
			release := func(i int) {
				h := held[i]
				held = append(held[:i], held[i+1:]...)
				if _, last := releaseRef(tb, h.id, h.delta); last {
					ports.Add(-1)
				}
			}
			for !stop.Load() {
				if len(held) == maxHeld || (len(held) > 0 && r.IntN(2) == 0) {
					release(r.IntN(len(held)))
					continue
				}
				k := keyOf(r.IntN(nkeys))
				// A subscriber takes one session and maybe a port at
				// once; bindings and permissions take one.
				delta := uint64(1)
				if r.IntN(2) == 0 {
					delta = subRefs(1, 1)
				}
				var x flowtable.Entry
				if tb.Lookup(&k, &x) {
					if r.IntN(2) == 0 {
						runtime.Gosched()
					}
					ok, dying := acquireRef(tb, &x, delta, nil)
					if ok {
						acquired.Add(1)
						held = append(held, ref{x.ID, delta})
						continue
					}
					if dying {
						stale.Add(1)
					}
				}
				// A new entry with its creator's reference, and a port.
				ports.Add(1)
				switch tb.Insert(&k, &flowtable.NoKey, 0, [2]uint64{0, delta}, 0, &x) {
				case flowtable.Inserted:
					created.Add(1)
					held = append(held, ref{x.ID, delta})
				default:
					ports.Add(-1)
				}
			}
			for len(held) > 0 {
				release(len(held) - 1)
			}
		}()
	}
	time.Sleep(stressTime())
	stop.Store(true)
	wg.Wait()
	t.Logf("%d entries created, %d references taken, %d lookups found a dying or recycled entry",
		created.Load(), acquired.Load(), stale.Load())
	if n := ports.Load(); n != 0 {
		t.Errorf("%d ports still claimed after every reference was released", n)
	}
	if n := tb.Len(); n != 0 {
		t.Errorf("%d entries left after every reference was released", n)
		tb.Range(0, func(x *flowtable.Entry) bool {
			t.Logf("left: %+v", *x)
			return true
		})
	}
}

// TestConcurrentChurnSameSubscribers runs two workers that open the same
// few flows from the same few subscribers at the same time, while the
// control plane flushes every session over and over: subscribers and
// mappings die and are created again under the workers' feet, in tables
// small enough that their records are recycled at once. When everything
// has expired, every table must be empty, every port free and every
// address without subscribers.
func TestConcurrentChurnSameSubscribers(t *testing.T) {
	c := poolConfig("198.18.1.0/30")
	c.Limits.MaxSessions = 64
	c.Limits.MaxSubscribers = 8
	h := newHarnessN(t, c, 2)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sent, flushed atomic.Int64
	for w := range h.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps := h.wports[w]
			for i := 0; !stop.Load(); i++ {
				host := fmt.Sprintf("10.0.0.%d", 2+i%4)
				ps[Inside].Inject(udp(host, uint16(1000+(i/4)%8), "198.18.0.2", 7000))
				h.workers[w].Poll()
				for _, f := range ps[Outside].Drain() {
					verifyFrame(t, f)
					sent.Add(1)
				}
				ps[Inside].Drain()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			flushed.Add(int64(h.eng.FlushSessions(SessionFilter{})))
			// Past the hold-down now and then, so ports come back.
			h.clock.Advance(5 * time.Second)
			h.eng.Housekeep(64)
			runtime.Gosched()
		}
	}()
	time.Sleep(stressTime())
	stop.Store(true)
	wg.Wait()
	if sent.Load() == 0 || flushed.Load() == 0 {
		t.Fatalf("%d packets translated, %d sessions flushed: the test exercised nothing", sent.Load(), flushed.Load())
	}
	t.Logf("%d packets translated, %d sessions flushed", sent.Load(), flushed.Load())
	h.expireAll()
}

// stressTime is how long a stress test runs.
func stressTime() time.Duration {
	if testing.Short() {
		return 300 * time.Millisecond
	}
	return 2 * time.Second
}

// TestUndoKeepsTheMappingsPort replays, one step at a time, a race of two
// workers opening the same flow: worker 0 creates the mapping (and counts
// its port on the subscriber), worker 1 finds the mapping and opens the
// session, and worker 0, finding that session already there, undoes its
// claim. The mapping lives on with worker 1's session, so its port must
// stay counted on the subscriber until that session ends; counting it off
// in the undo made the final release underflow and panic.
func TestUndoKeepsTheMappingsPort(t *testing.T) {
	h := newHarnessN(t, testConfig(), 2)
	frame := udp("10.0.0.2", 1000, "198.18.0.2", 9)
	var p header.Parsed
	if r := header.Parse(frame, &p); r != drop.None {
		t.Fatal(r)
	}
	w0 := h.workers[0]
	w0.snap = h.eng.snap.Load()
	w0.readClock()
	var c claim
	var ext [4]byte
	var extPort uint16
	if r := w0.eimMapping(&p, p.SrcPort, UDP, &c, &ext, &extPort); r != drop.None || !c.newPort {
		t.Fatalf("worker 0 made no new mapping: %v", r)
	}
	h.wports[1][Inside].Inject(frame)
	h.workers[1].Poll()
	out := h.wports[1][Outside].Drain()
	if len(out) != 1 {
		t.Fatalf("worker 1 sent %d frames, want 1", len(out))
	}
	if e := eps(verifyFrame(t, out[0])); e.src != "198.18.0.100" || e.sport != extPort {
		t.Fatalf("worker 1 left as %s:%d, not by worker 0's mapping %d", e.src, e.sport, extPort)
	}
	w0.undo(&c)
	if h.eng.bindings.Len() != 1 || h.eng.subs.Len() != 1 {
		t.Fatalf("after the undo: %d mappings, %d subscribers; want 1 and 1", h.eng.bindings.Len(), h.eng.subs.Len())
	}
	// Expiry, then the end of the port's hold-down.
	h.expireAll()
}

// TestClaimBegin: begin leaves every field of a claim zero but the three
// records, which newOutbound's worker-owned claim keeps from its last
// creation (claim). A field added to claim and not to begin fails here.
func TestClaimBegin(t *testing.T) {
	var c claim
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer {
			continue // set below, to valid pointers
		}
		// Every other field non-zero: a byte pattern through unsafe, so
		// that unexported fields of every kind are set.
		b := unsafe.Slice((*byte)(unsafe.Pointer(f.UnsafeAddr())), f.Type().Size())
		for j := range b {
			b[j] = 0x5a
		}
	}
	c.rule, c.portSlot = &addrState{}, new(atomic.Uint64)
	c.begin()
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Name
		switch name {
		case "sub", "binding", "perm":
			if v.Field(i).IsZero() {
				t.Fatalf("begin cleared record %s", name)
			}
		default:
			if !v.Field(i).IsZero() {
				t.Fatalf("begin left field %s set", name)
			}
		}
	}
}
