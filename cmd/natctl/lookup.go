package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// Subscriber lookup (docs/cgn.md): natctl lookup wraps the Lookup RPC
// (mgmt.LookupEngine); natctl detmap computes the deterministic table
// offline from a configuration file, with natd not running.

func lookupCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "lookup",
		Short: "Who held a public address and port, or what a subscriber holds",
		Long: `lookup outside ADDR:PORT answers which subscriber holds (or held) a public
address and port: from live state, from the port block's claim in block
mode, or from the function in deterministic mode. --at asks about a past
time: the answer then says what live state cannot know.

lookup inside ADDR shows a subscriber's paired address and its port block
or range.`,
	}
	var proto, at string
	out := &cobra.Command{
		Use:   "outside ADDR:PORT",
		Short: "Which subscriber held ADDR:PORT",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ep, err := parseEndpoint("outside", argv[0])
			if err != nil {
				return err
			}
			req := &xnatv1.LookupRequest{Outside: ep}
			if proto != "" {
				if req.Protocol, err = parseProto(proto, true); err != nil {
					return err
				}
			}
			if at != "" {
				t, err := parseAt(at, time.Now())
				if err != nil {
					return err
				}
				req.At = timestamppb.New(t)
			}
			return a.lookup(cmd, req)
		},
	}
	out.Flags().StringVar(&proto, "proto", "", "protocol: tcp, udp or icmp (default: any)")
	out.Flags().StringVar(&at, "at", "", "time asked about: RFC 3339 (2026-12-04T14:02:00Z) or local \"2006-01-02 15:04[:05]\" or \"15:04\" today")
	in := &cobra.Command{
		Use:   "inside ADDR",
		Short: "What subscriber ADDR holds: its address and port block(s) or range",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			a4, err := parseAddr("inside", argv[0])
			if err != nil {
				return err
			}
			return a.lookup(cmd, &xnatv1.LookupRequest{Inside: a4})
		},
	}
	c.AddCommand(out, in)
	return c
}

// parseAt reads --at.
func parseAt(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			y, m, d := now.Date()
			return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, time.Local), nil
		}
	}
	return time.Time{}, usagef("--at %q: want RFC 3339, \"2006-01-02 15:04\" or \"15:04\"", s)
}

type holderJSON struct {
	Subscriber string `json:"subscriber"`
	Inside     string `json:"inside,omitempty"`
	Outside    string `json:"outside"`
	Ports      string `json:"ports"`
	Protocol   string `json:"protocol,omitempty"`
	Source     string `json:"source"`
	Since      string `json:"since,omitempty"`
	Held       bool   `json:"held,omitempty"`
}

type lookupJSON struct {
	Mode     string       `json:"mode"`
	Holders  []holderJSON `json:"holders"`
	Note     string       `json:"note,omitempty"`
	Paired   string       `json:"paired,omitempty"`
	Sessions uint32       `json:"sessions,omitempty"`
	Ports    uint32       `json:"ports,omitempty"`
}

func lookupToJSON(r *xnatv1.LookupResponse) lookupJSON {
	j := lookupJSON{Mode: r.Mode, Note: r.Note, Paired: r.Paired, Sessions: r.Sessions, Ports: r.Ports, Holders: []holderJSON{}}
	for _, h := range r.Holders {
		hj := holderJSON{Subscriber: h.Subscriber, Outside: h.Outside, Ports: fmt.Sprintf("%d-%d", h.PortMin, h.PortMax), Source: h.Source, Held: h.Held}
		if h.PortMin == h.PortMax {
			hj.Ports = fmt.Sprint(h.PortMin)
		}
		if h.Inside != nil {
			hj.Inside = fmt.Sprintf("%s:%d", h.Inside.Addr, h.Inside.Port)
		}
		if h.Protocol != xnatv1.Protocol_PROTOCOL_UNSPECIFIED {
			hj.Protocol = strings.ToLower(strings.TrimPrefix(h.Protocol.String(), "PROTOCOL_"))
		}
		if h.Since != nil {
			hj.Since = h.Since.AsTime().UTC().Format(time.RFC3339)
		}
		j.Holders = append(j.Holders, hj)
	}
	return j
}

