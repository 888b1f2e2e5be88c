package main

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

const baseYAML = `interfaces:
  inside: {name: in0}
  outside: {name: out0}
nat:
  inside_prefixes: [10.0.0.0/8]
  pools:
    - name: main
      addresses: [198.18.0.0/28]
`

func TestParseConfigExamples(t *testing.T) {
	for _, f := range []string{"cgnat.yaml", "home.yaml", "lab.yaml", "scaleout.yaml"} {
		if _, err := LoadConfig("../../deploy/examples/" + f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := ParseConfig("natd.yaml", []byte(baseYAML)); err != nil {
		t.Fatal(err)
	}
}

// TestConfigFileAndAPIJudgeAlike checks that a config file and the
// management API refuse the same NAT configurations on the same field: both
// are judged by nat.Config.Validate. The file's error names the file, the
// line and the field.
func TestConfigFileAndAPIJudgeAlike(t *testing.T) {
	for _, tc := range []struct {
		name, nat string
		line      int
		field     string // as Validate names it
		reason    string
	}{
		{"pool larger than the inside prefix it contains", `nat:
  inside_prefixes: [10.0.5.0/24]
  pools:
    - name: main
      addresses: [10.0.0.0/16]
`, 8, "pools[0].addresses[0]", "10.0.0.0/16 overlaps inside prefix 10.0.5.0/24"},
		{"static mapping's outside address inside", `nat:
  inside_prefixes: [10.0.0.0/8]
  pools: [{name: main, addresses: [198.18.0.0/28]}]
  static_mappings:
    - {inside: 10.0.0.5, outside: 10.1.2.3}
`, 8, "static_mappings[0].outside", "outside 10.1.2.3 is in inside prefix 10.0.0.0/8"},
		{"forward's outside address inside", `nat:
  inside_prefixes: [10.0.0.0/8]
  pools: [{name: main, addresses: [198.18.0.0/28]}]
  port_forwards:
    - {proto: tcp, outside: 10.1.2.3:80, inside: 10.0.0.5:80}
`, 8, "port_forwards[0].outside", "outside 10.1.2.3 is in inside prefix"},
		{"pools overlap", `nat:
  inside_prefixes: [10.0.0.0/8]
  pools:
    - {name: a, addresses: [198.18.0.0/28]}
    - {name: b, addresses: [198.18.0.8/29]}
`, 8, "pools[1].addresses[0]", `198.18.0.8/29 overlaps pool "a" (198.18.0.0/28, pools[0].addresses[0])`},
		{"static mapping in a pool", `nat:
  inside_prefixes: [10.0.0.0/8]
  pools: [{name: main, addresses: [198.18.0.0/28]}]
  static_mappings:
    - {inside: 10.0.0.5, outside: 198.18.0.3}
`, 8, "static_mappings[0].outside", `198.18.0.3 is in pool "main"`},
		{"forward on a static mapping's address", `nat:
  inside_prefixes: [10.0.0.0/8]
  pools: [{name: main, addresses: [198.18.0.0/28]}]
  static_mappings:
    - {inside: 10.0.0.5, outside: 198.18.1.1}
  port_forwards:
    - {proto: udp, outside: 198.18.1.1:53, inside: 10.0.0.53:53}
`, 10, "port_forwards[0].outside", "198.18.1.1 is the outside address of the static mapping for 10.0.0.5"},
		{"two forwards to one inside endpoint", `nat:
  inside_prefixes: [10.0.0.0/8]
  pools: [{name: main, addresses: [198.18.0.0/28]}]
  port_forwards:
    - {proto: tcp, outside: 198.18.0.1:80, inside: 10.0.0.5:80}
    - {proto: tcp, outside: 198.18.0.1:8080, inside: 10.0.0.5:80}
`, 9, "port_forwards[1].inside", "tcp 10.0.0.5:80 is already the target of the forward from 198.18.0.1:80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(baseYAML, baseYAML[strings.Index(baseYAML, "nat:"):], tc.nat, 1)
			_, err := ParseConfig("natd.yaml", []byte(doc))
			want := "natd.yaml:" + strconv.Itoa(tc.line) + ": nat." + tc.field + ": " + tc.reason
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("config file: got %v, want %q", err, want)
			}

			// The same nat section through the management API.
			var fc fileConfig
			if err := yaml.Unmarshal([]byte(doc), &fc); err != nil {
				t.Fatal(err)
			}
			ce := &configErrors{file: "natd.yaml"}
			bad := natFromFile(&fc.NAT, ce)
			if len(ce.errs) > 0 {
				t.Fatal(ce.errs)
			}
			good := mgmttest.TestConfig()
			bad.Limits = good.Limits
			store := mgmt.NewConfigStore(good, func(nat.Config) error { return nil })
			err = store.Replace(bad)
			if err == nil || !strings.Contains(err.Error(), tc.field+": "+tc.reason) {
				t.Errorf("management API: got %v, want %q", err, tc.field+": "+tc.reason)
			}
		})
	}
}

