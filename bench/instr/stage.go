package main

import (
	"path"
	"strings"
)

// The pipeline stages a packet's instructions are grouped into, in the
// order printed. Grouping is by the function's self cost (instructions
// executed in the function's own code, with inlined code counted where
// callgrind puts it: under the file it came from), so the stages add up to
// the whole. They follow the files of dataplane/nat, each named after its
// stage (see dataplane/nat/doc.go).
var stages = []string{"receive/parse", "classify/fast-path", "session-lookup", "slow-path", "rewrite/checksum", "next-hop", "transmit", "other"}

// stageOf says which stage a function ("file:function" as callgrind
// names it) belongs to:
//
//   - receive/parse: the test port's receive side, which stands in for the
//     NIC writing frames (testPortStage), header parsing (header.Parse*,
//     header.parse*, and checksum verification within it) and receive.go
//     (the receive pass: keys, prefetch).
//   - classify/fast-path: the decisions: fastpath.go's forwardBurst, the
//     general stages' classification and dispatch (in2out.go, out2in.go,
//     hairpin.go, icmperr.go, state.go, mss.go, frag.go), the address
//     checks inlined from snapshot.go, and worker.go's Poll.
//   - session-lookup: everything in flowtable/ (hashing, prefetch, probe,
//     and insert on the new-session path), and the engine's compact tables
//     of bindings, permissions and ports (bindtable.go, counttable.go,
//     porttable.go, lineindex.go), which hold what flowtables held before.
//   - slow-path: new sessions outside the flowtable: newsession.go,
//     mapping.go, userwords.go, portset.go, cgn_*.go, registry.go,
//     reclaim.go, decide.go, inbound.go, event.go, trail.go, and the
//     reference counts (acquireRef, releaseRef).
//   - rewrite/checksum: rewrite.go (the fast path's rewrite), checksum/ (but
//     the verification of Parse), every
//     header function but Parse* and parse* (the setters, DecTTL, the
//     incremental checksum fix-ups).
//   - next-hop: nexthop.go, pending.go and the neighbour resolver.
//   - transmit: transmit.go (queues, the copy between ports, freeing) and
//     the test port's TxBurst and Free.
//   - other: the Go runtime and the test framework.
//
// A function of flowtable, checksum or header goes to its stage wherever
// it was inlined; code of those packages inlined into a dataplane/nat
// function goes by the file callgrind names for it.
func stageOf(s string) string {
	file, fn := splitFileFunc(s)
	pkg, name := splitPkgFunc(fn)
	dir, base := path.Base(path.Dir(file)), path.Base(file)
	// By the function first.
	if st := testPortStage(pkg, name); st != "" {
		return st
	}
	switch {
	case pkg == "flowtable":
		return "session-lookup"
	case pkg == "nat" && compactTable(name):
		return "session-lookup"
	case pkg == "checksum" && dir == "checksum" && base == "checksum.go":
		return "receive/parse" // the full sums: Parse verifying the IPv4 header
	case pkg == "checksum":
		return "rewrite/checksum"
	case pkg == "header" && (strings.HasPrefix(name, "Parse") || strings.HasPrefix(name, "parse")):
		return "receive/parse"
	case pkg == "header":
		return "rewrite/checksum"
	case pkg != "nat":
		return "other" // the Go runtime and the test framework
	}
	// A function of dataplane/nat: by the file its code came from, which
	// for inlined code is the callee's.
	switch {
	case dir == "flowtable":
		return "session-lookup"
	case dir == "checksum":
		return "rewrite/checksum"
	case dir == "header" && base == "parse.go" && !strings.Contains(name, "DecTTL"):
		return "receive/parse"
	case dir == "header":
		return "rewrite/checksum"
	case dir == "nat" && base == "rewrite.go":
		return "rewrite/checksum"
	case dir == "nat" && base == "receive.go":
		return "receive/parse"
	case dir == "nat" && oneOf(base, "fastpath.go", "in2out.go", "out2in.go", "hairpin.go", "icmperr.go",
		"state.go", "mss.go", "frag.go", "snapshot.go", "worker.go"):
		return "classify/fast-path"
	case dir == "nat" && (oneOf(base, "newsession.go", "mapping.go", "userwords.go", "portset.go", "registry.go",
		"reclaim.go", "decide.go", "inbound.go", "event.go", "trail.go") || strings.HasPrefix(base, "cgn_")):
		return "slow-path"
	case dir == "nat" && oneOf(base, "bindtable.go", "counttable.go", "porttable.go", "lineindex.go"):
		return "session-lookup"
	case dir == "nat" && oneOf(base, "nexthop.go", "pending.go"):
		return "next-hop"
	case dir == "nat" && base == "transmit.go":
		return "transmit"
	case oneOf(name, "acquireRef", "releaseRef"):
		return "slow-path"
	}
	return "other"
}

