package mgmt_test

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

// newStore returns a ConfigStore over a real engine.
func newStore(t *testing.T) (*mgmt.ConfigStore, *nat.Engine) {
	t.Helper()
	cfg := mgmttest.TestConfig()
	eng, err := nat.New(cfg, nat.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	return mgmt.NewConfigStore(cfg, eng.ApplyConfig), eng
}

var (
	pfx = netip.MustParsePrefix
	ap  = netip.MustParseAddrPort
	ad  = netip.MustParseAddr
)

func wantErr(t *testing.T, err, kind error, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v error containing %q, got nil", kind, contains)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q does not contain %q", err, contains)
	}
}

func TestConfigStoreValidation(t *testing.T) {
	s, eng := newStore(t)
	gen := eng.Snapshot().Generation
	for _, tc := range []struct {
		c    mgmt.Change
		want string
	}{
		{mgmt.Change{Op: mgmt.AddPool, Pool: nat.Pool{Addresses: []netip.Prefix{pfx("198.18.1.0/24")}}}, "a pool needs a name"},
		{mgmt.Change{Op: mgmt.AddPool, Pool: nat.Pool{Name: "p"}}, `pool "p" has no addresses`},
		{mgmt.Change{Op: mgmt.AddPool, Pool: nat.Pool{Name: "p", Addresses: []netip.Prefix{pfx("198.18.1.5/24")}}}, "198.18.1.5/24 has host bits set (did you mean 198.18.1.0/24?)"},
		{mgmt.Change{Op: mgmt.AddPool, Pool: nat.Pool{Name: "p", Addresses: []netip.Prefix{pfx("198.0.0.0/15")}}}, "198.0.0.0/15 is larger than a /16"},
		{mgmt.Change{Op: mgmt.AddPool, Pool: nat.Pool{Name: "p", Addresses: []netip.Prefix{pfx("10.9.0.0/24")}}}, "pools[1].addresses[0]: 10.9.0.0/24 overlaps inside prefix 10.0.0.0/8 (inside_prefixes[0])"},
		{mgmt.Change{Op: mgmt.AddPool, Pool: nat.Pool{Name: "p", Addresses: []netip.Prefix{pfx("2001:db8::/64")}}}, "is not an IPv4 prefix"},
		{mgmt.Change{Op: mgmt.AddPool, Pool: nat.Pool{Name: "p", Addresses: []netip.Prefix{pfx("198.18.1.0/24"), pfx("198.18.1.128/25")}}}, "pools[1].addresses[1]: 198.18.1.128/25 overlaps 198.18.1.0/24 in the same pool"},
		{mgmt.Change{Op: mgmt.AddPortForward, PortForward: nat.PortForward{Proto: nat.ICMP, Outside: ap("198.18.0.100:80"), Inside: ap("10.0.0.5:80")}}, "port forwards are for tcp or udp, not icmp"},
		{mgmt.Change{Op: mgmt.AddPortForward, PortForward: nat.PortForward{Proto: nat.TCP, Outside: ap("198.18.0.100:0"), Inside: ap("10.0.0.5:80")}}, "non-zero port"},
		{mgmt.Change{Op: mgmt.AddPortForward, PortForward: nat.PortForward{Proto: nat.TCP, Outside: ap("198.18.0.100:80"), Inside: ap("192.168.0.5:80")}}, "inside 192.168.0.5 is not in an inside prefix"},
		{mgmt.Change{Op: mgmt.AddPortForward, PortForward: nat.PortForward{Proto: nat.TCP, Outside: ap("10.1.1.1:80"), Inside: ap("10.0.0.5:80")}}, "port_forwards[0].outside: outside 10.1.1.1 is in inside prefix 10.0.0.0/8"},
		{mgmt.Change{Op: mgmt.AddStaticMapping, StaticMapping: nat.StaticMapping{Inside: ad("192.168.1.1"), Outside: ad("198.18.0.160")}}, "inside 192.168.1.1 is not in an inside prefix"},
		{mgmt.Change{Op: mgmt.AddStaticMapping, StaticMapping: nat.StaticMapping{Inside: ad("10.0.0.60")}}, "outside invalid IP is not an IPv4 address"},
		{mgmt.Change{Op: mgmt.DeletePool, PoolName: "main"}, "the resulting configuration is invalid: pools: at least one pool"},
	} {
		err := s.Apply([]mgmt.Change{tc.c})
		wantErr(t, err, mgmt.ErrInvalid, tc.want)
		if mgmt.Code(err).String() != "InvalidArgument" {
			t.Errorf("%v: code %v", tc.c, mgmt.Code(err))
		}
	}
	if g := eng.Snapshot().Generation; g != gen {
		t.Errorf("refused changes published generation %d (was %d)", g, gen)
	}
	if err := s.Apply(nil); !errors.Is(err, mgmt.ErrInvalid) {
		t.Errorf("empty batch: %v", err)
	}
}

