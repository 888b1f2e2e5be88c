package ring

import (
	"sync"
	"sync/atomic"
	"testing"
)

// The benchmarks move b.N uint64 values from producer goroutines to consumer
// goroutines through a ring or through a buffered channel of the same
// capacity, in the same run, and report items/s (ns/op is per item). Compare
// sub-benchmarks of one benchmark, e.g.
//
//	go test -run '^$' -bench . -count 6 ./ring/ | benchstat -col /impl -
//
// The machine is shared and small, so read ratios, not absolute figures.

const benchCapacity = 1024

// pipe runs producers and consumers, moving n values in bursts of burst.
func pipe(b *testing.B, producers, consumers, burst int, enq func([]uint64) int, deq func([]uint64) int) {
	n := b.N
	var received atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	goProducers(&wg, n, producers, func(share int) {
		src := make([]uint64, burst)
		for i := range src {
			src[i] = uint64(i)
		}
		var b backoff
		for share > 0 {
			k := enq(src[:min(burst, share)])
			share -= k
			if k == 0 {
				b.fail()
			}
		}
	})
	for range consumers {
		wg.Go(func() {
			dst := make([]uint64, burst)
			var b backoff
			for received.Load() < int64(n) {
				k := deq(dst)
				if k == 0 {
					b.fail()
					continue
				}
				received.Add(int64(k))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "items/s")
}

// goProducers starts producers goroutines on wg, each running produce
// with its share of the n values; the shares add up to n, the first
// producer taking the remainder.
func goProducers(wg *sync.WaitGroup, n, producers int, produce func(share int)) {
	for p := range producers {
		share := n / producers
		if p == 0 {
			share += n % producers
		}
		wg.Go(func() { produce(share) })
	}
}

// chanPipe is pipe for a buffered channel, one item per operation.
func chanPipe(b *testing.B, producers, consumers int) {
	n := b.N
	ch := make(chan uint64, benchCapacity)
	var prodWG, consWG sync.WaitGroup
	b.ResetTimer()
	goProducers(&prodWG, n, producers, func(share int) {
		for i := range share {
			ch <- uint64(i)
		}
	})
	var sink atomic.Uint64
	for range consumers {
		consWG.Go(func() {
			var s uint64
			for v := range ch {
				s += v
			}
			sink.Add(s)
		})
	}
	prodWG.Wait()
	close(ch)
	consWG.Wait()
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "items/s")
}

func BenchmarkSPSC(b *testing.B) {
	b.Run("impl=ring-burst32", func(b *testing.B) {
		q, _ := NewSPSC[uint64](benchCapacity)
		pipe(b, 1, 1, 32, q.EnqueueBurst, q.DequeueBurst)
	})
	b.Run("impl=ring-burst1", func(b *testing.B) {
		q, _ := NewSPSC[uint64](benchCapacity)
		pipe(b, 1, 1, 1, q.EnqueueBurst, q.DequeueBurst)
	})
	b.Run("impl=chan", func(b *testing.B) { chanPipe(b, 1, 1) })
}

func BenchmarkMPMC(b *testing.B) {
	b.Run("impl=ring-burst32", func(b *testing.B) {
		q, _ := NewMPMC[uint64](benchCapacity)
		pipe(b, 2, 2, 32, q.EnqueueBurst, q.DequeueBurst)
	})
	b.Run("impl=chan", func(b *testing.B) { chanPipe(b, 2, 2) })
}

// BenchmarkUncontended measures one goroutine enqueueing and dequeueing a
// burst of 32, i.e. the cost of the index arithmetic and copies without any
// cache-line transfer.
func BenchmarkUncontended(b *testing.B) {
	src := make([]uint64, 32)
	dst := make([]uint64, 32)
	for _, k := range kinds {
		b.Run("kind="+k.name, func(b *testing.B) {
			q := mustNew(b, k, benchCapacity, 0)
			b.ReportAllocs()
			for b.Loop() {
				q.EnqueueBurst(src)
				q.DequeueBurst(dst)
			}
			b.ReportMetric(float64(b.N)*32/b.Elapsed().Seconds(), "items/s")
		})
	}
}
