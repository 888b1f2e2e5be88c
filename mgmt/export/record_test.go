package export

import (
	"testing"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
)

// TestFromEvent: every event type maps to its registered natEvent value
// (IANA "natEvent Values", RFC 8158) and its record kind.
func TestFromEvent(t *testing.T) {
	for _, c := range []struct {
		ev    nat.Event
		kind  Kind
		event uint8
		quota uint32
	}{
		{nat.Event{Type: nat.SessionCreated}, KindSession, 4, 0},
		{nat.Event{Type: nat.SessionDeleted}, KindSession, 5, 0},
		{nat.Event{Type: nat.AddressBound}, KindBinding, 14, 0},
		{nat.Event{Type: nat.AddressReleased}, KindBinding, 15, 0},
		{nat.Event{Type: nat.BlockAllocated}, KindBlock, 16, 0},
		{nat.Event{Type: nat.BlockReleased}, KindBlock, 17, 0},
		{nat.Event{Type: nat.AddressesExhausted}, KindAddrExhausted, 3, 0},
		{nat.Event{Type: nat.PortsExhausted}, KindPortsExhausted, 12, 0},
		{nat.Event{Type: nat.QuotaExceeded, Reason: uint8(drop.SubscriberSessions)}, KindQuota, 13, QuotaMaxEntriesPerUser},
		{nat.Event{Type: nat.TableFull}, KindQuota, 13, QuotaMaxSessionEntries},
	} {
		r, ok := FromEvent(&c.ev)
		if !ok || r.Kind != c.kind || r.NATEvent != c.event || r.Quota != c.quota || r.Name != c.ev.Type.String() {
			t.Errorf("%v: %+v", c.ev.Type, r)
		}
		if len(Fields(r.Kind)) == 0 {
			t.Errorf("%v: kind %d has no fields", c.ev.Type, r.Kind)
		}
	}
	ev := nat.Event{Type: nat.BlockReleased, UnixNano: 1_796_392_920_456_999_999, InsideAddr: [4]byte{10, 0, 0, 7},
		OutsideAddr: [4]byte{198, 18, 0, 7}, OutsidePort: 39936, PortEnd: 40447}
	r, _ := FromEvent(&ev)
	if r.TimeMs != 1796392920456 || r.Value(IEPortRangeNumPorts) != 512 || r.Value(IESourceIPv4Address) != 0x0a000007 || r.Value(IEPostNATSourceIPv4Address) != 0xc6120007 {
		t.Fatalf("block record %+v", r)
	}
}