func TestConfigStoreConflictsAndIdempotency(t *testing.T) {
	s, eng := newStore(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddPool(nat.Pool{Name: "extra", Addresses: []netip.Prefix{pfx("198.18.1.0/28")}}))
	must(s.AddStaticMapping(nat.StaticMapping{Inside: ad("10.0.0.60"), Outside: ad("198.18.0.160")}))
	must(s.AddPortForward(nat.PortForward{Proto: nat.TCP, Outside: ap("198.18.0.100:8080"), Inside: ap("10.0.0.50:80")}))
	gen := eng.Snapshot().Generation

	// Identical objects again: no-ops, no new snapshot.
	must(s.AddPool(nat.Pool{Name: "extra", Addresses: []netip.Prefix{pfx("198.18.1.0/28")}}))
	must(s.AddStaticMapping(nat.StaticMapping{Inside: ad("10.0.0.60"), Outside: ad("198.18.0.160")}))
	must(s.AddPortForward(nat.PortForward{Proto: nat.TCP, Outside: ap("198.18.0.100:8080"), Inside: ap("10.0.0.50:80")}))
	if g := eng.Snapshot().Generation; g != gen {
		t.Errorf("idempotent adds published generation %d (was %d)", g, gen)
	}

	for _, tc := range []struct {
		err  error
		want string
	}{
		{s.AddPool(nat.Pool{Name: "extra", Addresses: []netip.Prefix{pfx("198.18.2.0/28")}}), `pool "extra" already exists with addresses [198.18.1.0/28]`},
		{s.AddPool(nat.Pool{Name: "other", Addresses: []netip.Prefix{pfx("198.18.1.8/29")}}), `pools[2].addresses[0]: 198.18.1.8/29 overlaps pool "extra" (198.18.1.0/28, pools[1].addresses[0])`},
		{s.AddPool(nat.Pool{Name: "other", Addresses: []netip.Prefix{pfx("198.18.0.160/32")}}), `static_mappings[0].outside: 198.18.0.160 is in pool "other" (198.18.0.160/32, pools[2].addresses[0])`},
		{s.AddStaticMapping(nat.StaticMapping{Inside: ad("10.0.0.60"), Outside: ad("198.18.0.161")}), "10.0.0.60 already has a static mapping to 198.18.0.160"},
		{s.AddStaticMapping(nat.StaticMapping{Inside: ad("10.0.0.61"), Outside: ad("198.18.0.160")}), "static_mappings[1].outside: 198.18.0.160 is already the outside address of the static mapping for 10.0.0.60"},
		{s.AddStaticMapping(nat.StaticMapping{Inside: ad("10.0.0.61"), Outside: ad("198.18.1.3")}), `static_mappings[1].outside: 198.18.1.3 is in pool "extra" (198.18.1.0/28`},
		{s.AddStaticMapping(nat.StaticMapping{Inside: ad("10.0.0.61"), Outside: ad("198.18.0.100")}), `198.18.0.100 is in pool "main"`},
		{s.AddPortForward(nat.PortForward{Proto: nat.TCP, Outside: ap("198.18.0.100:8080"), Inside: ap("10.0.0.51:80")}), "tcp 198.18.0.100:8080 is already forwarded to 10.0.0.50:80"},
		{s.AddPortForward(nat.PortForward{Proto: nat.TCP, Outside: ap("198.18.0.100:8081"), Inside: ap("10.0.0.50:80")}), "port_forwards[1].inside: tcp 10.0.0.50:80 is already the target of the forward from 198.18.0.100:8080"},
		{s.AddPortForward(nat.PortForward{Proto: nat.UDP, Outside: ap("198.18.0.160:53"), Inside: ap("10.0.0.53:53")}), "port_forwards[1].outside: 198.18.0.160 is the outside address of the static mapping for 10.0.0.60"},
	} {
		wantErr(t, tc.err, mgmt.ErrAlreadyExists, tc.want)
	}
	// The same port number on another protocol is another rule.
	must(s.AddPortForward(nat.PortForward{Proto: nat.UDP, Outside: ap("198.18.0.100:8080"), Inside: ap("10.0.0.50:80")}))

	wantErr(t, s.DeletePool("nope"), mgmt.ErrNotFound, `no pool named "nope"`)
	wantErr(t, s.DeletePortForward(nat.TCP, ap("198.18.0.100:9")), mgmt.ErrNotFound, "no tcp port forward on 198.18.0.100:9")
	wantErr(t, s.DeleteStaticMapping(ad("10.0.0.99")), mgmt.ErrNotFound, "no static mapping for 10.0.0.99")

	must(s.DeletePool("extra"))
	must(s.DeletePortForward(nat.TCP, ap("198.18.0.100:8080")))
	must(s.DeleteStaticMapping(ad("10.0.0.60")))
	cfg := s.Config()
	if len(cfg.Pools) != 1 || len(cfg.StaticMappings) != 0 || len(cfg.PortForwards) != 1 {
		t.Errorf("after deletes: %+v", cfg)
	}
	// What the store holds is what the engine runs.
	if got := eng.Snapshot().Config; !reflect.DeepEqual(got.Pools, cfg.Pools) || !reflect.DeepEqual(got.PortForwards, cfg.PortForwards) {
		t.Errorf("engine runs %+v, store holds %+v", got, cfg)
	}
	// Config returns a copy.
	cfg.Pools[0].Name = "mutated"
	if s.Config().Pools[0].Name != "main" {
		t.Error("Config shares memory with the store")
	}
}

