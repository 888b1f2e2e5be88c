package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt/events"
	"github.com/xnat/xnat/mgmt/export"
	"github.com/xnat/xnat/mgmt/export/ipfix"
	"github.com/xnat/xnat/mgmt/export/syslog"
)

// Carrier-grade NAT settings of natd.yaml (docs/cgn.md): the port
// allocation fields of the nat section, and the logging section's IPFIX
// and syslog exporters.

// cgnFileConfig is the port-allocation part of the nat section.
type cgnFileConfig struct {
	PortAllocation     string `yaml:"port_allocation"`
	BlockSize          int    `yaml:"block_size"`
	MaxBlocks          int    `yaml:"max_blocks"`
	PortsPerSubscriber int    `yaml:"ports_per_subscriber"`
	LogSessions        bool   `yaml:"log_sessions"`
}

// apply copies the fields into c (defaults stay where a field is absent);
// nat.Config.Validate judges them.
func (f *cgnFileConfig) apply(c *nat.Config, ce *configErrors) {
	ce.text("nat.port_allocation", f.PortAllocation, &c.CGN.PortAllocation)
	if f.BlockSize != 0 {
		c.CGN.BlockSize = f.BlockSize
	}
	if f.MaxBlocks != 0 {
		c.CGN.MaxBlocks = f.MaxBlocks
	}
	c.CGN.PortsPerSubscriber = f.PortsPerSubscriber
	c.CGN.LogSessions = f.LogSessions
}

// loggingFile is the logging section as written.
type loggingFile struct {
	IPFIX *struct {
		Collector         string `yaml:"collector"`
		Transport         string `yaml:"transport"` // udp | tcp
		Source            string `yaml:"source"`
		ObservationDomain uint32 `yaml:"observation_domain"`
		TemplateRefresh   string `yaml:"template_refresh"`
		Queue             int    `yaml:"queue"`
	} `yaml:"ipfix"`
	Syslog *struct {
		Server    string `yaml:"server"`
		Transport string `yaml:"transport"` // udp | tcp
		Source    string `yaml:"source"`
		Hostname  string `yaml:"hostname"`
		Facility  int    `yaml:"facility"`
		Queue     int    `yaml:"queue"`
	} `yaml:"syslog"`
}

// loggingConfig is the validated logging section.
type loggingConfig struct {
	IPFIX       *ipfix.Options
	IPFIXQueue  int
	Syslog      *syslog.Options
	SyslogQueue int
}

// String renders the section for the reload's restart-only report.
func (l loggingConfig) String() string {
	var parts []string
	if l.IPFIX != nil {
		o := *l.IPFIX
		parts = append(parts, fmt.Sprintf("ipfix %s/%s domain %d refresh %v source %q", o.Collector, o.Transport, o.ObservationDomain, o.TemplateRefresh, o.Source))
	}
	if l.Syslog != nil {
		parts = append(parts, fmt.Sprintf("syslog %s/%s source %q", l.Syslog.Server, l.Syslog.Transport, l.Syslog.Source))
	}
	return strings.Join(parts, "; ")
}

const defaultExportQueue = 65536

func loggingFromFile(f *loggingFile, ce *configErrors) loggingConfig {
	var l loggingConfig
	if x := f.IPFIX; x != nil {
		o := ipfix.Options{Collector: x.Collector, Source: x.Source, ObservationDomain: x.ObservationDomain}
		ce.text("logging.ipfix.transport", x.Transport, &o.Transport)
		if x.TemplateRefresh != "" {
			d, err := time.ParseDuration(x.TemplateRefresh)
			if err != nil {
				ce.add("logging.ipfix.template_refresh", "%q is not a duration like 60s", x.TemplateRefresh)
			}
			o.TemplateRefresh = d
		}
		if _, err := ipfix.New(o); err != nil {
			ce.add("logging.ipfix", "%v", err)
		}
		l.IPFIX, l.IPFIXQueue = &o, queueSize(x.Queue, "logging.ipfix.queue", ce)
	}
	if x := f.Syslog; x != nil {
		o := syslog.Options{Server: x.Server, Source: x.Source, Hostname: x.Hostname, Facility: x.Facility}
		ce.text("logging.syslog.transport", x.Transport, &o.Transport)
		if _, err := syslog.New(o); err != nil {
			ce.add("logging.syslog", "%v", err)
		}
		l.Syslog, l.SyslogQueue = &o, queueSize(x.Queue, "logging.syslog.queue", ce)
	}
	return l
}

func queueSize(n int, field string, ce *configErrors) int {
	if n == 0 {
		return defaultExportQueue
	}
	if n < 1 || n > 1<<24 {
		ce.add(field, "%d is out of range 1..%d", n, 1<<24)
	}
	return n
}

// startExporters starts the configured exporters; each runs until ctx
// ends (wg counts them) and is fed by the event exporter.
func startExporters(ctx context.Context, l loggingConfig, log *slog.Logger, wg *sync.WaitGroup) ([]events.Sink, error) {
	var sinks []events.Sink
	start := func(name string, enc export.Encoder, capacity int, where string) {
		q := export.NewQueue(name, enc, capacity, log)
		sinks = append(sinks, q)
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.Run(ctx)
		}()
		log.Info("exporting NAT events", "exporter", name, "to", where)
	}
	if l.IPFIX != nil {
		enc, err := ipfix.New(*l.IPFIX)
		if err != nil {
			return nil, fmt.Errorf("logging.ipfix: %w", err)
		}
		start("ipfix", enc, l.IPFIXQueue, l.IPFIX.Collector+"/"+l.IPFIX.Transport.String())
	}
	if l.Syslog != nil {
		enc, err := syslog.New(*l.Syslog)
		if err != nil {
			return nil, fmt.Errorf("logging.syslog: %w", err)
		}
		start("syslog", enc, l.SyslogQueue, l.Syslog.Server+"/"+l.Syslog.Transport.String())
	}
	return sinks, nil
}

// warnDetMoves warns when a configuration change moves deterministic
// subscribers: the function is the log, so changing it is an explicit
// act, and the operator must keep the old configuration to answer for
// the time before (docs/cgn.md).
func warnDetMoves(log *slog.Logger, old, cur *nat.Config) {
	if cur.CGN.PortAllocation != nat.AllocDeterministic || old.CGN.PortAllocation != nat.AllocDeterministic {
		return
	}
	om, err1 := nat.NewDetMap(old)
	nm, err2 := nat.NewDetMap(cur)
	if err1 != nil || err2 != nil {
		return
	}
	moved, sample := nat.DetMoves(om, nm, 10)
	if moved == 0 {
		return
	}
	var s []string
	for _, e := range sample {
		s = append(s, fmt.Sprintf("%s->%s:%s", e.Subscriber, e.Outside, e.Ports))
	}
	log.Warn("deterministic NAT: the configuration change moved subscribers to other addresses or port ranges; keep the old configuration to trace the time before this change",
		"moved", moved, "subscribers", nm.Subscribers(), "first", strings.Join(s, " "))
}
