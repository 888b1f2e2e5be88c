//go:build race

package nat

// raceEnabled: this test binary runs under the race detector.
const raceEnabled = true
