// Package mgmt is xnat's management plane: the gRPC API (xnat.v1), its
// access control and audit log, the Prometheus collector and the session
// event exporter. It runs beside the dataplane and never on its goroutines:
// everything it reads from workers is per-worker state published once per
// burst, so a scrape or a million-session listing never slows a packet.
//
// Every gRPC handler and every natctl command wraps one method of Core, the
// API natd implements. Errors cross that boundary wrapped around the
// sentinel errors below and are mapped to gRPC status codes in one place
// (see ToStatus).
package mgmt

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/xnat/xnat/dataplane/nat"
)

// Sentinel errors of the core API. Implementations wrap them with %w and a
// precise message; ToStatus maps them to gRPC codes.
var (
	ErrInvalid       = errors.New("invalid argument")        // codes.InvalidArgument
	ErrAlreadyExists = errors.New("already exists")          // codes.AlreadyExists (a conflicting object)
	ErrNotFound      = errors.New("not found")               // codes.NotFound
	ErrPermission    = errors.New("permission denied")       // codes.PermissionDenied
	ErrUnavailable   = errors.New("temporarily unavailable") // codes.Unavailable
)

// Core is what natd exposes to the management plane. All methods are safe
// for concurrent use, never block the dataplane, and are cheap enough to
// call from a gRPC handler.
type Core interface {
	// Status describes the running appliance.
	Status() Status
	// Stats returns per-worker and per-interface counters, summed from the
	// workers' published counters at call time.
	Stats() Stats
	// Sessions lists up to limit sessions matching f from cursor (0 for
	// the first page); next is 0 when the listing is complete.
	Sessions(ctx context.Context, f nat.SessionFilter, cursor uint32, limit int) (s []nat.Session, next uint32, err error)
	// DeleteSession deletes one session, as identified in a listing.
	DeleteSession(id uint32, gen uint64) error
	// FlushSessions deletes every session matching f.
	FlushSessions(f nat.SessionFilter) (int, error)

	// Config returns the NAT configuration in force.
	Config() nat.Config
	// AddPool adds a pool. Adding an identical pool again is a no-op;
	// a different pool of the same name, or addresses already in use,
	// is ErrAlreadyExists.
	AddPool(p nat.Pool) error
	// DeletePool removes a pool by name (ErrNotFound if absent). Its
	// addresses keep serving existing mappings until they expire.
	DeletePool(name string) error
	// AddPortForward, DeletePortForward, AddStaticMapping and
	// DeleteStaticMapping change rules with the same idempotency rules:
	// an identical rule is a no-op, a conflicting one ErrAlreadyExists.
	AddPortForward(r nat.PortForward) error
	DeletePortForward(proto nat.Proto, outside netip.AddrPort) error
	AddStaticMapping(m nat.StaticMapping) error
	DeleteStaticMapping(inside netip.Addr) error
	// Apply applies several changes atomically: either all of them are
	// validated and published in one new snapshot, or none is.
	Apply(changes []Change) error
	// Reload re-reads the config file, as SIGHUP does.
	Reload() error

	// SubscribeEvents returns a channel of engine events (session
	// create/delete, exhaustion, quota). The channel is closed when ctx
	// ends. A slow subscriber loses events (counted), never blocks the
	// exporter or the dataplane.
	SubscribeEvents(ctx context.Context) <-chan nat.Event

	// Capture, Trace, Explain and Drops: operator visibility (vis.go).
	VisCore
	// --- scale-out (BGP) ---
	// BGPStatus describes the BGP sessions, announcements and drain
	// state; Enabled is false when natd speaks no BGP.
	BGPStatus() BGPStatus
	// SetDrain drains (true) or undrains the appliance: draining
	// withdraws the inside announcements so that no new subscribers
	// arrive, and keeps the outside ones so that existing sessions
	// finish. ErrUnavailable when natd speaks no BGP.
	SetDrain(drain bool) (BGPStatus, error)

	// Lookup answers who held a public address and port, or what a
	// subscriber holds (LookupEngine, docs/cgn.md).
	Lookup(ctx context.Context, q LookupQuery) (LookupResult, error)
}

// ChangeOp is the kind of a configuration change.
type ChangeOp uint8

const (
	AddPool ChangeOp = iota + 1
	DeletePool
	AddPortForward
	DeletePortForward
	AddStaticMapping
	DeleteStaticMapping
)

// Change is one configuration change of an atomic Apply. Only the fields
// its Op needs are read.
type Change struct {
	Op            ChangeOp
	Pool          nat.Pool          // AddPool
	PoolName      string            // DeletePool
	PortForward   nat.PortForward   // AddPortForward; Proto and Outside for DeletePortForward
	StaticMapping nat.StaticMapping // AddStaticMapping; Inside for DeleteStaticMapping
}

// Status describes the running appliance.
type Status struct {
	Version          string
	StartTime        time.Time
	ConfigGeneration uint64
	ConfigFile       string
	Interfaces       []InterfaceStatus
	Workers          []WorkerStatus
	SessionsInUse    int
	SessionsCapacity int
	Pools            []PoolStatus
}

// InterfaceStatus is one dataplane interface.
type InterfaceStatus struct {
	Name    string
	Side    nat.Side
	Ifindex int
	MAC     [6]byte
	Addr    netip.Addr
	MTU     int
	Queues  []int
	XDPMode string // "native" or "generic"
	XSKMode string // "copy" or "zerocopy"
	LinkUp  bool
}

// WorkerStatus is one worker goroutine.
type WorkerStatus struct {
	ID         int
	CPU        int // -1 when not pinned
	PollMode   string
	Queues     [nat.NumSides]int
	BusyRatio  float64 // share of recent polls that moved frames
	LinkErrors uint64
	Interfaces [nat.NumSides]string
}

// PoolStatus is the utilisation of one pool.
type PoolStatus struct {
	Name      string
	Addresses []AddressStatus
}

// AddressStatus is the utilisation of one external address.
type AddressStatus struct {
	Addr        netip.Addr
	Subscribers int
	PortsInUse  [nat.NumProtos]int
	PortsTotal  [nat.NumProtos]int
	// Draining: the address left the configuration and still holds
	// the subscribers, sessions and ports counted here.
	Draining bool
	// RuleSessions counts sessions of static mappings and port forwards.
	RuleSessions int
}

// Stats are counters.
type Stats struct {
	Time       time.Time
	Workers    []WorkerStats
	Interfaces []InterfaceStats
	// SessionsExpired counts idle expiries by protocol.
	SessionsExpired [nat.NumProtos]uint64
	// SessionsDeleted counts operator deletions.
	SessionsDeleted uint64
	// Sessions is the number of live sessions by protocol.
	Sessions      [nat.NumProtos]uint64
	EventsDropped uint64
	// PortHoldsShortened counts hold-downs ended early for want of room
	// in the port table (nat.Engine.PortHoldsShortened).
	PortHoldsShortened uint64
	// CGN counts port blocks (block mode, docs/cgn.md).
	CGN nat.CGNStats
}

// WorkerStats are one worker's counters (see nat.Counter for the index).
type WorkerStats struct {
	ID       int
	Counters nat.Counters
	// Panics counts panics of the worker's poll loop, each recovered
	// and the loop restarted (dataplane/poller).
	Panics uint64
}

// InterfaceStats are per-interface, per-queue port counters.
type InterfaceStats struct {
	Name      string
	Queue     int
	RxPackets uint64
	RxBytes   uint64
	TxPackets uint64
	TxBytes   uint64
	// Drops are frames the port itself lost (full rings, copy failures).
	Drops uint64
}
