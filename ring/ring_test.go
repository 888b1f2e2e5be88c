package ring

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// queue is the method set shared by the three ring types, so single-goroutine
// tests run against all of them.
type queue[T any] interface {
	EnqueueBurst(src []T) int
	EnqueueBulk(src []T) bool
	Enqueue(v T) bool
	DequeueBurst(dst []T) int
	DequeueBulk(dst []T) bool
	Dequeue() (T, bool)
	Len() int
	Cap() int
	Free() int
}

// zeroCopy is SPSC's in-place enqueue.
type zeroCopy[T any] interface {
	Reserve() *T
	Commit()
}

type kind struct {
	name string
	make func(capacity int, start uint64) (queue[uint64], error)
}

var kinds = []kind{
	{"SPSC", func(c int, s uint64) (queue[uint64], error) { return newSPSCAt[uint64](c, s) }},
	{"MPMC", func(c int, s uint64) (queue[uint64], error) { return newMPMCAt[uint64](c, s) }},
}

// starts are initial index values: zero, just below the uint32 wrap (where
// a uint32 implementation would wrap) and just below the uint64 wrap (where
// ours does).
var starts = []uint64{0, math.MaxUint32 - 5, math.MaxUint64 - 5}

func mustNew(t testing.TB, k kind, capacity int, start uint64) queue[uint64] {
	t.Helper()
	q, err := k.make(capacity, start)
	if err != nil {
		t.Fatalf("%s(%d): %v", k.name, capacity, err)
	}
	return q
}

func TestCapacityValidation(t *testing.T) {
	bad := []int{0, -1, -8, 3, 6, 100, 1000, MaxCapacity + 1, MaxCapacity * 2, math.MaxInt}
	good := []int{1, 2, 4, 64, 4096}
	ctors := map[string]func(int) error{
		"SPSC": func(c int) error { _, err := NewSPSC[int](c); return err },
		"MPMC": func(c int) error { _, err := NewMPMC[int](c); return err },
	}
	for name, ctor := range ctors {
		for _, c := range bad {
			if err := ctor(c); !errors.Is(err, ErrCapacity) {
				t.Errorf("%s(%d): err = %v, want ErrCapacity", name, c, err)
			}
		}
		for _, c := range good {
			if err := ctor(c); err != nil {
				t.Errorf("%s(%d): %v", name, c, err)
			}
		}
	}
}

func TestFullEmptyEdges(t *testing.T) {
	for _, k := range kinds {
		for _, start := range starts {
			t.Run(fmt.Sprintf("%s/start=%#x", k.name, start), func(t *testing.T) {
				q := mustNew(t, k, 8, start)
				if q.Len() != 0 || q.Free() != 8 || q.Cap() != 8 {
					t.Fatalf("new ring: Len %d Free %d Cap %d", q.Len(), q.Free(), q.Cap())
				}
				if _, ok := q.Dequeue(); ok {
					t.Fatal("Dequeue on empty ring succeeded")
				}
				if n := q.DequeueBurst(make([]uint64, 4)); n != 0 {
					t.Fatalf("DequeueBurst on empty ring = %d", n)
				}
				if q.DequeueBulk(make([]uint64, 1)) {
					t.Fatal("DequeueBulk on empty ring succeeded")
				}
				if !q.DequeueBulk(nil) || !q.EnqueueBulk(nil) {
					t.Fatal("empty bulk must succeed")
				}
				for i := range uint64(8) {
					if !q.Enqueue(i) {
						t.Fatalf("Enqueue %d failed before full", i)
					}
				}
				if q.Len() != 8 || q.Free() != 0 {
					t.Fatalf("full ring: Len %d Free %d", q.Len(), q.Free())
				}
				if q.Enqueue(99) {
					t.Fatal("Enqueue on full ring succeeded")
				}
				if n := q.EnqueueBurst([]uint64{99}); n != 0 {
					t.Fatalf("EnqueueBurst on full ring = %d", n)
				}
				if q.EnqueueBulk([]uint64{99}) {
					t.Fatal("EnqueueBulk on full ring succeeded")
				}
				for i := range uint64(8) {
					v, ok := q.Dequeue()
					if !ok || v != i {
						t.Fatalf("Dequeue = %d,%v, want %d,true", v, ok, i)
					}
				}
				if _, ok := q.Dequeue(); ok || q.Len() != 0 {
					t.Fatal("ring not empty after draining")
				}
			})
		}
	}
}

