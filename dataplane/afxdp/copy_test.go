package afxdp

import (
	"strconv"
	"testing"

	"github.com/xnat/xnat/dataplane/port"
)

// BenchmarkCopyFrame measures the copy a frame pays when it moves from one
// interface's UMEM to another's (frames never move by reference). Both
// areas are real mmap'd UMEMs of default size; the source frame cycles
// through 64 frames so it is not always the same cache lines.
func BenchmarkCopyFrame(b *testing.B) {
	src, err := mapUMEM(4096 * 2048)
	if err != nil {
		b.Fatal(err)
	}
	dst, err := mapUMEM(4096 * 2048)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{64, 512, 1518} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				off := (i & 63) * 2048
				buf := port.Buf{Data: dst[off : off : off+2048]}
				if !CopyFrame(&buf, src[off+256:off+256+size]) {
					b.Fatal("copy failed")
				}
				i++
			}
		})
	}
}

func TestCopyFrame(t *testing.T) {
	dst := port.Buf{Data: make([]byte, 0, 100)}
	if CopyFrame(&dst, make([]byte, 101)) || len(dst.Data) != 0 {
		t.Fatal("oversized copy accepted")
	}
	src := []byte{1, 2, 3}
	if !CopyFrame(&dst, src) || string(dst.Data) != string(src) {
		t.Fatalf("copy = %v", dst.Data)
	}
}
