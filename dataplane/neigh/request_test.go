package neigh

import (
	"sync"
	"testing"

	"github.com/xnat/xnat/dataplane/fwd"
)

type posted struct {
	side fwd.Side
	ip   uint32
}

func drainAll(q *requests) []posted {
	var out []posted
	q.drain(func(s fwd.Side, ip uint32) { out = append(out, posted{s, ip}) })
	return out
}

func TestRequestsDedupAndWake(t *testing.T) {
	q := newRequests()
	select {
	case <-q.wake:
		t.Fatal("wake-up before any post")
	default:
	}
	for range 10 {
		q.post(fwd.Outside, 0xc6120002)
	}
	q.post(fwd.Inside, 0xc6120002) // same address, other side: another request
	select {
	case <-q.wake:
	default:
		t.Fatal("post did not wake the control goroutine")
	}
	got := drainAll(q)
	if len(got) != 2 {
		t.Fatalf("drained %v, want one request per side", got)
	}
	seen := map[posted]bool{}
	for _, p := range got {
		seen[p] = true
	}
	if !seen[posted{fwd.Outside, 0xc6120002}] || !seen[posted{fwd.Inside, 0xc6120002}] {
		t.Fatalf("drained %v", got)
	}
	if got := drainAll(q); len(got) != 0 {
		t.Fatalf("second drain returned %v", got)
	}
	// After a drain, a new post wakes again.
	q.post(fwd.Inside, 7)
	select {
	case <-q.wake:
	default:
		t.Fatal("post after drain did not wake")
	}
}

func TestRequestsOverflowCounted(t *testing.T) {
	q := newRequests()
	const n = 3 * reqSlots
	for i := range n {
		q.post(fwd.Inside, uint32(0x0a000000+i))
	}
	got := len(drainAll(q))
	if got == 0 || got > reqSlots {
		t.Fatalf("drained %d requests from %d slots", got, reqSlots)
	}
	if got+int(q.overflow.Load()) != n {
		t.Fatalf("drained %d + overflow %d != posted %d", got, q.overflow.Load(), n)
	}
}

func TestRequestsConcurrent(t *testing.T) {
	q := newRequests()
	keys := make([]posted, 24)
	for i := range keys {
		keys[i] = posted{fwd.Side(i % 2), uint32(0xc6120000 + i*7)}
	}
	stop := make(chan struct{})
	seen := map[posted]int{}
	var dw sync.WaitGroup
	dw.Add(1)
	go func() {
		defer dw.Done()
		for {
			select {
			case <-q.wake:
				for _, p := range drainAll(q) {
					seen[p]++
				}
			case <-stop:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				k := keys[(i*7+g)%len(keys)]
				q.post(k.side, k.ip)
			}
		}()
	}
	wg.Wait()
	close(stop)
	dw.Wait()
	for _, p := range drainAll(q) {
		seen[p]++
	}
	valid := map[posted]bool{}
	for _, k := range keys {
		valid[k] = true
	}
	for p := range seen {
		if !valid[p] {
			t.Fatalf("drained a request nobody posted: %+v", p)
		}
	}
	for _, k := range keys {
		if seen[k] == 0 {
			t.Fatalf("request %+v was lost (overflow %d)", k, q.overflow.Load())
		}
	}
}

func TestRequestsPostAllocs(t *testing.T) {
	q := newRequests()
	ip := uint32(1)
	if n := testing.AllocsPerRun(1000, func() {
		ip++
		q.post(fwd.Outside, ip)
		if ip%200 == 0 {
			q.drain(func(fwd.Side, uint32) {})
		}
	}); n != 0 {
		t.Fatalf("post allocates %.1f times", n)
	}
}
