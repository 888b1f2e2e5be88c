package main

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xnat/xnat/dataplane/afxdp"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/dataplane/poller"
	"github.com/xnat/xnat/mgmt/bgp"
)

// fileConfig is natd.yaml as written. Every field is optional except the
// interfaces and the NAT's inside prefixes and pools; see
// deploy/examples/*.yaml and docs/natd.md.
type fileConfig struct {
	Interfaces struct {
		Inside  ifaceConfig `yaml:"inside"`
		Outside ifaceConfig `yaml:"outside"`
	} `yaml:"interfaces"`
	// Workers pins each queue pair's worker to a CPU; default: worker i
	// on CPU i modulo the CPU count.
	Workers    []workerConfig `yaml:"workers"`
	PollMode   string         `yaml:"poll_mode"`
	BatchSize  int            `yaml:"batch_size"`
	XDP        xdpConfig      `yaml:"xdp"`
	NAT        natConfig      `yaml:"nat"`
	Management mgmtConfig     `yaml:"management"`
	Metrics    struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
	Events struct {
		File       string `yaml:"file"`
		MaxSizeMB  int    `yaml:"max_size_mb"`
		MaxBackups int    `yaml:"max_backups"`
	} `yaml:"events"`
	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
	GC struct {
		// HeapFloorMB: nil means defaultHeapFloor() (gc.go).
		HeapFloorMB *int `yaml:"heap_floor_mb"`
	} `yaml:"gc"`
	BGP     *bgpFileConfig `yaml:"bgp"`     // bgp.go
	Logging loggingFile    `yaml:"logging"` // IPFIX and syslog export (cgn.go)
}

type ifaceConfig struct {
	Name   string `yaml:"name"`
	Queues []int  `yaml:"queues"`
}

type workerConfig struct {
	CPU int `yaml:"cpu"`
}

type xdpConfig struct {
	// Attach is "native" (driver mode) or "generic" (skb mode).
	Attach    string `yaml:"attach"`
	Backend   string `yaml:"backend"`
	Frames    int    `yaml:"frames"`
	FrameSize int    `yaml:"frame_size"`
	RingSize  int    `yaml:"ring_size"`
	// SharedUMEM: nil means on where the backend can (see umem.go).
	SharedUMEM *bool `yaml:"shared_umem"`
}

type natConfig struct {
	InsidePrefixes    []string          `yaml:"inside_prefixes"`
	Pools             []poolConfig      `yaml:"pools"`
	Ports             map[string]string `yaml:"ports"`
	Mapping           string            `yaml:"mapping"`
	Filtering         map[string]string `yaml:"filtering"`
	UDPInboundRefresh *bool             `yaml:"udp_inbound_refresh"`
	Timeouts          map[string]string `yaml:"timeouts"`
	Limits            map[string]int    `yaml:"limits"`
	StaticMappings    []struct {
		Inside  string `yaml:"inside"`
		Outside string `yaml:"outside"`
	} `yaml:"static_mappings"`
	PortForwards []struct {
		Proto   string `yaml:"proto"`
		Outside string `yaml:"outside"`
		Inside  string `yaml:"inside"`
	} `yaml:"port_forwards"`
	OnExhaustion    string        `yaml:"on_exhaustion"`
	LogDestinations bool          `yaml:"log_destinations"`
	MSSClamp        string        `yaml:"mss_clamp"` // off, auto or an MSS
	CGN             cgnFileConfig `yaml:",inline"`   // port allocation (cgn.go)
}

type poolConfig struct {
	Name      string   `yaml:"name"`
	Addresses []string `yaml:"addresses"`
	Interface string   `yaml:"interface"` // masquerade.go
}

