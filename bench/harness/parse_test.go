package harness

import (
	"math"
	"strings"
	"testing"
)

const benchOutput = `goos: linux
goarch: amd64
pkg: github.com/xnat/xnat/checksum
cpu: Oxide Virtual Turin-like Processor
BenchmarkChecksum/impl=opt/size=20-2         	43230818	         5.284 ns/op	3785.22 MB/s	       0 B/op	       0 allocs/op
BenchmarkChecksum/impl=opt/size=20-2         	40640287	         5.229 ns/op	3825.12 MB/s	       0 B/op	       0 allocs/op
BenchmarkChecksum/impl=opt/size=20-2         	45938104	         5.185 ns/op	3856.93 MB/s	       0 B/op	       0 allocs/op
PASS
ok  	github.com/xnat/xnat/checksum	18.599s
goos: linux
goarch: amd64
pkg: github.com/xnat/xnat/dataplane/nat
BenchmarkEstablished/sessions=1k-2   	 1000000	       121.5 ns/op	         8.232 Mpps	       0 B/op	       0 allocs/op
BenchmarkEstablished/sessions=1k-2   	 1000000	       125.0 ns/op	         8.000 Mpps	       0 B/op	       0 allocs/op
BenchmarkHarness-2   	 9000000	        24.70 ns/op	       1 B/op	       0 allocs/op
BenchmarkHarness-2   	 9000000	        25.70 ns/op	       0 B/op	       0 allocs/op
--- BENCH: BenchmarkSomething-2
    some_test.go:12: a log line
BenchmarkNoMem-2   	     100	     10000 ns/op
BenchmarkNoMem-2   	     100	     12000 ns/op
PASS
ok  	github.com/xnat/xnat/dataplane/nat	10.033s
`

func TestParseBench(t *testing.T) {
	ms, err := ParseBench(strings.NewReader(benchOutput))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 {
		t.Fatalf("%d benchmarks: %+v", len(ms), ms)
	}
	c := ms[0]
	if c.Package != "github.com/xnat/xnat/checksum" || c.Name != "BenchmarkChecksum/impl=opt/size=20" || c.Runs != 3 {
		t.Fatalf("first: %+v", c)
	}
	if c.MedianNs != 5.229 || !c.HasMem || c.AllocsPerOp != 0 || c.Extra["MB/s"] != 3825.12 {
		t.Fatalf("first: %+v", c)
	}
	e := ms[1]
	if e.Package != "github.com/xnat/xnat/dataplane/nat" || e.Name != "BenchmarkEstablished/sessions=1k" ||
		e.MedianNs != (121.5+125.0)/2 || e.Extra["Mpps"] != (8.232+8.0)/2 {
		t.Fatalf("established: %+v", e)
	}
	// An allocation in any run is reported.
	if h := ms[2]; h.Name != "BenchmarkHarness" || h.BytesPerOp != 1 || h.AllocsPerOp != 0 {
		t.Fatalf("harness: %+v", h)
	}
	if n := ms[3]; n.Name != "BenchmarkNoMem" || n.HasMem || n.MedianNs != 11000 {
		t.Fatalf("no mem: %+v", n)
	}
}

