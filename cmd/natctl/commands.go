package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "natctl",
		Short: "Inspect and configure a running natd",
		Long: `natctl talks to natd's management API: status, statistics, sessions,
pools, port forwards and static mappings, and the event stream.

It uses natd's admin unix socket by default (--socket, $XNAT_SOCKET); the
read-only socket (/run/xnat/natd-ro.sock) serves every command that changes
nothing. --addr with --cert, --key and --ca reaches a remote natd over
mutual TLS.

Exit codes: 0 success, 1 local failure, 2 usage error, 3 natd unreachable,
4 natd refused or failed the request.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	sock := DefaultSocket
	if s := a.getenv("XNAT_SOCKET"); s != "" {
		sock = s
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.opts.Socket, "socket", sock, "natd's unix socket ($XNAT_SOCKET)")
	pf.StringVar(&a.opts.Addr, "addr", "", "natd's TCP address (host:port), for mutual TLS")
	pf.StringVar(&a.opts.CertFile, "cert", "", "client certificate (PEM) for --addr")
	pf.StringVar(&a.opts.KeyFile, "key", "", "client key (PEM) for --addr")
	pf.StringVar(&a.opts.CAFile, "ca", "", "CA that signed natd's certificate (PEM), for --addr")
	pf.StringVar(&a.opts.ServerName, "server-name", "", "name to verify in natd's certificate (default: the host of --addr)")
	pf.BoolVar(&a.opts.Insecure, "insecure", false, "plain TCP without TLS to --addr (lab natd started with --insecure)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, wide or json")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "timeout of each request")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		switch a.output {
		case "table", "wide", "json":
			return nil
		}
		return usagef("-o %q: want table, wide or json", a.output)
	}
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "wide", "json"}, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(
		statusCmd(a), statsCmd(a), sessionsCmd(a), rulesCmd(a), poolsCmd(a), eventsCmd(a), reloadCmd(a),
		bgpCmd(a), drainCmd(a, true), drainCmd(a, false), // scaleout.go
		lookupCmd(a), detmapCmd(a), // lookup.go
	)
	root.AddCommand(captureCmd(a), traceCmd(a), explainCmd(a), dropsCmd(a)) // vis.go
	return root
}

// args wraps cobra's argument checks as usage errors.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return &usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}

func statusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show natd's interfaces, workers, table and pool use",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.call(cmd.Context())
			defer cancel()
			r, err := cl.GetStatus(ctx, &xnatv1.GetStatusRequest{})
			if err != nil {
				return err
			}
			bgp, err := statusBGP(ctx, cl) // scaleout.go
			if err != nil {
				return err
			}
			return a.emit(func(w io.Writer) error {
				if err := printStatus(w, r.Status); err != nil || bgp == nil {
					return err
				}
				fmt.Fprintln(w)
				return printBGP(w, bgp, a.now())
			}, statusWithBGP{statusToJSON(r.Status), bgpToJSON(bgp)})
		},
	}
}

func statsCmd(a *app) *cobra.Command {
	var watch bool
	var interval time.Duration
	var count int
	c := &cobra.Command{
		Use:   "stats",
		Short: "Show packet, drop and session counters (--watch for a live view with rates)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !watch {
				r, err := unary(cmd.Context(), a, xnatv1.NatServiceClient.GetStats, &xnatv1.GetStatsRequest{})
				if err != nil {
					return err
				}
				return a.emit(func(w io.Writer) error { return printStats(w, r.Stats, nil) }, statsToJSON(r.Stats, nil))
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			return a.watchStats(cmd.Context(), cl, interval, count)
		},
	}
	c.Flags().BoolVarP(&watch, "watch", "w", false, "refresh continuously, with rates")
	c.Flags().DurationVar(&interval, "interval", time.Second, "refresh interval with --watch (at least 100ms)")
	c.Flags().IntVar(&count, "count", 0, "with --watch, stop after this many updates (0: until interrupted)")
	return c
}

// filterFlags are the session filter flags shared by listing and flushing.
type filterFlags struct {
	inside, outside, remote, proto string
	port                           uint16
}

func (f *filterFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.inside, "inside", "", "inside address or address:port")
	c.Flags().StringVar(&f.outside, "outside", "", "outside (translated) address or address:port")
	c.Flags().StringVar(&f.remote, "remote", "", "remote address")
	c.Flags().StringVar(&f.proto, "proto", "", "protocol: tcp, udp or icmp")
	c.Flags().Uint16Var(&f.port, "port", 0, "inside port")
	_ = c.RegisterFlagCompletionFunc("proto", cobra.FixedCompletions(protoWords, cobra.ShellCompDirectiveNoFileComp))
}

func (f *filterFlags) empty() bool {
	return f.inside == "" && f.outside == "" && f.remote == "" && f.proto == "" && f.port == 0
}

// addrPort parses "a.b.c.d" or "a.b.c.d:port".
func addrPort(flag, s string) (string, uint32, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Is4() {
		return ap.Addr().String(), uint32(ap.Port()), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return a.String(), 0, nil
	}
	return "", 0, usagef("%s %q: want an IPv4 address or address:port", flag, s)
}

func (f *filterFlags) filter() (*xnatv1.SessionFilter, error) {
	out := &xnatv1.SessionFilter{}
	var err error
	if f.inside != "" {
		if out.InsideAddr, out.InsidePort, err = addrPort("--inside", f.inside); err != nil {
			return nil, err
		}
	}
	if f.port != 0 {
		if out.InsidePort != 0 && out.InsidePort != uint32(f.port) {
			return nil, usagef("--port %d contradicts --inside %s", f.port, f.inside)
		}
		out.InsidePort = uint32(f.port)
	}
	if f.outside != "" {
		if out.OutsideAddr, out.OutsidePort, err = addrPort("--outside", f.outside); err != nil {
			return nil, err
		}
	}
	if f.remote != "" {
		a, err := netip.ParseAddr(f.remote)
		if err != nil || !a.Is4() {
			return nil, usagef("--remote %q: want an IPv4 address", f.remote)
		}
		out.RemoteAddr = a.String()
	}
	if f.proto != "" {
		if out.Protocol, err = parseProto(f.proto, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// protoWords are the protocols a --proto flag completes to.
var protoWords = []string{nat.TCP.String(), nat.UDP.String(), nat.ICMP.String()}

// parseProto reads a protocol by nat.Proto's names; icmp says whether
// ICMP is allowed.
func parseProto(s string, icmp bool) (xnatv1.Protocol, error) {
	var p nat.Proto
	if p.UnmarshalText([]byte(strings.ToLower(s))) == nil && (icmp || p != nat.ICMP) {
		return mgmt.APIProtocol(p), nil
	}
	if icmp {
		return 0, usagef("protocol %q: want tcp, udp or icmp", s)
	}
	return 0, usagef("protocol %q: want tcp or udp", s)
}

func sessionsCmd(a *app) *cobra.Command {
	var f filterFlags
	c := &cobra.Command{
		Use:   "sessions",
		Short: "List sessions (streamed), or delete and flush them",
		Long: `List sessions matching the filters, streamed from natd page by page,
