// Command instr counts the instructions the NAT engine executes per packet,
// for each engine benchmark case, under valgrind's callgrind: a count that
// does not depend on the machine's load or clock. It prints one line per
// case,
//
//	established-1k instructions/packet=1234
//
// and on amd64 its locked instructions per packet (locked.go),
//
//	established-1k locked/packet=0.00
//
// then, per case, each pipeline stage's share (see stageOf), in
// instructions per packet and percent, and how much of it the benchmark's
// test port accounts for ("(of which test-port=N)"), so that the engine's
// own cost is the total less N.
//
// The test port stands in for the NIC, which writes received frames by DMA
// and reads sent ones at no CPU cost; the stand-in cannot, and N is what
// it costs instead (testPortStage): taking a burst's frames off the pool
// (loopPort.RxBurst), writing each frame (for the established cases a
// copy of a prebuilt 60-byte frame and two stores of its step of a walk
// prepared before the timed loop, flowWalk; for the new-session case the
// flow's source address, port and IPv4 header checksum patched into the
// copy, newFlowGen; udpTemplate and writeUDP for set-up), returning sent frames to the pool (TxBurst, Free) and the
// fixed neighbour table. The engine
// parses and verifies the frames exactly as it would a NIC's. The rig's two
// ports share one pool of frames, as natd's AF_XDP sockets share one UMEM
// by default (xdp.shared_umem), so a forwarded frame is not copied;
// dataplane/nat's BenchmarkCrossPort measures the copy of separate pools.
//
// Method: the dataplane/nat test binary runs the same benchmark twice under
// callgrind, with -test.benchtime=N1x and N2x. Everything but the measured
// loop (engine and table set-up, the Go test framework, the runtime's
// start-up) is the same in both runs, so (Ir(N2)-Ir(N1))/(N2-N1) is the
// cost of one packet. Only the function holding the benchmark's loop (the
// case's loop, and everything it calls) is counted (callgrind's
// --toggle-collect): the runtime's monitor thread (sysmon) wakes by the
// clock, so the longer a run takes, the more of its work a whole-program
// count holds, and under load the established cases read up to 12
// instructions a packet more (754 against 742, measured; counted this
// way, 742.0 to 742.3 at the same load). GOGC=off and GOMAXPROCS=1 keep
// the garbage collector and idle scheduler threads, whose work varies
// from run to run, out of the loop (which allocates nothing, so GOGC=off
// costs no memory there). asyncpreemptoff and cpu.rdtscp=off avoid two things
// valgrind 3.19 cannot run: Go's preemption signals under callgrind and the
// RDTSCP instruction.
//
//	go run ./bench/instr            (or make bench-instr)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// burst is the packets each call of the benchmarks' loop handles
// (nat.MaxBurst); the loop rounds b.N up to a whole burst, and Go's
// benchmark runs one extra iteration (one burst) before b.N, in both runs.
const burst = 64

type benchCase struct {
	name  string
	bench string // -test.bench pattern
	loop  string // the function that runs the timed loop (callgrind's --toggle-collect pattern)
	n2    int    // packets in the second run (the first has -n1)
}

// The new-session case's cost grows with the table's fill (longer probes
// for a missing key): its runs stop at 64k of the benchmark's 256k
// sessions (5,666 instead of 5,611 per packet up to 192k, measured). The
// established cases do not change the table, so they run longer, for a
// smaller share of the runtime's background work (sysmon) in the
// difference.
var cases = []benchCase{
	{"established-1k", "^BenchmarkEstablished$/^sessions=1k$", "*.(*perfRig).forwardWalk", 192000},
	{"established-1m", "^BenchmarkEstablished$/^sessions=1M$", "*.(*perfRig).forwardWalk", 192000},
	{"new-session", "^BenchmarkNewSession$", "*.benchNewSessions", 64000},
}

