package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/scaleoutlab"
)

// scaleoutMain is `xnatlab scaleout`: the scale-out scenario of
// docs/scaleout.md, told in plain words.
func scaleoutMain(args []string) int {
	fs := flag.NewFlagSet("scaleout", flag.ExitOnError)
	natd := fs.String("natd", "bin/natd", "natd binary")
	natctl := fs.String("natctl", "bin/natctl", "natctl binary")
	verbose := fs.Bool("v", false, "show natd's and BIRD's logs")
	fs.Parse(args)
	if err := scaleout(*natd, *natctl, *verbose); err != nil {
		lab.WaitIfInterrupted()
		fmt.Printf("\nFAILED: %v\n", err)
		return 1
	}
	return 0
}

func scaleout(natd, natctl string, verbose bool) error {
	if err := canRun(natd, natctl); err != nil {
		return err
	}
	fmt.Println("xnat scale-out: three NAT appliances sharing 300 subscribers by BGP and ECMP")
	fmt.Println()
	fmt.Println("  h0 10.1.0.0/22 ─┐           ┌─ [a0] pool 198.18.10.0/28 ─┐")
	fmt.Println("                  ├─ [rin] ───┼─ [a1] pool 198.18.11.0/28 ─┼─ [rout] ── [server] 198.19.0.2-17")
	fmt.Println("  h1 10.2.0.0/22 ─┘  BIRD     └─ [a2] pool 198.18.12.0/28 ─┘  BIRD")
	fmt.Println()
	fmt.Println("Each natd announces its pool to the outside router and a default route to")
	fmt.Println("the inside router. The inside router spreads subscribers over the appliances")
	fmt.Println("with ECMP hashed on the source address alone, so each subscriber always")
	fmt.Println("leaves through one appliance.")
	fmt.Println()
	fmt.Println("Building the lab and starting BIRD in both routers ...")
	var log io.Writer = io.Discard
	if verbose {
		log = os.Stderr
	}
	env, err := scaleoutlab.New(scaleoutlab.Options{Natd: natd, Log: log})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer func() {
		fmt.Println("\nTearing the lab down ...")
		env.Close()
	}()
	r, err := env.Run(context.Background(), scaleoutlab.RunOptions{Say: os.Stdout})
	if err != nil {
		return err
	}
	fmt.Println("\nWhat natctl shows on a0 (natctl bgp):")
	out, _ := exec.Command(natctl, "--socket", filepath.Join(env.Dir, "a0.sock"), "bgp").CombinedOutput()
	fmt.Printf("%s", out)
	fmt.Println("\nChecks:")
	failed := 0
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "FAILED"
			failed++
		}
		fmt.Printf("  %s: %s: %s\n", mark, c.Name, c.Detail)
	}
	if failed > 0 {
		return fmt.Errorf("%d checks failed", failed)
	}
	return nil
}
