//go:build !race

package flowtable

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestTenMillionSessions fills a table sized for 10M sessions, checks that
// every session is reachable by both keys, and reports the memory held per
// session. The race detector's shadow memory would make this test need
// several times the table's gigabyte, so it is built without -race.
func TestTenMillionSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 1 GiB; skipped in -short mode")
	}
	const n = 10_000_000
	// Large tables live outside the Go heap (mem_linux.go), so memory is
	// measured as resident set growth, which counts both.
	runtime.GC()
	rss0 := rssBytes(t)
	tb := mustNew(t, n)
	var e Entry
	for i := uint32(0); i < n; i++ {
		k0 := testKey(i)
		k1 := partner(k0)
		if res := tb.Insert(&k0, &k1, 0, [2]uint64{uint64(i), 0}, 0, &e); res != Inserted {
			t.Fatalf("insert %d: %v", i, res)
		}
	}
	if tb.Len() != n {
		t.Fatalf("Len = %d", tb.Len())
	}
	k0 := testKey(n)
	k1 := partner(k0)
	if res := tb.Insert(&k0, &k1, 0, [2]uint64{}, 0, &e); res != Full {
		t.Fatalf("insert beyond capacity = %v", res)
	}
	for i := uint32(0); i < n; i += 7 {
		k := testKey(i)
		if !tb.Lookup(&k, &e) || e.User[0] != uint64(i) {
			t.Fatalf("session %d not found by key 0", i)
		}
		p := partner(k)
		if !tb.Lookup(&p, &e) || e.User[0] != uint64(i) {
			t.Fatalf("session %d not found by key 1", i)
		}
	}
	rss := float64(rssBytes(t)-rss0) / n
	t.Logf("10M sessions: %.1f bytes/session by layout, %.1f bytes/session of resident memory", tb.BytesPerSession(), rss)
	if tb.BytesPerSession() > 128 {
		t.Errorf("layout needs %.1f bytes/session, target is at most 128", tb.BytesPerSession())
	}
	// Resident growth also holds the test's own garbage; allow a little
	// above the layout before calling it a leak.
	if rss > 128 {
		t.Errorf("resident memory grew by %.1f bytes/session, target is at most 128", rss)
	}
	if rss < tb.BytesPerSession()*0.9 {
		t.Errorf("resident memory grew by only %.1f bytes/session: the table is not what was measured", rss)
	}
	runtime.KeepAlive(tb)
}

// rssBytes reads the process's resident set size.
func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
