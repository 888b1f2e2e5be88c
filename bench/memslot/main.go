// Command memslot measures the NAT engine's memory per session slot: it
// builds the engine (nat.New, with every table natd builds) at two values
// of limits.max_sessions, each in a fresh process, and prints the growth of
// the resident set between them divided by the growth in slots. It is the
// engine's share of the harness's "RSS per session slot" figure, without a
// lab or a running natd, and so is exact and quick. It then prints the
// same per table, from the tables' layout (nat.Engine.TableMemory). It
// measures two engines: the default configuration (endpoint-independent
// filtering), and one that filters address-dependently, which also has
// the filter-permissions table (dataplane/nat/counttables.go).
//
//	go run ./bench/memslot [-small 65536] [-large 1048576]
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"github.com/xnat/xnat/dataplane/nat"
)

func main() {
	small := flag.Int("small", 64<<10, "sessions of the small engine")
	large := flag.Int("large", 1<<20, "sessions of the large engine")
	child := flag.Int("child", 0, "internal: build one engine of this many sessions and print its RSS")
	adf := flag.Bool("adf", false, "internal: the child's engine filters address-dependently")
	flag.Parse()
	if *child > 0 {
		fmt.Println(engineRSS(*child, *adf))
		return
	}
	for _, c := range []struct {
		name string
		adf  bool
	}{{"default (endpoint-independent filtering)", false}, {"address-dependent filtering", true}} {
		a, b := run(*small, c.adf), run(*large, c.adf)
		fmt.Printf("%s: RSS %d MiB at %d sessions, %d MiB at %d: %.1f B per session slot\n",
			c.name, a>>20, *small, b>>20, *large, float64(b-a)/float64(*large-*small))
		m := newEngine(*small, c.adf).TableMemory()
		fmt.Printf("  tables by layout, per session slot: sessions %.1f + bindings %.1f + permissions %.1f + ports %.1f (%.1f ports) = %.1f B\n",
			m.Sessions, m.Bindings, m.Permissions, m.Ports, m.PortsPerSessionSlot, m.PerSessionSlot())
	}
}

// run measures an engine of n sessions in a child process, so that one
// engine's memory cannot be reused by the other.
func run(n int, adf bool) int64 {
	out, err := exec.Command(os.Args[0], "-child", strconv.Itoa(n), "-adf="+strconv.FormatBool(adf)).Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "memslot: engine of %d sessions: %v\n", n, err)
		os.Exit(1)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "memslot: %v\n", err)
		os.Exit(1)
	}
	return v
}

// engineRSS builds an engine of n sessions (and 1024 subscribers, as the
// harness's natd) and returns the process's resident set size. The tables
// are faulted in by New, so this is their full size.
func engineRSS(n int, adf bool) int64 {
	e := newEngine(n, adf)
	runtime.GC()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		fmt.Fprintf(os.Stderr, "memslot: %v\n", err)
		os.Exit(1)
	}
	pages, _ := strconv.ParseInt(strings.Fields(string(b))[1], 10, 64)
	runtime.KeepAlive(e)
	return pages * int64(os.Getpagesize())
}

// newEngine builds the engine of n sessions, with address-dependent
// filtering of UDP and TCP if adf.
func newEngine(n int, adf bool) *nat.Engine {
	c := nat.DefaultConfig()
	c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c.Pools = []nat.Pool{{Name: "main", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}}}
	c.Limits.MaxSessions = n
	c.Limits.MaxSubscribers = 1024
	if adf {
		c.Filtering[nat.UDP], c.Filtering[nat.TCP] = nat.FilterAddressDependent, nat.FilterAddressDependent
	}
	e, err := nat.New(c, nat.Options{Workers: 1})
	if err != nil {
		fmt.Fprintf(os.Stderr, "memslot: %v\n", err)
		os.Exit(1)
	}
	return e
}