// TestRestartOnlyCoversConfig: every field of Config is either reloaded
// (NAT), not a setting (File, the command-line overrides), or in a
// restart-only section, so that no future field is ignored by a reload
// without a word.
func TestRestartOnlyCoversConfig(t *testing.T) {
	covered := map[string]bool{"File": true, "NAT": true, "logFlags": true}
	for _, s := range restartOnly {
		for _, f := range s.fields {
			if covered[f] {
				t.Errorf("field %s listed twice", f)
			}
			covered[f] = true
		}
	}
	ct := reflect.TypeOf(Config{})
	for i := range ct.NumField() {
		if f := ct.Field(i).Name; !covered[f] {
			t.Errorf("Config.%s is in no restart-only section: a reload would ignore changes to it silently", f)
		}
		delete(covered, ct.Field(i).Name)
	}
	for f := range covered {
		t.Errorf("restartOnly names %s, which Config does not have", f)
	}
}

// TestRestartOnlyChanges: a reload reports each changed restart-only
// section by name, with old and new values when short, and nothing for
// changes it applies (nat) or for log settings the command line overrides.
func TestRestartOnlyChanges(t *testing.T) {
	parse := func(doc string) *Config {
		t.Helper()
		c, err := ParseConfig("natd.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse(baseYAML)
	for _, tc := range []struct {
		section, extra string
		old, new       string // "" when not logged
	}{
		{"interfaces", "", "inside in0 queues [0], outside out0 queues [0]", "inside in1 queues [0], outside out0 queues [0]"},
		{"workers", "workers: [{cpu: 1}]\n", "cpus [0]", "cpus [1]"},
		{"poll_mode", "poll_mode: busy\n", "adaptive", "busy"},
		{"batch_size", "batch_size: 32\n", "64", "32"},
		{"xdp", "xdp: {attach: generic}\n", "", ""},
		{"management", "management: {socket: /tmp/x.sock}\n", "", ""},
		{"metrics", "metrics: {listen: 127.0.0.1:9999}\n", "listen 127.0.0.1:9469", "listen 127.0.0.1:9999"},
		{"events", "events: {file: /tmp/events.json}\n", "", ""},
		{"log", "log: {level: debug}\n", `level "" format ""`, `level "debug" format ""`},
	} {
		doc := baseYAML + tc.extra
		if tc.section == "interfaces" {
			doc = strings.Replace(baseYAML, "name: in0", "name: in1", 1)
		}
		got := restartOnlyChanges(base, parse(doc))
		want := []ignoredChange{{tc.section, tc.old, tc.new}}
		if tc.old == "" { // long values: only the name
			if len(got) == 1 && got[0].Section == tc.section {
				want = got
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s changed: got %+v, want %+v", tc.section, got, want)
		}
	}
	// The nat section reloads: nothing to report.
	if got := restartOnlyChanges(base, parse(strings.Replace(baseYAML, "198.18.0.0/28", "198.18.0.0/27", 1))); len(got) != 0 {
		t.Errorf("nat change reported as ignored: %+v", got)
	}
	// natd --log-level debug, file unchanged: the reload applies the same
	// override, so the log section has not changed.
	running, reloaded := parse(baseYAML), parse(baseYAML)
	running.overrideLog("debug", "")
	reloaded.overrideLog(running.logFlags[0], running.logFlags[1])
	if got := restartOnlyChanges(running, reloaded); len(got) != 0 {
		t.Errorf("command-line log override reported as a change: %+v", got)
	}
}