func TestBulkAllOrNone(t *testing.T) {
	for _, k := range kinds {
		for _, start := range starts {
			t.Run(fmt.Sprintf("%s/start=%#x", k.name, start), func(t *testing.T) {
				q := mustNew(t, k, 16, start)
				if !q.EnqueueBulk([]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
					t.Fatal("EnqueueBulk of 10 into empty 16 failed")
				}
				// 6 free: a bulk of 7 must add nothing.
				if q.EnqueueBulk([]uint64{11, 12, 13, 14, 15, 16, 17}) {
					t.Fatal("EnqueueBulk of 7 with 6 free succeeded")
				}
				if q.Len() != 10 {
					t.Fatalf("failed bulk changed Len to %d", q.Len())
				}
				// More than the capacity can never fit.
				if q.EnqueueBulk(make([]uint64, 17)) {
					t.Fatal("EnqueueBulk larger than capacity succeeded")
				}
				// A burst of 7 adds 6.
				if n := q.EnqueueBurst([]uint64{11, 12, 13, 14, 15, 16, 17}); n != 6 {
					t.Fatalf("EnqueueBurst of 7 with 6 free = %d", n)
				}
				dst := make([]uint64, 17)
				if q.DequeueBulk(dst) {
					t.Fatal("DequeueBulk of 17 from 16 succeeded")
				}
				if q.Len() != 16 {
					t.Fatalf("failed DequeueBulk changed Len to %d", q.Len())
				}
				if !q.DequeueBulk(dst[:3]) || !slices.Equal(dst[:3], []uint64{1, 2, 3}) {
					t.Fatalf("DequeueBulk of 3 = %v", dst[:3])
				}
				clear(dst)
				if n := q.DequeueBurst(dst); n != 13 {
					t.Fatalf("DequeueBurst of 17 from 13 = %d", n)
				}
				want := []uint64{4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
				if !slices.Equal(dst[:13], want) || dst[13] != 0 {
					t.Fatalf("DequeueBurst gave %v", dst)
				}
			})
		}
	}
}

// TestWraparound pushes values through the slot array's end and the index
// counters' wrap many times with a burst size coprime to the capacity, so
// every split point of put and take is exercised.
func TestWraparound(t *testing.T) {
	for _, k := range kinds {
		for _, start := range starts {
			t.Run(fmt.Sprintf("%s/start=%#x", k.name, start), func(t *testing.T) {
				q := mustNew(t, k, 8, start-50) // crosses the wrap after 50 values
				src := make([]uint64, 5)
				dst := make([]uint64, 5)
				var next, expect uint64
				for range 100 {
					for i := range src {
						src[i] = next + uint64(i)
					}
					if !q.EnqueueBulk(src) {
						t.Fatalf("EnqueueBulk failed with Len %d", q.Len())
					}
					next += 5
					if q.Len() != 5 {
						t.Fatalf("Len = %d, want 5", q.Len())
					}
					if !q.DequeueBulk(dst) {
						t.Fatal("DequeueBulk failed")
					}
					for _, v := range dst {
						if v != expect {
							t.Fatalf("got %d, want %d", v, expect)
						}
						expect++
					}
				}
			})
		}
	}
}

// TestAgainstModel compares random single-goroutine operation sequences with
// a slice-backed FIFO, the reference implementation.
func TestAgainstModel(t *testing.T) {
	for _, k := range kinds {
		for _, start := range starts {
			for _, capacity := range []int{1, 2, 8, 64} {
				t.Run(fmt.Sprintf("%s/cap=%d/start=%#x", k.name, capacity, start), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(capacity), start))
					q := mustNew(t, k, capacity, start-uint64(capacity)*3)
					var model []uint64
					var next uint64
					buf := make([]uint64, 2*capacity+2)
					for step := range 20000 {
						n := rng.IntN(len(buf) + 1)
						free := capacity - len(model)
						switch op := rng.IntN(6); op {
						case 0: // EnqueueBurst
							for i := range n {
								buf[i] = next + uint64(i)
							}
							got := q.EnqueueBurst(buf[:n])
							want := min(n, free)
							if got != want {
								t.Fatalf("step %d: EnqueueBurst(%d) = %d, want %d", step, n, got, want)
							}
							model = append(model, buf[:got]...)
							next += uint64(got)
						case 1: // EnqueueBulk
							for i := range n {
								buf[i] = next + uint64(i)
							}
							got := q.EnqueueBulk(buf[:n])
							if want := n <= free; got != want {
								t.Fatalf("step %d: EnqueueBulk(%d) = %v, want %v", step, n, got, want)
							}
							if got {
								model = append(model, buf[:n]...)
								next += uint64(n)
							}
						case 2: // Enqueue
							got := q.Enqueue(next)
							if want := free > 0; got != want {
								t.Fatalf("step %d: Enqueue = %v, want %v", step, got, want)
							}
							if got {
								model = append(model, next)
								next++
							}
						case 3: // DequeueBurst
							got := q.DequeueBurst(buf[:n])
							want := min(n, len(model))
							if got != want || !slices.Equal(buf[:got], model[:want]) {
								t.Fatalf("step %d: DequeueBurst(%d) = %d %v, want %d %v", step, n, got, buf[:got], want, model[:want])
							}
							model = model[want:]
						case 4: // DequeueBulk
							got := q.DequeueBulk(buf[:n])
							if want := n <= len(model); got != want {
								t.Fatalf("step %d: DequeueBulk(%d) = %v, want %v", step, n, got, want)
							}
							if got {
								if !slices.Equal(buf[:n], model[:n]) {
									t.Fatalf("step %d: DequeueBulk = %v, want %v", step, buf[:n], model[:n])
								}
								model = model[n:]
							}
						case 5: // Dequeue
							v, ok := q.Dequeue()
							if ok != (len(model) > 0) || ok && v != model[0] {
								t.Fatalf("step %d: Dequeue = %d,%v, model %v", step, v, ok, model)
							}
							if ok {
								model = model[1:]
							}
						}
						if q.Len() != len(model) || q.Free() != capacity-len(model) {
							t.Fatalf("step %d: Len %d Free %d, model holds %d", step, q.Len(), q.Free(), len(model))
						}
					}
				})
			}
		}
	}
}

