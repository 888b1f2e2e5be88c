package afxdp

import (
	"reflect"
	"strings"
	"testing"
)

// TestStatsAddSumsEveryField: Add sums field by field, whatever fields
// Stats grows, as long as each is a uint64.
func TestStatsAddSumsEveryField(t *testing.T) {
	var a, b Stats
	av, bv := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range av.NumField() {
		if av.Field(i).Kind() != reflect.Uint64 {
			t.Fatalf("Stats.%s is %v, not a uint64 counter", av.Type().Field(i).Name, av.Field(i).Kind())
		}
		av.Field(i).SetUint(uint64(i + 1))
		bv.Field(i).SetUint(uint64(100 * (i + 1)))
	}
	a.Add(&b)
	for i := range av.NumField() {
		if got := av.Field(i).Uint(); got != uint64(101*(i+1)) {
			t.Errorf("Stats.%s = %d after Add, want %d", av.Type().Field(i).Name, got, 101*(i+1))
		}
	}
}

// TestUMEMBookkeeping exercises the frame states without a socket: frames
// move between the free stack, the caller and a member's rings, and
// release refuses a frame in any other state than the one expected.
func TestUMEMBookkeeping(t *testing.T) {
	o := (&Options{NumFrames: 8}).withDefaults()
	u := newUMEM(make([]byte, 8*o.FrameSize), false, &o)
	if u.Frames() != 8 || u.nfree != 8 {
		t.Fatalf("frames %d, free %d", u.Frames(), u.nfree)
	}
	// Take three frames to the caller, one to member 1's rings.
	var taken []uint64
	for range 4 {
		u.nfree--
		taken = append(taken, u.free[u.nfree]>>u.shift)
	}
	for _, c := range taken[:3] {
		u.state[c] = frameUser
	}
	u.state[taken[3]] = frameKernel + 1
	if u.release(taken[3], frameUser) {
		t.Fatal("released a frame on a member's rings as the caller's")
	}
	if !u.release(taken[0], frameUser) || u.release(taken[0], frameUser) {
		t.Fatal("a caller's frame released other than exactly once")
	}
	if u.release(uint64(len(u.state)), frameUser) {
		t.Fatal("released a frame out of range")
	}
	u.reset(1) // member 1's socket closed: its frame is free again
	if u.state[taken[3]] != frameFree || u.nfree != 6 {
		t.Fatalf("after reset: state %d, free %d; want free, 6", u.state[taken[3]], u.nfree)
	}
	seen := map[uint64]bool{}
	for _, a := range u.free[:u.nfree] {
		if seen[a] || u.state[a>>u.shift] != frameFree {
			t.Fatalf("free stack holds %#x twice or in another state", a)
		}
		seen[a] = true
	}
}

// TestNewUMEMRefuses: what cannot share a UMEM is refused with a clear
// error before any socket exists.
func TestNewUMEMRefuses(t *testing.T) {
	for _, c := range []struct {
		o       Options
		sockets int
		want    string
	}{
		{Options{Backend: Asavie}, 2, "cannot share"},
		{Options{}, 0, "sockets"},
		{Options{}, MaxUMEMSockets + 1, "sockets"},
		{Options{NumFrames: 1000}, 2, "NumFrames"},
	} {
		if u, err := NewUMEM(&c.o, c.sockets); err == nil || !strings.Contains(err.Error(), c.want) {
			u.Close()
			t.Errorf("NewUMEM(%+v, %d) = %v, want an error mentioning %q", c.o, c.sockets, err, c.want)
		}
	}
	u, err := NewUMEM(&Options{NumFrames: 64, FillRingSize: 32, CompletionRingSize: 32, RxRingSize: 32, TxRingSize: 32, BatchSize: 32}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if u.Frames() != 128 {
		t.Errorf("a UMEM for 2 sockets of 64 frames has %d frames", u.Frames())
	}
	if _, err := New(1, 0, &Options{Backend: Asavie, UMEM: u}); err == nil || !strings.Contains(err.Error(), "cannot share") {
		t.Errorf("asavie port on a shared UMEM: %v", err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.join(nil); err == nil {
		t.Error("joined a closed UMEM")
	}
	var none *UMEM
	if err := none.Close(); err != nil {
		t.Errorf("Close of a nil UMEM: %v", err)
	}
}
