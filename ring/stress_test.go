package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Stress tests run several producers and consumers against one small ring,
// with random mixes of burst, bulk and single operations, and check that
// every value is delivered exactly once and that each consumer sees each
// producer's values in order. Run them under -race: the race detector then
// also checks that slot writes happen-before the reads that follow the index
// publication.

// stressDuration bounds each stress run; producers also stop after
// maxPerProducer values.
func stressDuration() time.Duration {
	if testing.Short() {
		return 200 * time.Millisecond
	}
	return 2 * time.Second
}

const (
	maxPerProducer = 1 << 22
	seqBits        = 40
)

func encode(producer, seq uint64) uint64 { return producer<<seqBits | seq }
func decode(v uint64) (producer, seq uint64) {
	return v >> seqBits, v & (1<<seqBits - 1)
}

// backoff yields every few consecutive failures so that, with few cores,
// a goroutine that cannot progress lets the one that can run.
type backoff int

func (b *backoff) fail() {
	*b++
	if *b%16 == 0 {
		runtime.Gosched()
	}
}

type stressResult struct {
	produced  []uint64 // values each producer enqueued
	delivered uint64
}

func runStress(t *testing.T, q queue[uint64], producers, consumers int, d time.Duration) stressResult {
	t.Helper()
	res := stressResult{produced: make([]uint64, producers)}
	// seen[p] has one bit per sequence number of producer p; consumers set
	// bits atomically and report a bit that was already set.
	seen := make([][]atomic.Uint64, producers)
	for p := range seen {
		seen[p] = make([]atomic.Uint64, maxPerProducer/64)
	}
	var (
		prodWG, consWG sync.WaitGroup
		done           atomic.Bool
		delivered      atomic.Uint64
		failures       = make(chan string, 16)
		deadline       = time.Now().Add(d)
	)
	// A broken ring can make a consumer spin forever; fail loudly with a
	// goroutine dump well before the go test timeout.
	watchdog := time.AfterFunc(d+60*time.Second, func() {
		panic("ring stress: producers and consumers did not finish within a minute of the deadline")
	})
	defer watchdog.Stop()
	fail := func(format string, args ...any) {
		select {
		case failures <- fmt.Sprintf(format, args...):
		default:
		}
	}
	for p := range producers {
		prodWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 1))
			buf := make([]uint64, 48)
			var seq uint64
			var b backoff
			for i := 0; seq < maxPerProducer-uint64(len(buf)); i++ {
				if i%64 == 0 && time.Now().After(deadline) {
					break
				}
				k := 1 + rng.IntN(len(buf))
				for j := range k {
					buf[j] = encode(uint64(p), seq+uint64(j))
				}
				var n int
				switch rng.IntN(4) {
				case 0:
					n = q.EnqueueBurst(buf[:k])
				case 1:
					if q.EnqueueBulk(buf[:k]) {
						n = k
					}
				case 2:
					if q.Enqueue(buf[0]) {
						n = 1
					}
				case 3: // in place, where the ring offers it (SPSC)
					if zc, ok := q.(zeroCopy[uint64]); ok {
						if s := zc.Reserve(); s != nil {
							*s = buf[0]
							zc.Commit()
							n = 1
						}
					} else if q.Enqueue(buf[0]) {
						n = 1
					}
				}
				if n == 0 {
					b.fail()
				}
				seq += uint64(n)
			}
			res.produced[p] = seq
		})
	}
	for c := range consumers {
		consWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 2))
			buf := make([]uint64, 48)
			last := make([]int64, producers) // last sequence seen per producer
			for i := range last {
				last[i] = -1
			}
			check := func(v uint64) {
				p, s := decode(v)
				if p >= uint64(producers) {
					fail("consumer %d: value %#x from unknown producer", c, v)
					return
				}
				if int64(s) <= last[p] || consumers == 1 && int64(s) != last[p]+1 {
					fail("consumer %d: producer %d seq %d after %d", c, p, s, last[p])
				}
				last[p] = int64(s)
				bit := uint64(1) << (s % 64)
				if seen[p][s/64].Or(bit)&bit != 0 {
					fail("producer %d seq %d delivered twice", p, s)
				}
			}
			var b backoff
			var count uint64
			for {
				// done is read before dequeuing: every producer published
				// all its values before done was set, so an empty dequeue
				// after observing it proves there is nothing left for this
				// consumer (other consumers take whatever they reserved).
				finished := done.Load()
				k := 1 + rng.IntN(len(buf))
				var n int
				switch rng.IntN(3) {
				case 0:
					n = q.DequeueBurst(buf[:k])
				case 1:
					if q.DequeueBulk(buf[:k]) {
						n = k
					}
				case 2:
					if v, ok := q.Dequeue(); ok {
						buf[0] = v
						n = 1
					}
				}
				if n == 0 && finished {
					// A failed bulk proves nothing; a single dequeue
					// does.
					v, ok := q.Dequeue()
					if !ok {
						break
					}
					buf[0] = v
					n = 1
				}
				for _, v := range buf[:n] {
					check(v)
				}
				count += uint64(n)
				if n == 0 {
					b.fail()
				}
			}
			delivered.Add(count)
		})
	}
	prodWG.Wait()
	done.Store(true)
	consWG.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	res.delivered = delivered.Load()
	var total uint64
	for p, n := range res.produced {
		total += n
		for s := range uint64(maxPerProducer) {
			got := seen[p][s/64].Load()&(1<<(s%64)) != 0
			if got != (s < n) {
				t.Fatalf("producer %d produced %d values, but seq %d delivered=%v", p, n, s, got)
			}
		}
	}
	if res.delivered != total {
		t.Errorf("delivered %d values, produced %d", res.delivered, total)
	}
	if q.Len() != 0 {
		t.Errorf("Len = %d after draining", q.Len())
	}
	t.Logf("%d producers, %d consumers: %d values delivered", producers, consumers, total)
	if total == 0 {
		t.Error("no values moved")
	}
	return res
}

func TestStressSPSC(t *testing.T) {
	t.Parallel()
	q, _ := newSPSCAt[uint64](64, math.MaxUint64-100_000)
	runStress(t, q, 1, 1, stressDuration())
}

func TestStressMPMC(t *testing.T) {
	t.Parallel()
	q, _ := newMPMCAt[uint64](64, math.MaxUint64-100_000)
	runStress(t, q, 3, 3, stressDuration())
}

// TestStressGOMAXPROCS1 checks that multi-producer and multi-consumer rings
// make progress when all goroutines share one processor: a goroutine
// preempted between reservation and publication must get the processor back
// from the spinning waiters.
func TestStressGOMAXPROCS1(t *testing.T) {
	// Not parallel: GOMAXPROCS is process-wide.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	d := stressDuration() / 2
	q, _ := NewMPMC[uint64](16)
	runStress(t, q, 6, 2, d)
}
