package neigh

import "testing"

// TestAllIn is the decision New makes between opening its sockets with and
// without setns: only when every thread is in the Table's namespace. The
// case that broke: the main thread (the caller, inside a lab namespace) is
// in it, the other threads are not.
func TestAllIn(t *testing.T) {
	box, root := nsID{4, 100}, nsID{4, 1}
	for _, c := range []struct {
		threads []nsID
		want    bool
	}{
		{[]nsID{box, box, box}, true},
		{[]nsID{box, root, root}, false}, // the caller's thread alone is in box
		{[]nsID{root, box}, false},
		{nil, false}, // nothing known: switch namespaces explicitly
	} {
		if got := allIn(box, c.threads); got != c.want {
			t.Errorf("allIn(box, %v) = %v, want %v", c.threads, got, c.want)
		}
	}
}
