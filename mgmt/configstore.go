package mgmt

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
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
// other; each change is checked against what the copy holds at that point
// only for identity (adding a pool whose name, a forward whose outside
// endpoint or a static mapping whose inside address is taken by a
// different object is ErrAlreadyExists; deleting what is not there is
// ErrNotFound). The finished copy is then judged by nat.Config.Validate,
// the same validation natd's config file gets: each problem it finds is
// charged to the change that added the object concerned (ErrAlreadyExists
// for a collision between two objects, ErrInvalid otherwise), or to the
// batch as a whole. Only a valid copy is handed to the engine, which
// publishes it as one new snapshot. If anything fails, the configuration
// in force is untouched. Changes that change nothing (adding an identical
// object) are no-ops and publish no new snapshot.
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
	name := func(i int) string {
		if batch {
			return fmt.Sprintf("change %d (%v)", i+1, changes[i])
		}
		return changes[i].String()
	}
	addedBy := map[objectKey]int{} // object -> index of the change that added it
	for i, c := range changes {
		did, err := change(&cfg, c)
		if err != nil {
			return &kindError{kind: kindOf(err), err: fmt.Errorf("%s: %w", name(i), err)}
		}
		if did {
			if k, ok := addedKey(c); ok {
				addedBy[k] = i
			}
		}
		changed = changed || did
	}
	if !changed {
		return nil // every change was already in force: idempotent
	}
	if err := cfg.Validate(); err != nil {
		return chargeErrors(&cfg, err, addedBy, name)
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

// addPool adds p unless a pool of that name exists: identical, it is a
// no-op; different, a conflict. Everything else about p is for
// nat.Config.Validate to judge.
func addPool(cfg *nat.Config, p nat.Pool) (bool, error) {
	for _, q := range cfg.Pools {
		if q.Name == p.Name {
			if samePrefixes(q.Addresses, p.Addresses) {
				return false, nil
			}
			return false, Errorf(ErrAlreadyExists, "pool %q already exists with addresses %v", p.Name, q.Addresses)
		}
	}
	cfg.Pools = append(cfg.Pools, nat.Pool{Name: p.Name, Addresses: slices.Clone(p.Addresses)})
	return true, nil
}

// addForward adds r unless a rule for its protocol and outside endpoint
// exists (the rule's identity, as DeletePortForward names it).
func addForward(cfg *nat.Config, r nat.PortForward) (bool, error) {
	for _, f := range cfg.PortForwards {
		if f.Proto == r.Proto && f.Outside == r.Outside {
			if f.Inside == r.Inside {
				return false, nil
			}
			return false, Errorf(ErrAlreadyExists, "%s %s is already forwarded to %s", f.Proto, f.Outside, f.Inside)
		}
	}
	cfg.PortForwards = append(cfg.PortForwards, r)
	return true, nil
}

// addStatic adds m unless its inside address has a static mapping (the
// mapping's identity, as DeleteStaticMapping names it).
func addStatic(cfg *nat.Config, m nat.StaticMapping) (bool, error) {
	for _, o := range cfg.StaticMappings {
		if o.Inside == m.Inside {
			if o.Outside == m.Outside {
				return false, nil
			}
			return false, Errorf(ErrAlreadyExists, "%s already has a static mapping to %s", o.Inside, o.Outside)
		}
	}
	cfg.StaticMappings = append(cfg.StaticMappings, m)
	return true, nil
}

// objectKey is the identity of a pool, port forward or static mapping.
type objectKey struct {
	op   ChangeOp // the Add op of its kind
	name string
}

func addedKey(c Change) (objectKey, bool) {
	switch c.Op {
	case AddPool:
		return poolKey(c.Pool), true
	case AddPortForward:
		return forwardKey(c.PortForward), true
	case AddStaticMapping:
		return staticKey(c.StaticMapping), true
	}
	return objectKey{}, false
}

func poolKey(p nat.Pool) objectKey { return objectKey{AddPool, p.Name} }
func forwardKey(r nat.PortForward) objectKey {
	return objectKey{AddPortForward, r.Proto.String() + " " + r.Outside.String()}
}
func staticKey(m nat.StaticMapping) objectKey { return objectKey{AddStaticMapping, m.Inside.String()} }

var objectField = regexp.MustCompile(`^(pools|static_mappings|port_forwards)\[(\d+)\]`)

// changeOf returns the index of the change that added the object a
// validation field names ("pools[2].addresses[0]"), or -1 when the field
// is not an object's or the object was in force before.
func changeOf(cfg *nat.Config, field string, addedBy map[objectKey]int) int {
	m := objectField.FindStringSubmatch(field)
	if m == nil {
		return -1
	}
	i, _ := strconv.Atoi(m[2])
	var k objectKey
	switch {
	case m[1] == "pools" && i < len(cfg.Pools):
		k = poolKey(cfg.Pools[i])
	case m[1] == "static_mappings" && i < len(cfg.StaticMappings):
		k = staticKey(cfg.StaticMappings[i])
	case m[1] == "port_forwards" && i < len(cfg.PortForwards):
		k = forwardKey(cfg.PortForwards[i])
	default:
		return -1
	}
	if c, ok := addedBy[k]; ok {
		return c
	}
	return -1
}

// chargeErrors turns Validate's verdict on the changed configuration into
// the error of the first change it concerns: a problem with an object is
// charged to the change that added it, a collision between two objects to
// the later of the changes that added them. Problems no change added an
// object for (no pool left, too many pool addresses) are the batch's.
func chargeErrors(cfg *nat.Config, err error, addedBy map[objectKey]int, name func(int) string) error {
	first := -1
	var mine []*nat.FieldError
	for _, e := range unjoin(err) {
		var fe *nat.FieldError
		if !errors.As(e, &fe) {
			continue
		}
		c := max(changeOf(cfg, fe.Field, addedBy), changeOf(cfg, fe.With, addedBy))
		switch {
		case c < 0:
		case first < 0 || c < first:
			first, mine = c, []*nat.FieldError{fe}
		case c == first:
			mine = append(mine, fe)
		}
	}
	if first < 0 {
		return Errorf(ErrInvalid, "the resulting configuration is invalid: %s", joinLines(err))
	}
	kind := ErrAlreadyExists
	msgs := make([]string, len(mine))
	for i, fe := range mine {
		if fe.With == "" {
			kind = ErrInvalid
		}
		msgs[i] = fe.Error()
	}
	return Errorf(kind, "%s: %s", name(first), strings.Join(msgs, "; "))
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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
