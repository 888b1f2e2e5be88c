package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xnat/xnat/mgmt"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
	"github.com/xnat/xnat/mgmt/events"
)

// The -o json formats. They are defined here, field by field, rather than
// dumped from protobuf, so that they stay stable for scripts whatever the
// API gains; docs/api.md documents them. Addresses with ports are
// "a.b.c.d:port" strings, times RFC 3339, durations seconds.

type perProtoJSON struct {
	TCP  uint64 `json:"tcp"`
	UDP  uint64 `json:"udp"`
	ICMP uint64 `json:"icmp"`
}

func perProto(p *xnatv1.PerProtocol) perProtoJSON {
	return perProtoJSON{TCP: p.GetTcp(), UDP: p.GetUdp(), ICMP: p.GetIcmp()}
}

type statusJSON struct {
	Version          string           `json:"version"`
	StartTime        *time.Time       `json:"start_time,omitempty"`
	UptimeSeconds    float64          `json:"uptime_seconds"`
	ConfigGeneration uint64           `json:"config_generation"`
	ConfigFile       string           `json:"config_file"`
	SessionsInUse    uint64           `json:"sessions_in_use"`
	SessionsCapacity uint64           `json:"sessions_capacity"`
	Interfaces       []interfaceJSON  `json:"interfaces"`
	Workers          []workerJSON     `json:"workers"`
	Pools            []poolStatusJSON `json:"pools"`
}

type interfaceJSON struct {
	Name    string  `json:"name"`
	Side    string  `json:"side"`
	Ifindex int32   `json:"ifindex"`
	MAC     string  `json:"mac"`
	Addr    string  `json:"addr"`
	MTU     uint32  `json:"mtu"`
	Queues  []int32 `json:"queues"`
	XDPMode string  `json:"xdp_mode"`
	XSKMode string  `json:"xsk_mode"`
	LinkUp  bool    `json:"link_up"`
}

type workerJSON struct {
	ID               uint32  `json:"id"`
	CPU              int32   `json:"cpu"`
	PollMode         string  `json:"poll_mode"`
	InsideInterface  string  `json:"inside_interface"`
	InsideQueue      int32   `json:"inside_queue"`
	OutsideInterface string  `json:"outside_interface"`
	OutsideQueue     int32   `json:"outside_queue"`
	BusyRatio        float64 `json:"busy_ratio"`
	LinkErrors       uint64  `json:"link_errors"`
}

type poolStatusJSON struct {
	Name        string              `json:"name"`
	Utilization float64             `json:"utilization"`
	Addresses   []addressStatusJSON `json:"addresses"`
}

type addressStatusJSON struct {
	Addr        string       `json:"addr"`
	Subscribers uint64       `json:"subscribers"`
	PortsInUse  perProtoJSON `json:"ports_in_use"`
	PortsTotal  perProtoJSON `json:"ports_total"`
	Draining    bool         `json:"draining"`
	// RuleSessions counts sessions of static mappings and port forwards.
	RuleSessions uint64 `json:"rule_sessions,omitempty"`
}

func addressToJSON(a *xnatv1.AddressStatus) addressStatusJSON {
	return addressStatusJSON{
		Addr: a.Addr, Subscribers: a.Subscribers, RuleSessions: a.RuleSessions,
		PortsInUse: perProto(a.PortsInUse), PortsTotal: perProto(a.PortsTotal), Draining: a.Draining,
	}
}

// The API's sides as natctl prints them. Protocols are named by the
// engine's nat.Proto (protoName, parseProto).
var sideNames = map[xnatv1.Side]string{xnatv1.Side_SIDE_INSIDE: "inside", xnatv1.Side_SIDE_OUTSIDE: "outside"}

func sideName(s xnatv1.Side) string {
	if n, ok := sideNames[s]; ok {
		return n
	}
	return "unknown"
}

