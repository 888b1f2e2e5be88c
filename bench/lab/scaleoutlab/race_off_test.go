//go:build !race

package scaleoutlab

const raceEnabled = false
