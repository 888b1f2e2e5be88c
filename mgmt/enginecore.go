package mgmt

import (
	"context"
	"errors"
	"net/netip"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt/events"
)

// EngineCore is the part of a Core that the engine, the configuration
// store and the event exporter answer by themselves: sessions, the NAT
// configuration and its changes, and events. natd's Core and
// mgmttest.Core embed it and add only what differs between the appliance
// and the test double: Status, Stats and Reload.
//
// Its methods may be called from any goroutine, as Core's.
type EngineCore struct {
	Engine *nat.Engine
	Store  *ConfigStore
	Events *events.Exporter
}

// maxCorePage is the most sessions one EngineCore.Sessions call returns
// (the RPCs ask for at most MaxPageSize; streams more).
const maxCorePage = 100000

// Sessions lists sessions from the engine, one page at a time.
func (c *EngineCore) Sessions(ctx context.Context, f nat.SessionFilter, cursor uint32, limit int) ([]nat.Session, uint32, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if limit < 1 || limit > maxCorePage {
		return nil, 0, Errorf(ErrInvalid, "page size %d out of range 1..%d", limit, maxCorePage)
	}
	if _, capacity := c.Engine.TableUsage(); int64(cursor) > int64(capacity) {
		return nil, 0, Errorf(ErrInvalid, "page token %d is beyond the table", cursor)
	}
	s, next := c.Engine.Sessions(f, cursor, limit)
	return s, next, nil
}

// DeleteSession deletes one session.
func (c *EngineCore) DeleteSession(id uint32, gen uint64) error {
	if err := c.Engine.DeleteSession(id, gen); err != nil {
		if errors.Is(err, nat.ErrNotFound) {
			return Errorf(ErrNotFound, "session %d (generation %d) does not exist any more", id, gen)
		}
		return err
	}
	return nil
}

// FlushSessions deletes the sessions that match f.
func (c *EngineCore) FlushSessions(f nat.SessionFilter) (int, error) {
	return c.Engine.FlushSessions(f), nil
}

// Config returns the configuration in force.
func (c *EngineCore) Config() nat.Config { return c.Store.Config() }

// AddPool adds a pool.
func (c *EngineCore) AddPool(p nat.Pool) error { return c.Store.AddPool(p) }

// DeletePool deletes a pool.
func (c *EngineCore) DeletePool(name string) error { return c.Store.DeletePool(name) }

// AddPortForward adds a port forward.
func (c *EngineCore) AddPortForward(r nat.PortForward) error { return c.Store.AddPortForward(r) }

// DeletePortForward deletes a port forward.
func (c *EngineCore) DeletePortForward(p nat.Proto, out netip.AddrPort) error {
	return c.Store.DeletePortForward(p, out)
}

// AddStaticMapping adds a static mapping.
func (c *EngineCore) AddStaticMapping(m nat.StaticMapping) error {
	return c.Store.AddStaticMapping(m)
}

// DeleteStaticMapping deletes a static mapping.
func (c *EngineCore) DeleteStaticMapping(in netip.Addr) error {
	return c.Store.DeleteStaticMapping(in)
}

// Apply applies changes atomically.
func (c *EngineCore) Apply(ch []Change) error { return c.Store.Apply(ch) }

// SubscribeEvents subscribes to the exporter's fan-out.
func (c *EngineCore) SubscribeEvents(ctx context.Context) <-chan nat.Event {
	return c.Events.Subscribe(ctx)
}

// PoolStatusOf groups the engine's address usage by pool; addresses
// removed from the pools but still holding mappings form a pool named
// "(draining)".
func PoolStatusOf(us []nat.AddressUsage) []PoolStatus {
	var out []PoolStatus
	idx := map[string]int{}
	for _, u := range us {
		name := u.Pool
		if u.Draining {
			name = "(draining)"
		}
		i, ok := idx[name]
		if !ok {
			i = len(out)
			idx[name] = i
			out = append(out, PoolStatus{Name: name})
		}
		out[i].Addresses = append(out[i].Addresses, AddressStatus{
			Addr: u.Addr, Subscribers: u.Subscribers, PortsInUse: u.InUse, PortsTotal: u.Total,
			Draining: u.Draining, RuleSessions: u.RuleSessions,
		})
	}
	return out
}
