package testclock

import (
	"sync"
	"testing"
	"time"
)

// TestAdvance checks that the clock stands still until advanced, and that
// concurrent advances all land (run with -race: workers read it while a
// test advances it).
func TestAdvance(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	c := New(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), start.Add(400*time.Second); !got.Equal(want) {
		t.Fatalf("after 400 advances of 1 s: %v, want %v", got, want)
	}
}
