// Command xnatbench runs xnat's end-to-end benchmark (bench/harness) and
// writes its record: results.json, results.md, throughput.png and
// latency.png in -out. It needs root. `make bench` and `make bench-quick`
// run it from the top of the checkout:
//
//	xnatbench -out bench/results/latest -natd bin/natd -l2fwd bin/l2fwd
//	xnatbench -quick ...
//
// Without -natd or -l2fwd the binaries are built from the checkout into a
// temporary directory. Progress goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xnat/xnat/bench/harness"
	"github.com/xnat/xnat/bench/lab"
)

// interruptGrace bounds how long an interrupted run may take to finish
// its trial and remove its lab itself: a trial lasts seconds, a binary
// search step too.
const interruptGrace = time.Minute

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "xnatbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("xnatbench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "the quick subset (1k and 1M flows, 64 B, 0.5 s trials)")
	out := fs.String("out", "bench/results/latest", "directory for results.json, results.md and the charts")
	natd := fs.String("natd", "", "natd binary (default: built from -repo)")
	l2fwd := fs.String("l2fwd", "", "l2fwd binary (default: built from -repo)")
	repo := fs.String("repo", ".", "the xnat checkout")
	duts := fs.String("duts", "", "comma-separated DUTs (l2fwd,xnat,nftables; default all)")
	flows := fs.String("flows", "", "comma-separated flow counts (default: the mode's)")
	sizes := fs.String("sizes", "", "comma-separated frame sizes, 64..1518 or imix (default: the mode's)")
	trial := fs.Duration("trial", 0, "fixed-rate trial length (default 2s, quick 0.5s)")
	micro := fs.Bool("micro", true, "run the Go micro-benchmarks too")
	rtPrio := fs.Int("rt-prio", -1, "SCHED_FIFO priority of the generator's workers (default 0: normal scheduling)")
	nice := fs.Int("nice", 1, "nice value of the generator, the DUT processes and ksoftirqd, -20..0 (default -20)")
	pollMode := fs.String("natd-poll", "", "natd's poll_mode: busy (default) or adaptive")
	queues := fs.String("queues", "", "queue counts of the queue-scaling scenario, e.g. 1,2,4 (default: the mode's; 0: none)")
	queueRuns := fs.Int("queue-runs", 0, "runs of every DUT at each queue count, taking turns; the median zero-loss run is reported (default: full 3, quick 1)")
	queueFlows := fs.Int("queue-flows", 0, "flows of the queue-scaling scenario (default: full 65536, quick 4096)")
	queueTrials := fs.Int("queue-trials", 0, "the queue-scaling search's trial budget (default: full 8, quick 3)")
	kgRuns := fs.Int("kernelgen", -1, "repetitions of the kernel-generator (trafgen) scenario (default: full 4, quick 2; 0: none)")
	kgFrames := fs.Int("kernelgen-frames", 0, "frames per phase of the kernel-generator scenario (default 1000000)")
	cells := fs.Bool("cells", true, "run the main scenarios (flows x sizes, session rate, capacity)")
	rxCPU := fs.Int("rx-cpu", -1, "CPU of the generator's receiver at the sink (default 0, with the generator's TX worker; 1 shares the DUT's CPU)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := harness.Full()
	if *quick {
		o = harness.Quick()
	}
	o.Command = "xnatbench " + strings.Join(args, " ")
	o.Repo = *repo
	o.Log = os.Stderr
	if *duts != "" {
		o.DUTs = strings.Split(*duts, ",")
	}
	if *flows != "" {
		o.Flows = nil
		for _, f := range strings.Split(*flows, ",") {
			n, err := parseCount(f)
			if err != nil {
				return err
			}
			o.Flows = append(o.Flows, n)
		}
	}
	if *sizes != "" {
		o.Sizes = strings.Split(*sizes, ",")
	}
	if *trial > 0 {
		o.Trial = *trial
	}
	if !*micro {
		o.MicroPackages = nil
	}
	o.Cells = *cells
	if *queues != "" {
		q, err := harness.ParseQueues(*queues)
		if err != nil {
			return err
		}
		o.Queues = q
	}
	if *queueRuns > 0 {
		o.QueueRuns = *queueRuns
	}
	if *queueFlows > 0 {
		o.QueueFlows = *queueFlows
	}
	if *queueTrials > 0 {
		o.QueueMaxTrials = *queueTrials
	}
	if *kgRuns >= 0 {
		o.KernelGenRuns = *kgRuns
	}
	if *kgFrames > 0 {
		o.KernelGenFrames = *kgFrames
	}
	switch *pollMode {
	case "":
	case "busy", "adaptive":
		o.NatdPollMode = *pollMode
	default:
		return fmt.Errorf("-natd-poll %q: want busy or adaptive", *pollMode)
	}
	if *rxCPU >= 0 {
		o.GenRxCPU = *rxCPU
	}
	if *rtPrio >= 0 {
		o.RTPriority = *rtPrio
	}
	if *nice <= 0 {
		o.Nice = *nice
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "xnatbench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, b := range []struct {
		path *string
		pkg  string
	}{{natd, "./cmd/natd"}, {l2fwd, "./cmd/l2fwd"}} {
		if *b.path != "" {
			continue
		}
		*b.path = filepath.Join(tmp, filepath.Base(b.pkg))
		cmd := exec.Command("go", "build", "-o", *b.path, b.pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = *repo, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", b.pkg, err)
		}
	}
	if o.Natd, err = filepath.Abs(*natd); err != nil {
		return err
	}
	if o.L2fwd, err = filepath.Abs(*l2fwd); err != nil {
		return err
	}

	// On SIGINT, SIGTERM, SIGHUP or a closed stderr (`xnatbench 2>&1 |
	// head`), the run stops after its current trial, removes its lab and
	// writes what it measured. A second signal, or a run still holding
	// its lab after interruptGrace, has the lab torn down at once by
	// package lab, which then exits by the signal.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	lab.OnInterrupt(stop, interruptGrace)
	start := time.Now()
	res, err := harness.Run(ctx, o)
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, os.WriteFile(filepath.Join(*out, "results.json"), append(js, '\n'), 0o644))
	errs = append(errs, os.WriteFile(filepath.Join(*out, "results.md"), []byte(harness.RenderMarkdown(res)), 0o644))
	errs = append(errs, harness.Charts(res, *out))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "xnatbench: %s run finished in %s; wrote %s\n", res.Mode, time.Since(start).Round(time.Second), *out)
	for _, t := range res.Targets {
		mark := "MISSED"
		if t.Met {
			mark = "met"
		}
		fmt.Fprintf(os.Stderr, "  target %-6s %s (want %s): %s\n", mark, t.Name, t.Want, t.Detail)
	}
	if ctx.Err() != nil {
		return errors.New("interrupted: the results are partial")
	}
	return nil
}

// parseCount parses "1000", "1k" or "1M".
func parseCount(s string) (int, error) {
	s = strings.TrimSpace(s)
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1000, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mult, s = 1000000, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad flow count %q", s)
	}
	return n * mult, nil
}