func TestConfigStoreAtomicApply(t *testing.T) {
	s, eng := newStore(t)
	before := s.Config()
	gen := eng.Snapshot().Generation

	// Three good changes, then a conflicting one: nothing is applied.
	err := s.Apply([]mgmt.Change{
		{Op: mgmt.AddPool, Pool: nat.Pool{Name: "b", Addresses: []netip.Prefix{pfx("198.18.2.0/30")}}},
		{Op: mgmt.AddPortForward, PortForward: nat.PortForward{Proto: nat.TCP, Outside: ap("198.18.0.100:8080"), Inside: ap("10.0.0.50:80")}},
		{Op: mgmt.AddStaticMapping, StaticMapping: nat.StaticMapping{Inside: ad("10.0.0.60"), Outside: ad("198.18.0.160")}},
		{Op: mgmt.AddStaticMapping, StaticMapping: nat.StaticMapping{Inside: ad("10.0.0.61"), Outside: ad("198.18.2.1")}},
	})
	wantErr(t, err, mgmt.ErrAlreadyExists, `change 4 (add static 10.0.0.61 <-> 198.18.2.1): static_mappings[1].outside: 198.18.2.1 is in pool "b"`)
	if got := s.Config(); !reflect.DeepEqual(got, before) {
		t.Errorf("failed batch changed the config:\n got %+v\nwant %+v", got, before)
	}
	if g := eng.Snapshot().Generation; g != gen {
		t.Errorf("failed batch published generation %d (was %d)", g, gen)
	}

	// A batch that is valid only as a whole: replace the only pool.
	err = s.Apply([]mgmt.Change{
		{Op: mgmt.DeletePool, PoolName: "main"},
		{Op: mgmt.AddPool, Pool: nat.Pool{Name: "main", Addresses: []netip.Prefix{pfx("198.18.3.0/29")}}},
		{Op: mgmt.AddPortForward, PortForward: nat.PortForward{Proto: nat.UDP, Outside: ap("198.18.3.1:53"), Inside: ap("10.0.0.53:53")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	snap := eng.Snapshot()
	if snap.Generation != gen+1 {
		t.Errorf("batch published generation %d, want exactly one new snapshot (%d)", snap.Generation, gen+1)
	}
	if got := snap.Config.Pools; len(got) != 1 || got[0].Addresses[0] != pfx("198.18.3.0/29") || len(snap.Config.PortForwards) != 1 {
		t.Errorf("engine runs pools %v forwards %v", got, snap.Config.PortForwards)
	}

	// A batch whose changes are each fine but whose result the engine
	// refuses leaves everything as it was, too.
	big := make([]netip.Prefix, 0, 2)
	big = append(big, pfx("100.64.0.0/16"), pfx("100.65.0.0/16"))
	cur := s.Config()
	err = s.Apply([]mgmt.Change{{Op: mgmt.AddPool, Pool: nat.Pool{Name: "huge", Addresses: big}}})
	wantErr(t, err, mgmt.ErrInvalid, "pool addresses, at most")
	if !reflect.DeepEqual(s.Config(), cur) || eng.Snapshot().Generation != gen+1 {
		t.Error("refused batch changed the config")
	}
}

func TestConfigStoreReplace(t *testing.T) {
	s, eng := newStore(t)
	cfg := mgmttest.TestConfig()
	cfg.Pools[0].Addresses = []netip.Prefix{pfx("198.18.9.0/30")}
	if err := s.Replace(cfg); err != nil {
		t.Fatal(err)
	}
	if got := eng.Snapshot().Config.Pools[0].Addresses[0]; got != pfx("198.18.9.0/30") {
		t.Errorf("engine runs %v", got)
	}
	bad := cfg
	bad.Limits.MaxSessions = 8192 // tables cannot be resized at run time
	wantErr(t, s.Replace(bad), mgmt.ErrInvalid, "table sizes cannot change at run time")
	bad = mgmttest.TestConfig()
	bad.InsidePrefixes = nil
	wantErr(t, s.Replace(bad), mgmt.ErrInvalid, "inside_prefixes: at least one inside prefix is required")
	if got := s.Config().Pools[0].Addresses[0]; got != pfx("198.18.9.0/30") {
		t.Errorf("failed reloads changed the config: %v", got)
	}
}

// TestConfigStoreChargesValidation: the store judges changes with
// nat.Config.Validate, as natd's config file is judged, and charges each
// problem to the change that added the object concerned; a collision to
// the later of the two changes involved.
func TestConfigStoreChargesValidation(t *testing.T) {
	cfg := mgmttest.TestConfig()
	cfg.InsidePrefixes = []netip.Prefix{pfx("10.0.5.0/24")}
	eng, err := nat.New(cfg, nat.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := mgmt.NewConfigStore(cfg, eng.ApplyConfig)
	// A pool containing an inside prefix (only its first address was
	// checked by the config file's path before).
	wantErr(t, s.AddPool(nat.Pool{Name: "wide", Addresses: []netip.Prefix{pfx("10.0.0.0/16")}}), mgmt.ErrInvalid,
		`add pool "wide" [10.0.0.0/16]: pools[1].addresses[0]: 10.0.0.0/16 overlaps inside prefix 10.0.5.0/24`)
	wantErr(t, s.AddStaticMapping(nat.StaticMapping{Inside: ad("10.0.5.9"), Outside: ad("10.0.5.10")}), mgmt.ErrInvalid,
		"static_mappings[0].outside: outside 10.0.5.10 is in inside prefix 10.0.5.0/24")
	// The static mapping (change 2) is fine on its own; the pool added
	// after it (change 3) swallows its address: change 3 is at fault.
	err = s.Apply([]mgmt.Change{
		{Op: mgmt.AddPortForward, PortForward: nat.PortForward{Proto: nat.TCP, Outside: ap("198.18.0.100:80"), Inside: ap("10.0.5.80:80")}},
		{Op: mgmt.AddStaticMapping, StaticMapping: nat.StaticMapping{Inside: ad("10.0.5.9"), Outside: ad("198.18.7.9")}},
		{Op: mgmt.AddPool, Pool: nat.Pool{Name: "seven", Addresses: []netip.Prefix{pfx("198.18.7.0/24")}}},
	})
	wantErr(t, err, mgmt.ErrAlreadyExists,
		`change 3 (add pool "seven" [198.18.7.0/24]): static_mappings[0].outside: 198.18.7.9 is in pool "seven" (198.18.7.0/24, pools[1].addresses[0])`)
	if got := s.Config(); len(got.Pools) != 1 || len(got.StaticMappings) != 0 || len(got.PortForwards) != 0 {
		t.Errorf("refused batch changed the config: %+v", got)
	}
}
