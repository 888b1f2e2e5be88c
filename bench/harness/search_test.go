package harness

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// thresholdDUT loses frames above its capacity and nothing at or below it.
func thresholdDUT(capacity float64, calls *[]float64) func(float64) (Outcome, error) {
	return func(rate float64) (Outcome, error) {
		*calls = append(*calls, rate)
		sent := uint64(rate * 2)
		if rate <= capacity {
			return Outcome{Sent: sent, Received: sent}, nil
		}
		return Outcome{Sent: sent, Received: uint64(capacity * 2)}, nil
	}
}

// TestSearchFindsThreshold checks the bisection against a DUT whose
// zero-loss rate is known, for random capacities and starting guesses:
// the answer passes, the bracket above it fails, and it is within the
// resolution of the truth.
func TestSearchFindsThreshold(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		hi := 1e3 + rng.Float64()*2e6
		capacity := rng.Float64() * hi * 1.2 // sometimes above the ceiling
		start := 0.0
		if i%2 == 0 {
			start = rng.Float64() * hi
		}
		const res = 0.02
		var calls []float64
		r, err := Search(SearchConfig{Lo: 0, Hi: hi, Start: start, Resolution: res, MaxTrials: 64}, thresholdDUT(capacity, &calls))
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != len(r.Steps) {
			t.Fatalf("%d calls, %d steps", len(calls), len(r.Steps))
		}
		if !r.Converged {
			t.Fatalf("capacity %g hi %g: not converged after %d steps", capacity, hi, len(r.Steps))
		}
		if capacity >= hi {
			if r.Rate != hi || !r.AtCeiling {
				t.Fatalf("capacity %g >= hi %g: got %+v", capacity, hi, r)
			}
			continue
		}
		if r.AtCeiling {
			t.Fatalf("capacity %g < hi %g but at ceiling", capacity, hi)
		}
		if r.Rate > capacity {
			t.Fatalf("answer %g above capacity %g", r.Rate, capacity)
		}
		if r.FailRate <= capacity || r.FailRate-r.Rate > res*r.FailRate+1e-9 {
			t.Fatalf("capacity %g: bracket [%g, %g] wrong or too wide", capacity, r.Rate, r.FailRate)
		}
		for _, s := range r.Steps {
			if s.Pass != (s.Rate <= capacity) {
				t.Fatalf("step %+v misjudged (capacity %g)", s, capacity)
			}
		}
		// Bisection halves the bracket until it is res times the
		// answer: about log2(hi/(res*capacity)) steps, plus the start
		// guess and the ceiling probe after a passing guess.
		if capacity > hi/1000 && len(r.Steps) > 3+int(math.Ceil(math.Log2(hi/(res*capacity)))) {
			t.Fatalf("capacity %g hi %g start %g: %d steps %v", capacity, hi, start, len(r.Steps), calls)
		}
	}
}

// TestSearchNoPass: a DUT that loses at every rate yields 0 and stops at
// the resolution near the floor or at the trial budget.
func TestSearchNoPass(t *testing.T) {
	var calls []float64
	r, err := Search(SearchConfig{Hi: 1e6, Resolution: 0.05, MaxTrials: 10}, thresholdDUT(-1, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if r.Rate != 0 || len(r.Steps) != 10 || r.Converged {
		t.Fatalf("got %+v", r)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i] >= calls[i-1] {
			t.Fatalf("rates not decreasing: %v", calls)
		}
	}
}

// TestSearchTolerance: with a loss tolerance, a trial losing less than it
// passes; RFC 2544's zero tolerance fails the same trial.
func TestSearchTolerance(t *testing.T) {
	lossy := func(rate float64) (Outcome, error) {
		sent := uint64(rate)
		return Outcome{Sent: sent, Received: sent - sent/1000}, nil // 0.1% loss
	}
	r, err := Search(SearchConfig{Hi: 1e5, Resolution: 0.05, LossTolerance: 0.002}, lossy)
	if err != nil || r.Rate != 1e5 || !r.AtCeiling {
		t.Fatalf("tolerant: %+v %v", r, err)
	}
	r, err = Search(SearchConfig{Hi: 1e5, Resolution: 0.05, MaxTrials: 3}, lossy)
	if err != nil || r.Rate != 0 {
		t.Fatalf("strict: %+v %v", r, err)
	}
	if Passes(Outcome{}, 1) {
		t.Fatal("a trial that sent nothing passed")
	}
	if !Passes(Outcome{Sent: 5, Received: 6}, 0) {
		t.Fatal("duplicates counted as loss")
	}
}

// TestSearchErrors: bad configurations are refused, and a trial's error
// ends the search with the steps so far.
func TestSearchErrors(t *testing.T) {
	ok := func(float64) (Outcome, error) { return Outcome{Sent: 1, Received: 1}, nil }
	for _, c := range []SearchConfig{
		{Hi: 0, Resolution: 0.1}, {Lo: 5, Hi: 5, Resolution: 0.1}, {Hi: 10, Resolution: 0}, {Hi: 10, Resolution: 1},
	} {
		if _, err := Search(c, ok); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	boom := errors.New("boom")
	n := 0
	r, err := Search(SearchConfig{Hi: 100, Resolution: 0.01}, func(rate float64) (Outcome, error) {
		n++
		if n == 3 {
			return Outcome{}, boom
		}
		return Outcome{Sent: 10, Received: 9}, nil
	})
	if !errors.Is(err, boom) || len(r.Steps) != 2 {
		t.Fatalf("got %+v, %v", r, err)
	}
}
