package mgmt

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
	"github.com/xnat/xnat/mgmt/events"
)

// Conversions between the core's Go types and xnat.v1 messages. Decoding
// a request names the offending field in its ErrInvalid error.

// toProto converts each element of in with conv, which takes a pointer
// because the core's types are large. An empty in gives nil, as the
// append loops it replaces did.
func toProto[T, P any](in []T, conv func(*T) P) []P {
	var out []P
	for i := range in {
		out = append(out, conv(&in[i]))
	}
	return out
}

// APIProtocol is the API's form of engine protocol p, and EngineProto the
// engine's form of API protocol p (false for an unspecified or unknown
// one): natctl names protocols through them with nat.Proto's one table of
// names.
func APIProtocol(p nat.Proto) xnatv1.Protocol {
	switch p {
	case nat.TCP:
		return xnatv1.Protocol_PROTOCOL_TCP
	case nat.UDP:
		return xnatv1.Protocol_PROTOCOL_UDP
	case nat.ICMP:
		return xnatv1.Protocol_PROTOCOL_ICMP
	}
	return xnatv1.Protocol_PROTOCOL_UNSPECIFIED
}

// EngineProto: see APIProtocol.
func EngineProto(p xnatv1.Protocol) (nat.Proto, bool) {
	switch p {
	case xnatv1.Protocol_PROTOCOL_TCP:
		return nat.TCP, true
	case xnatv1.Protocol_PROTOCOL_UDP:
		return nat.UDP, true
	case xnatv1.Protocol_PROTOCOL_ICMP:
		return nat.ICMP, true
	}
	return 0, false
}

func natProto(field string, p xnatv1.Protocol) (nat.Proto, error) {
	if np, ok := EngineProto(p); ok {
		return np, nil
	}
	return 0, Errorf(ErrInvalid, "%s: protocol %v is not tcp, udp or icmp", field, p)
}

func protoSide(s nat.Side) xnatv1.Side {
	if s == nat.Inside {
		return xnatv1.Side_SIDE_INSIDE
	}
	return xnatv1.Side_SIDE_OUTSIDE
}

func protoEndpoint(ap netip.AddrPort) *xnatv1.Endpoint {
	if !ap.IsValid() {
		return nil
	}
	return &xnatv1.Endpoint{Addr: ap.Addr().String(), Port: uint32(ap.Port())}
}

func parseAddr(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, Errorf(ErrInvalid, "%s: %q is not an IPv4 address", field, s)
	}
	return a, nil
}

// optAddr parses an optional address: "" is the zero Addr.
func optAddr(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	return parseAddr(field, s)
}

func parsePort(field string, p uint32) (uint16, error) {
	if p > 65535 {
		return 0, Errorf(ErrInvalid, "%s: port %d is out of range 0..65535", field, p)
	}
	return uint16(p), nil
}

func parseEndpoint(field string, e *xnatv1.Endpoint) (netip.AddrPort, error) {
	if e == nil {
		return netip.AddrPort{}, Errorf(ErrInvalid, "%s is required", field)
	}
	a, err := parseAddr(field+".addr", e.GetAddr())
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := parsePort(field+".port", e.GetPort())
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, p), nil
}

func filterFromProto(f *xnatv1.SessionFilter) (nat.SessionFilter, error) {
	var out nat.SessionFilter
	if f == nil {
		return out, nil
	}
	var err error
	if f.Protocol != xnatv1.Protocol_PROTOCOL_UNSPECIFIED {
		p, err := natProto("filter.protocol", f.Protocol)
		if err != nil {
			return out, err
		}
		out.Proto = &p
	}
	if out.InsideAddr, err = optAddr("filter.inside_addr", f.InsideAddr); err != nil {
		return out, err
	}
	if out.OutsideAddr, err = optAddr("filter.outside_addr", f.OutsideAddr); err != nil {
		return out, err
	}
	if out.RemoteAddr, err = optAddr("filter.remote_addr", f.RemoteAddr); err != nil {
		return out, err
	}
	if out.InsidePort, err = parsePort("filter.inside_port", f.InsidePort); err != nil {
		return out, err
	}
	if out.OutsidePort, err = parsePort("filter.outside_port", f.OutsidePort); err != nil {
		return out, err
	}
	return out, nil
}