type mgmtConfig struct {
	Socket         string `yaml:"socket"`
	ReadOnlySocket string `yaml:"readonly_socket"`
	ReadOnlyMode   string `yaml:"readonly_socket_mode"`
	ReadOnlyGroup  string `yaml:"readonly_socket_group"`
	Listen         string `yaml:"listen"`
	TLS            struct {
		Cert     string `yaml:"cert"`
		Key      string `yaml:"key"`
		ClientCA string `yaml:"client_ca"`
	} `yaml:"tls"`
	AdminIdentities []string `yaml:"admin_identities"`
	Insecure        bool     `yaml:"insecure"`
}

// Config is the validated configuration natd runs with.
type Config struct {
	File       string
	Inside     ifaceConfig
	Outside    ifaceConfig
	CPUs       []int // per worker
	PollMode   poller.PollMode
	BatchSize  int
	GenericXDP bool
	SharedUMEM bool // a worker's two sockets share one UMEM (umem.go)
	Port       afxdp.Options
	NAT        nat.Config
	Mgmt       mgmtConfig
	Metrics    string
	Events     struct {
		File       string
		MaxSize    int64
		MaxBackups int
	}
	LogLevel  string
	LogFormat string
	// GCHeapFloor is the Go heap's collection floor in bytes; 0 keeps the
	// runtime's defaults (gc.go).
	GCHeapFloor int64
	BGP         *bgp.Config   // nil: no BGP (bgp.go)
	Logging     loggingConfig // IPFIX and syslog export (cgn.go)
	// logFlags are --log-level and --log-format, which win over the file
	// (overrideLog); kept so that a reload compares like with like.
	logFlags [2]string
}

// overrideLog applies the command-line log flags (empty: the file's
// value stands).
func (c *Config) overrideLog(level, format string) {
	c.logFlags = [2]string{level, format}
	if level != "" {
		c.LogLevel = level
	}
	if format != "" {
		c.LogFormat = format
	}
}

// ConfigError is one problem in a config file: the file, the field path
// (as written in YAML), the line when known, and the problem.
type ConfigError struct {
	File  string
	Field string
	Line  int
	Msg   string
}

