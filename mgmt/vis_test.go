package mgmt_test

import (
	"encoding/json"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/internal/wait"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// TestVisExplainAndDropsReadOnly: explain and drops work on the read-only
// socket; explain of an open flow finds its session; drops counts a
// dropped packet and samples its 5-tuple.
func TestVisExplainAndDropsReadOnly(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	openUDP(t, e, 1, 20000)
	r, err := e.ro.Explain(x, &xnatv1.ExplainRequest{Side: xnatv1.Side_SIDE_INSIDE, Protocol: xnatv1.Protocol_PROTOCOL_UDP,
		Source: &xnatv1.Endpoint{Addr: "10.0.0.5", Port: 20000}, Destination: &xnatv1.Endpoint{Addr: "203.0.113.9", Port: 53}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != "forwarded" || !hasStepCode(r.Steps, "session_hit") {
		t.Fatalf("explain: %v", r)
	}
	// A new subscriber: the address step names its pool.
	r, err = e.ro.Explain(x, &xnatv1.ExplainRequest{Side: xnatv1.Side_SIDE_INSIDE, Protocol: xnatv1.Protocol_PROTOCOL_UDP,
		Source: &xnatv1.Endpoint{Addr: "10.0.0.6", Port: 1000}, Destination: &xnatv1.Endpoint{Addr: "203.0.113.9", Port: 53}})
	if err != nil {
		t.Fatal(err)
	}
	var addrStep string
	for _, s := range r.Steps {
		if s.Stage == "address" {
			addrStep = s.Text
		}
	}
	if r.Verdict != "forwarded" || !strings.HasPrefix(addrStep, "198.18.0.100 from pool main, a new pairing") {
		t.Fatalf("explain of a new subscriber: %v", r)
	}
	_, err = e.ro.Explain(x, &xnatv1.ExplainRequest{Side: xnatv1.Side_SIDE_INSIDE, Protocol: xnatv1.Protocol_PROTOCOL_UDP})
	wantCode(t, err, codes.InvalidArgument, "source is required")

	e.core.Send(nat.Inside, mgmttestFrame(nat.Inside, "192.168.7.7:5555", "203.0.113.9:53"))
	d, err := e.ro.GetDrops(x, &xnatv1.GetDropsRequest{Interval: durationpb.New(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, rs := range d.Reasons {
		if rs.Reason == "not_inside" {
			found = rs.Total == 1 && len(rs.Samples) == 1 && rs.Samples[0].Source.GetAddr() == "192.168.7.7" &&
				rs.Samples[0].Source.GetPort() == 5555 && rs.Samples[0].IpProtocol == 17
		}
	}
	if !found {
		t.Fatalf("drops: %v", d)
	}
	_, err = e.ro.GetDrops(x, &xnatv1.GetDropsRequest{Interval: durationpb.New(time.Hour)})
	wantCode(t, err, codes.InvalidArgument, "interval 1h0m0s out of range 100ms..10s")
}

func hasStepCode(ss []*xnatv1.TraceStep, code string) bool {
	for _, s := range ss {
		if s.Code == code {
			return true
		}
	}
	return false
}

// TestVisTraceAndCaptureAudited: a trace and a capture over the admin
// socket see a packet; each session is in the audit log when it starts
// (with its request) and when it ends.
func TestVisTraceAndCaptureAudited(t *testing.T) {
	e := newEnv(t, nil)
	x := ctx(t)
	st, err := e.admin.Trace(x, &xnatv1.TraceRequest{Count: 1, Filter: &xnatv1.VisFilter{Inside: "10.0.0.5", Port: 30000}})
	if err != nil {
		t.Fatal(err)
	}
	cst, err := e.admin.Capture(x, &xnatv1.CaptureRequest{Count: 2, Filter: &xnatv1.VisFilter{Inside: "10.0.0.5", Port: 30000}})
	if err != nil {
		t.Fatal(err)
	}
	// Each stream's first message says it is running; then one packet is
	// seen by both.
	if m, err := st.Recv(); err != nil || m.Packet != nil {
		t.Fatalf("trace's first message %v, %v; want the empty one that says it runs", m, err)
	}
	if m, err := cst.Recv(); err != nil || len(m.Frames) != 0 {
		t.Fatalf("capture's first message %v, %v; want the empty one that says it runs", m, err)
	}
	if n := strings.Count(e.log.String(), `"result":"started"`); n != 2 {
		t.Fatalf("%d audit records of a session start; log:\n%s", n, e.log.String())
	}
	if err := e.core.Open(nat.UDP, netip.MustParseAddrPort("10.0.0.5:30000"), netip.MustParseAddrPort("203.0.113.9:53")); err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	p := m.Packet
	if p.Verdict != "forwarded" || !hasStepCode(p.Steps, "eim_new") || !hasStepCode(p.Steps, "transmit") || p.Side != xnatv1.Side_SIDE_INSIDE {
		t.Fatalf("traced packet: %v", p)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("trace of 1 packet did not end: %v", err)
	}
	var frames []*xnatv1.CapturedFrame
	for len(frames) < 2 {
		cm, err := cst.Recv()
		if err != nil {
			t.Fatalf("capture: %v after %d frames", err, len(frames))
		}
		frames = append(frames, cm.Frames...)
	}
	if frames[0].Stage != xnatv1.CaptureStage_CAPTURE_STAGE_RX || frames[1].Stage != xnatv1.CaptureStage_CAPTURE_STAGE_TX ||
		frames[1].Side != xnatv1.Side_SIDE_OUTSIDE || frames[0].Packet != frames[1].Packet {
		t.Fatalf("captured %v", frames)
	}
	if _, err := cst.Recv(); err != io.EOF {
		t.Fatalf("capture of 2 frames did not end: %v", err)
	}
	// The end of each session is audited too, with its request.
	ends := 0
	if !wait.For(15*time.Second, func() bool {
		ends = 0
		for _, line := range strings.Split(e.log.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "audit" || rec["result"] != "OK" {
				continue
			}
			if req, _ := rec["request"].(string); strings.Contains(req, "10.0.0.5") && (rec["method"] == "Trace" || rec["method"] == "Capture") {
				ends++
			}
		}
		return ends == 2
	}) {
		t.Fatalf("%d session ends audited; log:\n%s", ends, e.log.String())
	}
}