func (a *app) lookup(cmd *cobra.Command, req *xnatv1.LookupRequest) error {
	r, err := unary(cmd.Context(), a, xnatv1.NatServiceClient.Lookup, req)
	if err != nil {
		return err
	}
	j := lookupToJSON(r)
	return a.emit(func(w io.Writer) error {
		if j.Paired != "" {
			fmt.Fprintf(w, "paired with %s, %d sessions, %d ports (%s allocation)\n", j.Paired, j.Sessions, j.Ports, j.Mode)
		}
		err := tables(w, func(tw io.Writer) {
			fmt.Fprintln(tw, "SUBSCRIBER\tINSIDE\tOUTSIDE\tPORTS\tPROTO\tSOURCE\tSINCE")
			for _, h := range j.Holders {
				since := h.Since
				if h.Held {
					since += " (held)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Subscriber, dash(h.Inside), h.Outside, h.Ports, dash(h.Protocol), h.Source, dash(since))
			}
		})
		if err != nil {
			return err
		}
		if j.Note != "" {
			fmt.Fprintln(w, "note:", j.Note)
		}
		return nil
	}, j)
}

// detFile is what detmap reads of natd.yaml: the nat section's inside
// prefixes, pools and deterministic parameters. Other fields are ignored.
type detFile struct {
	NAT struct {
		InsidePrefixes []string `yaml:"inside_prefixes"`
		Pools          []struct {
			Name      string   `yaml:"name"`
			Addresses []string `yaml:"addresses"`
		} `yaml:"pools"`
		PortAllocation     nat.PortAllocation `yaml:"port_allocation"`
		PortsPerSubscriber int                `yaml:"ports_per_subscriber"`
	} `yaml:"nat"`
}

// loadDetMap builds the deterministic function of a natd configuration
// file.
func loadDetMap(path string) (*nat.DetMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &localError{err}
	}
	var f detFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, &localError{fmt.Errorf("%s: %v", path, err)}
	}
	if f.NAT.PortAllocation != nat.AllocDeterministic {
		return nil, &localError{fmt.Errorf("%s: nat.port_allocation is %s, not deterministic", path, f.NAT.PortAllocation)}
	}
	c := nat.DefaultConfig()
	c.CGN.PortAllocation, c.CGN.PortsPerSubscriber = nat.AllocDeterministic, f.NAT.PortsPerSubscriber
	for _, s := range f.NAT.InsidePrefixes {
		p, err := mgmt.ParsePrefix(s)
		if err != nil {
			return nil, &localError{fmt.Errorf("%s: inside_prefixes: %v", path, err)}
		}
		c.InsidePrefixes = append(c.InsidePrefixes, p)
	}
	for _, pl := range f.NAT.Pools {
		pool := nat.Pool{Name: pl.Name}
		for _, s := range pl.Addresses {
			p, err := mgmt.ParsePrefix(s)
			if err != nil {
				return nil, &localError{fmt.Errorf("%s: pool %s: %v", path, pl.Name, err)}
			}
			pool.Addresses = append(pool.Addresses, p)
		}
		c.Pools = append(c.Pools, pool)
	}
	m, err := nat.NewDetMap(&c)
	if err != nil {
		return nil, &localError{fmt.Errorf("%s: nat.%v", path, err)}
	}
	return m, nil
}

func detmapCmd(a *app) *cobra.Command {
	var file, format, sub, outside string
	c := &cobra.Command{
		Use:   "detmap --config FILE [-o table|csv|json] [--inside ADDR | --outside ADDR:PORT]",
		Short: "The deterministic NAT table of a configuration file, computed offline",
		Long: `detmap computes the deterministic NAT function (RFC 7422, docs/cgn.md) of a
natd configuration file without natd: every subscriber with its public
address and port range, or with --inside or --outside the one line that
answers a query. Keep each configuration that was in force: the table of the
configuration of a given time answers for that time.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("detmap needs --config FILE")
			}
			switch format {
			case "table", "csv", "json":
			default:
				return usagef("-o %q: want table, csv or json", format)
			}
			m, err := loadDetMap(file)
			if err != nil {
				return err
			}
			entries := m.All()
			switch {
			case sub != "":
				s, err := netip.ParseAddr(sub)
				if err != nil {
					return usagef("--inside %q is not an address", sub)
				}
				ext, r, ok := m.Forward(s)
				if !ok {
					return &localError{fmt.Errorf("%s is in no inside prefix", sub)}
				}
				entries = one(nat.DetEntry{Subscriber: s, Outside: ext, Ports: r})
			case outside != "":
				ap, err := netip.ParseAddrPort(outside)
				if err != nil {
					return usagef("--outside %q is not address:port", outside)
				}
				s, r, ok := m.Inverse(ap.Addr(), ap.Port())
				if !ok {
					return &localError{fmt.Errorf("%s belongs to no subscriber", outside)}
				}
				entries = one(nat.DetEntry{Subscriber: s, Outside: ap.Addr(), Ports: r})
			}
			return writeDetMap(a.out, format, entries)
		},
	}
	c.Flags().StringVar(&file, "config", "", "natd configuration file")
	c.Flags().StringVarP(&format, "output", "o", "table", "output format: table, csv or json")
	c.Flags().StringVar(&sub, "inside", "", "only this subscriber")
	c.Flags().StringVar(&outside, "outside", "", "only the subscriber of this public address:port")
	return c
}

func one(e nat.DetEntry) func(func(nat.DetEntry) bool) {
	return func(yield func(nat.DetEntry) bool) { yield(e) }
}

// writeDetMap streams the table: a /8 is 16 million lines.
func writeDetMap(out io.Writer, format string, entries func(func(nat.DetEntry) bool)) error {
	w := bufio.NewWriterSize(out, 64<<10)
	switch format {
	case "csv":
		fmt.Fprintln(w, "subscriber,outside,port_min,port_max")
	case "json":
		w.WriteString("[")
	default:
		fmt.Fprintf(w, "%-15s  %-15s  %s\n", "SUBSCRIBER", "OUTSIDE", "PORTS")
	}
	first := true
	for e := range entries {
		switch format {
		case "csv":
			fmt.Fprintf(w, "%s,%s,%d,%d\n", e.Subscriber, e.Outside, e.Ports.Min, e.Ports.Max)
		case "json":
			if !first {
				w.WriteString(",")
			}
			b, _ := json.Marshal(struct {
				Subscriber string `json:"subscriber"`
				Outside    string `json:"outside"`
				PortMin    uint16 `json:"port_min"`
				PortMax    uint16 `json:"port_max"`
			}{e.Subscriber.String(), e.Outside.String(), e.Ports.Min, e.Ports.Max})
			w.Write(b)
		default:
			fmt.Fprintf(w, "%-15s  %-15s  %s\n", e.Subscriber, e.Outside, e.Ports)
		}
		first = false
	}
	if format == "json" {
		w.WriteString("]\n")
	}
	if err := w.Flush(); err != nil {
		return &localError{err}
	}
	return nil
}
