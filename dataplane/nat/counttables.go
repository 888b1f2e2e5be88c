package nat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/flowtable"
)

// The engine's two count tables (countTable), each allocated only when the
// configuration needs it, and kept from then on:
//
//   - perms, the filtering permissions of address-dependent filtering
//     (RFC 4787 REQ-8, RFC 5382 REQ-3): the mapping's inside endpoint has
//     sent to a remote address, so that address may come in. Endpoint-
//     independent filtering admits everyone and address-and-port-dependent
//     filtering admits only the session's own remote (the session is the
//     permission), so neither needs one. Each session holds at most one
//     permission: the table has a slot per session slot, 36.8 bytes, paid
//     only by an engine configured with address-dependent filtering.
//   - rules, the session counts of port forwards and static mappings, for
//     Limits.InboundSessionsPerRule (inbound.go). Records are taken only
//     while that limit is set (ruleTableSize says how many there can be).
//
// A session's permission slot (sessWords.perm) holds a record of one or
// the other: a session a rule admitted (kind forward or static) holds a
// rule count, any other a permission (countTableOf).
//
// New allocates a table if the first configuration needs it, ApplyConfig
// at the first configuration that does, on the control plane (ctl held),
// before it publishes a snapshot that uses it: the snapshot carries the
// pointers (Snapshot.perms, Snapshot.rules), and workers read them from
// the snapshot they load once per burst. A table, once allocated, is never
// replaced or freed: sessions made under one configuration hold records in
// it until they end, whatever the configuration is by then. The Engine's
// atomic pointers serve the control plane (cleanup) and TableMemory.

// needsPerms returns the first protocol that cfg filters address-
// dependently, if any.
func needsPerms(cfg *Config) (Proto, bool) {
	for p, f := range cfg.Filtering {
		if f == FilterAddressDependent {
			return Proto(p), true
		}
	}
	return 0, false
}

// ruleTableSize is the rule count table's capacity for limits l: the most
// rule records that can be live at once, so that the table can never
// refuse a record a session needs.
//
// A rule record lives while a session holds a reference on it, and only
// sessions opened from outside through a rule hold one (newInbound; an
// outbound session of a forwarded server or a static host takes none,
// newOutbound). Such a session takes the reference, then its count in
// Limits.InboundSessions (acquireInbound: refused at the limit; 0 means no
// limit), and gives the reference back in cleanup before the count. So the
// holders are at most the sessions counted in the limit, plus one claim in
// progress per worker (a worker creates one session at a time) between the
// two steps. With no limit, the counted sessions are those in the session
// table plus the one that cleanup, under ctl, is releasing. Records are
// at most their holders, whether or not their rule is still configured.
func (e *Engine) ruleTableSize(l *Limits) int {
	n := e.sessions.Cap() + 1
	if l.InboundSessions != 0 && l.InboundSessions < n {
		n = l.InboundSessions
	}
	return n + e.nworkers
}

// countTables allocates the count tables that cfg needs and the engine has
// not yet, and gives s the tables there are. Called with ctl held (or from
// New), before s is published. On error nothing was allocated that cfg
// would use, and the configuration must not be published.
func (e *Engine) countTables(cfg *Config, s *Snapshot) error {
	if p, ok := needsPerms(cfg); ok && e.perms.Load() == nil {
		t, err := e.newCountTable("permissions table of address-dependent filtering", "filtering."+p.String(), cfg.Limits.MaxSessions)
		if err != nil {
			return err
		}
		e.perms.Store(t)
	}
	if cfg.Limits.InboundSessionsPerRule != 0 {
		want := e.ruleTableSize(&cfg.Limits)
		if t := e.rules.Load(); t == nil {
			t, err := e.newCountTable("rule session table", "limits.inbound_sessions_per_rule", want)
			if err != nil {
				return err
			}
			e.rules.Store(t)
		} else if want > t.Cap() {
			// Raised at run time: the table was sized for the limit in
			// force when it was allocated, and a table cannot grow.
			return &FieldError{Field: "limits.inbound_sessions", Reason: fmt.Sprintf(
				"with limits.inbound_sessions_per_rule set, %d sessions from outside need a rule session table of %d entries; it holds %d, sized when limits.inbound_sessions_per_rule was first set; restart to raise it",
				cfg.Limits.InboundSessions, want, t.Cap())}
		}
	}
	s.perms, s.rules = e.perms.Load(), e.rules.Load()
	return nil
}

// newCountTable allocates a count table of n entries, what, for the
// configuration field field, or says why it cannot: a Go program cannot
// survive an allocation the system refuses, so the memory is checked
// first against what the kernel reports available.
func (e *Engine) newCountTable(what, field string, n int) (*countTable, error) {
	need := countTableBytes(n)
	if avail, ok := e.memAvailable(); ok && need > avail {
		return nil, &FieldError{Field: field, Reason: fmt.Sprintf(
			"the %s needs %d MiB (%d entries) and the system has %d MiB available", what, need>>20, n, avail>>20)}
	}
	return newCountTable(n), nil
}

// countTableBytes is the memory of a count table of n entries: 24-byte
// records and the index (makeLineIndex).
func countTableBytes(n int) int64 {
	buckets := max((int64(n)+lineKeysPerBucket-1)/lineKeysPerBucket, 2)
	return int64(n)*24 + buckets*lineBucketSize
}

// memAvailable returns MemAvailable of /proc/meminfo, in bytes; ok is
// false where there is none.
func memAvailable() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "MemAvailable:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// countTableOf returns the table that holds the permission-slot record of
// a session in state st: the rule table for a session a rule admitted,
// the permissions table for any other. Control plane.
func (e *Engine) countTableOf(st uint32) *countTable {
	if k := (st & stKindMask) >> stKindShift; k == kindStatic || k == kindForward {
		return e.rules.Load()
	}
	return e.perms.Load()
}

// countTableOf returns the table of a record a claim took (acquireCount),
// by its key: rule records have protocols of their own (ruleKey).
func (s *Snapshot) countTableOf(x *flowtable.Entry) *countTable {
	if p := x.Keys[0].Proto; p == ruleProtoForward || p == ruleProtoStatic {
		return s.rules
	}
	return s.perms
}

// acquireCount takes a reference, in the claim's permission slot, on the
// record of t with key pk, creating it: a filtering permission
// (acquirePerm) or a rule's session count (acquireRule). With limit
// non-zero it refuses, as drop.RuleSessions, a record that already counts
// limit references. now is the worker's clock.
func acquireCount(t *countTable, pk *flowtable.Key, c *claim, limit uint64, now uint32) drop.Reason {
	var check func(uint64) bool
	if limit != 0 {
		check = func(v uint64) bool { return v < limit }
	}
	for try := 0; try < 64; try++ {
		if t.Lookup(pk, &c.perm) {
			ok, dying := acquireRef(t, &c.perm, 1, check)
			if ok {
				c.hasPerm = true
				return drop.None
			}
			if !dying {
				return drop.RuleSessions
			}
			continue
		}
		switch t.Insert(pk, &flowtable.NoKey, 0, [2]uint64{0, 1}, now, &c.perm) {
		case flowtable.Inserted:
			c.hasPerm = true
			return drop.None
		case flowtable.Full:
			return drop.TableFull
		}
	}
	return drop.Contention
}

// permRecords and ruleRecords count the live records of each table (0
// before it is allocated).
func (e *Engine) permRecords() int { return countLen(e.perms.Load()) }
func (e *Engine) ruleRecords() int { return countLen(e.rules.Load()) }

func countLen(t *countTable) int {
	if t == nil {
		return 0
	}
	return t.Len()
}
