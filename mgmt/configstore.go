package mgmt

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/xnat/xnat/dataplane/nat"
)

// ConfigStore holds the NAT configuration in force and applies changes to
// it: pools, port forwards and static mappings are added and deleted one at
// a time or in an atomic batch. It is the single implementation of the
// configuration half of Core, used by natd and by the test core alike, so
// the rules below hold wherever the API is served.
//
// A batch is applied to a copy of the configuration, one change after the
// other; each change is checked for conflicts with what the copy holds at
// that point (ErrAlreadyExists), the finished copy is validated by
// nat.Config.Validate (ErrInvalid), and only then handed to the engine,
// which publishes it as one new snapshot. If anything fails, the
// configuration in force is untouched. Changes that change nothing (adding
// an identical object) are no-ops and publish no new snapshot.
//
// ConfigStore is safe for concurrent use; changes are serialised.
type ConfigStore struct {
	mu    sync.Mutex
	cfg   nat.Config
	apply func(nat.Config) error
}

// NewConfigStore returns a store holding cfg, the configuration the engine
// already runs; apply publishes a new one (nat.Engine.ApplyConfig).
func NewConfigStore(cfg nat.Config, apply func(nat.Config) error) *ConfigStore {
	return &ConfigStore{cfg: cloneConfig(cfg), apply: apply}
}

// Config returns a copy of the configuration in force.
func (s *ConfigStore) Config() nat.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneConfig(s.cfg)
}

// Replace validates and applies a whole new configuration (a reload).
func (s *ConfigStore) Replace(cfg nat.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg = cloneConfig(cfg)
	if err := cfg.Validate(); err != nil {
		return Errorf(ErrInvalid, "invalid configuration: %s", joinLines(err))
	}
	if err := s.publish(cfg); err != nil {
		return err
	}
	s.cfg = cfg
	return nil
}

// AddPool adds a pool (see Core.AddPool).
func (s *ConfigStore) AddPool(p nat.Pool) error { return s.one(Change{Op: AddPool, Pool: p}) }

// DeletePool deletes a pool by name.
func (s *ConfigStore) DeletePool(name string) error {
	return s.one(Change{Op: DeletePool, PoolName: name})
}

// AddPortForward adds a port-forward rule.
func (s *ConfigStore) AddPortForward(r nat.PortForward) error {
	return s.one(Change{Op: AddPortForward, PortForward: r})
}

// DeletePortForward deletes the port-forward rule of proto and outside.
func (s *ConfigStore) DeletePortForward(proto nat.Proto, outside netip.AddrPort) error {
	return s.one(Change{Op: DeletePortForward, PortForward: nat.PortForward{Proto: proto, Outside: outside}})
}

// AddStaticMapping adds a static 1:1 mapping.
func (s *ConfigStore) AddStaticMapping(m nat.StaticMapping) error {
	return s.one(Change{Op: AddStaticMapping, StaticMapping: m})
}

// DeleteStaticMapping deletes the static mapping of inside address in.
func (s *ConfigStore) DeleteStaticMapping(in netip.Addr) error {
	return s.one(Change{Op: DeleteStaticMapping, StaticMapping: nat.StaticMapping{Inside: in}})
}

// one applies a single change; its errors name the change without a batch
// index.
func (s *ConfigStore) one(c Change) error { return s.applyChanges([]Change{c}, false) }

// Apply applies changes atomically: all of them in one new snapshot, or
// none.
func (s *ConfigStore) Apply(changes []Change) error {
	if len(changes) == 0 {
		return Errorf(ErrInvalid, "no changes to apply")
	}
	return s.applyChanges(changes, true)
}

func (s *ConfigStore) applyChanges(changes []Change, batch bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := cloneConfig(s.cfg)
	changed := false
	for i, c := range changes {
		did, err := change(&cfg, c)
		if err != nil {
			if batch {
				return &kindError{kind: kindOf(err), err: fmt.Errorf("change %d (%v): %w", i+1, c, err)}
			}
			return &kindError{kind: kindOf(err), err: fmt.Errorf("%v: %w", c, err)}
		}
		changed = changed || did
	}
	if !changed {
		return nil // every change was already in force: idempotent
	}
	if err := cfg.Validate(); err != nil {
		return Errorf(ErrInvalid, "the resulting configuration is invalid: %s", joinLines(err))
	}
	if err := s.publish(cfg); err != nil {
		return err
	}
	s.cfg = cfg
	return nil
}

// publish hands cfg to the engine. Called with mu held.
func (s *ConfigStore) publish(cfg nat.Config) error {
	if err := s.apply(cfg); err != nil {
		if errors.Is(err, nat.ErrInvalidConfig) {
			return Errorf(ErrInvalid, "the engine refused the configuration: %s", joinLines(err))
		}
		return fmt.Errorf("applying the configuration: %w", err)
	}
	return nil
}

// kindOf returns the sentinel err wraps, for re-wrapping with context.
func kindOf(err error) error {
	for _, k := range []error{ErrInvalid, ErrAlreadyExists, ErrNotFound, ErrPermission, ErrUnavailable} {
		if errors.Is(err, k) {
			return k
		}
	}
	return errors.New("internal error")
}

