package mgmt_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
	"github.com/xnat/xnat/mgmt/client"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	s, _ := status.FromError(err)
	if s.Code() != code || !strings.Contains(s.Message(), contains) {
		t.Fatalf("got %v %q, want %v containing %q", s.Code(), s.Message(), code, contains)
	}
}

func ep(addr string, port uint32) *xnatv1.Endpoint { return &xnatv1.Endpoint{Addr: addr, Port: port} }

func TestAPIValidationAndConflicts(t *testing.T) {
	e := newEnv(t, nil)
	c := e.admin
	x := ctx(t)
	_, err := c.AddPool(x, &xnatv1.AddPoolRequest{Pool: &xnatv1.Pool{Name: "p", Prefixes: []string{"nonsense"}}})
	wantCode(t, err, codes.InvalidArgument, `pool.prefixes[0]: "nonsense" is not an IPv4 prefix or address`)
	_, err = c.AddPool(x, &xnatv1.AddPoolRequest{Pool: &xnatv1.Pool{Name: "p", Prefixes: []string{"198.18.1.5/24"}}})
	wantCode(t, err, codes.InvalidArgument, "198.18.1.5/24 has host bits set (did you mean 198.18.1.0/24?)")
	_, err = c.AddPool(x, &xnatv1.AddPoolRequest{})
	wantCode(t, err, codes.InvalidArgument, "pool is required")
	_, err = c.AddPortForward(x, &xnatv1.AddPortForwardRequest{PortForward: &xnatv1.PortForward{
		Outside: ep("198.18.0.100", 80), Inside: ep("10.0.0.5", 80)}})
	wantCode(t, err, codes.InvalidArgument, "port_forward.protocol: protocol PROTOCOL_UNSPECIFIED is not tcp, udp or icmp")
	_, err = c.AddPortForward(x, &xnatv1.AddPortForwardRequest{PortForward: &xnatv1.PortForward{
		Protocol: xnatv1.Protocol_PROTOCOL_TCP, Outside: ep("198.18.0.100", 70000), Inside: ep("10.0.0.5", 80)}})
	wantCode(t, err, codes.InvalidArgument, "port_forward.outside.port: port 70000 is out of range")
	_, err = c.AddStaticMapping(x, &xnatv1.AddStaticMappingRequest{StaticMapping: &xnatv1.StaticMapping{Inside: "10.0.0.60", Outside: "::1"}})
	wantCode(t, err, codes.InvalidArgument, `static_mapping.outside: "::1" is not an IPv4 address`)

	fwd := &xnatv1.PortForward{Protocol: xnatv1.Protocol_PROTOCOL_TCP, Outside: ep("198.18.0.100", 8080), Inside: ep("10.0.0.50", 80)}
	for i := 0; i < 2; i++ { // the second time is a no-op
		if _, err := c.AddPortForward(x, &xnatv1.AddPortForwardRequest{PortForward: fwd}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.AddPortForward(x, &xnatv1.AddPortForwardRequest{PortForward: &xnatv1.PortForward{
		Protocol: xnatv1.Protocol_PROTOCOL_TCP, Outside: ep("198.18.0.100", 8080), Inside: ep("10.0.0.51", 80)}})
	wantCode(t, err, codes.AlreadyExists, "add forward tcp 198.18.0.100:8080 -> 10.0.0.51:80: tcp 198.18.0.100:8080 is already forwarded to 10.0.0.50:80")
	_, err = c.AddPool(x, &xnatv1.AddPoolRequest{Pool: &xnatv1.Pool{Name: "main", Prefixes: []string{"198.18.5.0/30"}}})
	wantCode(t, err, codes.AlreadyExists, `pool "main" already exists`)
	_, err = c.DeletePool(x, &xnatv1.DeletePoolRequest{Name: "ghost"})
	wantCode(t, err, codes.NotFound, `no pool named "ghost"`)
	_, err = c.DeleteStaticMapping(x, &xnatv1.DeleteStaticMappingRequest{Inside: "10.0.0.99"})
	wantCode(t, err, codes.NotFound, "no static mapping for 10.0.0.99")
	_, err = c.DeletePortForward(x, &xnatv1.DeletePortForwardRequest{Protocol: xnatv1.Protocol_PROTOCOL_UDP, Outside: ep("198.18.0.100", 8080)})
	wantCode(t, err, codes.NotFound, "no udp port forward on 198.18.0.100:8080")

	lf, err := e.ro.ListPortForwards(x, &xnatv1.ListPortForwardsRequest{})
	if err != nil || len(lf.PortForwards) != 1 || lf.PortForwards[0].Inside.Addr != "10.0.0.50" {
		t.Fatalf("ListPortForwards = %v, %v", lf, err)
	}
	if _, err := c.DeletePortForward(x, &xnatv1.DeletePortForwardRequest{Protocol: xnatv1.Protocol_PROTOCOL_TCP, Outside: ep("198.18.0.100", 8080)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddPool(x, &xnatv1.AddPoolRequest{Pool: &xnatv1.Pool{Name: "second", Prefixes: []string{"198.18.7.0/30", "198.18.8.1"}}}); err != nil {
		t.Fatal(err)
	}
	lp, err := e.ro.ListPools(x, &xnatv1.ListPoolsRequest{})
	if err != nil || len(lp.Pools) != 2 || strings.Join(lp.Pools[1].Prefixes, ",") != "198.18.7.0/30,198.18.8.1" {
		t.Fatalf("ListPools = %v, %v", lp, err)
	}
}

func TestAPIApplyChangesAtomic(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	st0, err := e.ro.GetStatus(x, &xnatv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	list := func() string {
		p, err1 := e.ro.ListPools(x, &xnatv1.ListPoolsRequest{})
		f, err2 := e.ro.ListPortForwards(x, &xnatv1.ListPortForwardsRequest{})
		s, err3 := e.ro.ListStaticMappings(x, &xnatv1.ListStaticMappingsRequest{})
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatal(err1, err2, err3)
		}
		return fmt.Sprint(p.Pools, f.PortForwards, s.StaticMappings)
	}
	before := list()
	_, err = e.admin.ApplyChanges(x, &xnatv1.ApplyChangesRequest{Changes: []*xnatv1.Change{
		{Change: &xnatv1.Change_AddPool{AddPool: &xnatv1.Pool{Name: "b", Prefixes: []string{"198.18.2.0/30"}}}},
		{Change: &xnatv1.Change_AddPortForward{AddPortForward: &xnatv1.PortForward{Protocol: xnatv1.Protocol_PROTOCOL_TCP, Outside: ep("198.18.2.1", 443), Inside: ep("10.0.0.50", 443)}}},
		{Change: &xnatv1.Change_AddStaticMapping{AddStaticMapping: &xnatv1.StaticMapping{Inside: "10.0.0.60", Outside: "198.18.2.2"}}},
	}})
	wantCode(t, err, codes.AlreadyExists, `change 3 (add static 10.0.0.60 <-> 198.18.2.2): static_mappings[0].outside: 198.18.2.2 is in pool "b"`)
	if after := list(); after != before {
		t.Errorf("failed batch changed the config:\n%s\n%s", before, after)
	}
	_, err = e.admin.ApplyChanges(x, &xnatv1.ApplyChangesRequest{Changes: []*xnatv1.Change{
		{Change: &xnatv1.Change_AddPool{AddPool: &xnatv1.Pool{Name: "b", Prefixes: []string{"198.18.2.0/30"}}}},
		{},
	}})
	wantCode(t, err, codes.InvalidArgument, "changes[1]: no change set")
	_, err = e.admin.ApplyChanges(x, &xnatv1.ApplyChangesRequest{})
	wantCode(t, err, codes.InvalidArgument, "no changes to apply")
	if after := list(); after != before {
		t.Errorf("refused batches changed the config:\n%s\n%s", before, after)
	}
	st1, _ := e.ro.GetStatus(x, &xnatv1.GetStatusRequest{})
	if st1.Status.ConfigGeneration != st0.Status.ConfigGeneration {
		t.Errorf("refused batches published generation %d (was %d)", st1.Status.ConfigGeneration, st0.Status.ConfigGeneration)
	}

	_, err = e.admin.ApplyChanges(x, &xnatv1.ApplyChangesRequest{Changes: []*xnatv1.Change{
		{Change: &xnatv1.Change_AddPool{AddPool: &xnatv1.Pool{Name: "b", Prefixes: []string{"198.18.2.0/30"}}}},
		{Change: &xnatv1.Change_DeletePool{DeletePool: "main"}},
		{Change: &xnatv1.Change_AddStaticMapping{AddStaticMapping: &xnatv1.StaticMapping{Inside: "10.0.0.60", Outside: "198.18.0.100"}}},
		{Change: &xnatv1.Change_AddPortForward{AddPortForward: &xnatv1.PortForward{Protocol: xnatv1.Protocol_PROTOCOL_UDP, Outside: ep("198.18.2.1", 53), Inside: ep("10.0.0.53", 53)}}},
		{Change: &xnatv1.Change_DeletePortForward{DeletePortForward: &xnatv1.PortForward{Protocol: xnatv1.Protocol_PROTOCOL_UDP, Outside: ep("198.18.2.1", 53)}}},
		{Change: &xnatv1.Change_DeleteStaticMapping{DeleteStaticMapping: "10.0.0.60"}},
		{Change: &xnatv1.Change_AddStaticMapping{AddStaticMapping: &xnatv1.StaticMapping{Inside: "10.0.0.61", Outside: "198.18.0.100"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := e.ro.GetStatus(x, &xnatv1.GetStatusRequest{})
	if st2.Status.ConfigGeneration != st0.Status.ConfigGeneration+1 {
		t.Errorf("a batch published generation %d, want %d", st2.Status.ConfigGeneration, st0.Status.ConfigGeneration+1)
	}
	if got, want := list(), `[name:"b" prefixes:"198.18.2.0/30"] [] [inside:"10.0.0.61" outside:"198.18.0.100"]`; strings.Join(strings.Fields(got), " ") != want {
		t.Errorf("after batch: %s\nwant %s", got, want)
	}
}

// openUDP creates n UDP sessions from 10.0.0.5, ports from base.
func openUDP(t *testing.T, e *env, n int, base uint16) {
	t.Helper()
	for i := 0; i < n; i++ {
		in := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.5"), base+uint16(i))
		if err := e.core.Open(nat.UDP, in, netip.MustParseAddrPort("203.0.113.9:53")); err != nil {
			t.Fatal(err)
		}
	}
}

type sessKey struct {
	id  uint32
	gen uint64
}

func TestAPIListSessionsPaginationOverChangingTable(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	openUDP(t, e, 150, 20000)
	all := map[uint32]*xnatv1.Session{} // inside port -> session
	r, err := e.ro.ListSessions(x, &xnatv1.ListSessionsRequest{PageSize: 1000})
	if err != nil || len(r.Sessions) != 150 || r.NextPageToken != "" {
		t.Fatalf("full listing: %d sessions, token %q, %v", len(r.GetSessions()), r.GetNextPageToken(), err)
	}
	for _, s := range r.Sessions {
		all[s.Inside.Port] = s
	}

	seen := map[sessKey]int{}
	var deleted []*xnatv1.Session
	tok := ""
	pages := 0
	for {
		r, err := e.ro.ListSessions(x, &xnatv1.ListSessionsRequest{PageSize: 20, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(r.Sessions) > 20 {
			t.Fatalf("page of %d > page size", len(r.Sessions))
		}
		for _, s := range r.Sessions {
			seen[sessKey{s.Id, s.Generation}]++
		}
		if pages == 2 {
			// Between pages: delete ten sessions not listed yet and
			// create ten new ones.
			var last uint32
			for _, s := range r.Sessions {
				last = max(last, s.Id)
			}
			for _, s := range all {
				if s.Id > last+5 && len(deleted) < 10 {
					if _, err := e.admin.DeleteSession(x, &xnatv1.DeleteSessionRequest{Id: s.Id, Generation: s.Generation}); err != nil {
						t.Fatal(err)
					}
					deleted = append(deleted, s)
				}
			}
			openUDP(t, e, 10, 30000)
		}
		if r.NextPageToken == "" {
			break
		}
		tok = r.NextPageToken
	}
	if len(deleted) != 10 {
		t.Fatalf("deleted %d sessions, want 10", len(deleted))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("session %v listed %d times", k, n)
		}
	}
	gone := map[sessKey]bool{}
	for _, s := range deleted {
		gone[sessKey{s.Id, s.Generation}] = true
		if seen[sessKey{s.Id, s.Generation}] != 0 {
			t.Errorf("session %d/%d listed after its deletion", s.Id, s.Generation)
		}
	}
	for _, s := range all {
		k := sessKey{s.Id, s.Generation}
		if !gone[k] && seen[k] != 1 {
			t.Errorf("session %v alive throughout was listed %d times", k, seen[k])
		}
	}
	t.Logf("%d pages, %d distinct sessions seen", pages, len(seen))

	_, err = e.ro.ListSessions(x, &xnatv1.ListSessionsRequest{PageToken: "garbage"})
	wantCode(t, err, codes.InvalidArgument, `page_token "garbage" is not a token from a previous page`)
	_, err = e.ro.ListSessions(x, &xnatv1.ListSessionsRequest{PageSize: -1})
	wantCode(t, err, codes.InvalidArgument, "page_size -1 is negative")
	big, err := e.ro.ListSessions(x, &xnatv1.ListSessionsRequest{PageSize: 5000})
	if err != nil || len(big.Sessions) != 150 {
		t.Fatalf("page_size 5000: %d, %v", len(big.GetSessions()), err)
	}
}

func TestAPIStreamSessionsAndFilters(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	openUDP(t, e, 40, 20000)
	if err := e.core.Open(nat.TCP, netip.MustParseAddrPort("10.0.0.7:40000"), netip.MustParseAddrPort("203.0.113.10:443")); err != nil {
		t.Fatal(err)
	}
	stream := func(f *xnatv1.SessionFilter, batch int32) ([]*xnatv1.Session, int) {
		st, err := e.ro.StreamSessions(x, &xnatv1.StreamSessionsRequest{Filter: f, BatchSize: batch})
		if err != nil {
			t.Fatal(err)
		}
		var out []*xnatv1.Session
		msgs := 0
		for {
			m, err := st.Recv()
			if err == io.EOF {
				return out, msgs
			}
			if err != nil {
				t.Fatal(err)
			}
			msgs++
			out = append(out, m.Sessions...)
		}
	}
	all, msgs := stream(nil, 7)
	if len(all) != 41 || msgs != 6 {
		t.Errorf("streamed %d sessions in %d messages, want 41 in 6", len(all), msgs)
	}
	tcp, _ := stream(&xnatv1.SessionFilter{Protocol: xnatv1.Protocol_PROTOCOL_TCP}, 0)
	if len(tcp) != 1 || tcp[0].Inside.Addr != "10.0.0.7" || tcp[0].State != "syn_sent" || tcp[0].Kind != "dynamic" {
		t.Errorf("tcp filter: %v", tcp)
	}
	one, _ := stream(&xnatv1.SessionFilter{InsideAddr: "10.0.0.5", InsidePort: 20003}, 0)
	if len(one) != 1 || one[0].Inside.Port != 20003 || one[0].Outside.Addr != "198.18.0.100" || one[0].Remote.Addr != "203.0.113.9" {
		t.Errorf("inside filter: %v", one)
	}
	out, _ := stream(&xnatv1.SessionFilter{OutsideAddr: "198.18.0.100", OutsidePort: one[0].Outside.Port}, 0)
	if len(out) != 1 || out[0].Id != one[0].Id {
		t.Errorf("outside filter: %v", out)
	}
	none, _ := stream(&xnatv1.SessionFilter{RemoteAddr: "192.0.2.1"}, 0)
	if len(none) != 0 {
		t.Errorf("remote filter matched %d", len(none))
	}
	st, err := e.ro.StreamSessions(x, &xnatv1.StreamSessionsRequest{Filter: &xnatv1.SessionFilter{InsideAddr: "10.0.0"}})
	if err == nil {
		_, err = st.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, `filter.inside_addr: "10.0.0" is not an IPv4 address`)
}

func TestAPIDeleteAndFlushSessions(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	openUDP(t, e, 10, 20000)
	if err := e.core.Open(nat.TCP, netip.MustParseAddrPort("10.0.0.7:40000"), netip.MustParseAddrPort("203.0.113.10:443")); err != nil {
		t.Fatal(err)
	}
	r, _ := e.ro.ListSessions(x, &xnatv1.ListSessionsRequest{Filter: &xnatv1.SessionFilter{InsidePort: 20000}})
	if len(r.Sessions) != 1 {
		t.Fatalf("%d sessions for port 20000", len(r.Sessions))
	}
	s := r.Sessions[0]
	if _, err := e.admin.DeleteSession(x, &xnatv1.DeleteSessionRequest{Id: s.Id, Generation: s.Generation}); err != nil {
		t.Fatal(err)
	}
	_, err := e.admin.DeleteSession(x, &xnatv1.DeleteSessionRequest{Id: s.Id, Generation: s.Generation})
	wantCode(t, err, codes.NotFound, fmt.Sprintf("session %d (generation %d) does not exist any more", s.Id, s.Generation))
	f, err := e.admin.FlushSessions(x, &xnatv1.FlushSessionsRequest{Filter: &xnatv1.SessionFilter{Protocol: xnatv1.Protocol_PROTOCOL_UDP}})
	if err != nil || f.Deleted != 9 {
		t.Fatalf("flush udp: %v, %v", f, err)
	}
	r, _ = e.ro.ListSessions(x, &xnatv1.ListSessionsRequest{})
	if len(r.Sessions) != 1 || r.Sessions[0].Protocol != xnatv1.Protocol_PROTOCOL_TCP {
		t.Errorf("left after flush: %v", r.Sessions)
	}
	st, _ := e.ro.GetStats(x, &xnatv1.GetStatsRequest{})
	if st.Stats.Sessions.Tcp != 1 || st.Stats.Sessions.Udp != 0 {
		t.Errorf("stats sessions %v", st.Stats.Sessions)
	}
}

func TestAPIStatusAndStats(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	openUDP(t, e, 3, 20000)
	s, err := e.ro.GetStatus(x, &xnatv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Status
	if st.Version != "test" || st.Uptime.AsDuration() != 90*time.Minute || st.SessionsInUse != 3 || st.SessionsCapacity != 4096 ||
		len(st.Interfaces) != 2 || st.Interfaces[0].Mac != "02:00:00:00:01:01" || st.Interfaces[1].Side != xnatv1.Side_SIDE_OUTSIDE ||
		len(st.Workers) != 1 || st.Workers[0].Cpu != 1 || len(st.Pools) != 1 {
		t.Fatalf("status: %v", st)
	}
	a := st.Pools[0].Addresses[0]
	if a.Addr != "198.18.0.100" || a.PortsInUse.Udp != 3 || a.PortsTotal.Udp != 64512 || a.Subscribers != 1 {
		t.Errorf("pool address: %v", a)
	}
	if u := st.Pools[0].Utilization; u <= 0 || u > 3.0/(3*64512)+1e-12 {
		t.Errorf("utilization %v", u)
	}
	// A packet to a closed port is dropped with a reason.
	e.core.Send(nat.Outside, mgmttestFrame(nat.Outside, "203.0.113.9:53", "198.18.0.100:9"))
	r, err := e.ro.GetStats(x, &xnatv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	w := r.Stats.Workers[0]
	if w.Inside.RxPackets != 3 || w.Outside.TxPackets != 3 || w.Outside.RxPackets != 1 || w.SessionsCreated.Udp != 3 {
		t.Errorf("worker stats: %v", w)
	}
	if len(w.Drops) != 1 || w.Drops[0].Name != "no_session" || w.Drops[0].Packets != 1 {
		t.Errorf("drops: %v", w.Drops)
	}
	if len(r.Stats.Interfaces) != 2 || r.Stats.Interfaces[0].RxPackets != 3 || r.Stats.Sessions.Udp != 3 {
		t.Errorf("stats: %v", r.Stats)
	}
}

func TestAPIWatchStats(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	st, err := e.ro.WatchStats(x, &xnatv1.WatchStatsRequest{Interval: durationpb.New(50 * time.Millisecond)})
	if err == nil {
		_, err = st.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "interval 50ms is out of range 100ms..1h0m0s")
	st, err = e.ro.WatchStats(x, &xnatv1.WatchStatsRequest{Interval: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	m1, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	openUDP(t, e, 2, 20000)
	var m2 *xnatv1.WatchStatsResponse
	for i := 0; i < 50; i++ {
		if m2, err = st.Recv(); err != nil {
			t.Fatal(err)
		}
		if m2.Stats.Workers[0].Inside.RxPackets == 2 {
			break
		}
	}
	if m1.Stats.Workers[0].Inside.RxPackets != 0 || m2.Stats.Workers[0].Inside.RxPackets != 2 {
		t.Errorf("watch: %d then %d packets", m1.Stats.Workers[0].Inside.RxPackets, m2.Stats.Workers[0].Inside.RxPackets)
	}
}

func TestAPIWatchEvents(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	all, err := e.ro.WatchEvents(x, &xnatv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	del, err := e.ro.WatchEvents(x, &xnatv1.WatchEventsRequest{Types: []xnatv1.EventType{xnatv1.EventType_EVENT_TYPE_SESSION_DELETED}})
	if err != nil {
		t.Fatal(err)
	}
	// The subscription is registered when the server handles the call;
	// wait for both before making traffic.
	for e.core.Events.Stats().Subscribers < 2 {
		time.Sleep(time.Millisecond)
	}
	openUDP(t, e, 1, 20000)
	if _, err := e.admin.FlushSessions(x, &xnatv1.FlushSessionsRequest{}); err != nil {
		t.Fatal(err)
	}
	var types []string
	for len(types) < 4 {
		m, err := all.Recv()
		if err != nil {
			t.Fatal(err)
		}
		ev := m.Event
		types = append(types, ev.Type.String())
		if ev.Type == xnatv1.EventType_EVENT_TYPE_SESSION_CREATED &&
			(ev.Protocol != xnatv1.Protocol_PROTOCOL_UDP || ev.Inside.Addr != "10.0.0.5" || ev.Inside.Port != 20000 || ev.Outside.Addr != "198.18.0.100") {
			t.Errorf("created event: %v", ev)
		}
	}
	if got := strings.Join(types, " "); !strings.Contains(got, "SESSION_CREATED") || !strings.Contains(got, "ADDRESS_BOUND") || !strings.Contains(got, "SESSION_DELETED") {
		t.Errorf("events: %s", got)
	}
	m, err := del.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.Event.Type != xnatv1.EventType_EVENT_TYPE_SESSION_DELETED || m.Event.Reason != "operator" {
		t.Errorf("filtered stream got %v", m.Event)
	}
	_, err = e.ro.WatchEvents(x, &xnatv1.WatchEventsRequest{Types: []xnatv1.EventType{99}})
	if err == nil {
		s, _ := e.ro.WatchEvents(x, &xnatv1.WatchEventsRequest{Types: []xnatv1.EventType{99}})
		_, err = s.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "unknown event type 99")
}

func TestAPIReload(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	_, err := e.admin.ReloadConfig(x, &xnatv1.ReloadConfigRequest{})
	wantCode(t, err, codes.Unavailable, "no configuration file to reload")
	cfg := e.core.Config()
	cfg.Pools[0].Addresses = []netip.Prefix{netip.MustParsePrefix("198.18.4.0/30")}
	e.core.SetReload(&cfg, nil)
	if _, err := e.admin.ReloadConfig(x, &xnatv1.ReloadConfigRequest{}); err != nil {
		t.Fatal(err)
	}
	lp, _ := e.ro.ListPools(x, &xnatv1.ListPoolsRequest{})
	if lp.Pools[0].Prefixes[0] != "198.18.4.0/30" {
		t.Errorf("after reload: %v", lp.Pools)
	}
}

// Stopping the server ends long-lived streams cleanly instead of waiting
// for clients to hang up.
func TestShutdownEndsStreams(t *testing.T) {
	core := newCore(t)
	sock := filepath.Join(t.TempDir(), "natd.sock")
	srv, err := mgmt.NewServer(core, mgmt.ServerOptions{SocketPath: sock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(sctx) }()
	c, err := client.Dial(client.Options{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	x := ctx(t)
	ev, err := c.WatchEvents(x, &xnatv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.WatchStats(x, &xnatv1.WatchStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	for core.Events.Stats().Subscribers == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Recv(); err != io.EOF {
		t.Errorf("WatchEvents after shutdown: %v, want a clean end", err)
	}
	for {
		if _, err := st.Recv(); err != nil {
			if err != io.EOF {
				t.Errorf("WatchStats after shutdown: %v, want a clean end", err)
			}
			break
		}
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// BenchmarkStreamSessions walks a table of 4000 sessions through the API
// over the admin socket.
func BenchmarkStreamSessions(b *testing.B) {
	core := newCore(b)
	const n = 4000
	for i := 0; i < n; i++ {
		in := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(1 + i%250)}), uint16(10000+i/250))
		if err := core.Open(nat.UDP, in, netip.MustParseAddrPort("203.0.113.9:53")); err != nil {
			b.Fatal(err)
		}
	}
	sock := filepath.Join(b.TempDir(), "natd.sock")
	mgmttest.Server(b, core, mgmt.ServerOptions{SocketPath: sock, Logger: slog.New(slog.DiscardHandler)})
	c, err := client.Dial(client.Options{Socket: sock})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	for b.Loop() {
		st, err := c.StreamSessions(context.Background(), &xnatv1.StreamSessionsRequest{BatchSize: 1000})
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			m, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			got += len(m.Sessions)
		}
		if got != n {
			b.Fatalf("streamed %d sessions, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/session")
}

func TestAPIExpiryShowsInStatsAndEvents(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	evs, err := e.ro.WatchEvents(x, &xnatv1.WatchEventsRequest{Types: []xnatv1.EventType{xnatv1.EventType_EVENT_TYPE_SESSION_DELETED}})
	if err != nil {
		t.Fatal(err)
	}
	for e.core.Events.Stats().Subscribers == 0 {
		time.Sleep(time.Millisecond)
	}
	openUDP(t, e, 4, 20000)
	e.core.Clock.Advance(301 * time.Second) // past the 5-minute UDP timeout (RFC 4787 REQ-5)
	if n := e.core.Housekeep(); n != 4 {
		t.Fatalf("housekeeping expired %d sessions, want 4", n)
	}
	for i := 0; i < 4; i++ {
		m, err := evs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.Event.Reason != "idle" || m.Event.Protocol != xnatv1.Protocol_PROTOCOL_UDP {
			t.Errorf("deletion event %v", m.Event)
		}
	}
	r, err := e.ro.GetStats(x, &xnatv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stats.SessionsExpired.Udp != 4 || r.Stats.Sessions.Udp != 0 || r.Stats.SessionsDeleted != 0 {
		t.Errorf("stats after expiry: expired %v live %v deleted %d", r.Stats.SessionsExpired, r.Stats.Sessions, r.Stats.SessionsDeleted)
	}
}