so that a table of millions of sessions starts printing at once.

-o json prints one JSON object per line (docs/api.md).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := f.filter()
			if err != nil {
				return err
			}
			st, err := stream(cmd.Context(), a, xnatv1.NatServiceClient.StreamSessions, &xnatv1.StreamSessionsRequest{Filter: flt})
			if err != nil {
				return err
			}
			p := newSessionPrinter(a.out, a.output, a.now())
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return p.done()
				}
				if err != nil {
					return err
				}
				if err := p.print(m.Sessions); err != nil {
					return &localError{err}
				}
			}
		},
	}
	f.add(c)
	c.AddCommand(&cobra.Command{
		Use:   "delete ID GENERATION",
		Short: "Delete one session, as listed (ID and GEN columns)",
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			id, err := strconv.ParseUint(argv[0], 10, 32)
			if err != nil {
				return usagef("session id %q: %v", argv[0], err)
			}
			gen, err := strconv.ParseUint(argv[1], 10, 64)
			if err != nil {
				return usagef("generation %q: %v", argv[1], err)
			}
			if _, err := unary(cmd.Context(), a, xnatv1.NatServiceClient.DeleteSession, &xnatv1.DeleteSessionRequest{Id: uint32(id), Generation: gen}); err != nil {
				return err
			}
			return a.emit(func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted session %d/%d\n", id, gen)
				return err
			}, map[string]uint64{"deleted": 1})
		},
	})
	var ff filterFlags
	var all bool
	flush := &cobra.Command{
		Use:   "flush [filters]",
		Short: "Delete every session matching the filters (--all for every session)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ff.empty() && !all {
				return usagef("sessions flush without a filter deletes every session: add --all if that is what you want")
			}
			if !ff.empty() && all {
				return usagef("--all and filters are exclusive")
			}
			flt, err := ff.filter()
			if err != nil {
				return err
			}
			r, err := unary(cmd.Context(), a, xnatv1.NatServiceClient.FlushSessions, &xnatv1.FlushSessionsRequest{Filter: flt})
			if err != nil {
				return err
			}
			return a.emit(func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted %d sessions\n", r.Deleted)
				return err
			}, map[string]uint64{"deleted": r.Deleted})
		},
	}
	ff.add(flush)
	flush.Flags().BoolVar(&all, "all", false, "delete every session")
	c.AddCommand(flush)
	return c
}