func (e *ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// configErrors collects problems with their lines.
type configErrors struct {
	file string
	root *yaml.Node
	errs []error
}

func (c *configErrors) add(field, format string, args ...any) {
	c.errs = append(c.errs, &ConfigError{File: c.file, Field: field, Line: lineOf(c.root, field), Msg: fmt.Sprintf(format, args...)})
}

var pathPart = regexp.MustCompile(`([a-z_]+)|\[(\d+)\]`)

// lineOf finds the line of a field path such as "nat.pools[0].addresses[1]"
// in the YAML tree, or of its nearest existing ancestor.
func lineOf(root *yaml.Node, path string) int {
	if root == nil {
		return 0
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, m := range pathPart.FindAllStringSubmatch(path, -1) {
		var next *yaml.Node
		switch {
		case m[1] != "" && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == m[1] {
					next = n.Content[i+1]
					line = n.Content[i].Line
				}
			}
		case m[2] != "" && n.Kind == yaml.SequenceNode:
			i, _ := strconv.Atoi(m[2])
			if i < len(n.Content) {
				next = n.Content[i]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// LoadConfig reads and validates a config file. It touches nothing on the
// system: interfaces are looked up only when natd starts.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig validates config bytes read from file.
func ParseConfig(file string, data []byte) (*Config, error) {
	fc, ce, err := decodeConfig(file, data)
	if err != nil {
		return nil, err
	}
	c := &Config{File: file}
	c.interfacesFromFile(fc, ce)
	c.dataplaneFromFile(fc, ce)
	c.natSection(fc, ce)
	c.BGP = bgpFromFile(fc.BGP, &c.NAT, ce) // announces the nat section's addresses
	c.servicesFromFile(fc, ce)
	if len(ce.errs) > 0 {
		slices.SortStableFunc(ce.errs, func(a, b error) int {
			return a.(*ConfigError).Line - b.(*ConfigError).Line
		})
		return nil, errors.Join(ce.errs...)
	}
	return c, nil
}

// decodeConfig decodes the file into fileConfig after checking that every
// key names a setting. The errors it returns name the file and the line.
func decodeConfig(file string, data []byte) (*fileConfig, *configErrors, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, &ConfigError{File: file, Msg: err.Error()}
	}
	ce := &configErrors{file: file, root: &root}
	ce.unknownFields(&root, reflect.TypeFor[fileConfig](), "")
	if len(ce.errs) > 0 {
		return nil, nil, errors.Join(ce.errs...)
	}
	var fc fileConfig
	if err := yaml.Unmarshal(data, &fc); err != nil {
		// Type errors: yaml.v3 names the line ("line 7: cannot
		// unmarshal !!str `x` into int").
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		return nil, nil, &ConfigError{File: file, Msg: strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")}
	}
	return &fc, ce, nil
}

// interfacesFromFile takes the interfaces, their queues and the workers'
// CPUs.
func (c *Config) interfacesFromFile(fc *fileConfig, ce *configErrors) {
	for _, side := range []struct {
		name string
		in   ifaceConfig
		out  *ifaceConfig
	}{{"interfaces.inside", fc.Interfaces.Inside, &c.Inside}, {"interfaces.outside", fc.Interfaces.Outside, &c.Outside}} {
		if side.in.Name == "" {
			ce.add(side.name+".name", "an interface name is required")
		} else if len(side.in.Name) > 15 {
			ce.add(side.name+".name", "%q is longer than 15 characters", side.in.Name)
		}
		if len(side.in.Queues) == 0 {
			side.in.Queues = []int{0}
		}
		seen := map[int]bool{}
		for i, q := range side.in.Queues {
			if q < 0 || q >= 64 {
				ce.add(fmt.Sprintf("%s.queues[%d]", side.name, i), "queue %d out of range 0..63", q)
			}
			if seen[q] {
				ce.add(fmt.Sprintf("%s.queues[%d]", side.name, i), "queue %d listed twice", q)
			}
			seen[q] = true
		}
		*side.out = side.in
	}
	if c.Inside.Name != "" && c.Inside.Name == c.Outside.Name {
		ce.add("interfaces.outside.name", "inside and outside must be different interfaces")
	}
	if len(c.Inside.Queues) != len(c.Outside.Queues) {
		ce.add("interfaces.outside.queues", "%d queues, but the inside has %d: workers serve one queue of each side",
			len(c.Outside.Queues), len(c.Inside.Queues))
	}
	nw := len(c.Inside.Queues)
	if len(fc.Workers) != 0 && len(fc.Workers) != nw {
		ce.add("workers", "%d workers listed for %d queue pairs", len(fc.Workers), nw)
	}
	for i := 0; i < nw; i++ {
		cpu := i % runtime.NumCPU()
		if i < len(fc.Workers) {
			cpu = fc.Workers[i].CPU
			if cpu < -1 {
				ce.add(fmt.Sprintf("workers[%d].cpu", i), "%d is not a CPU (use -1 for unpinned)", cpu)
			}
		}
		c.CPUs = append(c.CPUs, cpu)
	}
}

// dataplaneFromFile takes the poll mode, the batch size and the AF_XDP
// settings.
func (c *Config) dataplaneFromFile(fc *fileConfig, ce *configErrors) {
	ce.text("poll_mode", fc.PollMode, &c.PollMode)
	c.BatchSize = fc.BatchSize
	if c.BatchSize == 0 {
		c.BatchSize = nat.MaxBurst
	}
	if c.BatchSize < 1 || c.BatchSize > nat.MaxBurst {
		ce.add("batch_size", "%d out of range 1..%d", c.BatchSize, nat.MaxBurst)
	}
	switch fc.XDP.Attach {
	case "", "native":
	case "generic":
		c.GenericXDP = true
	default:
		ce.add("xdp.attach", "%q is not native or generic", fc.XDP.Attach)
	}
	c.Port = afxdp.Options{NumFrames: fc.XDP.Frames, FrameSize: fc.XDP.FrameSize, BatchSize: c.BatchSize}
	if c.Port.NumFrames == 0 {
		// Twice what the fill and TX rings can hold between them, so
		// frames copied in from the other interface always find a free
		// frame while both rings are full.
		c.Port.NumFrames = 8192
	}
	if r := fc.XDP.RingSize; r != 0 {
		c.Port.FillRingSize, c.Port.CompletionRingSize, c.Port.RxRingSize, c.Port.TxRingSize = r, r, r, r
	}
	ce.text("xdp.backend", fc.XDP.Backend, &c.Port.Backend)
	c.SharedUMEM = sharedUMEMFromFile(fc.XDP.SharedUMEM, c.Port.Backend, ce)
	if err := afxdp.ValidateOptions(&c.Port); err != nil {
		ce.add("xdp", "%v", err)
	}
}

// natSection takes the nat section, judged by nat.Config.Validate as the
// management API's changes are, and checks it against the frames.
func (c *Config) natSection(fc *fileConfig, ce *configErrors) {
	c.NAT = natFromFile(&fc.NAT, ce)
	c.Logging = loggingFromFile(&fc.Logging, ce)
	checkMasqConfig(fc, ce)
	ce.addValidation("nat", c.NAT.Validate())
	// Held fragments wait in frames of the AF_XDP sockets: a worker
	// refuses more than a quarter of them, so say so before starting.
	if h, most := c.NAT.Limits.HeldFragments, nat.MaxHeldFragmentsFor(c.Port.NumFrames); h > most {
		ce.add("nat.limits.held_fragments", "%d is more than a quarter of xdp.frames (%d): at most %d", h, c.Port.NumFrames, most)
	}
}

// servicesFromFile takes the management, metrics, events and log settings.
func (c *Config) servicesFromFile(fc *fileConfig, ce *configErrors) {
	c.Mgmt = fc.Management
	if c.Mgmt.Socket == "" {
		c.Mgmt.Socket = "/run/xnat/natd.sock"
	}
	if c.Mgmt.ReadOnlySocket == "" {
		c.Mgmt.ReadOnlySocket = "/run/xnat/natd-ro.sock"
	}
	if c.Mgmt.Listen != "" && !c.Mgmt.Insecure && (c.Mgmt.TLS.Cert == "" || c.Mgmt.TLS.Key == "" || c.Mgmt.TLS.ClientCA == "") {
		ce.add("management.tls", "listening on TCP needs cert, key and client_ca (mutual TLS), or insecure: true for a lab")
	}
	c.Metrics = fc.Metrics.Listen
	if c.Metrics == "" {
		c.Metrics = "127.0.0.1:9469"
	}
	c.Events.File = fc.Events.File
	c.Events.MaxSize = int64(fc.Events.MaxSizeMB) << 20
	if c.Events.MaxSize == 0 {
		c.Events.MaxSize = 100 << 20
	}
	c.Events.MaxBackups = fc.Events.MaxBackups
	if c.Events.MaxBackups == 0 {
		c.Events.MaxBackups = 5
	}
	c.GCHeapFloor = defaultHeapFloor()
	if p := fc.GC.HeapFloorMB; p != nil {
		if *p < 0 || *p > maxHeapFloorMB {
			ce.add("gc.heap_floor_mb", "%d is not between 0 (the Go runtime's defaults) and %d", *p, maxHeapFloorMB)
		}
		c.GCHeapFloor = int64(*p) << 20
	}
	c.LogLevel, c.LogFormat = fc.Log.Level, fc.Log.Format
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		ce.add("log.level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		ce.add("log.format", "%q is not text or json", c.LogFormat)
	}
}

// setByName sets, for each name: value of a section of the file (in), the
// setting that dsts names, from the value parsed by parse. Unknown names and
// values parse refuses are reported at section.name.
func setByName[V, T any](ce *configErrors, section, what string, in map[string]V, dsts map[string]*T, parse func(V) (T, error)) {
	for name, v := range in {
		field := section + "." + name
		dst, ok := dsts[name]
		if !ok {
			ce.add(field, "unknown %s (want one of %s)", what, strings.Join(slices.Sorted(maps.Keys(dsts)), ", "))
			continue
		}
		x, err := parse(v)
		if err != nil {
			ce.add(field, "%v", err)
			continue
		}
		*dst = x
	}
}

// addValidation files what a section's Validate found (nat.Config's,
// bgp.Config's): each field error at its field's path and line in the
// file, anything else at the section.
func (c *configErrors) addValidation(section string, err error) {
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var nf *nat.FieldError
		var bf *bgp.FieldError
		switch {
		case errors.As(e, &nf):
			c.add(section+"."+nf.Field, "%s", nf.Reason)
		case errors.As(e, &bf):
			c.add(section+"."+bf.Field, "%s", bf.Reason)
		default:
			c.add(section, "%v", e)
		}
	}
}

// natFromFile converts the nat section, reporting what cannot even be
// parsed; nat.Config.Validate judges the rest.
func natFromFile(f *natConfig, ce *configErrors) nat.Config {
	c := nat.DefaultConfig()
	natAddressesFromFile(f, &c, ce)
	natBehaviourFromFile(f, &c, ce)
	natTimeoutsAndLimitsFromFile(f, &c, ce)
	natRulesFromFile(f, &c, ce)
	f.CGN.apply(&c, ce) // port allocation (cgn.go)
	return c
}

// natAddressesFromFile takes the inside prefixes and the pools.
func natAddressesFromFile(f *natConfig, c *nat.Config, ce *configErrors) {
	for i, s := range f.InsidePrefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			ce.add(fmt.Sprintf("nat.inside_prefixes[%d]", i), "%q is not a prefix like 10.0.0.0/8", s)
			continue
		}
		c.InsidePrefixes = append(c.InsidePrefixes, p)
	}
	for i, pc := range f.Pools {
		pool := nat.Pool{Name: pc.Name}
		for j, s := range pc.Addresses {
			p, err := parseAddrOrPrefix(s)
			if err != nil {
				ce.add(fmt.Sprintf("nat.pools[%d].addresses[%d]", i, j), "%v", err)
				continue
			}
			pool.Addresses = append(pool.Addresses, p)
		}
		masqPoolFromFile(fmt.Sprintf("nat.pools[%d]", i), pc, &pool, ce)
		c.Pools = append(c.Pools, pool)
	}
}

// natBehaviourFromFile takes the port ranges, the mapping and filtering
// behaviours and what answers an exhausted resource.
func natBehaviourFromFile(f *natConfig, c *nat.Config, ce *configErrors) {
	for name, v := range f.Ports {
		var p nat.Proto
		if err := p.UnmarshalText([]byte(name)); err != nil {
			ce.add("nat.ports."+name, "unknown protocol: %v", err)
			continue
		}
		r, err := parseRange(v)
		if err != nil {
			ce.add("nat.ports."+name, "%v", err)
			continue
		}
		c.Ports[p] = r
	}
	if ce.text("nat.mapping", f.Mapping, &c.Mapping) && c.Mapping == nat.AddressAndPortDependent {
		// Filtering follows the mapping unless set per protocol.
		for p := range c.Filtering {
			c.Filtering[p] = nat.FilterAddressAndPortDependent
		}
	}
	for name, v := range f.Filtering {
		var p nat.Proto
		if err := p.UnmarshalText([]byte(name)); err != nil {
			ce.add("nat.filtering."+name, "unknown protocol: %v", err)
			continue
		}
		if err := c.Filtering[p].UnmarshalText([]byte(v)); err != nil {
			ce.add("nat.filtering."+name, "%v", err)
		}
	}
	if f.UDPInboundRefresh != nil {
		c.UDPInboundRefresh = *f.UDPInboundRefresh
	}
	ce.text("nat.on_exhaustion", f.OnExhaustion, &c.OnExhaustion)
	c.LogDestinations = f.LogDestinations
	ce.text("nat.mss_clamp", f.MSSClamp, &c.MSSClamp)
}

// natTimeoutsAndLimitsFromFile takes the timeouts and the limits, by name.
func natTimeoutsAndLimitsFromFile(f *natConfig, c *nat.Config, ce *configErrors) {
	timeouts := map[string]*time.Duration{
		"tcp_established": &c.Timeouts.TCPEstablished, "tcp_transitory": &c.Timeouts.TCPTransitory,
		"udp": &c.Timeouts.UDP, "icmp": &c.Timeouts.ICMP, "port_hold_down": &c.Timeouts.PortHoldDown,
		"fragment": &c.Timeouts.Fragment,
	}
	setByName(ce, "nat.timeouts", "timeout", f.Timeouts, timeouts, func(v string) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration like 5m or 2h4m", v)
		}
		return d, nil
	})
	limits := map[string]*int{
		"max_sessions": &c.Limits.MaxSessions, "max_subscribers": &c.Limits.MaxSubscribers,
		"sessions_per_subscriber": &c.Limits.SessionsPerSubscriber, "ports_per_subscriber": &c.Limits.PortsPerSubscriber,
		"held_fragments": &c.Limits.HeldFragments, "icmp_errors_per_second": &c.Limits.ICMPErrorsPerSecond,
		"held_fragment_bytes":            &c.Limits.HeldFragmentBytes,
		"held_fragments_per_source":      &c.Limits.HeldFragmentsPerSource,
		"held_fragment_bytes_per_source": &c.Limits.HeldFragmentBytesPerSource,
		"inbound_sessions":               &c.Limits.InboundSessions,
		"inbound_sessions_per_rule":      &c.Limits.InboundSessionsPerRule,
	}
	setByName(ce, "nat.limits", "limit", f.Limits, limits, func(v int) (int, error) { return v, nil })
}