// splitPkgFunc splits a Go symbol ("github.com/x/y/flowtable.(*Table).Insert")
// into its package's last element ("flowtable") and the rest; type
// arguments of generic functions, which hold paths too, are ignored.
func splitPkgFunc(fn string) (pkg, name string) {
	head := fn
	if i := strings.Index(head, "["); i >= 0 {
		head = head[:i]
	}
	start := strings.LastIndex(head, "/") + 1
	dot := strings.Index(fn[start:], ".")
	if dot < 0 {
		return "", fn
	}
	return fn[start : start+dot], fn[start+dot+1:]
}

func oneOf(s string, list ...string) bool {
	for _, x := range list {
		if s == x {
			return true
		}
	}
	return false
}

// isTestPort says whether a function is the benchmark's stand-in for the
// NIC (the loop port, the frame builders, the fixed neighbour table): its
// cost is in receive/parse, transmit and next-hop above, and is printed
// apart so that the engine's own cost is the total less it.
func isTestPort(s string) bool {
	_, fn := splitFileFunc(s)
	return testPortStage(splitPkgFunc(fn)) != ""
}

// testPortStage returns the stage a function of the benchmark's test port
// (see isTestPort) is counted in, or "" for any other function:
//
//   - transmit: the loop port's TxBurst and Free (a frame's return to the
//     pool), for a frame the engine sends;
//   - next-hop: the fixed neighbour table;
//   - receive/parse: the rest, which writes the received frames: the loop
//     port's RxBurst and pool, the established benchmarks' prepared walk
//     (flowWalk), the new-session benchmarks' generator (newFlowGen), the
//     frame template (udpTemplate) and writeUDP, and the benchmarks'
//     closures.
func testPortStage(pkg, name string) string {
	if pkg != "nat" {
		return ""
	}
	switch {
	case oneOf(name, "(*loopPort).TxBurst", "(*loopPort).Free", "(*loopPool).Free"):
		return "transmit"
	case strings.Contains(name, "Neighbors).Resolve"):
		return "next-hop"
	case strings.HasPrefix(name, "(*loopPort).") || strings.HasPrefix(name, "(*loopPool).") ||
		strings.HasPrefix(name, "(*udpTemplate).") || strings.HasPrefix(name, "(*flowWalk).") || strings.HasPrefix(name, "(*newFlowGen).") || name == "writeUDP" ||
		strings.HasPrefix(name, "(*perfRig).forwardWalk.func") || strings.HasPrefix(name, "benchNewSessions.func"):
		return "receive/parse"
	}
	return ""
}

// compactTable reports whether nat function name is a method of one of the
// engine's compact tables (or their index), wherever its code was inlined
// from.
func compactTable(name string) bool {
	for _, r := range []string{"(*bindTable).", "(*countTable).", "(*portTable).", "(*lineIndex).", "(*freeList)."} {
		if strings.HasPrefix(name, r) {
			return true
		}
	}
	return false
}
