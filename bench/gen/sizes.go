package gen

import (
	"fmt"
	"strconv"
	"strings"
)

// Frame sizes in this package are Ethernet frame sizes as RFC 2544 counts
// them: from the destination MAC to the FCS inclusive. The generator hands
// the socket the frame without its 4-byte FCS (the NIC, or nothing on veth,
// adds it), so a "64-byte frame" is a 60-byte buffer.
const (
	fcsLen = 4
	// MinFrame and MaxFrame bound a frame size (with FCS).
	MinFrame = 64
	MaxFrame = 1518
	// wireOverhead is what a frame costs on the wire besides its bytes:
	// preamble and SFD (8) and the minimum inter-frame gap (12).
	wireOverhead = 20
)

// IMIX is the classic "simple IMIX": 7 frames of 64 bytes, 4 of 576 and 1
// of 1518 in every 12 (about 340 bytes on average). It is the mix most
// traffic generators ship under that name (e.g. TRex's and Spirent's
// "simple IMIX"); we use it, rather than a measured Internet mix, so
// results compare with published figures. The slots are interleaved so
// every burst carries the mix, not runs of one size.
var IMIX = [12]int{64, 576, 64, 64, 576, 64, 1518, 64, 576, 64, 64, 576}

// Sizes is the frame-size schedule: one fixed size, or the 12-slot IMIX.
// Flow f in round r (its r-th frame) gets slot (f + r) mod len: each flow
// cycles through the mix, each round of 12+ flows carries the whole mix,
// and the bytes a flow has sent before round r are computable in O(1)
// (which is how TCP sequence numbers stay consistent without per-flow
// state).
type Sizes struct {
	slots []int // frame sizes with FCS
	name  string
}

// ParseSizes parses "imix" or a frame size in [64, 1518] ("64", "512",
// "1518", ...).
func ParseSizes(s string) (Sizes, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "imix" {
		return Sizes{slots: IMIX[:], name: "imix"}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < MinFrame || n > MaxFrame {
		return Sizes{}, fmt.Errorf("frame size %q: want imix or a size in [%d, %d]", s, MinFrame, MaxFrame)
	}
	return FixedSize(n), nil
}

// FixedSize is a schedule of one frame size (with FCS).
func FixedSize(n int) Sizes { return Sizes{slots: []int{n}, name: strconv.Itoa(n)} }

// String is "imix" or the size.
func (z Sizes) String() string { return z.name }

// Slots returns the schedule's frame sizes (with FCS), one per slot.
func (z Sizes) Slots() []int { return z.slots }

// Slot returns the schedule slot of flow f's frame in round r.
func (z Sizes) Slot(f, r uint32) int {
	if len(z.slots) == 1 {
		return 0
	}
	return int((uint64(f) + uint64(r)) % uint64(len(z.slots)))
}

// MeanSize is the schedule's mean frame size with FCS.
func (z Sizes) MeanSize() float64 {
	t := 0
	for _, s := range z.slots {
		t += s
	}
	return float64(t) / float64(len(z.slots))
}