func rulesCmd(a *app) *cobra.Command {
	c := listGroup("rules", "List, add and delete port forwards and static mappings", "List port forwards and static mappings", a.listRules)
	add := &cobra.Command{Use: "add", Short: "Add a port forward or a static mapping", Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return usagef("rules add: say forward or static") }}
	add.AddCommand(&cobra.Command{
		Use:     "forward PROTO OUTSIDE:PORT INSIDE:PORT",
		Short:   "Forward an outside address:port to an inside address:port",
		Example: "  natctl rules add forward tcp 198.18.0.100:8080 10.0.0.50:80",
		Args:    args(cobra.ExactArgs(3)),
		ValidArgsFunction: func(_ *cobra.Command, argv []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(argv) == 0 {
				return []string{"tcp", "udp"}, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, argv []string) error {
			fwd, err := parseForward(argv[0], argv[1], argv[2])
			if err != nil {
				return err
			}
			return change(cmd.Context(), a, fmt.Sprintf("added forward %s %s -> %s", argv[0], argv[1], argv[2]), xnatv1.NatServiceClient.AddPortForward, &xnatv1.AddPortForwardRequest{PortForward: fwd})
		},
	})
	add.AddCommand(&cobra.Command{
		Use:     "static INSIDE OUTSIDE",
		Short:   "Map an inside address to an outside address 1:1",
		Example: "  natctl rules add static 10.0.0.60 198.18.0.160",
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			in, err := parseAddr("inside", argv[0])
			if err != nil {
				return err
			}
			out, err := parseAddr("outside", argv[1])
			if err != nil {
				return err
			}
			return change(cmd.Context(), a, fmt.Sprintf("added static %s <-> %s", in, out), xnatv1.NatServiceClient.AddStaticMapping, &xnatv1.AddStaticMappingRequest{StaticMapping: &xnatv1.StaticMapping{Inside: in, Outside: out}})
		},
	})
	del := &cobra.Command{Use: "del", Aliases: []string{"delete"}, Short: "Delete a port forward or a static mapping", Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return usagef("rules del: say forward or static") }}
	del.AddCommand(&cobra.Command{
		Use:     "forward PROTO OUTSIDE:PORT",
		Short:   "Delete the port forward of an outside address:port",
		Example: "  natctl rules del forward tcp 198.18.0.100:8080",
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			proto, err := parseProto(argv[0], false)
			if err != nil {
				return err
			}
			out, err := parseEndpoint("outside", argv[1])
			if err != nil {
				return err
			}
			return change(cmd.Context(), a, fmt.Sprintf("deleted forward %s %s", argv[0], argv[1]), xnatv1.NatServiceClient.DeletePortForward, &xnatv1.DeletePortForwardRequest{Protocol: proto, Outside: out})
		},
	})
	del.AddCommand(&cobra.Command{
		Use:     "static INSIDE",
		Short:   "Delete the static mapping of an inside address",
		Example: "  natctl rules del static 10.0.0.60",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			in, err := parseAddr("inside", argv[0])
			if err != nil {
				return err
			}
			return change(cmd.Context(), a, "deleted static "+in, xnatv1.NatServiceClient.DeleteStaticMapping, &xnatv1.DeleteStaticMappingRequest{Inside: in})
		},
	})
	c.AddCommand(add, del)
	return c
}