func sessionToProto(s *nat.Session) *xnatv1.Session {
	return &xnatv1.Session{
		Id:         s.ID,
		Generation: s.Gen,
		Protocol:   APIProtocol(s.Proto),
		Inside:     protoEndpoint(s.Inside),
		Outside:    protoEndpoint(s.Outside),
		Remote:     protoEndpoint(s.Remote),
		State:      s.State,
		Kind:       s.Kind,
		Hairpin:    s.Hairpin,
		Inbound:    s.Inbound,
		LastSeen:   timestamppb.New(s.LastSeen),
		Timeout:    durationpb.New(s.Timeout),
	}
}

func poolToProto(p *nat.Pool) *xnatv1.Pool {
	out := &xnatv1.Pool{Name: p.Name}
	for _, a := range p.Addresses {
		if a.IsSingleIP() {
			out.Prefixes = append(out.Prefixes, a.Addr().String())
		} else {
			out.Prefixes = append(out.Prefixes, a.String())
		}
	}
	return out
}

func poolFromProto(field string, p *xnatv1.Pool) (nat.Pool, error) {
	if p == nil {
		return nat.Pool{}, Errorf(ErrInvalid, "%s is required", field)
	}
	out := nat.Pool{Name: p.Name}
	for i, s := range p.Prefixes {
		pf, err := ParsePrefix(s)
		if err != nil {
			return nat.Pool{}, Errorf(ErrInvalid, "%s.prefixes[%d]: %v", field, i, err)
		}
		out.Addresses = append(out.Addresses, pf)
	}
	return out, nil
}

// ParsePrefix parses an IPv4 prefix or a single address (as a /32).
func ParsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("%q is not IPv4", s)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 prefix or address", s)
	}
	return p, nil
}

func forwardToProto(r *nat.PortForward) *xnatv1.PortForward {
	return &xnatv1.PortForward{
		Protocol: APIProtocol(r.Proto),
		Outside:  protoEndpoint(r.Outside),
		Inside:   protoEndpoint(r.Inside),
	}
}

func forwardFromProto(field string, r *xnatv1.PortForward, needInside bool) (nat.PortForward, error) {
	var out nat.PortForward
	if r == nil {
		return out, Errorf(ErrInvalid, "%s is required", field)
	}
	var err error
	if out.Proto, err = natProto(field+".protocol", r.Protocol); err != nil {
		return out, err
	}
	if out.Outside, err = parseEndpoint(field+".outside", r.Outside); err != nil {
		return out, err
	}
	if needInside {
		if out.Inside, err = parseEndpoint(field+".inside", r.Inside); err != nil {
			return out, err
		}
	}
	return out, nil
}

func staticToProto(m *nat.StaticMapping) *xnatv1.StaticMapping {
	return &xnatv1.StaticMapping{Inside: m.Inside.String(), Outside: m.Outside.String()}
}

func staticFromProto(field string, m *xnatv1.StaticMapping) (nat.StaticMapping, error) {
	var out nat.StaticMapping
	if m == nil {
		return out, Errorf(ErrInvalid, "%s is required", field)
	}
	var err error
	if out.Inside, err = parseAddr(field+".inside", m.Inside); err != nil {
		return out, err
	}
	if out.Outside, err = parseAddr(field+".outside", m.Outside); err != nil {
		return out, err
	}
	return out, nil
}

func changeFromProto(i int, c *xnatv1.Change) (Change, error) {
	f := fmt.Sprintf("changes[%d]", i)
	var out Change
	var err error
	switch x := c.GetChange().(type) {
	case *xnatv1.Change_AddPool:
		out.Op = AddPool
		out.Pool, err = poolFromProto(f+".add_pool", x.AddPool)
	case *xnatv1.Change_DeletePool:
		out.Op, out.PoolName = DeletePool, x.DeletePool
	case *xnatv1.Change_AddPortForward:
		out.Op = AddPortForward
		out.PortForward, err = forwardFromProto(f+".add_port_forward", x.AddPortForward, true)
	case *xnatv1.Change_DeletePortForward:
		out.Op = DeletePortForward
		out.PortForward, err = forwardFromProto(f+".delete_port_forward", x.DeletePortForward, false)
	case *xnatv1.Change_AddStaticMapping:
		out.Op = AddStaticMapping
		out.StaticMapping, err = staticFromProto(f+".add_static_mapping", x.AddStaticMapping)
	case *xnatv1.Change_DeleteStaticMapping:
		out.Op = DeleteStaticMapping
		out.StaticMapping.Inside, err = parseAddr(f+".delete_static_mapping", x.DeleteStaticMapping)
	default:
		err = Errorf(ErrInvalid, "%s: no change set", f)
	}
	return out, err
}

