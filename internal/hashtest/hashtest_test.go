package hashtest

import "testing"

// TestChiSquare checks the statistic on spreads worked by hand.
func TestChiSquare(t *testing.T) {
	for _, c := range []struct {
		counts []int
		total  int
		want   float64
	}{
		{[]int{5, 5, 5, 5}, 20, 0},
		{[]int{10, 0}, 10, 10}, // (5²/5)·2
		{[]int{8, 2, 5, 5}, 20, 3.6},
	} {
		if got := ChiSquare(c.counts, c.total); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("ChiSquare(%v, %d) = %v, want %v", c.counts, c.total, got, c.want)
		}
	}
}