func parseAddr(what, s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return "", usagef("%s address %q: want an IPv4 address", what, s)
	}
	return a.String(), nil
}

func parseEndpoint(what, s string) (*xnatv1.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
		return nil, usagef("%s %q: want IPv4 address:port with a non-zero port", what, s)
	}
	return &xnatv1.Endpoint{Addr: ap.Addr().String(), Port: uint32(ap.Port())}, nil
}

func parseForward(proto, outside, inside string) (*xnatv1.PortForward, error) {
	p, err := parseProto(proto, false)
	if err != nil {
		return nil, err
	}
	out, err := parseEndpoint("outside", outside)
	if err != nil {
		return nil, err
	}
	in, err := parseEndpoint("inside", inside)
	if err != nil {
		return nil, err
	}
	return &xnatv1.PortForward{Protocol: p, Outside: out, Inside: in}, nil
}

func (a *app) listRules(ctx context.Context) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	cctx, cancel := a.call(ctx)
	defer cancel()
	f, err := cl.ListPortForwards(cctx, &xnatv1.ListPortForwardsRequest{})
	if err != nil {
		return err
	}
	s, err := cl.ListStaticMappings(cctx, &xnatv1.ListStaticMappingsRequest{})
	if err != nil {
		return err
	}
	rules := rulesToJSON(f.PortForwards, s.StaticMappings)
	return a.emit(func(w io.Writer) error { return printRules(w, rules) }, rules)
}

// change makes one change with rpc (see unary) and reports done.
func change[Q, R any](ctx context.Context, a *app, done string, rpc func(xnatv1.NatServiceClient, context.Context, Q, ...grpc.CallOption) (R, error), req Q) error {
	if _, err := unary(ctx, a, rpc, req); err != nil {
		return err
	}
	return a.emit(func(w io.Writer) error {
		_, err := fmt.Fprintln(w, done)
		return err
	}, map[string]bool{"ok": true})
}

func poolsCmd(a *app) *cobra.Command {
	c := listGroup("pools", "List, add and delete address pools", "List pools", a.listPools)
	c.AddCommand(&cobra.Command{
		Use:     "add NAME PREFIX...",
		Short:   "Add a pool of addresses (prefixes or single addresses)",
		Example: "  natctl pools add edge 198.18.0.128/28 198.18.0.200",
		Args:    args(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			for _, p := range argv[1:] {
				if _, err := netip.ParseAddr(p); err == nil {
					continue
				}
				if pf, err := netip.ParsePrefix(p); err != nil || !pf.Addr().Is4() {
					return usagef("%q: want an IPv4 prefix or address", p)
				}
			}
			return change(cmd.Context(), a, fmt.Sprintf("added pool %s %s", argv[0], strings.Join(argv[1:], " ")), xnatv1.NatServiceClient.AddPool, &xnatv1.AddPoolRequest{Pool: &xnatv1.Pool{Name: argv[0], Prefixes: argv[1:]}})
		},
	})
	c.AddCommand(&cobra.Command{
		Use:               "del NAME",
		Aliases:           []string{"delete"},
		Short:             "Delete a pool (its addresses keep serving existing mappings until they expire)",
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: a.completePools,
		RunE: func(cmd *cobra.Command, argv []string) error {
			return change(cmd.Context(), a, "deleted pool "+argv[0], xnatv1.NatServiceClient.DeletePool, &xnatv1.DeletePoolRequest{Name: argv[0]})
		},
	})
	return c
}