func perProto(v [nat.NumProtos]uint64) *xnatv1.PerProtocol {
	return &xnatv1.PerProtocol{Tcp: v[nat.TCP], Udp: v[nat.UDP], Icmp: v[nat.ICMP]}
}

func perProtoInt(v [nat.NumProtos]int) *xnatv1.PerProtocol {
	return &xnatv1.PerProtocol{Tcp: uint64(v[nat.TCP]), Udp: uint64(v[nat.UDP]), Icmp: uint64(v[nat.ICMP])}
}

func statusToProto(s *Status, now time.Time) *xnatv1.Status {
	out := &xnatv1.Status{
		Version:          s.Version,
		ConfigGeneration: s.ConfigGeneration,
		ConfigFile:       s.ConfigFile,
		SessionsInUse:    uint64(s.SessionsInUse),
		SessionsCapacity: uint64(s.SessionsCapacity),
	}
	if !s.StartTime.IsZero() {
		out.StartTime = timestamppb.New(s.StartTime)
		out.Uptime = durationpb.New(now.Sub(s.StartTime))
	}
	for _, i := range s.Interfaces {
		pi := &xnatv1.Interface{
			Name:    i.Name,
			Side:    protoSide(i.Side),
			Ifindex: int32(i.Ifindex),
			Mac:     net.HardwareAddr(i.MAC[:]).String(),
			Mtu:     uint32(i.MTU),
			XdpMode: i.XDPMode,
			XskMode: i.XSKMode,
			LinkUp:  i.LinkUp,
		}
		if i.Addr.IsValid() {
			pi.Addr = i.Addr.String()
		}
		for _, q := range i.Queues {
			pi.Queues = append(pi.Queues, int32(q))
		}
		out.Interfaces = append(out.Interfaces, pi)
	}
	for _, w := range s.Workers {
		out.Workers = append(out.Workers, &xnatv1.Worker{
			Id:               uint32(w.ID),
			Cpu:              int32(w.CPU),
			PollMode:         w.PollMode,
			InsideQueue:      int32(w.Queues[nat.Inside]),
			OutsideQueue:     int32(w.Queues[nat.Outside]),
			InsideInterface:  w.Interfaces[nat.Inside],
			OutsideInterface: w.Interfaces[nat.Outside],
			BusyRatio:        w.BusyRatio,
			LinkErrors:       w.LinkErrors,
		})
	}
	for _, p := range s.Pools {
		pp := &xnatv1.PoolStatus{Name: p.Name, Utilization: PoolUtilization(&p)}
		pp.Addresses = toProto(p.Addresses, addressStatusToProto)
		out.Pools = append(out.Pools, pp)
	}
	return out
}

func addressStatusToProto(a *AddressStatus) *xnatv1.AddressStatus {
	return &xnatv1.AddressStatus{
		Addr:         a.Addr.String(),
		Subscribers:  uint64(a.Subscribers),
		PortsInUse:   perProtoInt(a.PortsInUse),
		PortsTotal:   perProtoInt(a.PortsTotal),
		Draining:     a.Draining,
		RuleSessions: uint64(a.RuleSessions),
	}
}

// PoolUtilization is the share of a pool's ports in use, all addresses and
// protocols together, in [0, 1].
func PoolUtilization(p *PoolStatus) float64 {
	var used, total int
	for _, a := range p.Addresses {
		for i := range a.PortsTotal {
			used += a.PortsInUse[i]
			total += a.PortsTotal[i]
		}
	}
	if total == 0 {
		return 0
	}
	return float64(used) / float64(total)
}

func statsToProto(s *Stats) *xnatv1.Stats {
	out := &xnatv1.Stats{
		Sessions:           perProto(s.Sessions),
		SessionsExpired:    perProto(s.SessionsExpired),
		SessionsDeleted:    s.SessionsDeleted,
		EventsDropped:      s.EventsDropped,
		PortHoldsShortened: s.PortHoldsShortened,
	}
	if !s.Time.IsZero() {
		out.Time = timestamppb.New(s.Time)
	}
	out.Workers = toProto(s.Workers, workerStatsToProto)
	for _, i := range s.Interfaces {
		out.Interfaces = append(out.Interfaces, &xnatv1.InterfaceStats{
			Name:      i.Name,
			Queue:     int32(i.Queue),
			RxPackets: i.RxPackets,
			RxBytes:   i.RxBytes,
			TxPackets: i.TxPackets,
			TxBytes:   i.TxBytes,
			Drops:     i.Drops,
		})
	}
	return out
}