func joinLines(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// String describes a change for error messages and the audit log.
func (c Change) String() string {
	switch c.Op {
	case AddPool:
		return fmt.Sprintf("add pool %q %v", c.Pool.Name, c.Pool.Addresses)
	case DeletePool:
		return fmt.Sprintf("delete pool %q", c.PoolName)
	case AddPortForward:
		r := c.PortForward
		return fmt.Sprintf("add forward %s %s -> %s", r.Proto, r.Outside, r.Inside)
	case DeletePortForward:
		return fmt.Sprintf("delete forward %s %s", c.PortForward.Proto, c.PortForward.Outside)
	case AddStaticMapping:
		return fmt.Sprintf("add static %s <-> %s", c.StaticMapping.Inside, c.StaticMapping.Outside)
	case DeleteStaticMapping:
		return fmt.Sprintf("delete static %s", c.StaticMapping.Inside)
	}
	return fmt.Sprintf("unknown change op %d", c.Op)
}

// change applies c to cfg, reporting whether it changed anything.
func change(cfg *nat.Config, c Change) (bool, error) {
	switch c.Op {
	case AddPool:
		return addPool(cfg, c.Pool)
	case DeletePool:
		i := slices.IndexFunc(cfg.Pools, func(p nat.Pool) bool { return p.Name == c.PoolName })
		if i < 0 {
			return false, Errorf(ErrNotFound, "no pool named %q", c.PoolName)
		}
		cfg.Pools = slices.Delete(cfg.Pools, i, i+1)
		return true, nil
	case AddPortForward:
		return addForward(cfg, c.PortForward)
	case DeletePortForward:
		r := c.PortForward
		i := slices.IndexFunc(cfg.PortForwards, func(f nat.PortForward) bool {
			return f.Proto == r.Proto && f.Outside == r.Outside
		})
		if i < 0 {
			return false, Errorf(ErrNotFound, "no %s port forward on %s", r.Proto, r.Outside)
		}
		cfg.PortForwards = slices.Delete(cfg.PortForwards, i, i+1)
		return true, nil
	case AddStaticMapping:
		return addStatic(cfg, c.StaticMapping)
	case DeleteStaticMapping:
		in := c.StaticMapping.Inside
		i := slices.IndexFunc(cfg.StaticMappings, func(m nat.StaticMapping) bool { return m.Inside == in })
		if i < 0 {
			return false, Errorf(ErrNotFound, "no static mapping for %s", in)
		}
		cfg.StaticMappings = slices.Delete(cfg.StaticMappings, i, i+1)
		return true, nil
	}
	return false, Errorf(ErrInvalid, "unknown change op %d", c.Op)
}

func addPool(cfg *nat.Config, p nat.Pool) (bool, error) {
	if p.Name == "" {
		return false, Errorf(ErrInvalid, "a pool needs a name")
	}
	if len(p.Addresses) == 0 {
		return false, Errorf(ErrInvalid, "pool %q has no addresses", p.Name)
	}
	for i, a := range p.Addresses {
		switch {
		case !a.IsValid() || !a.Addr().Is4():
			return false, Errorf(ErrInvalid, "%v is not an IPv4 prefix or address", a)
		case a.Masked() != a:
			return false, Errorf(ErrInvalid, "%s has host bits set (did you mean %s?)", a, a.Masked())
		case a.Bits() < 16:
			return false, Errorf(ErrInvalid, "%s is larger than a /16", a)
		case isInside(cfg, a):
			return false, Errorf(ErrInvalid, "%s overlaps an inside prefix", a)
		}
		for _, b := range p.Addresses[:i] {
			if a.Overlaps(b) {
				return false, Errorf(ErrInvalid, "%s overlaps %s in the same pool", a, b)
			}
		}
	}
	for _, q := range cfg.Pools {
		if q.Name == p.Name {
			if samePrefixes(q.Addresses, p.Addresses) {
				return false, nil
			}
			return false, Errorf(ErrAlreadyExists, "pool %q already exists with addresses %v", p.Name, q.Addresses)
		}
	}
	for _, a := range p.Addresses {
		if who := poolOwner(cfg, a); who != "" {
			return false, Errorf(ErrAlreadyExists, "%s overlaps %s", a, who)
		}
		for _, m := range cfg.StaticMappings {
			if a.Contains(m.Outside) {
				return false, Errorf(ErrAlreadyExists, "%s contains %s, the outside address of the static mapping for %s", a, m.Outside, m.Inside)
			}
		}
	}
	cfg.Pools = append(cfg.Pools, nat.Pool{Name: p.Name, Addresses: slices.Clone(p.Addresses)})
	return true, nil
}

func addForward(cfg *nat.Config, r nat.PortForward) (bool, error) {
	switch {
	case r.Proto != nat.TCP && r.Proto != nat.UDP:
		return false, Errorf(ErrInvalid, "port forwards are for tcp or udp, not %s", r.Proto)
	case !r.Outside.Addr().Is4() || r.Outside.Port() == 0:
		return false, Errorf(ErrInvalid, "outside %v must be an IPv4 address:port with a non-zero port", r.Outside)
	case !r.Inside.Addr().Is4() || r.Inside.Port() == 0:
		return false, Errorf(ErrInvalid, "inside %v must be an IPv4 address:port with a non-zero port", r.Inside)
	case !isInside(cfg, netip.PrefixFrom(r.Inside.Addr(), 32)):
		return false, Errorf(ErrInvalid, "inside %s is not in an inside prefix %v", r.Inside.Addr(), cfg.InsidePrefixes)
	case isInside(cfg, netip.PrefixFrom(r.Outside.Addr(), 32)):
		return false, Errorf(ErrInvalid, "outside %s is in an inside prefix", r.Outside.Addr())
	}
	for _, f := range cfg.PortForwards {
		if f.Proto == r.Proto && f.Outside == r.Outside {
			if f.Inside == r.Inside {
				return false, nil
			}
			return false, Errorf(ErrAlreadyExists, "%s %s is already forwarded to %s", f.Proto, f.Outside, f.Inside)
		}
		// Outbound packets from a forwarded inside endpoint are translated
		// by its rule; two rules for one inside endpoint would make the
		// source address ambiguous.
		if f.Proto == r.Proto && f.Inside == r.Inside {
			return false, Errorf(ErrAlreadyExists, "%s %s is already the target of the forward from %s", f.Proto, f.Inside, f.Outside)
		}
	}
	for _, m := range cfg.StaticMappings {
		if m.Outside == r.Outside.Addr() {
			return false, Errorf(ErrAlreadyExists, "%s is the outside address of the static mapping for %s", m.Outside, m.Inside)
		}
	}
	cfg.PortForwards = append(cfg.PortForwards, r)
	return true, nil
}

func addStatic(cfg *nat.Config, m nat.StaticMapping) (bool, error) {
	switch {
	case !m.Inside.Is4():
		return false, Errorf(ErrInvalid, "inside %v is not an IPv4 address", m.Inside)
	case !m.Outside.Is4():
		return false, Errorf(ErrInvalid, "outside %v is not an IPv4 address", m.Outside)
	case !isInside(cfg, netip.PrefixFrom(m.Inside, 32)):
		return false, Errorf(ErrInvalid, "inside %s is not in an inside prefix %v", m.Inside, cfg.InsidePrefixes)
	case isInside(cfg, netip.PrefixFrom(m.Outside, 32)):
		return false, Errorf(ErrInvalid, "outside %s is in an inside prefix", m.Outside)
	}
	for _, o := range cfg.StaticMappings {
		if o.Inside == m.Inside {
			if o.Outside == m.Outside {
				return false, nil
			}
			return false, Errorf(ErrAlreadyExists, "%s already has a static mapping to %s", o.Inside, o.Outside)
		}
		if o.Outside == m.Outside {
			return false, Errorf(ErrAlreadyExists, "%s is already the outside address of the static mapping for %s", o.Outside, o.Inside)
		}
	}
	if who := poolOwner(cfg, netip.PrefixFrom(m.Outside, 32)); who != "" {
		return false, Errorf(ErrAlreadyExists, "%s is in %s", m.Outside, who)
	}
	for _, f := range cfg.PortForwards {
		if f.Outside.Addr() == m.Outside {
			return false, Errorf(ErrAlreadyExists, "%s is used by the %s port forward %s -> %s", m.Outside, f.Proto, f.Outside, f.Inside)
		}
	}
	cfg.StaticMappings = append(cfg.StaticMappings, m)
	return true, nil
}

// poolOwner names the pool prefix that overlaps p, or returns "".
func poolOwner(cfg *nat.Config, p netip.Prefix) string {
	for _, q := range cfg.Pools {
		for _, a := range q.Addresses {
			if a.Overlaps(p) {
				return fmt.Sprintf("pool %q (%s)", q.Name, a)
			}
		}
	}
	return ""
}

func isInside(cfg *nat.Config, p netip.Prefix) bool {
	for _, q := range cfg.InsidePrefixes {
		if q.Overlaps(p) {
			return true
		}
	}
	return false
}

func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	cmp := func(p, q netip.Prefix) int {
		if c := p.Addr().Compare(q.Addr()); c != 0 {
			return c
		}
		return p.Bits() - q.Bits()
	}
	slices.SortFunc(x, cmp)
	slices.SortFunc(y, cmp)
	return slices.Equal(x, y)
}

// cloneConfig copies the slices of cfg so that the copy can be changed
// without touching the original.
func cloneConfig(cfg nat.Config) nat.Config {
	cfg.InsidePrefixes = slices.Clone(cfg.InsidePrefixes)
	pools := make([]nat.Pool, len(cfg.Pools))
	for i, p := range cfg.Pools {
		pools[i] = nat.Pool{Name: p.Name, Addresses: slices.Clone(p.Addresses)}
	}
	if cfg.Pools == nil {
		pools = nil
	}
	cfg.Pools = pools
	cfg.StaticMappings = slices.Clone(cfg.StaticMappings)
	cfg.PortForwards = slices.Clone(cfg.PortForwards)
	return cfg
}
