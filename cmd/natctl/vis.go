package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xnat/xnat/dataplane/nat"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// Operator visibility (issue 17): capture, trace, explain, drops. Each
// command wraps one RPC (one mgmt.Core method).

// visFlags is the field filter of capture and trace.
type visFlags struct {
	inside, outside, proto string
	port                   uint32
}

func (f *visFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.inside, "inside", "", "only packets with this address on the inside (the subscriber)")
	c.Flags().StringVar(&f.outside, "outside", "", "only packets with this address on the outside (a remote host or an external address)")
	c.Flags().Uint32Var(&f.port, "port", 0, "only packets with this source or destination port (ICMP: identifier)")
	c.Flags().StringVar(&f.proto, "proto", "", "only this protocol: tcp, udp or icmp")
	_ = c.RegisterFlagCompletionFunc("proto", cobra.FixedCompletions(protoWords, cobra.ShellCompDirectiveNoFileComp))
}

func (f *visFlags) filter() (*xnatv1.VisFilter, error) {
	out := &xnatv1.VisFilter{Port: f.port}
	var err error
	if f.inside != "" {
		if out.Inside, err = parseAddr("--inside", f.inside); err != nil {
			return nil, err
		}
	}
	if f.outside != "" {
		if out.Outside, err = parseAddr("--outside", f.outside); err != nil {
			return nil, err
		}
	}
	if f.port > 65535 {
		return nil, usagef("--port %d: out of range", f.port)
	}
	if f.proto != "" {
		if out.Protocol, err = parseProto(f.proto, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func captureCmd(a *app) *cobra.Command {
	var f visFlags
	var file string
	var count uint64
	var dur time.Duration
	var ring uint32
	c := &cobra.Command{
		Use:   "capture -w FILE|-",
		Short: "Capture the NAT's packets as pcapng, as they arrived and as they left (admin)",
		Long: `Capture copies the frames of the packets that match the filter, each twice:
as it arrived (before translation) and as the NAT queued it to leave
(translated, with its next hop's Ethernet addresses). It writes pcapng to
FILE, or to stdout with -w -:

  natctl capture -w - --inside 10.0.0.2 | tshark -r -

Interface 0 is the inside, 1 the outside. Each frame carries the EPB
direction flag (inbound: as arrived, outbound: as left) and a comment
"worker W rx|tx packet N": a packet's two frames share N. This sees the
AF_XDP traffic that tcpdump on the NAT's interfaces cannot (docs/
troubleshooting.md). Frames a full per-worker ring could not take are
counted and reported at the end, never waited for. Needs the admin socket;
natd audit-logs every capture.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("capture: say where to write: -w FILE, or -w - for stdout")
			}
			if file == "-" && a.isTTY() {
				return usagef("capture: not writing pcapng to a terminal; pipe it (-w - | tshark -r -) or use -w FILE")
			}
			vf, err := f.filter()
			if err != nil {
				return err
			}
			req := &xnatv1.CaptureRequest{Filter: vf, Count: count, RingFrames: ring, Duration: optDuration(dur)}
			st, err := stream(cmd.Context(), a, xnatv1.NatServiceClient.Capture, req)
			if err != nil {
				return err
			}
			var w io.Writer = a.out
			if file != "-" {
				fh, err := os.Create(file)
				if err != nil {
					return &localError{err}
				}
				defer fh.Close()
				w = fh
			}
			bw := bufio.NewWriter(w)
			pw, err := newCaptureWriter(bw)
			if err != nil {
				return &localError{err}
			}
			frames, overflow := uint64(0), uint64(0)
			for first := true; ; first = false {
				m, err := st.Recv()
				if err == io.EOF || (err != nil && cmd.Context().Err() != nil) {
					break
				}
				if err != nil {
					return err
				}
				if first {
					fmt.Fprintln(a.errOut, "natctl: capturing; Ctrl-C stops")
				}
				overflow = m.GetOverflow()
				for _, fr := range m.GetFrames() {
					if err := pw.write(fr); err != nil {
						return &localError{err}
					}
					frames++
				}
				// Flushed per message, so that a pipe reader sees frames
				// as they come.
				if err := pw.flush(); err != nil {
					return &localError{err}
				}
				if err := bw.Flush(); err != nil {
					return &localError{err}
				}
			}
			if err := pw.flush(); err != nil {
				return &localError{err}
			}
			if err := bw.Flush(); err != nil {
				return &localError{err}
			}
			fmt.Fprintf(a.errOut, "natctl: %d frames captured, %d lost to full capture rings\n", frames, overflow)
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVarP(&file, "write", "w", "", "pcapng file to write, - for stdout")
	c.Flags().Uint64VarP(&count, "count", "c", 0, "stop after this many frames (0: no limit)")
	c.Flags().DurationVar(&dur, "duration", 0, "stop after this long (0: until interrupted)")
	c.Flags().Uint32Var(&ring, "ring", 0, "per-worker capture ring in frames (0: natd's default, 1024)")
	return c
}

// captureWriter writes captured frames as pcapng.
type captureWriter struct{ w *pcapgo.NgWriter }

func newCaptureWriter(w io.Writer) (*captureWriter, error) {
	ng, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{
		Name: "xnat-inside", Description: "the NAT's inside interface, as the NAT's workers see it",
		LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "natctl capture"}})
	if err != nil {
		return nil, err
	}
	if _, err := ng.AddInterface(pcapgo.NgInterface{
		Name: "xnat-outside", Description: "the NAT's outside interface, as the NAT's workers see it",
		LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9,
	}); err != nil {
		return nil, err
	}
	return &captureWriter{w: ng}, nil
}

func (c *captureWriter) write(f *xnatv1.CapturedFrame) error {
	ifc := 0
	if f.GetSide() == xnatv1.Side_SIDE_OUTSIDE {
		ifc = 1
	}
	stage, dir := "rx", pcapgo.NgEpbFlagDirectionInbound
	if f.GetStage() == xnatv1.CaptureStage_CAPTURE_STAGE_TX {
		stage, dir = "tx", pcapgo.NgEpbFlagDirectionOutbound
	}
	data := f.GetData()
	ci := gopacket.CaptureInfo{
		Timestamp:      f.GetTime().AsTime(),
		CaptureLength:  len(data),
		Length:         max(int(f.GetOrigLen()), len(data)),
		InterfaceIndex: ifc,
	}
	return c.w.WritePacketWithOptions(ci, data, pcapgo.NgPacketOptions{
		Comments: []string{fmt.Sprintf("worker %d %s packet %d", f.GetWorker(), stage, f.GetPacket())},
		Flags:    &pcapgo.NgEpbFlags{Direction: dir},
	})
}

func (c *captureWriter) flush() error { return c.w.Flush() }

func traceCmd(a *app) *cobra.Command {
	var f visFlags
	var n uint32
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "trace -n N",
		Short: "Show the NAT's decisions for the next N matching packets (admin)",
		Long: `Trace waits for the next N packets that match the filter and prints, for each,
one line per stage: parse, route, session lookup, mapping, address, port,
filtering and quota decisions (naming the rule or RFC behaviour that
decided), rewrite, next hop, and transmit or the drop reason. -o json
prints one object per packet per line. Needs the admin socket; natd
audit-logs every trace.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			vf, err := f.filter()
			if err != nil {
				return err
			}
			req := &xnatv1.TraceRequest{Filter: vf, Count: n, Timeout: optDuration(timeout)}
			st, err := stream(cmd.Context(), a, xnatv1.NatServiceClient.Trace, req)
			if err != nil {
				return err
			}
			for i := 0; ; {
				m, err := st.Recv()
				if err == io.EOF || (err != nil && cmd.Context().Err() != nil) {
					return nil
				}
				if err != nil {
					return err
				}
				if m.GetPacket() == nil {
					fmt.Fprintf(a.errOut, "natctl: tracing the next %d matching packets; Ctrl-C stops\n", n)
					continue
				}
				i++
				if err := printTraced(a.out, a.output, i, m.GetPacket()); err != nil {
					return &localError{err}
				}
			}
		},
	}
	f.add(c)
	c.Flags().Uint32VarP(&n, "count", "n", 1, "packets to trace (1..1000)")
	c.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: until interrupted)")
	return c
}

type stepJSON struct {
	Stage  string `json:"stage"`
	Code   string `json:"code"`
	Text   string `json:"text"`
	Reason string `json:"reason,omitempty"`
}

type tracedJSON struct {
	Time    time.Time  `json:"time"`
	Worker  uint32     `json:"worker"`
	Side    string     `json:"side"`
	Packet  uint64     `json:"packet"`
	Verdict string     `json:"verdict"`
	Steps   []stepJSON `json:"steps"`
}

func stepsJSON(ss []*xnatv1.TraceStep) []stepJSON {
	out := make([]stepJSON, 0, len(ss))
	for _, s := range ss {
		out = append(out, stepJSON{Stage: s.GetStage(), Code: s.GetCode(), Text: s.GetText(), Reason: s.GetReason()})
	}
	return out
}

func printSteps(b *strings.Builder, ss []*xnatv1.TraceStep) {
	for _, s := range ss {
		fmt.Fprintf(b, "  %-9s %s\n", s.GetStage(), s.GetText())
	}
}

func printTraced(w io.Writer, format string, i int, p *xnatv1.TracedPacket) error {
	if format == "json" {
		return writeJSONLine(w, tracedJSON{Time: p.GetTime().AsTime(), Worker: p.GetWorker(), Side: sideName(p.GetSide()),
			Packet: p.GetPacket(), Verdict: p.GetVerdict(), Steps: stepsJSON(p.GetSteps())})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Packet %d: worker %d, arrived on %s at %s, %s\n", i, p.GetWorker(), sideName(p.GetSide()),
		p.GetTime().AsTime().UTC().Format("15:04:05.000000"), p.GetVerdict())
	printSteps(&b, p.GetSteps())
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func explainCmd(a *app) *cobra.Command {
	var side string
	c := &cobra.Command{
		Use:   "explain --side inside|outside PROTO SRC:PORT DST:PORT",
		Short: "Say what the NAT would do now with a packet, and why, without sending one",
		Long: `Explain runs the NAT's decisions for a packet of PROTO (tcp, udp or icmp) from
SRC:PORT to DST:PORT arriving on --side, without any packet and without
changing anything: the route, the session lookup, and for a new flow the
mapping, address, port, filtering and quota decisions with the rule or RFC
behaviour that decides. TCP is taken as an opening SYN; for ICMP the port
is the echo identifier. Works on the read-only socket.`,
		Args: args(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			req := &xnatv1.ExplainRequest{}
			switch side {
			case "inside":
				req.Side = xnatv1.Side_SIDE_INSIDE
			case "outside":
				req.Side = xnatv1.Side_SIDE_OUTSIDE
			default:
				return usagef("explain: --side inside or --side outside")
			}
			var err error
			if req.Protocol, err = parseProto(argv[0], true); err != nil {
				return err
			}
			if req.Source, err = parseEndpoint("SRC", argv[1]); err != nil {
				return err
			}
			if req.Destination, err = parseEndpoint("DST", argv[2]); err != nil {
				return err
			}
			r, err := unary(cmd.Context(), a, xnatv1.NatServiceClient.Explain, req)
			if err != nil {
				return err
			}
			type explainJSON struct {
				Side    string     `json:"side"`
				Proto   string     `json:"protocol"`
				Src     string     `json:"source"`
				Dst     string     `json:"destination"`
				Verdict string     `json:"verdict"`
				Steps   []stepJSON `json:"steps"`
			}
			j := explainJSON{Side: side, Proto: argv[0], Src: argv[1], Dst: argv[2], Verdict: r.GetVerdict(), Steps: stepsJSON(r.GetSteps())}
			return a.emit(func(w io.Writer) error {
				var b strings.Builder
				fmt.Fprintf(&b, "%s %s -> %s arriving on the %s: %s\n", argv[0], argv[1], argv[2], side, r.GetVerdict())
				printSteps(&b, r.GetSteps())
				_, err := io.WriteString(w, b.String())
				return err
			}, j)
		},
	}
	c.Flags().StringVar(&side, "side", "", "side the packet arrives on: inside or outside")
	_ = c.RegisterFlagCompletionFunc("side", cobra.FixedCompletions([]string{"inside", "outside"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func dropsCmd(a *app) *cobra.Command {
	var interval time.Duration
	c := &cobra.Command{
		Use:   "drops",
		Short: "Drop counters by reason, with rates and the last dropped 5-tuples",
		Long: `Drops shows every drop reason that has counted a packet: the total, the rate
over --interval, and the last dropped packets' 5-tuples (sampled at most
once a second per worker and reason). docs/operations.md says, for each
reason, what to run next. Works on the read-only socket.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := unary(cmd.Context(), a, xnatv1.NatServiceClient.GetDrops, &xnatv1.GetDropsRequest{Interval: durationpb.New(interval)})
			if err != nil {
				return err
			}
			type sampleJSON struct {
				Time   time.Time `json:"time"`
				Worker uint32    `json:"worker"`
				Side   string    `json:"side"`
				Proto  uint32    `json:"ip_protocol"`
				Src    string    `json:"source"`
				Dst    string    `json:"destination"`
			}
			type reasonJSON struct {
				Reason    string       `json:"reason"`
				Total     uint64       `json:"total"`
				PerSecond float64      `json:"per_second"`
				Samples   []sampleJSON `json:"samples"`
			}
			var js []reasonJSON
			for _, d := range r.GetReasons() {
				rj := reasonJSON{Reason: d.GetReason(), Total: d.GetTotal(), PerSecond: d.GetPerSecond(), Samples: []sampleJSON{}}
				for _, s := range d.GetSamples() {
					rj.Samples = append(rj.Samples, sampleJSON{Time: s.GetTime().AsTime(), Worker: s.GetWorker(), Side: sideName(s.GetSide()),
						Proto: s.GetIpProtocol(), Src: endpointString(s.GetSource()), Dst: endpointString(s.GetDestination())})
				}
				js = append(js, rj)
			}
			return a.emit(func(w io.Writer) error {
				if len(js) == 0 {
					_, err := fmt.Fprintln(w, "no drops")
					return err
				}
				return tables(w, func(tw io.Writer) {
					fmt.Fprintln(tw, "REASON\tTOTAL\tPER SECOND\tLAST DROPPED")
					for _, d := range js {
						last := "-"
						if len(d.Samples) > 0 {
							last = sampleText(d.Samples[0].Time, d.Samples[0].Side, d.Samples[0].Proto, d.Samples[0].Src, d.Samples[0].Dst)
						}
						fmt.Fprintf(tw, "%s\t%d\t%.1f\t%s\n", d.Reason, d.Total, d.PerSecond, last)
						for _, s := range d.Samples[min(1, len(d.Samples)):] {
							fmt.Fprintf(tw, "\t\t\t%s\n", sampleText(s.Time, s.Side, s.Proto, s.Src, s.Dst))
						}
					}
				})
			}, js)
		},
	}
	c.Flags().DurationVar(&interval, "interval", time.Second, "interval over which rates are measured (100ms..10s)")
	return c
}

func endpointString(e *xnatv1.Endpoint) string {
	if e == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", e.GetAddr(), e.GetPort())
}

func sampleText(t time.Time, side string, proto uint32, src, dst string) string {
	p := fmt.Sprintf("proto %d", proto)
	if np, ok := nat.ProtoOfNumber(uint8(proto)); ok && proto <= 255 {
		p = np.String()
	}
	return fmt.Sprintf("%s %s %s -> %s on %s", t.UTC().Format("15:04:05"), p, src, dst, side)
}
