package harness

import (
	"errors"
	"fmt"
)

// Outcome is what the throughput search needs to know of one fixed-rate
// trial: how many frames were offered and how many arrived.
type Outcome struct {
	Sent     uint64
	Received uint64
}

// Lost is Sent - Received, negative if the DUT duplicated frames.
func (o Outcome) Lost() int64 { return int64(o.Sent) - int64(o.Received) }

// SearchConfig bounds an RFC 2544 throughput search (RFC 2544 section
// 26.1: "the fastest rate at which the count of test frames transmitted by
// the DUT is equal to the number of test frames sent to it").
type SearchConfig struct {
	// Lo and Hi bracket the rate in frames per second: Hi is the most
	// the generator can offer, Lo (usually 0) a rate assumed to pass
	// that is never tried.
	Lo, Hi float64
	// Start, if in (Lo, Hi), is the first rate tried instead of Hi (the
	// maximum forwarded rate is a good guess: it usually lies just above
	// or below the answer, which saves a halving or two).
	Start float64
	// Resolution ends the search when the bracket [pass, fail] is
	// narrower than Resolution times its upper end (e.g. 0.02).
	Resolution float64
	// MaxTrials bounds the number of trials (0: 16).
	MaxTrials int
	// LossTolerance is the loss ratio still counted as a pass; RFC 2544
	// allows none, and the harness uses 0.
	LossTolerance float64
}

// Step is one trial of a search.
type Step struct {
	Rate     float64 `json:"rate_pps"`
	Sent     uint64  `json:"sent"`
	Received uint64  `json:"received"`
	Lost     int64   `json:"lost"`
	Pass     bool    `json:"pass"`
}

// SearchResult is a search's answer: Rate is the highest rate that passed
// (0 if none did), Steps every trial in order. Converged reports that the
// bracket reached the resolution (rather than the trial budget running
// out); AtCeiling that the first rate tried passed, so the answer is
// bounded by what was offered, not by the DUT.
type SearchResult struct {
	Rate      float64 `json:"rate_pps"`
	FailRate  float64 `json:"lowest_failing_rate_pps,omitempty"`
	Steps     []Step  `json:"steps"`
	Converged bool    `json:"converged"`
	AtCeiling bool    `json:"at_ceiling"`
}

// Passes reports whether o counts as zero loss under tolerance tol. A
// trial that sent nothing does not pass: it proves nothing.
func Passes(o Outcome, tol float64) bool {
	if o.Sent == 0 {
		return false
	}
	lost := o.Lost()
	if lost <= 0 {
		return true
	}
	return float64(lost) <= tol*float64(o.Sent)
}

// Search finds the highest rate in [Lo, Hi] at which trial loses nothing,
// by bisection: every trial either raises the lower end (it passed) or
// lowers the upper end (it failed). trial is called once per step with the
// rate to offer; an error from it ends the search and is returned with the
// steps so far.
func Search(cfg SearchConfig, trial func(rate float64) (Outcome, error)) (SearchResult, error) {
	var r SearchResult
	if cfg.Hi <= 0 || cfg.Lo < 0 || cfg.Lo >= cfg.Hi {
		return r, fmt.Errorf("search: bad bracket [%g, %g]", cfg.Lo, cfg.Hi)
	}
	if cfg.Resolution <= 0 || cfg.Resolution >= 1 {
		return r, errors.New("search: resolution must be in (0, 1)")
	}
	maxTrials := cfg.MaxTrials
	if maxTrials <= 0 {
		maxTrials = 16
	}
	lo, hi := cfg.Lo, cfg.Hi // lo passes (or is the floor), hi is untested or fails
	hiFailed := false
	rate := cfg.Hi
	if cfg.Start > cfg.Lo && cfg.Start < cfg.Hi {
		rate = cfg.Start
	}
	for len(r.Steps) < maxTrials {
		o, err := trial(rate)
		if err != nil {
			return r, err
		}
		pass := Passes(o, cfg.LossTolerance)
		r.Steps = append(r.Steps, Step{Rate: rate, Sent: o.Sent, Received: o.Received, Lost: o.Lost(), Pass: pass})
		if pass {
			lo = rate
			r.Rate = rate
			if rate >= cfg.Hi {
				r.AtCeiling = true
				r.Converged = true
				return r, nil
			}
		} else {
			hi = rate
			hiFailed = true
			r.FailRate = rate
		}
		if hiFailed && hi-lo <= cfg.Resolution*hi {
			r.Converged = true
			return r, nil
		}
		if !hiFailed {
			// Only passes so far (a Start below the answer): the
			// ceiling itself is next.
			rate = cfg.Hi
			continue
		}
		rate = (lo + hi) / 2
	}
	return r, nil
}