// natRulesFromFile takes the static mappings and the port forwards.
func natRulesFromFile(f *natConfig, c *nat.Config, ce *configErrors) {
	for i, m := range f.StaticMappings {
		in, err1 := netip.ParseAddr(m.Inside)
		out, err2 := netip.ParseAddr(m.Outside)
		if err1 != nil || err2 != nil {
			ce.add(fmt.Sprintf("nat.static_mappings[%d]", i), "inside and outside must be IPv4 addresses")
			continue
		}
		c.StaticMappings = append(c.StaticMappings, nat.StaticMapping{Inside: in, Outside: out})
	}
	for i, r := range f.PortForwards {
		field := fmt.Sprintf("nat.port_forwards[%d]", i)
		var p nat.Proto
		if err := p.UnmarshalText([]byte(r.Proto)); err != nil {
			ce.add(field+".proto", "%v", err)
			continue
		}
		out, err1 := netip.ParseAddrPort(r.Outside)
		in, err2 := netip.ParseAddrPort(r.Inside)
		if err1 != nil || err2 != nil {
			ce.add(field, "outside and inside must be address:port, like 198.18.0.100:8080")
			continue
		}
		c.PortForwards = append(c.PortForwards, nat.PortForward{Proto: p, Outside: out, Inside: in})
	}
}

func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
		}
		return p, nil
	}
	if strings.Contains(s, "-") {
		return netip.Prefix{}, fmt.Errorf("%q: give ranges as prefixes (198.18.0.0/28) or single addresses", s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseRange(s string) (nat.PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return nat.PortRange{}, fmt.Errorf("%q is not a range like 1024-65535", s)
	}
	return nat.PortRange{Min: uint16(a), Max: uint16(b)}, nil
}
