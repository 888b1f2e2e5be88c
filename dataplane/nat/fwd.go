package nat

import "github.com/xnat/xnat/dataplane/fwd"

// The types the engine shares with the neighbour resolver live in package
// fwd, which depends on nothing; these are their names in the engine.
type (
	// Side is a side of the NAT.
	Side = fwd.Side
	// Resolution is the outcome of a next-hop lookup.
	Resolution = fwd.Resolution
	// Neighbors gives the Ethernet destination for a packet leaving on a
	// side.
	Neighbors = fwd.Neighbors
)

const (
	Inside      = fwd.Inside
	Outside     = fwd.Outside
	NumSides    = fwd.NumSides
	Resolved    = fwd.Resolved
	Pending     = fwd.Pending
	Unreachable = fwd.Unreachable
	Failed      = fwd.Failed
)
