package nat

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The RFC test suite runs in every port-allocation mode: testConfig reads
// the mode from XNAT_TEST_PORT_ALLOCATION, and TestRFCSuiteInEveryMode
// runs the suite again in a child test process for block and for
// deterministic allocation (make test runs it without the race detector;
// with it, only the concurrency tests).
const allocEnv = "XNAT_TEST_PORT_ALLOCATION"

// testAllocation is the mode of this test process.
var testAllocation = func() PortAllocation {
	var a PortAllocation
	if err := a.UnmarshalText([]byte(os.Getenv(allocEnv))); err != nil {
		panic(err)
	}
	return a
}()

// withTestAllocation switches a test configuration to the process's mode.
// The suite checks translation through session events too, so they stay
// on (LogSessions); TestCGN* check the modes' own logging.
//
// Block mode uses blocks of 128 ports, up to 64 per subscriber, so that
// the tests' hundreds of subscribers fit one address. Deterministic mode
// covers 10.0.0.0/16 with 1008 ports per subscriber (K = 64 per address):
// the pool gains 198.19.0.0/22 after 198.18.0.100, and subscribers
// 10.0.0.0-10.0.0.63 still map to 198.18.0.100, as the tests expect.
func withTestAllocation(c *Config) {
	c.CGN.PortAllocation = testAllocation
	c.CGN.LogSessions = true
	switch testAllocation {
	case AllocBlock:
		c.CGN.BlockSize, c.CGN.MaxBlocks = 128, 64
	case AllocDeterministic:
		c.CGN.PortsPerSubscriber = 1008
		c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}
		c.Pools[0].Addresses = append(c.Pools[0].Addresses, netip.MustParsePrefix("198.19.0.0/22"))
	}
}

// onlyIn skips a test of the RFC suite in the modes it does not apply to,
// saying why.
func onlyIn(t testing.TB, why string, modes ...PortAllocation) {
	t.Helper()
	for _, m := range modes {
		if m == testAllocation {
			return
		}
	}
	t.Skipf("not in %s mode: %s", testAllocation, why)
}

// notInSuite are tests that do not depend on the allocation mode:
// validation, fuzzing, memory and poll-loop accounting.
const notInSuite = "TestConfig|Fuzz|TestMemory|TestReloadsDoNotGrowHeap|TestPoll|TestRFCSuiteInEveryMode|TestCGN"

// notPreserving are tests that expect the inside port preserved, which
// block and deterministic modes never do (ports inside a block or range
// are random, docs/cgn.md).
const notPreserving = "TestBasicUDPRoundTrip|TestRFC4787_REQ14_FragmentsInOrder|TestRemovedForwardKeepsItsPort|" +
	"TestReclaimEmbryonic|TestEmbryonicInboundWithoutPressure|TestCaptureBothStages|TestTraceFilteredAndExplainAgree|" +
	"TestMSSClampGolden|TestClampMSSAllocs"

// notDeterministic are further tests that cannot hold in deterministic
// mode, by design (docs/cgn.md):
//   - they narrow the port ranges, which deterministic mode fixes at
//     1024-65535: TestStaticPortsExcludedFromDynamicPool,
//     TestSmallRangeFillsEveryPort, TestUptimePortHoldDown,
//     TestRFC6888_REQ8_PortHoldDown;
//   - one subscriber opens more flows than its P ports:
//     TestFullEventRingDropsEventsNotPackets;
//   - they expect subscribers spread by hash, where the function decides:
//     TestRFC4787_REQ2_RFC6888_REQ2_PairedPooling;
//   - their pools cannot cover the inside prefixes, which deterministic
//     mode refuses: TestAddressIndex65535RoundTrips, TestZeroAllocNewMappings
//     (TestCGNDeterministicDataplane covers it), TestPoolChangesUnderTrafficTwoWorkers,
//     TestRemovedPoolAddressDrains, TestRegistryFullRefusesChange,
//     TestCaptureRingBounded, TestZeroAllocCaptureAndTrace, TestHoldDownShortenedAfterFlushes,
//     TestHoldDownICMPChurn.
const notDeterministic = "TestFullEventRingDropsEventsNotPackets|TestStaticPortsExcludedFromDynamicPool|TestSmallRangeFillsEveryPort|TestUptimePortHoldDown|TestRFC6888_REQ8_PortHoldDown|TestRFC4787_REQ2_RFC6888_REQ2_PairedPooling|" +
	"TestAddressIndex65535RoundTrips|TestZeroAllocNewMappings|TestPoolChangesUnderTrafficTwoWorkers|TestRemovedPoolAddressDrains|TestRegistryFullRefusesChange|" +
	"TestCaptureRingBounded|TestZeroAllocCaptureAndTrace|TestHoldDown"

func TestRFCSuiteInEveryMode(t *testing.T) {
	if testAllocation != AllocDynamic {
		t.Skip("runs from the dynamic-mode process")
	}
	if testing.Short() {
		t.Skip("short")
	}
	for _, mode := range []PortAllocation{AllocBlock, AllocDeterministic} {
		t.Run(mode.String(), func(t *testing.T) {
			skip := notInSuite + "|" + notPreserving
			if mode == AllocDeterministic {
				skip += "|" + notDeterministic
			}
			run, least := ".", 50
			if raceEnabled {
				// Under the race detector (make test's first pass) the
				// children run the concurrency tests only: the whole
				// suite would triple the package's time there. make
				// test runs the whole suite again without it.
				run, least = "^TestConcurrent", 3
			}
			cmd := exec.Command(os.Args[0], "-test.run", run, "-test.skip", skip, "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), allocEnv+"="+mode.String())
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the RFC suite failed with port_allocation %s:\n%s", mode, tail(string(out), 60))
			}
			passed := strings.Count(string(out), "--- PASS")
			if passed < least {
				t.Fatalf("only %d tests passed with port_allocation %s:\n%s", passed, mode, tail(string(out), 60))
			}
			t.Logf("port_allocation %s: %d tests and subtests passed, %d skipped", mode, passed, strings.Count(string(out), "--- SKIP"))
		})
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// withoutBlockEvents drops block events, for tests of the other events.
func withoutBlockEvents(evs []Event) []Event {
	out := evs[:0]
	for _, e := range evs {
		if e.Type != BlockAllocated && e.Type != BlockReleased {
			out = append(out, e)
		}
	}
	return out
}

// fitTestAllocation makes a test's own pools cover the inside prefixes in
// deterministic mode, by adding 198.19.0.0/22 to the first pool.
func fitTestAllocation(c *Config) {
	if testAllocation != AllocDeterministic || len(c.Pools) == 0 {
		return
	}
	if _, err := NewDetMap(c); err == nil {
		return
	}
	extra := netip.MustParsePrefix("198.19.0.0/22")
	for _, p := range c.Pools {
		for _, a := range p.Addresses {
			if a.Overlaps(extra) {
				return
			}
		}
	}
	c.Pools[0].Addresses = append(c.Pools[0].Addresses, extra)
}