func workerStatsToProto(w *WorkerStats) *xnatv1.WorkerStats {
	c := &w.Counters
	dir := func(s nat.Side) *xnatv1.DirectionCounters {
		return &xnatv1.DirectionCounters{
			RxPackets: c[nat.RxPackets+nat.Counter(s)],
			RxBytes:   c[nat.RxBytes+nat.Counter(s)],
			TxPackets: c[nat.TxPackets+nat.Counter(s)],
			TxBytes:   c[nat.TxBytes+nat.Counter(s)],
		}
	}
	out := &xnatv1.WorkerStats{
		Id:      uint32(w.ID),
		Inside:  dir(nat.Inside),
		Outside: dir(nat.Outside),
		SessionsCreated: &xnatv1.PerProtocol{
			Tcp:  c[nat.SessionsCreated+nat.Counter(nat.TCP)],
			Udp:  c[nat.SessionsCreated+nat.Counter(nat.UDP)],
			Icmp: c[nat.SessionsCreated+nat.Counter(nat.ICMP)],
		},
		PortAllocFailures:    c[nat.PortAllocFailures],
		Hairpinned:           c[nat.Hairpinned],
		IcmpErrorsSent:       c[nat.ICMPErrorsSent],
		IcmpErrorsSuppressed: c[nat.ICMPErrorsSuppressed],
		FragmentsTranslated:  c[nat.FragmentsTranslated],
		FragmentsHeld:        c[nat.FragmentsHeld],
		FragmentsMade:        c[nat.FragmentsMade],
		EventsDropped:        c[nat.EventsDropped],
		Polls:                c[nat.Polls],
		BusyPolls:            c[nat.BusyPolls],
		PollTime:             durationpb.New(time.Duration(c[nat.PollNanos])),
		BusyTime:             durationpb.New(time.Duration(c[nat.BusyNanos])),
		LinkErrors:           c[nat.LinkErrors],
	}
	for r := drop.Reason(1); r < drop.NumReasons; r++ {
		if n := c.Drops(r); n != 0 {
			out.Drops = append(out.Drops, &xnatv1.DropCount{Reason: uint32(r), Name: r.String(), Packets: n})
		}
	}
	return out
}

var protoEventTypes = [...]xnatv1.EventType{
	nat.SessionCreated:     xnatv1.EventType_EVENT_TYPE_SESSION_CREATED,
	nat.SessionDeleted:     xnatv1.EventType_EVENT_TYPE_SESSION_DELETED,
	nat.AddressBound:       xnatv1.EventType_EVENT_TYPE_ADDRESS_BOUND,
	nat.AddressReleased:    xnatv1.EventType_EVENT_TYPE_ADDRESS_RELEASED,
	nat.PortsExhausted:     xnatv1.EventType_EVENT_TYPE_PORTS_EXHAUSTED,
	nat.AddressesExhausted: xnatv1.EventType_EVENT_TYPE_ADDRESSES_EXHAUSTED,
	nat.QuotaExceeded:      xnatv1.EventType_EVENT_TYPE_QUOTA_EXCEEDED,
	nat.TableFull:          xnatv1.EventType_EVENT_TYPE_TABLE_FULL,
	nat.BlockAllocated:     xnatv1.EventType_EVENT_TYPE_BLOCK_ALLOCATED,
	nat.BlockReleased:      xnatv1.EventType_EVENT_TYPE_BLOCK_RELEASED,
}

func protoEventType(t nat.EventType) xnatv1.EventType {
	if int(t) < len(protoEventTypes) {
		return protoEventTypes[t]
	}
	return xnatv1.EventType_EVENT_TYPE_UNSPECIFIED
}

func eventToProto(ev *nat.Event) *xnatv1.Event {
	out := &xnatv1.Event{
		Time:   timestamppb.New(time.Unix(0, ev.UnixNano)),
		Type:   protoEventType(ev.Type),
		Reason: events.ReasonName(ev),
		Worker: uint32(ev.Worker),
	}
	if events.ProtocolName(ev) != "" {
		out.Protocol = APIProtocol(ev.Proto)
	}
	ep := func(a [4]byte, p uint16) *xnatv1.Endpoint {
		if a == ([4]byte{}) {
			return nil
		}
		return &xnatv1.Endpoint{Addr: netip.AddrFrom4(a).String(), Port: uint32(p)}
	}
	out.Inside = ep(ev.InsideAddr, ev.InsidePort)
	out.Outside = ep(ev.OutsideAddr, ev.OutsidePort)
	out.Remote = ep(ev.RemoteAddr, ev.RemotePort)
	if ev.Type == nat.QuotaExceeded {
		out.SessionCount = ev.SessionCount
	}
	return out
}