func main() {
	bin := flag.String("bin", "", "dataplane/nat test binary (default: build one with go test -c)")
	n1 := flag.Int("n1", 6400, "packets in the first run (a multiple of 64)")
	n2 := flag.Int("n2", 0, "packets in the second run of every case (a multiple of 64; new-session needs < 262000; default: the case's own)")
	only := flag.String("cases", "", "comma-separated cases to run (default: all)")
	keep := flag.String("keep", "", "directory to keep the callgrind profiles in")
	flag.Parse()
	for i := range cases {
		if *n2 > 0 {
			cases[i].n2 = *n2
		}
		if *n1%burst != 0 || cases[i].n2%burst != 0 || cases[i].n2 <= *n1 {
			fatalf("-n1 and -n2 must be multiples of %d with n2 > n1", burst)
		}
	}
	dir, err := os.MkdirTemp("", "instr")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(dir)
	if *keep != "" {
		dir = *keep
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fatalf("%v", err)
		}
	}
	if *bin == "" {
		*bin = filepath.Join(dir, "nat.test")
		run("go", "test", "-c", "-o", *bin, "./dataplane/nat/")
	}
	var shares []string
	for _, c := range cases {
		if *only != "" && !contains(strings.Split(*only, ","), c.name) {
			continue
		}
		p1 := profile(*bin, dir, c, *n1)
		p2 := profile(*bin, dir, c, c.n2)
		packets := float64(c.n2 - *n1)
		total := float64(p2.Total) - float64(p1.Total)
		if total <= 0 {
			// Nothing counted: the loop's function was renamed.
			fatalf("%s: no instructions counted in %s", c.name, c.loop)
		}
		fmt.Printf("%s instructions/packet=%.0f\n", c.name, total/packets)
		if runtime.GOARCH == "amd64" {
			locked, err := lockedPerPacket(*bin, profileFile(dir, c, *n1), profileFile(dir, c, c.n2), packets)
			if err != nil {
				fatalf("%s: locked instructions: %v", c.name, err)
			}
			fmt.Printf("%s locked/packet=%.2f\n", c.name, locked)
		}
		by := map[string]float64{}
		var testPort float64
		add := func(k string, d float64) {
			by[stageOf(k)] += d
			if isTestPort(k) {
				testPort += d
			}
		}
		for k, v := range p2.Self {
			add(k, float64(v)-float64(p1.Self[k]))
		}
		for k, v := range p1.Self {
			if _, ok := p2.Self[k]; !ok {
				add(k, -float64(v))
			}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s stages:", c.name)
		for _, s := range stages {
			fmt.Fprintf(&b, " %s=%.0f(%.0f%%)", s, by[s]/packets, 100*by[s]/total)
		}
		fmt.Fprintf(&b, " (of which test-port=%.0f)", testPort/packets)
		shares = append(shares, b.String())
	}
	for _, s := range shares {
		fmt.Println(s)
	}
}

// profile runs one benchmark case for n packets under callgrind and returns
// its per-function self costs.
func profile(bin, dir string, c benchCase, n int) *Profile {
	out := profileFile(dir, c, n)
	cmd := exec.Command("valgrind", "--tool=callgrind", "--callgrind-out-file="+out,
		"--collect-atstart=no", "--toggle-collect="+c.loop,
		"--dump-instr=yes", "--compress-pos=no", // for lockedPerPacket
		bin, "-test.run=^$", "-test.bench="+c.bench, fmt.Sprintf("-test.benchtime=%dx", n))
	cmd.Env = append(os.Environ(), "GOGC=off", "GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		os.Stderr.Write(log.Bytes())
		fatalf("%s: callgrind: %v", c.name, err)
	}
	// The benchmark must have run: a pattern that matches nothing passes.
	if !bytes.Contains(log.Bytes(), []byte(fmt.Sprintf("%d\t", n))) {
		os.Stderr.Write(log.Bytes())
		fatalf("%s: benchmark %s did not run %d iterations", c.name, c.bench, n)
	}
	ann, err := exec.Command("callgrind_annotate", "--auto=no", "--threshold=100", out).Output()
	if err != nil {
		fatalf("callgrind_annotate %s: %v", out, err)
	}
	p, err := ParseAnnotate(bytes.NewReader(ann))
	if err != nil {
		fatalf("%s: %v", out, err)
	}
	return p
}

// profileFile is where profile writes the callgrind output of case c's
// run of n packets.
func profileFile(dir string, c benchCase, n int) string {
	return filepath.Join(dir, fmt.Sprintf("callgrind.%s.%d", c.name, n))
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "instr: "+format+"\n", a...)
	os.Exit(1)
}
