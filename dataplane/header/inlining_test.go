package header

import (
	"os/exec"
	"regexp"
	"testing"
)

// TestInlining keeps the per-packet helpers cheap, in the way net/netip's
// inlining test does: the header accessors and the checksum helpers that
// the NAT fast path calls must stay within the compiler's inlining budget.
// A change that pushes one over the budget adds a call per packet; this
// test names it. When a listed function is renamed or removed on purpose,
// edit the list.
func TestInlining(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four packages with -gcflags=-m")
	}
	must := map[string][]string{
		"github.com/xnat/xnat/dataplane/header": {
			"(*Parsed).Ethernet", "(*Parsed).IPv4", "(*Parsed).TCP", "(*Parsed).UDP",
			"(*Parsed).ICMPv4", "(*Parsed).InnerIPv4", "(*Parsed).InnerL4",
			"(*Parsed).SetInnerSrc", "(*Parsed).SetInnerDst",
			"Ethernet.Dst", "Ethernet.Src", "Ethernet.SetDst", "Ethernet.SetSrc",
			"Ethernet.Type", "Ethernet.SetType",
			"IPv4.Version", "IPv4.HeaderLen", "IPv4.TotalLen", "IPv4.ID", "IPv4.DF",
			"IPv4.MF", "IPv4.FragmentOffset", "IPv4.TTL", "IPv4.Protocol",
			"IPv4.Checksum", "IPv4.Src", "IPv4.Dst", "IPv4.SetSrc", "IPv4.SetDst",
			"IPv4.SetChecksum", "IPv4.SetTotalLen", "IPv4.SetIDFix",
			"IPv4.SetFlagsFragment", "IPv4.DecTTLFix",
			"TCP.SrcPort", "TCP.DstPort", "TCP.DataOffset", "TCP.Flags",
			"TCP.Checksum", "TCP.SetChecksum", "TCP.SetSrcPort", "TCP.SetDstPort",
			"UDP.SrcPort", "UDP.DstPort", "UDP.Length", "UDP.Checksum",
			"UDP.HasChecksum", "UDP.SetChecksum",
			"ICMPv4.Type", "ICMPv4.Code", "ICMPv4.Checksum", "ICMPv4.Ident",
			"ICMPv4.SetChecksum", "ICMPv4.SetIdent", "ICMPv4.SetIdentFix",
			"ICMPv4IsError", "ICMPv4IsQuery", "parseTCP", "parseUDP", "(*Parsed).takePorts",
			"ipv4HeaderSumOK", "MakeEthernetAddrs", "Ethernet.SetAddrs",
		},
		// The session-key helpers of the prefetching pass and the
		// translation.
		"github.com/xnat/xnat/dataplane/nat": {"keyPorts", "sessionTuple", "packetKey", "errorKey", "(*txQueue).push", "inPrefixes", "martianOctet",
			"swapAddr", "decTTL", "swapPort", "fixUDP", "fixTCP", "rewriteICMP", "setParsed", "le32"},
		// The flow table's part of the fast path: preparing a key and
		// reading the View of its session.
		"github.com/xnat/xnat/flowtable": {
			"(*Table).PrepareTuple", "(*Table).PrepareAddrs", "(*Table).ViewProbe", "(*View).OtherSrc", "(*View).OtherDst",
			"(*View).OtherSrcPort", "(*View).OtherDstPort", "(*View).OtherSrcWire", "(*View).OtherDstWire", "(*Table).refRecord", "(*Table).openRef",
		},
		"github.com/xnat/xnat/checksum": {
			"Checksum", "Combine", "Finish", "FinishUDP", "PseudoHeaderSum", "add32", "fold32",
			"Update16", "Update32", "UpdateAddrPort", "UpdateUDP16",
			"AddrChange", "AddrChange32", "UpdateWith", "UpdateUDPWith", "UpdateDecTTL", "UpdateDecTTLSwapped",
		},
	}
	args := []string{"build", "-gcflags=-m"}
	for pkg := range must {
		args = append(args, pkg)
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	// One line per function: "./file.go:L:C: can inline NAME". The
	// packages share no function names that the lists tell apart, so the
	// package is not read from the line.
	inlined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m): can inline (\S+)`).FindAllSubmatch(out, -1) {
		inlined[string(m[1])] = true
	}
	for pkg, fns := range must {
		for _, fn := range fns {
			if !inlined[fn] {
				t.Errorf("%s.%s is no longer inlinable", pkg, fn)
			}
		}
	}
}
