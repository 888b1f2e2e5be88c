// Package fwd holds the few types that the NAT engine (dataplane/nat) and
// the neighbour resolver (dataplane/neigh) share: the two sides of the
// appliance and the answer to "which MAC does this packet go to". It
// depends on nothing, so the resolver need not import the engine; package
// nat re-exports them under their old names (nat.Side, nat.Inside,
// nat.Resolution, ...).
package fwd

// Side is one of the appliance's two interfaces, used as an array index.
type Side uint8

const (
	Inside Side = iota
	Outside
	NumSides
)

func (s Side) String() string {
	if s == Inside {
		return "inside"
	}
	return "outside"
}

// Resolution is the outcome of a neighbour lookup.
type Resolution uint8

const (
	// Resolved: the MAC is valid.
	Resolved Resolution = iota
	// Pending: the neighbour is being resolved; hold the frame and ask
	// again later.
	Pending
	// Unreachable: no route to the destination.
	Unreachable
	// Failed: the neighbour did not answer.
	Failed
)

// Neighbors gives the Ethernet destination for a packet leaving on a side.
// Implementations route dst (on-link or via a gateway) and look the next
// hop up in a neighbour table; on a miss they start resolution and return
// Pending. Resolve is called per packet by worker goroutines, concurrently,
// so it must be lock-free and must not allocate.
type Neighbors interface {
	Resolve(side Side, dst [4]byte) (mac [6]byte, r Resolution)
}