func TestParseBenchBadValue(t *testing.T) {
	if _, err := ParseBench(strings.NewReader("BenchmarkX-2  10  abc ns/op\n")); err == nil {
		t.Fatal("bad value accepted")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	in := []float64{3, 1, 2}
	Median(in)
	if in[0] != 3 {
		t.Fatal("Median sorted its argument")
	}
}

const procStat = `cpu  760273 1 157303 350924 1267 0 41522 0 0 0
cpu0 380000 1 80000 170000 600 0 20000 0 0 0
cpu1 380273 0 77303 180924 667 0 21522 0 0 0
intr 123 4 5
ctxt 456
`

func TestParseCPUTimes(t *testing.T) {
	c, err := ParseCPUTimes([]byte(procStat))
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 2 || c[0].User != 380000 || c[0].Nice != 1 || c[1].SoftIRQ != 21522 || c[1].IOWait != 667 {
		t.Fatalf("%+v", c)
	}
	later := []CPUTimes{c[0], c[1]}
	later[0].User += 50
	later[0].SoftIRQ += 25
	later[0].Idle += 25
	later[1].Idle += 100
	s := Shares(c, later)
	if len(s) != 2 || s[0].User != 0.5 || s[0].SoftIRQ != 0.25 || s[0].Idle != 0.25 || s[0].Busy() != 0.75 || s[1].Busy() != 0 {
		t.Fatalf("%+v", s)
	}
	if got := SoftIRQSeconds(c, later); got != 0.25 {
		t.Fatalf("softirq seconds %v", got)
	}
	if _, err := ParseCPUTimes([]byte("cpu0 1 2 3\n")); err == nil {
		t.Fatal("short line accepted")
	}
	if _, err := ParseCPUTimes([]byte("intr 1\n")); err == nil {
		t.Fatal("no CPU lines accepted")
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and a parenthesis.
	line := "4242 (nat d) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 100 1000 200\n"
	p, err := ParseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if p.User != 1234 || p.System != 567 || math.Abs(p.Seconds()-18.01) > 1e-9 {
		t.Fatalf("%+v", p)
	}
	if _, err := ParseProcStat([]byte("4242 (natd) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
}

func TestParseStatusRSS(t *testing.T) {
	st := "Name:\tnatd\nVmPeak:\t 2614292 kB\nVmRSS:\t  737220 kB\nThreads:\t9\n"
	n, err := ParseStatusRSS([]byte(st))
	if err != nil || n != 737220*1024 {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := ParseStatusRSS([]byte("Name:\tx\n")); err == nil {
		t.Fatal("missing VmRSS accepted")
	}
}

func TestParseSlabinfo(t *testing.T) {
	si := `slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
nf_conntrack_expect      0      0    208   19    1 : tunables    0    0    0 : slabdata      0      0      0
nf_conntrack        1002   1050    256   16    1 : tunables    0    0    0 : slabdata     66     66      0
`
	s, err := ParseSlabinfo([]byte(si), "nf_conntrack")
	if err != nil || s != (Slab{Active: 1002, Objects: 1050, ObjSize: 256}) {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := ParseSlabinfo([]byte(si), "nope"); err == nil {
		t.Fatal("missing cache found")
	}
}

func TestCPUModel(t *testing.T) {
	if m := CPUModel([]byte("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t: x\n")); m != "AMD EPYC" {
		t.Fatalf("%q", m)
	}
}

func TestFlowLayout(t *testing.T) {
	for _, n := range []int{1, 1000, 100000, 1000000} {
		s, err := TrafficFlows(n)
		if err != nil {
			t.Fatal(err)
		}
		// Every destination sees at most 32768 flows (masquerade's ports
		// on one address), and the flows are distinct tuples.
		perDst := map[[4]byte]int{}
		seen := map[[12]byte]bool{}
		for i := range uint32(n) {
			tp := s.Tuple(i)
			perDst[tp.Dst]++
			var k [12]byte
			copy(k[:4], tp.Src[:])
			copy(k[4:8], tp.Dst[:])
			k[8], k[9], k[10], k[11] = byte(tp.SrcPort>>8), byte(tp.SrcPort), byte(tp.DstPort>>8), byte(tp.DstPort)
			if seen[k] {
				t.Fatalf("%d flows: flow %d repeats %+v", n, i, tp)
			}
			seen[k] = true
		}
		for d, c := range perDst {
			if c > 32768 {
				t.Fatalf("%d flows: %d to %v", n, c, d)
			}
		}
	}
	// Smaller scenarios are prefixes of larger ones.
	a, _ := TrafficFlows(1000)
	b, _ := TrafficFlows(1000000)
	for i := range uint32(1000) {
		if a.Tuple(i) != b.Tuple(i) {
			t.Fatalf("flow %d differs", i)
		}
	}
	for k := range 63 {
		a, b := SessionFlows(k), SessionFlows(k+1)
		if a.Src.Contains(b.Src.First) || b.Src.Contains(a.Src.Last()) || a.Dst.Contains(b.Dst.First) || b.Dst.Contains(a.Dst.Last()) {
			t.Fatalf("session blocks %d and %d overlap", k, k+1)
		}
		// Traffic flows' destinations are not session destinations.
		tf, _ := TrafficFlows(1000000)
		if a.Dst.Contains(tf.Dst.First) || a.Dst.Contains(tf.Dst.Last()) {
			t.Fatalf("session block %d meets the traffic destinations", k)
		}
	}
	if _, err := TrafficFlows(0); err == nil {
		t.Fatal("0 flows accepted")
	}
	if _, err := TrafficFlows(2 << 20); err == nil {
		t.Fatal("too many flows accepted")
	}
	for _, s := range []func() error{
		func() error { f := SessionFlows(0); return f.Validate() },
		func() error { f := SessionFlows(63); return f.Validate() },
		func() error { f := CapacityFlows(2306867); return f.Validate() },
	} {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParsePerfReport(t *testing.T) {
	rep := `# To display the perf.data header info, please use --header/--header-only options.
#
# Total Lost Samples: 0
#
# Samples: 1K of event 'cpu-clock'
# Event count (approx.): 1879000000
#
# Overhead  Symbol
# ........  ......
#
    19.64%  [k] pvm_irq_enable
     7.29%  [.] github.com/xnat/xnat/flowtable.(*Table).Prefetch
     6.44%  [.] github.com/xnat/xnat/dataplane/nat.(*Worker).Poll
     6.33%  [.] 0x000000000000079d
     4.20%  [.] github.com/xnat/xnat/dataplane/header.Parse
     2.39%  [.] internal/runtime/syscall/linux.Syscall6
     1.49%  [.] github.com/xnat/xnat/dataplane/afxdp.(*nativeRings).fillQueued
     0.48%  [.] github.com/xnat/xnat/dataplane/neigh.(*Table).Resolve
`
	var p Profile
	if err := ParsePerfReport(strings.NewReader(rep), &p, 3); err != nil {
		t.Fatal(err)
	}
	if len(p.Top) != 3 || p.Top[0].Symbol != "pvm_irq_enable" || !p.Top[0].Kernel || p.Top[1].Share != 0.0729 {
		t.Fatalf("%+v", p.Top)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(p.Kernel, 0.1964) || !near(p.User, 0.2862) {
		t.Fatalf("kernel %v user %v", p.Kernel, p.User)
	}
	for g, want := range map[string]float64{
		"kernel: AF_XDP, veth, skb, syscalls":               0.1964,
		"flow table (flowtable)":                            0.0729,
		"NAT engine (dataplane/nat)":                        0.0644,
		"other":                                             0.0633,
		"parse and rewrite (dataplane/header, checksum)":    0.042,
		"Go runtime and syscall stubs":                      0.0239,
		"AF_XDP rings (dataplane/afxdp)":                    0.0149,
		"worker loop, neighbours (dataplane/poller, neigh)": 0.0048,
	} {
		if !near(p.Groups[g], want) {
			t.Errorf("group %q = %v, want %v", g, p.Groups[g], want)
		}
	}
	if err := ParsePerfReport(strings.NewReader("# nothing\n"), &p, 3); err == nil {
		t.Fatal("empty report accepted")
	}
	if n := perfSamples([]byte("[ perf record: Woken up 2 times to write data ]\n[ perf record: Captured and wrote 0.318 MB /tmp/x (1879 samples) ]\n")); n != 1879 {
		t.Fatalf("samples %d", n)
	}
}