func statusToJSON(s *xnatv1.Status) statusJSON {
	out := statusJSON{
		Version:          s.Version,
		UptimeSeconds:    s.Uptime.AsDuration().Seconds(),
		ConfigGeneration: s.ConfigGeneration,
		ConfigFile:       s.ConfigFile,
		SessionsInUse:    s.SessionsInUse,
		SessionsCapacity: s.SessionsCapacity,
		Interfaces:       []interfaceJSON{},
		Workers:          []workerJSON{},
		Pools:            []poolStatusJSON{},
	}
	if s.StartTime != nil {
		t := s.StartTime.AsTime()
		out.StartTime = &t
	}
	for _, i := range s.Interfaces {
		out.Interfaces = append(out.Interfaces, interfaceJSON{
			Name: i.Name, Side: sideName(i.Side), Ifindex: i.Ifindex, MAC: i.Mac, Addr: i.Addr, MTU: i.Mtu,
			Queues: append([]int32{}, i.Queues...), XDPMode: i.XdpMode, XSKMode: i.XskMode, LinkUp: i.LinkUp,
		})
	}
	for _, w := range s.Workers {
		out.Workers = append(out.Workers, workerJSON{
			ID: w.Id, CPU: w.Cpu, PollMode: w.PollMode,
			InsideInterface: w.InsideInterface, InsideQueue: w.InsideQueue,
			OutsideInterface: w.OutsideInterface, OutsideQueue: w.OutsideQueue,
			BusyRatio: w.BusyRatio, LinkErrors: w.LinkErrors,
		})
	}
	for _, p := range s.Pools {
		pj := poolStatusJSON{Name: p.Name, Utilization: p.Utilization, Addresses: []addressStatusJSON{}}
		for _, a := range p.Addresses {
			pj.Addresses = append(pj.Addresses, addressToJSON(a))
		}
		out.Pools = append(out.Pools, pj)
	}
	return out
}

type totalsJSON struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	Dropped   uint64 `json:"dropped"`
}

type ratesJSON struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	RxPPS           float64 `json:"rx_pps"`
	TxPPS           float64 `json:"tx_pps"`
	RxBitsPerSecond float64 `json:"rx_bps"`
	TxBitsPerSecond float64 `json:"tx_bps"`
	DropsPerSecond  float64 `json:"drops_per_second"`
}

type directionJSON struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
}

type workerStatsJSON struct {
	ID                   uint32            `json:"id"`
	Inside               directionJSON     `json:"inside"`
	Outside              directionJSON     `json:"outside"`
	SessionsCreated      perProtoJSON      `json:"sessions_created"`
	PortAllocFailures    uint64            `json:"port_alloc_failures"`
	Hairpinned           uint64            `json:"hairpinned"`
	ICMPErrorsSent       uint64            `json:"icmp_errors_sent"`
	ICMPErrorsSuppressed uint64            `json:"icmp_errors_suppressed"`
	FragmentsTranslated  uint64            `json:"fragments_translated"`
	FragmentsHeld        uint64            `json:"fragments_held"`
	FragmentsMade        uint64            `json:"fragments_made"`
	EventsDropped        uint64            `json:"events_dropped"`
	Polls                uint64            `json:"polls"`
	BusyPolls            uint64            `json:"busy_polls"`
	PollSeconds          float64           `json:"poll_seconds"`
	BusySeconds          float64           `json:"busy_seconds"`
	LinkErrors           uint64            `json:"link_errors"`
	Drops                map[string]uint64 `json:"drops"`
}

