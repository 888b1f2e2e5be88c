// Command natd is the xnat NAT appliance: it attaches xnat's XDP program to
// the inside and outside interfaces, binds an AF_XDP socket to every
// configured queue, and runs one pinned poll-loop worker per queue pair
// through the NAT engine, with the management plane (gRPC, metrics, event
// export) beside it.
//
//	natd --config /etc/xnat/natd.yaml
//	natd --config /etc/xnat/natd.yaml --check-config
//
// Signals: SIGHUP reloads pools, rules, timeouts and limits atomically;
// SIGTERM and SIGINT stop gracefully, leaving the interfaces as they were
// (with a bgp section, after withdrawing the BGP announcements).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("natd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/xnat/natd.yaml", "path of the YAML configuration `file`")
	check := fs.Bool("check-config", false, "validate the configuration and exit (touches nothing)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "", "override log.level: debug, info, warn or error")
	logFormat := fs.String("log-format", "", "override log.format: text or json")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: natd [flags]\n\nxnat NAT appliance daemon.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "natd: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "natd %s\n", buildVersion())
		return 0
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "natd: invalid configuration:\n%v\n", err)
		return 1
	}
	cfg.overrideLog(*logLevel, *logFormat)
	if *check {
		fmt.Fprintf(stdout, "%s: configuration is valid (%d worker(s), %d pool(s), %d port forward(s), %d static mapping(s))\n",
			cfg.File, len(cfg.CPUs), len(cfg.NAT.Pools), len(cfg.NAT.PortForwards), len(cfg.NAT.StaticMappings))
		for _, n := range cfg.NAT.Notices() {
			fmt.Fprintf(stdout, "note: %s\n", n)
		}
		if s := bgpCheckSummary(cfg.BGP); s != "" {
			fmt.Fprintln(stdout, s)
		}
		return 0
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	applyGCPolicy(cfg.GCHeapFloor, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := start(ctx, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", "reason", "signal")
			if err := d.Close(); err != nil {
				log.Error("stop", "err", err)
				return 1
			}
			log.Info("stopped; interfaces restored")
			return 0
		case <-hup:
			if err := d.Reload(); err != nil {
				log.Error("reload refused; the running configuration is unchanged", "err", err)
			}
		case err := <-d.Fatal():
			log.Error("fatal", "err", err)
			d.Close()
			return 1
		}
	}
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
