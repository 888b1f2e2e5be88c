//go:build race

package scaleoutlab

// raceEnabled: the race detector slows the test's 300 flow generators
// several times over, and the failover figures would measure it.
const raceEnabled = true