type interfaceStatsJSON struct {
	Name      string `json:"name"`
	Queue     int32  `json:"queue"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	Drops     uint64 `json:"drops"`
}

type statsJSON struct {
	Time              time.Time            `json:"time"`
	Totals            totalsJSON           `json:"totals"`
	Rates             *ratesJSON           `json:"rates,omitempty"`
	Sessions          perProtoJSON         `json:"sessions"`
	SessionsCreated   perProtoJSON         `json:"sessions_created"`
	SessionsExpired   perProtoJSON         `json:"sessions_expired"`
	SessionsDeleted   uint64               `json:"sessions_deleted"`
	PortAllocFailures uint64               `json:"port_alloc_failures"`
	EventsDropped     uint64               `json:"events_dropped"`
	PortHoldsCut      uint64               `json:"port_holds_shortened"`
	Drops             map[string]uint64    `json:"drops"`
	Workers           []workerStatsJSON    `json:"workers"`
	Interfaces        []interfaceStatsJSON `json:"interfaces"`
}

func dir(d *xnatv1.DirectionCounters) directionJSON {
	return directionJSON{RxPackets: d.GetRxPackets(), RxBytes: d.GetRxBytes(), TxPackets: d.GetTxPackets(), TxBytes: d.GetTxBytes()}
}

// totals sums the workers' counters.
func totals(s *xnatv1.Stats) (t totalsJSON, created perProtoJSON, allocFail uint64, drops map[string]uint64) {
	drops = map[string]uint64{}
	for _, w := range s.Workers {
		for _, d := range []*xnatv1.DirectionCounters{w.Inside, w.Outside} {
			t.RxPackets += d.GetRxPackets()
			t.RxBytes += d.GetRxBytes()
			t.TxPackets += d.GetTxPackets()
			t.TxBytes += d.GetTxBytes()
		}
		c := perProto(w.SessionsCreated)
		created.TCP += c.TCP
		created.UDP += c.UDP
		created.ICMP += c.ICMP
		allocFail += w.PortAllocFailures
		for _, d := range w.Drops {
			drops[d.Name] += d.Packets
			t.Dropped += d.Packets
		}
	}
	return t, created, allocFail, drops
}

func statsToJSON(s *xnatv1.Stats, r *ratesJSON) statsJSON {
	t, created, allocFail, drops := totals(s)
	out := statsJSON{
		Time:              s.Time.AsTime(),
		Totals:            t,
		Rates:             r,
		Sessions:          perProto(s.Sessions),
		SessionsCreated:   created,
		SessionsExpired:   perProto(s.SessionsExpired),
		SessionsDeleted:   s.SessionsDeleted,
		PortAllocFailures: allocFail,
		EventsDropped:     s.EventsDropped,
		PortHoldsCut:      s.PortHoldsShortened,
		Drops:             drops,
		Workers:           []workerStatsJSON{},
		Interfaces:        []interfaceStatsJSON{},
	}
	for _, w := range s.Workers {
		wj := workerStatsJSON{
			ID: w.Id, Inside: dir(w.Inside), Outside: dir(w.Outside), SessionsCreated: perProto(w.SessionsCreated),
			PortAllocFailures: w.PortAllocFailures, Hairpinned: w.Hairpinned,
			ICMPErrorsSent: w.IcmpErrorsSent, ICMPErrorsSuppressed: w.IcmpErrorsSuppressed,
			FragmentsTranslated: w.FragmentsTranslated, FragmentsHeld: w.FragmentsHeld, FragmentsMade: w.FragmentsMade,
			EventsDropped: w.EventsDropped, Polls: w.Polls, BusyPolls: w.BusyPolls,
			PollSeconds: w.PollTime.AsDuration().Seconds(), BusySeconds: w.BusyTime.AsDuration().Seconds(),
			LinkErrors: w.LinkErrors, Drops: map[string]uint64{},
		}
		for _, d := range w.Drops {
			wj.Drops[d.Name] = d.Packets
		}
		out.Workers = append(out.Workers, wj)
	}
	for _, i := range s.Interfaces {
		out.Interfaces = append(out.Interfaces, interfaceStatsJSON{
			Name: i.Name, Queue: i.Queue, RxPackets: i.RxPackets, RxBytes: i.RxBytes,
			TxPackets: i.TxPackets, TxBytes: i.TxBytes, Drops: i.Drops,
		})
	}
	return out
}

// computeRates derives per-second rates from two successive statistics;
// nil for the first, or if the clock did not advance.
func computeRates(prev, cur *xnatv1.Stats) *ratesJSON {
	if prev == nil {
		return nil
	}
	dt := cur.Time.AsTime().Sub(prev.Time.AsTime()).Seconds()
	if dt <= 0 {
		return nil
	}
	a, _, _, _ := totals(prev)
	b, _, _, _ := totals(cur)
	rate := func(x, y uint64) float64 {
		if y < x { // a counter went backwards: natd restarted
			return 0
		}
		return float64(y-x) / dt
	}
	return &ratesJSON{
		IntervalSeconds: dt,
		RxPPS:           rate(a.RxPackets, b.RxPackets),
		TxPPS:           rate(a.TxPackets, b.TxPackets),
		RxBitsPerSecond: 8 * rate(a.RxBytes, b.RxBytes),
		TxBitsPerSecond: 8 * rate(a.TxBytes, b.TxBytes),
		DropsPerSecond:  rate(a.Dropped, b.Dropped),
	}
}

type sessionJSON struct {
	ID             uint32    `json:"id"`
	Generation     uint64    `json:"generation"`
	Protocol       string    `json:"protocol"`
	Inside         string    `json:"inside"`
	Outside        string    `json:"outside"`
	Remote         string    `json:"remote"`
	State          string    `json:"state"`
	Kind           string    `json:"kind"`
	Hairpin        bool      `json:"hairpin"`
	Inbound        bool      `json:"inbound"`
	LastSeen       time.Time `json:"last_seen"`
	TimeoutSeconds float64   `json:"timeout_seconds"`
}

// protoName is API protocol p as natctl prints it: nat.Proto's name, ""
// for an unspecified one.
func protoName(p xnatv1.Protocol) string {
	if np, ok := mgmt.EngineProto(p); ok {
		return np.String()
	}
	return ""
}

func endpoint(e *xnatv1.Endpoint) string {
	if e == nil {
		return ""
	}
	return e.Addr + ":" + strconv.FormatUint(uint64(e.Port), 10)
}

func sessionToJSON(s *xnatv1.Session) sessionJSON {
	return sessionJSON{
		ID: s.Id, Generation: s.Generation, Protocol: protoName(s.Protocol),
		Inside: endpoint(s.Inside), Outside: endpoint(s.Outside), Remote: endpoint(s.Remote),
		State: s.State, Kind: s.Kind, Hairpin: s.Hairpin, Inbound: s.Inbound,
		LastSeen: s.LastSeen.AsTime(), TimeoutSeconds: s.Timeout.AsDuration().Seconds(),
	}
}

type ruleJSON struct {
	Type     string `json:"type"` // "forward" or "static"
	Protocol string `json:"protocol,omitempty"`
	Outside  string `json:"outside"`
	Inside   string `json:"inside"`
}

func rulesToJSON(fwds []*xnatv1.PortForward, statics []*xnatv1.StaticMapping) []ruleJSON {
	out := []ruleJSON{}
	for _, f := range fwds {
		out = append(out, ruleJSON{Type: "forward", Protocol: protoName(f.Protocol), Outside: endpoint(f.Outside), Inside: endpoint(f.Inside)})
	}
	for _, s := range statics {
		out = append(out, ruleJSON{Type: "static", Outside: s.Outside, Inside: s.Inside})
	}
	return out
}

type poolJSON struct {
	Name     string   `json:"name"`
	Prefixes []string `json:"prefixes"`
	// Draining is set on the pseudo-pool drainingPool only: addresses
	// that left the configuration and still serve sessions.
	Draining []addressStatusJSON `json:"draining,omitempty"`
}

// drainingPool names the addresses still draining, in listings as in
// natctl status.
const drainingPool = "(draining)"

func poolsToJSON(ps []*xnatv1.Pool, draining []*xnatv1.AddressStatus) []poolJSON {
	out := []poolJSON{}
	for _, p := range ps {
		out = append(out, poolJSON{Name: p.Name, Prefixes: append([]string{}, p.Prefixes...)})
	}
	if len(draining) > 0 {
		d := poolJSON{Name: drainingPool, Prefixes: []string{}}
		for _, a := range draining {
			d.Prefixes = append(d.Prefixes, a.Addr)
			d.Draining = append(d.Draining, addressToJSON(a))
		}
		out = append(out, d)
	}
	return out
}

// eventToRecord converts an API event to the event log's record, so that
// `natctl events -o json` prints exactly the lines of the event log.
func eventToRecord(e *xnatv1.Event) events.Record {
	r := events.Record{
		Time:     e.Time.AsTime().UTC(),
		Type:     strings.ToLower(strings.TrimPrefix(e.Type.String(), "EVENT_TYPE_")),
		Protocol: protoName(e.Protocol),
		Reason:   e.Reason,
		Worker:   int(e.Worker),
		Sessions: e.SessionCount,
	}
	addrOnly := e.Type == xnatv1.EventType_EVENT_TYPE_ADDRESS_BOUND || e.Type == xnatv1.EventType_EVENT_TYPE_ADDRESS_RELEASED
	ep := func(x *xnatv1.Endpoint) string {
		switch {
		case x == nil:
			return ""
		case addrOnly:
			return x.Addr
		}
		return endpoint(x)
	}
	r.Inside, r.Outside, r.Remote = ep(e.Inside), ep(e.Outside), ep(e.Remote)
	return r
}

// ---- writing ----

// emit prints v as JSON with -o json, else calls table.
func (a *app) emit(table func(io.Writer) error, v any) error {
	var err error
	if a.output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		err = enc.Encode(v)
	} else {
		err = table(a.out)
	}
	if err != nil {
		return &localError{err}
	}
	return nil
}

func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

func newTab(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// tables writes tab-aligned tables, each filled by one function, with a
// blank line between two; a nil function is a table left out.
func tables(w io.Writer, fill ...func(tw io.Writer)) error {
	first := true
	for _, f := range fill {
		if f == nil {
			continue
		}
		if !first {
			fmt.Fprintln(w)
		}
		first = false
		tw := newTab(w)
		f(tw)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func printStatus(w io.Writer, s *xnatv1.Status) error {
	err := tables(w, func(tw io.Writer) {
		fmt.Fprintf(tw, "Version:\t%s\n", s.Version)
		if s.StartTime != nil {
			fmt.Fprintf(tw, "Uptime:\t%s (since %s)\n", s.Uptime.AsDuration().Round(time.Second), s.StartTime.AsTime().UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(tw, "Config:\t%s (generation %d)\n", s.ConfigFile, s.ConfigGeneration)
		fmt.Fprintf(tw, "Sessions:\t%d of %d (%s)\n", s.SessionsInUse, s.SessionsCapacity, percent(float64(s.SessionsInUse), float64(s.SessionsCapacity)))
	}, func(tw io.Writer) {
		fmt.Fprintln(tw, "INTERFACE\tSIDE\tIFINDEX\tMAC\tADDRESS\tMTU\tQUEUES\tXDP\tXSK\tLINK")
		for _, i := range s.Interfaces {
			link := "down"
			if i.LinkUp {
				link = "up"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", i.Name, sideName(i.Side), i.Ifindex, i.Mac,
				dash(i.Addr), i.Mtu, joinInts(i.Queues), i.XdpMode, i.XskMode, link)
		}
	}, func(tw io.Writer) {
		fmt.Fprintln(tw, "WORKER\tCPU\tPOLL MODE\tINSIDE\tOUTSIDE\tBUSY\tLINK ERRORS")
		for _, wk := range s.Workers {
			cpu := strconv.Itoa(int(wk.Cpu))
			if wk.Cpu < 0 {
				cpu = "-"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s/%d\t%s/%d\t%s\t%d\n", wk.Id, cpu, wk.PollMode,
				wk.InsideInterface, wk.InsideQueue, wk.OutsideInterface, wk.OutsideQueue, percent(wk.BusyRatio, 1), wk.LinkErrors)
		}
	}, func(tw io.Writer) {
		fmt.Fprintln(tw, "POOL\tADDRESS\tSUBSCRIBERS\tTCP PORTS\tUDP PORTS\tICMP IDS\tSTATE")
		for _, p := range s.Pools {
			for _, a := range p.Addresses {
				state := "active"
				if a.Draining {
					state = "draining"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", p.Name, a.Addr, a.Subscribers,
					used(a.PortsInUse.GetTcp(), a.PortsTotal.GetTcp()), used(a.PortsInUse.GetUdp(), a.PortsTotal.GetUdp()),
					used(a.PortsInUse.GetIcmp(), a.PortsTotal.GetIcmp()), state)
			}
		}
	})
	if err != nil {
		return err
	}
	for _, p := range s.Pools {
		fmt.Fprintf(w, "Pool %s: %s of ports in use\n", p.Name, percent(p.Utilization, 1))
	}
	return nil
}

func printStats(w io.Writer, s *xnatv1.Stats, r *ratesJSON) error {
	t, created, allocFail, drops := totals(s)
	var dropTable func(io.Writer)
	if len(drops) > 0 {
		dropTable = func(tw io.Writer) {
			fmt.Fprintln(tw, "DROP REASON\tPACKETS")
			names := make([]string, 0, len(drops))
			for n := range drops {
				names = append(names, n)
			}
			// Biggest first; ties by name, for a stable order.
			sort.Slice(names, func(i, j int) bool {
				if drops[names[i]] != drops[names[j]] {
					return drops[names[i]] > drops[names[j]]
				}
				return names[i] < names[j]
			})
			for _, n := range names {
				fmt.Fprintf(tw, "%s\t%d\n", n, drops[n])
			}
		}
	}
	return tables(w, func(tw io.Writer) {
		fmt.Fprintf(tw, "Time:\t%s\n", s.Time.AsTime().UTC().Format(time.RFC3339))
		if r != nil {
			fmt.Fprintf(tw, "Rates:\trx %s pps (%s), tx %s pps (%s), drops %s/s\n",
				num(r.RxPPS), bits(r.RxBitsPerSecond), num(r.TxPPS), bits(r.TxBitsPerSecond), num(r.DropsPerSecond))
		}
		fmt.Fprintf(tw, "Packets:\trx %d (%d bytes), tx %d (%d bytes), dropped %d\n", t.RxPackets, t.RxBytes, t.TxPackets, t.TxBytes, t.Dropped)
		ss := perProto(s.Sessions)
		fmt.Fprintf(tw, "Sessions:\ttcp %d, udp %d, icmp %d\n", ss.TCP, ss.UDP, ss.ICMP)
		ex := perProto(s.SessionsExpired)
		fmt.Fprintf(tw, "Created:\ttcp %d, udp %d, icmp %d\n", created.TCP, created.UDP, created.ICMP)
		fmt.Fprintf(tw, "Expired:\ttcp %d, udp %d, icmp %d; deleted by operator %d\n", ex.TCP, ex.UDP, ex.ICMP, s.SessionsDeleted)
		fmt.Fprintf(tw, "Port allocation failures:\t%d\n", allocFail)
		fmt.Fprintf(tw, "Events dropped:\t%d\n", s.EventsDropped)
		fmt.Fprintf(tw, "Port hold-downs shortened:\t%d\n", s.PortHoldsShortened)
	}, func(tw io.Writer) {
		fmt.Fprintln(tw, "WORKER\tINSIDE RX\tINSIDE TX\tOUTSIDE RX\tOUTSIDE TX\tDROPS\tCREATED\tBUSY")
		for _, wk := range s.Workers {
			var d uint64
			for _, x := range wk.Drops {
				d += x.Packets
			}
			busy := 0.0
			if p := wk.PollTime.AsDuration(); p > 0 {
				busy = float64(wk.BusyTime.AsDuration()) / float64(p)
			}
			c := perProto(wk.SessionsCreated)
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", wk.Id,
				wk.Inside.GetRxPackets(), wk.Inside.GetTxPackets(), wk.Outside.GetRxPackets(), wk.Outside.GetTxPackets(),
				d, c.TCP+c.UDP+c.ICMP, percent(busy, 1))
		}
	}, func(tw io.Writer) {
		fmt.Fprintln(tw, "INTERFACE\tQUEUE\tRX PACKETS\tRX BYTES\tTX PACKETS\tTX BYTES\tPORT DROPS")
		for _, i := range s.Interfaces {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", i.Name, i.Queue, i.RxPackets, i.RxBytes, i.TxPackets, i.TxBytes, i.Drops)
		}
	}, dropTable)
}

func printRules(w io.Writer, rules []ruleJSON) error {
	return tables(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "TYPE\tPROTO\tOUTSIDE\tINSIDE")
		for _, r := range rules {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Type, dash(r.Protocol), r.Outside, r.Inside)
		}
	})
}

func printPools(w io.Writer, pools []poolJSON) error {
	var drainTable func(io.Writer)
	for _, p := range pools {
		if p.Name == drainingPool && len(p.Draining) > 0 {
			draining := p.Draining
			// Removed addresses still serving sessions: each goes when
			// all its counts reach zero.
			drainTable = func(tw io.Writer) {
				fmt.Fprintln(tw, "DRAINING\tSUBSCRIBERS\tRULE SESSIONS\tTCP PORTS\tUDP PORTS\tICMP IDS")
				for _, a := range draining {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", a.Addr, a.Subscribers, a.RuleSessions,
						a.PortsInUse.TCP, a.PortsInUse.UDP, a.PortsInUse.ICMP)
				}
			}
		}
	}
	return tables(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "NAME\tPREFIXES")
		for _, p := range pools {
			if p.Name != drainingPool {
				fmt.Fprintf(tw, "%s\t%s\n", p.Name, strings.Join(p.Prefixes, " "))
			}
		}
	}, drainTable)
}

// sessionPrinter prints a stream of sessions as they arrive. A table of a
// million rows cannot wait for tabwriter to see them all, so columns have
// fixed widths that fit every IPv4 endpoint. The command's goroutine owns
// it.
type sessionPrinter struct {
	w      io.Writer
	format string
	now    time.Time
	n      int
}

func newSessionPrinter(w io.Writer, format string, now time.Time) *sessionPrinter {
	return &sessionPrinter{w: w, format: format, now: now}
}

const (
	sessFmt     = "%-8s %-6s %-5s %-21s %-21s %-21s %-13s %8s %8s\n"
	sessWideFmt = "%-8s %-6s %-5s %-21s %-21s %-21s %-13s %8s %8s %-7s %-7s %-7s %s\n"
)

func (p *sessionPrinter) print(ss []*xnatv1.Session) error {
	var b strings.Builder
	if p.n == 0 && p.format != "json" {
		if p.format == "wide" {
			fmt.Fprintf(&b, sessWideFmt, "ID", "GEN", "PROTO", "INSIDE", "OUTSIDE", "REMOTE", "STATE", "IDLE", "TIMEOUT", "KIND", "HAIRPIN", "INBOUND", "LAST SEEN")
		} else {
			fmt.Fprintf(&b, sessFmt, "ID", "GEN", "PROTO", "INSIDE", "OUTSIDE", "REMOTE", "STATE", "IDLE", "TIMEOUT")
		}
	}
	for _, s := range ss {
		p.n++
		if p.format == "json" {
			j, err := json.Marshal(sessionToJSON(s))
			if err != nil {
				return err
			}
			b.Write(j)
			b.WriteByte('\n')
			continue
		}
		idle := p.now.Sub(s.LastSeen.AsTime())
		if idle < 0 {
			idle = 0
		}
		id, gen := strconv.FormatUint(uint64(s.Id), 10), strconv.FormatUint(s.Generation, 10)
		proto := protoName(s.Protocol)
		in, out, rem := endpoint(s.Inside), endpoint(s.Outside), endpoint(s.Remote)
		idles, tos := short(idle), short(s.Timeout.AsDuration())
		if p.format == "wide" {
			fmt.Fprintf(&b, sessWideFmt, id, gen, proto, in, out, rem, s.State, idles, tos,
				s.Kind, yesNo(s.Hairpin), yesNo(s.Inbound), s.LastSeen.AsTime().UTC().Format(time.RFC3339Nano))
		} else {
			fmt.Fprintf(&b, sessFmt, id, gen, proto, in, out, rem, s.State, idles, tos)
		}
	}
	_, err := io.WriteString(p.w, b.String())
	return err
}

// done ends the listing; a table says how many sessions it showed.
func (p *sessionPrinter) done() error {
	if p.format == "json" {
		return nil
	}
	var err error
	if p.n == 0 {
		_, err = fmt.Fprintln(p.w, "no sessions")
	} else {
		_, err = fmt.Fprintf(p.w, "%d sessions\n", p.n)
	}
	if err != nil {
		return &localError{err}
	}
	return nil
}

func printEvent(w io.Writer, format string, e *xnatv1.Event) error {
	r := eventToRecord(e)
	if format == "json" {
		return writeJSONLine(w, r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-19s", r.Time.Format("2006-01-02T15:04:05.000Z07:00"), r.Type)
	if r.Protocol != "" {
		fmt.Fprintf(&b, " %-4s", r.Protocol)
	}
	if r.Inside != "" {
		b.WriteString(" " + r.Inside)
	}
	if r.Outside != "" {
		b.WriteString(" -> " + r.Outside)
	}
	if r.Remote != "" {
		b.WriteString(" remote " + r.Remote)
	}
	if r.Reason != "" {
		b.WriteString(" reason " + r.Reason)
	}
	if r.Sessions != 0 {
		fmt.Fprintf(&b, " sessions %d", r.Sessions)
	}
	fmt.Fprintf(&b, " worker %d\n", r.Worker)
	_, err := io.WriteString(w, b.String())
	return err
}

// ---- small formatters ----

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func joinInts(v []int32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(int(x))
	}
	return dash(strings.Join(s, ","))
}

func percent(x, of float64) string {
	if of == 0 {
		return "0.0%"
	}
	return strconv.FormatFloat(100*x/of, 'f', 1, 64) + "%"
}

func used(n, of uint64) string { return fmt.Sprintf("%d/%d", n, of) }

// num prints a rate with a unit prefix: 950, 12.3k, 4.56M.
func num(x float64) string {
	switch {
	case x >= 1e9:
		return strconv.FormatFloat(x/1e9, 'f', 2, 64) + "G"
	case x >= 1e6:
		return strconv.FormatFloat(x/1e6, 'f', 2, 64) + "M"
	case x >= 1e3:
		return strconv.FormatFloat(x/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

func bits(x float64) string { return num(x) + "bit/s" }

// short prints a duration to the second: 90s -> 1m30s, 2h4m0s -> 2h4m.
func short(d time.Duration) string {
	d = d.Round(time.Second)
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
