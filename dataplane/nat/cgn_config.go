package nat

import (
	"errors"
	"fmt"
)

// Carrier-grade NAT port allocation (issue 13, docs/cgn.md): how external
// ports are handed to subscribers, which decides what must be logged to
// trace a public address and port back to a subscriber.

// PortAllocation is nat.port_allocation.
type PortAllocation uint8

const (
	// AllocDynamic hands out each port on its own, at random across the
	// address (RFC 6056, RFC 6888); every session is logged.
	AllocDynamic PortAllocation = iota
	// AllocBlock hands a subscriber blocks of BlockSize ports (port-block
	// allocation, PBA); one record per block, not per session.
	AllocBlock
	// AllocDeterministic gives every subscriber a fixed address and port
	// range computed from the configuration (RFC 7422); nothing is logged
	// per session, the configuration is the log.
	AllocDeterministic
)

var allocNames = [...]string{"dynamic", "block", "deterministic"}

func (a PortAllocation) String() string {
	if int(a) < len(allocNames) {
		return allocNames[a]
	}
	return fmt.Sprintf("port_allocation(%d)", uint8(a))
}

// MarshalText implements encoding.TextMarshaler.
func (a PortAllocation) MarshalText() ([]byte, error) {
	if int(a) >= len(allocNames) {
		return nil, fmt.Errorf("unknown port allocation %d", uint8(a))
	}
	return []byte(allocNames[a]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler ("" is dynamic).
func (a *PortAllocation) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*a = AllocDynamic
		return nil
	}
	for i, n := range allocNames {
		if n == string(b) {
			*a = PortAllocation(i)
			return nil
		}
	}
	return fmt.Errorf("%q is not dynamic, block or deterministic", b)
}

// CGN is the port-allocation part of Config.
type CGN struct {
	PortAllocation PortAllocation
	// BlockSize is the ports in one block (block mode); default 512.
	BlockSize int
	// MaxBlocks is the blocks one subscriber may hold at once (block
	// mode); default 4.
	MaxBlocks int
	// PortsPerSubscriber is P, the size of every subscriber's port range
	// in deterministic mode (RFC 7422); required there.
	PortsPerSubscriber int
	// LogSessions keeps per-session (and per-address-binding) events in
	// block and deterministic modes, where they are off by default.
	LogSessions bool
}

const (
	// DefaultBlockSize and DefaultMaxBlocks are the block-mode defaults.
	DefaultBlockSize = 512
	DefaultMaxBlocks = 4
	// MaxBlockSlots bounds max_blocks: a subscriber's blocks are looked up
	// slot by slot.
	MaxBlockSlots = 64
	// detFirstPort and DetPortsPerAddress: deterministic ranges are cut
	// from ports 1024-65535 of every address (RFC 7422 section 2 leaves
	// the well-known ports out), 64512 ports.
	detFirstPort       = 1024
	DetPortsPerAddress = 65536 - detFirstPort
)

// defaultCGN is DefaultConfig's CGN part.
func defaultCGN() CGN {
	return CGN{BlockSize: DefaultBlockSize, MaxBlocks: DefaultMaxBlocks}
}

// validateCGN checks the CGN fields against the rest of the config; part of
// Validate.
func (c *Config) validateCGN() []error {
	var errs []error
	g := &c.CGN
	full := PortRange{detFirstPort, 65535}
	switch g.PortAllocation {
	case AllocDynamic:
	case AllocBlock:
		// Blocks are cut from ports 1024-65535 whatever the ranges; a
		// protocol's range narrows what it takes from a block.
		if g.BlockSize < 8 || g.BlockSize > DetPortsPerAddress {
			errs = append(errs, fieldErr("block_size", "%d is out of range 8..%d", g.BlockSize, DetPortsPerAddress))
		}
		if g.MaxBlocks < 1 || g.MaxBlocks > MaxBlockSlots {
			errs = append(errs, fieldErr("max_blocks", "%d is out of range 1..%d", g.MaxBlocks, MaxBlockSlots))
		}
	case AllocDeterministic:
		for p := TCP; p < NumProtos; p++ {
			if c.Ports[p] != full {
				errs = append(errs, fieldErr("ports."+p.String(), "deterministic allocation uses ports 1024-65535 of every address; ports.%s is %d-%d", p, c.Ports[p].Min, c.Ports[p].Max))
			}
		}
		if g.PortsPerSubscriber < 1 || g.PortsPerSubscriber > DetPortsPerAddress {
			errs = append(errs, fieldErr("ports_per_subscriber", "%d is out of range 1..%d (deterministic allocation needs it)", g.PortsPerSubscriber, DetPortsPerAddress))
			break
		}
		if _, err := NewDetMap(c); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fieldErr("port_allocation", "unknown port allocation %d", g.PortAllocation))
	}
	return errs
}

// ErrAllocationChange refuses a reload that changes what the allocated
// ports mean while they are in use.
var ErrAllocationChange = errors.New("restart natd to change it: live mappings were allocated under the old value")

// checkCGNReload refuses changes that cannot be applied to live state:
// the allocation mode, and the block size (blocks in use would overlap
// blocks cut the new way).
func checkCGNReload(old, cur *Config) error {
	if old.CGN.PortAllocation != cur.CGN.PortAllocation {
		return &FieldError{Field: "port_allocation", Reason: fmt.Sprintf("%s -> %s: %v", old.CGN.PortAllocation, cur.CGN.PortAllocation, ErrAllocationChange)}
	}
	if cur.CGN.PortAllocation == AllocBlock && old.CGN.BlockSize != cur.CGN.BlockSize {
		return &FieldError{Field: "block_size", Reason: fmt.Sprintf("%d -> %d: %v", old.CGN.BlockSize, cur.CGN.BlockSize, ErrAllocationChange)}
	}
	return nil
}

// mutedEvents is the set of event types (bit t) that mode m does not log:
// sessions and address bindings in block and deterministic modes unless
// LogSessions asks for them.
func mutedEvents(g *CGN) uint32 {
	if g.PortAllocation == AllocDynamic || g.LogSessions {
		return 0
	}
	return 1<<SessionCreated | 1<<SessionDeleted | 1<<AddressBound | 1<<AddressReleased
}
