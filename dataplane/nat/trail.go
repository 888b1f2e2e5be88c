package nat

import (
	"github.com/xnat/xnat/dataplane/drop"
)

// A decision trail: what the NAT decided about one packet (trace) or would
// decide about a 5-tuple (explain), as fixed-size, pointer-free steps of a
// code and numeric arguments. Workers write them without allocating; the
// management plane renders them (Step.Text).

// Code is one decision, or one observation of the packet path.
type Code uint8

const (
	CodeNone Code = iota

	// parse
	CodeParsed      // proto A:PA -> B:PB, X = TCP flags, Y = length
	CodeParseFailed // Reason
	// route: where the packet goes before any NAT state is looked at
	CodeMartian     // A or B martian: drop bad_address
	CodeNotInside   // source A not in an inside prefix
	CodeForUs       // destination A is the appliance's own
	CodeInsideRoute // between inside networks, no translation
	CodeOutbound    // from inside to outside: translate the source
	CodeInbound     // to public address A: translate the destination
	CodeNotPublic   // to A, not an address the NAT answers for
	CodeTTLExpired  // TTL X would expire: Time Exceeded
	CodeICMPError   // ICMP error: translated by the session it quotes
	CodeLaterFrag   // non-first fragment: follows its first fragment
	// session
	CodeSessionHit  // session X (gen in Y) translates to A:PA
	CodeSessionMiss // no session
	// mapping (outbound) or admission (inbound)
	CodeForwardRule // port forward: outside A:PA <-> inside B:PB
	CodeStaticRule  // static mapping: outside A <-> inside B
	CodeEIMExisting // endpoint-independent mapping A:PA exists for this inside endpoint
	CodeEIMNew      // new endpoint-independent mapping
	CodeAPDMNew     // new address-and-port-dependent mapping
	CodeNoMapping   // no mapping for external A:PA: no_session
	CodeReplyOnly   // ICMP reply without a session: only requests open one
	CodeNoInboundICMP
	// external address
	CodeAddrPaired // address A: the subscriber's paired address (RFC 4787 REQ-2)
	CodeAddrNew    // address A: a new pairing, chosen by hashing the subscriber
	CodeAddrRepair // the paired address left the pools: pair again with A
	CodeNoAddress  // no pool address can take a new subscriber
	// external port
	CodePortKept    // port PA kept (port preservation, RFC 4787 REQ-3)
	CodePortRandom  // port PA in use or outside the range: a random one from this worker's share (RFC 6056)
	CodePortOverlap // no free port: share one (address-and-port-dependent mapping)
	// filtering (inbound to a dynamic mapping)
	CodeFilterEIF     // endpoint-independent filtering: anyone may reach the mapping
	CodeFilterADFOK   // address-dependent filtering: A has been sent to from the mapping
	CodeFilterADFDeny // address-dependent filtering and no permission for A
	CodeFilterAPDF    // address-and-port-dependent filtering: only sessions' own remote endpoints
	CodeFilterNotSYN  // TCP without a lone SYN cannot open a connection from outside
	CodePermNew       // address-dependent filtering: a permission for A will be created
	// quotas
	CodeQuotaOK       // subscriber has X sessions (limit Y)
	CodeQuotaSessions // Reason: the subscriber's session limit Y is reached
	CodeQuotaPorts    // Reason: the subscriber's port limit Y is reached
	CodeInboundLimit  // sessions opened from outside X reached the limit Y
	// results
	CodeCreate     // a session will be (trace: was) created
	CodeRewriteSrc // source A:PA -> B:PB
	CodeRewriteDst // destination A:PA -> B:PB
	CodeHairpin    // to one of our public addresses: back inside
	CodeNextHop    // egress Side, MAC in A+PA
	CodeTransmit   // queued on Side
	CodeICMPSent   // answered with an ICMP error on Side
	CodeHeld       // held: neighbour resolution or fragment reassembly
	CodeDrop       // Reason
	CodeWouldPass  // explain: the packet would be translated and sent on Side
	CodeWouldDrop  // explain: Reason
	CodeFragmented // sent as X fragments

	numCodes
)

// Step is one line of a trail.
type Step struct {
	Code   Code
	Reason drop.Reason
	Side   Side
	Proto  uint8
	A, B   [4]byte
	PA, PB uint16
	X, Y   uint32
}

// MaxSteps bounds a trail.
const MaxSteps = 16

// Trail is a fixed-size list of steps.
type Trail struct {
	N     uint8
	Steps [MaxSteps]Step
}

func (t *Trail) add(s Step) {
	if int(t.N) < MaxSteps {
		t.Steps[t.N] = s
		t.N++
	}
}

// List returns the steps.
func (t *Trail) List() []Step { return t.Steps[:t.N] }

// TraceRecord is the trail of one traced packet.
type TraceRecord struct {
	UnixNano int64
	Packet   uint64
	Worker   uint8
	Side     Side // arrival
	Trail    Trail
}
