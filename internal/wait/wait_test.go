package wait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestForSeesAConditionThatComesTrue(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(20 * time.Millisecond)
		n.Store(1)
	}()
	if !For(30*time.Second, func() bool { return n.Load() == 1 }) {
		t.Fatal("For gave up on a condition that came true")
	}
}

func TestForGivesUpAtTheDeadline(t *testing.T) {
	start := time.Now()
	calls := 0
	if For(30*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("For reported a condition that never held")
	}
	if e := time.Since(start); e < 30*time.Millisecond {
		t.Fatalf("For gave up after %v, before its 30ms", e)
	}
	if calls < 2 {
		t.Fatalf("For polled %d times", calls)
	}
}