// completePools offers the pool names natd has.
func (a *app) completePools(cmd *cobra.Command, argv []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(argv) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cl, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
	defer cancel()
	r, err := cl.ListPools(ctx, &xnatv1.ListPoolsRequest{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, p := range r.Pools {
		names = append(names, p.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) listPools(ctx context.Context) error {
	r, err := unary(ctx, a, xnatv1.NatServiceClient.ListPools, &xnatv1.ListPoolsRequest{})
	if err != nil {
		return err
	}
	pools := poolsToJSON(r.Pools, r.Draining)
	return a.emit(func(w io.Writer) error { return printPools(w, pools) }, pools)
}

func eventsCmd(a *app) *cobra.Command {
	var types []string
	var count int
	c := &cobra.Command{
		Use:   "events",
		Short: "Stream session, exhaustion and quota events",
		Long: `Stream natd's events as they happen: session_created, session_deleted,
address_bound, address_released, ports_exhausted, addresses_exhausted,
quota_exceeded, table_full. -o json prints the event log's format, one
object per line (docs/events.md).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &xnatv1.WatchEventsRequest{}
			for _, t := range types {
				v, ok := xnatv1.EventType_value["EVENT_TYPE_"+strings.ToUpper(t)]
				if !ok || v == 0 {
					return usagef("--type %q: want one of %s", t, strings.Join(eventTypeNames(), ", "))
				}
				req.Types = append(req.Types, xnatv1.EventType(v))
			}
			st, err := stream(cmd.Context(), a, xnatv1.NatServiceClient.WatchEvents, req)
			if err != nil {
				return err
			}
			for n := 0; count == 0 || n < count; n++ {
				m, err := st.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if err := printEvent(a.out, a.output, m.Event); err != nil {
					return &localError{err}
				}
			}
			return nil
		},
	}
	c.Flags().StringSliceVar(&types, "type", nil, "only these event types (repeatable)")
	c.Flags().IntVar(&count, "count", 0, "stop after this many events (0: until interrupted)")
	_ = c.RegisterFlagCompletionFunc("type", cobra.FixedCompletions(eventTypeNames(), cobra.ShellCompDirectiveNoFileComp))
	return c
}

func eventTypeNames() []string {
	var out []string
	for i := int32(1); ; i++ {
		n, ok := xnatv1.EventType_name[i]
		if !ok {
			return out
		}
		out = append(out, strings.ToLower(strings.TrimPrefix(n, "EVENT_TYPE_")))
	}
}

func reloadCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make natd re-read its configuration file (as SIGHUP does)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return change(cmd.Context(), a, "configuration reloaded", xnatv1.NatServiceClient.ReloadConfig, &xnatv1.ReloadConfigRequest{})
		},
	}
}

// watchStats prints a stats block per update, with rates from the
// previous one: in place on a terminal, successive blocks otherwise, JSON
// lines with -o json.
func (a *app) watchStats(ctx context.Context, cl xnatv1.NatServiceClient, interval time.Duration, count int) error {
	st, err := cl.WatchStats(ctx, &xnatv1.WatchStatsRequest{Interval: durationpb.New(interval)})
	if err != nil {
		return err
	}
	tty := a.output != "json" && a.isTTY()
	var prev *xnatv1.Stats
	for n := 0; count == 0 || n < count; n++ {
		m, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: a normal way to end a watch
			}
			return err
		}
		r := computeRates(prev, m.Stats)
		prev = m.Stats
		if a.output == "json" {
			if err := writeJSONLine(a.out, statsToJSON(m.Stats, r)); err != nil {
				return &localError{err}
			}
			continue
		}
		var b strings.Builder
		if tty {
			b.WriteString("\x1b[H\x1b[2J") // cursor home, clear screen
		} else if n > 0 {
			b.WriteString("\n")
		}
		if err := printStats(&b, m.Stats, r); err != nil {
			return &localError{err}
		}
		if _, err := io.WriteString(a.out, b.String()); err != nil {
			return &localError{err}
		}
	}
	return nil
}
