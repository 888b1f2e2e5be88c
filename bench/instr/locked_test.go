package main

import (
	"os"
	"testing"
)

// TestIsLocked: instruction encodings taken from the new-session path's
// disassembly (objdump of dataplane/nat's test binary), each annotated.
func TestIsLocked(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"lock cmpxchg %r9,(%r10)", []byte{0xf0, 0x4d, 0x0f, 0xb1, 0x0a}, true},
		{"lock xadd %rcx,(%rdx)", []byte{0xf0, 0x48, 0x0f, 0xc1, 0x0a}, true},
		{"lock cmpxchg16b (%rdi)", []byte{0xf0, 0x48, 0x0f, 0xc7, 0x0f}, true},
		{"lock xadd %cx,0x18(%rdx): the operand-size prefix before the lock", []byte{0x66, 0xf0, 0x0f, 0xc1, 0x4a, 0x18}, true},
		{"xchg %r8,(%rsi): Go's atomic store", []byte{0x4c, 0x87, 0x06}, true},
		{"xchg %al,(%rdi): a byte's", []byte{0x86, 0x07}, true},
		{"xchg %ax,%ax: Go's two-byte NOP", []byte{0x66, 0x90}, false},
		{"xchg %rbx,%rax: registers", []byte{0x48, 0x87, 0xd8}, false},
		{"mov (%rcx),%rax", []byte{0x48, 0x8b, 0x01}, false},
		{"movb $0x0,(%rax): the byte unlock", []byte{0xc6, 0x00, 0x00}, false},
		{"cmpxchg without lock", []byte{0x48, 0x0f, 0xb1, 0x0a}, false},
		{"a truncated xchg", []byte{0x48, 0x87}, false},
		{"nothing", nil, false},
	} {
		if got := isLocked(c.b); got != c.want {
			t.Errorf("%s (% x): isLocked = %v, want %v", c.name, c.b, got, c.want)
		}
	}
}

// testdata/newsession.callgrind is an excerpt of a real callgrind output
// file (--dump-instr=yes --compress-pos=no): cost lines of two functions,
// a call's line with the call's inclusive cost after it (not the call
// site's own), and an address with costs in two blocks.
func TestInstrCountsGolden(t *testing.T) {
	f, err := os.Open("testdata/newsession.callgrind")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := InstrCounts(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]uint64{
		0x417740: 1,
		0x417741: 1,
		0x417795: 2, // 73 is the call's inclusive cost
		0x5b3fc0: 59968,
		0x5b3fe4: 59968 + 32,
		0x5b3fe7: 59968,
	}
	if len(got) != len(want) {
		t.Errorf("%d addresses, want %d: %v", len(got), len(want), got)
	}
	for a, n := range want {
		if got[a] != n {
			t.Errorf("address %#x: %d, want %d", a, got[a], n)
		}
	}
}