// TestClearsPointerSlots checks that a ring of pointer-carrying values does
// not keep dequeued values reachable, and that pointer-free rings skip it.
func TestClearsPointerSlots(t *testing.T) {
	type withPtr struct {
		id int
		p  *int
	}
	q, err := NewMPMC[withPtr](4)
	if err != nil {
		t.Fatal(err)
	}
	if !q.s.clear {
		t.Fatal("ring of pointer-carrying struct does not clear slots")
	}
	x := 7
	for i := range 3 { // 3 then 2: the second burst wraps around the slot array
		q.Enqueue(withPtr{i, &x})
	}
	dst := make([]withPtr, 3)
	if q.DequeueBurst(dst) != 3 {
		t.Fatal("DequeueBurst failed")
	}
	q.EnqueueBurst([]withPtr{{3, &x}, {4, &x}})
	if q.DequeueBurst(dst[:1]) != 1 {
		t.Fatal("DequeueBurst failed")
	}
	if v, ok := q.Dequeue(); !ok || v.id != 4 || v.p != &x {
		t.Fatalf("Dequeue = %+v,%v", v, ok)
	}
	for i, s := range q.s.buf {
		if s.p != nil {
			t.Errorf("slot %d still holds a pointer after dequeue", i)
		}
	}

	for _, tc := range []struct {
		name string
		got  bool
		want bool
	}{
		{"uint64", hasPointers(reflectType[uint64]()), false},
		{"[4]struct{a uint32; b [2]byte}", hasPointers(reflectType[[4]struct {
			a uint32
			b [2]byte
		}]()), false},
		{"[0]*int", hasPointers(reflectType[[0]*int]()), false},
		{"string", hasPointers(reflectType[string]()), true},
		{"[]byte", hasPointers(reflectType[[]byte]()), true},
		{"any", hasPointers(reflectType[any]()), true},
		{"struct{a int; b [2]*int}", hasPointers(reflectType[struct {
			a int
			b [2]*int
		}]()), true},
	} {
		if tc.got != tc.want {
			t.Errorf("hasPointers(%s) = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestLayout checks that the field groups written by different sides (and
// the read-only group) are at least padBytes apart and padded from whatever
// the allocator places next to the ring, whatever the ring's alignment.
func TestLayout(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflectType[SPSC[uint64]](), reflectType[MPMC[uint64]](),
		reflectType[SPSC[[3]uint32]](), reflectType[MPMC[*int]](),
	} {
		prevEnd := uintptr(0)
		for _, name := range []string{"s", "prod", "cons"} {
			f, ok := typ.FieldByName(name)
			if !ok {
				t.Fatalf("%v has no field %s", typ, name)
			}
			if gap := f.Offset - prevEnd; gap < padBytes {
				t.Errorf("%v: only %d bytes before %s", typ, gap, name)
			}
			prevEnd = f.Offset + f.Type.Size()
		}
		if gap := typ.Size() - prevEnd; gap < padBytes {
			t.Errorf("%v: only %d bytes after cons", typ, gap)
		}
	}
}

func reflectType[T any]() reflect.Type { return reflect.TypeFor[T]() }

// TestNoAllocs proves the enqueue and dequeue paths allocate nothing.
func TestNoAllocs(t *testing.T) {
	for _, k := range kinds {
		q := mustNew(t, k, 64, 0)
		src := make([]uint64, 32)
		dst := make([]uint64, 32)
		allocs := testing.AllocsPerRun(1000, func() {
			q.EnqueueBurst(src)
			q.EnqueueBulk(src[:8])
			q.Enqueue(1)
			q.DequeueBurst(dst)
			q.DequeueBulk(dst[:8])
			q.Dequeue()
			_ = q.Len() + q.Free() + q.Cap()
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per run, want 0", k.name, allocs)
		}
	}
	// A struct element type, as memport uses.
	type desc struct{ idx, off, n uint32 }
	q, _ := NewSPSC[desc](64)
	d := make([]desc, 32)
	if allocs := testing.AllocsPerRun(1000, func() {
		q.EnqueueBurst(d)
		q.DequeueBurst(d)
		q.Enqueue(desc{1, 2, 3})
		q.Dequeue()
	}); allocs != 0 {
		t.Errorf("SPSC[desc]: %v allocations per run, want 0", allocs)
	}
}

// TestReserveCommit checks SPSC's in-place enqueue against a slice-backed
// FIFO, mixed with the copying calls, from each start (so across the
// index wrap): Reserve on a full ring returns nil, a reserved slot stays
// invisible to the consumer until Commit, and a second Reserve before the
// Commit returns the same slot.
func TestReserveCommit(t *testing.T) {
	for _, start := range starts {
		t.Run(fmt.Sprintf("start=%#x", start), func(t *testing.T) {
			q, err := newSPSCAt[uint64](8, start-20)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(start, 7))
			var model []uint64
			var next uint64
			for range 2000 {
				switch rng.IntN(3) {
				case 0:
					s := q.Reserve()
					if len(model) == q.Cap() {
						if s != nil {
							t.Fatalf("Reserve on a full ring (Len %d) returned a slot", q.Len())
						}
						continue
					}
					if s == nil {
						t.Fatalf("Reserve returned nil with %d of %d used", len(model), q.Cap())
					}
					*s = next
					if q.Len() != len(model) {
						t.Fatalf("Len %d before Commit, want %d", q.Len(), len(model))
					}
					if again := q.Reserve(); again != s {
						t.Fatal("a second Reserve before Commit returned another slot")
					}
					q.Commit()
					model = append(model, next)
					next++
				case 1:
					if q.Enqueue(next) {
						model = append(model, next)
						next++
					} else if len(model) != q.Cap() {
						t.Fatalf("Enqueue failed with %d of %d used", len(model), q.Cap())
					}
				case 2:
					dst := make([]uint64, 1+rng.IntN(5))
					n := q.DequeueBurst(dst)
					want := min(len(dst), len(model))
					if n != want || !slices.Equal(dst[:n], model[:n]) {
						t.Fatalf("DequeueBurst = %v, want %v", dst[:n], model[:want])
					}
					model = model[n:]
				}
				if q.Len() != len(model) {
					t.Fatalf("Len %d, model %d", q.Len(), len(model))
				}
			}
		})
	}
	q, _ := NewSPSC[[2048]byte](4)
	if allocs := testing.AllocsPerRun(1000, func() {
		if s := q.Reserve(); s != nil {
			s[0] = 1
			q.Commit()
		}
		q.Dequeue()
	}); allocs != 0 {
		t.Errorf("Reserve/Commit: %v allocations per run, want 0", allocs)
	}
}
