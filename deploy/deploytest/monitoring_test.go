package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
	"github.com/xnat/xnat/mgmt/events"
	"github.com/xnat/xnat/mgmt/export"
	"github.com/xnat/xnat/mgmt/metrics"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

const (
	alertsFile     = "deploy/prometheus/xnat-alerts.yaml"
	alertTestsFile = "deploy/prometheus/xnat-alerts.test.yaml"
	dashboardFile  = "deploy/grafana/xnat.json"
	operationsDoc  = "docs/operations.md"
)

// templateLabel matches a label in a Grafana legend ({{interface}}) or an
// alert template ({{ $labels.interface }}).
var templateLabel = regexp.MustCompile(`\{\{\s*(?:\$labels\.)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string      `yaml:"name"`
		Rules []alertRule `yaml:"rules"`
	} `yaml:"groups"`
}

func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(readRepoFile(t, alertsFile))))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []alertRule
	for _, g := range rf.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", alertsFile)
	}
	return rules
}

// TestAlertRulesPromtool runs promtool check rules, and promtool test rules
// on the unit tests that make every alert fire.
func TestAlertRulesPromtool(t *testing.T) {
	pt := requireTool(t, "promtool", "prometheus")
	out, err := exec.Command(pt, "check", "rules", repoFile(t, alertsFile)).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	cmd := exec.Command(pt, "test", "rules", filepath.Base(alertTestsFile))
	cmd.Dir = filepath.Dir(repoFile(t, alertTestsFile))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

// headingAnchors returns the GitHub anchors of a Markdown file's headings.
func headingAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	drop := regexp.MustCompile("[^a-z0-9 _-]")
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		h = strings.ReplaceAll(h, "`", "")
		a := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
		anchors[a] = true
	}
	return anchors
}

// TestAlertRulesContract checks what the issue asks of the rules: the
// required alerts exist, each has a severity, a summary, a description and
// a runbook that is a section of docs/operations.md, and each is shown to
// fire by a promtool unit test.
func TestAlertRulesContract(t *testing.T) {
	rules := loadAlerts(t)
	anchors := headingAnchors(string(readRepoFile(t, operationsDoc)))
	byName := map[string]alertRule{}
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("rule %q is not an alert", r.Record)
			continue
		}
		if _, dup := byName[r.Alert]; dup {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		byName[r.Alert] = r
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s has no %s annotation", r.Alert, a)
			}
		}
		doc, anchor, ok := strings.Cut(r.Annotations["runbook"], "#")
		if !ok || doc != operationsDoc || !anchors[anchor] {
			t.Errorf("%s: runbook %q is not a section of %s", r.Alert, r.Annotations["runbook"], operationsDoc)
		}
	}
	// The list: pool utilisation above 90%, port-allocation
	// failures, drops rising by reason, a worker stuck busy, natd down.
	for _, req := range []struct {
		alert string
		want  []string
	}{
		{"XnatPoolUtilizationHigh", []string{"xnat_pool_utilization_ratio", "> 0.9"}},
		{"XnatPortAllocationFailures", []string{"xnat_port_alloc_failures_total"}},
		{"XnatDropsRising", []string{"xnat_dropped_packets_total", "reason"}},
		{"XnatWorkerSaturated", []string{"xnat_worker_busy_seconds_total", "xnat_worker_poll_seconds_total"}},
		{"XnatDown", []string{"up{", "== 0"}},
	} {
		r, ok := byName[req.alert]
		if !ok {
			t.Errorf("no alert %s", req.alert)
			continue
		}
		for _, w := range req.want {
			if !strings.Contains(r.Expr, w) {
				t.Errorf("%s: expression %q lacks %q", req.alert, r.Expr, w)
			}
		}
	}

	// Every alert fires in some promtool test case.
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, alertTestsFile), &tests); err != nil {
		t.Fatalf("%s: %v", alertTestsFile, err)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for name := range byName {
		if !fires[name] {
			t.Errorf("%s fires in no test of %s", name, alertTestsFile)
		}
	}
}

// dashboardQuery is one PromQL expression of the dashboard and the legend
// that names its labels.
type dashboardQuery struct {
	where  string
	expr   string
	legend string
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

func loadDashboard(t *testing.T) (map[string]any, []dashboardQuery) {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(readRepoFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var qs []dashboardQuery
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch x := v.(type) {
		case map[string]any:
			if title, ok := x["title"].(string); ok {
				where = title
			}
			if e, ok := x["expr"].(string); ok {
				legend, _ := x["legendFormat"].(string)
				if legend == "" {
					legend, _ = x["textFormat"].(string)
				}
				qs = append(qs, dashboardQuery{where: where, expr: e, legend: legend})
			}
			for _, k := range sortedKeys(x) {
				walk(x[k], where)
			}
		case []any:
			for _, e := range x {
				walk(e, where)
			}
		}
	}
	walk(d["panels"], "")
	walk(d["annotations"], "annotations")
	// Template variables: label_values(selector, label).
	for _, v := range digList(d, "templating", "list") {
		q := digString(v, "query", "query")
		if q == "" {
			q, _ = dig(v, "query").(string)
		}
		if digString(v, "type") != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", digString(v, "name"), q)
			continue
		}
		qs = append(qs, dashboardQuery{where: "variable " + digString(v, "name"), expr: m[1], legend: "{{" + m[2] + "}}"})
	}
	return d, qs
}

// grafanaVars replaces the dashboard's variables by values PromQL accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "${datasource}", "x")

// TestDashboardQueriesParse hands every PromQL expression of the dashboard
// to promtool, as recording rules, so that a typo in a panel fails here
// rather than as an empty graph.
func TestDashboardQueriesParse(t *testing.T) {
	pt := requireTool(t, "promtool", "prometheus")
	_, qs := loadDashboard(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range qs {
		e := grafanaVars.Replace(q.expr)
		e = strings.ReplaceAll(e, `"$instance"`, `".*"`)
		quoted, _ := json.Marshal(e)
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, quoted)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pt, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Errorf("promtool rejects dashboard queries: %v\n%s\nqueries:\n%s", err, out, b.String())
	}
}

// TestDashboardContract checks the dashboard's structure and that it has
// the panels the issue asks for.
func TestDashboardContract(t *testing.T) {
	d, qs := loadDashboard(t)
	if digString(d, "uid") == "" || digString(d, "title") == "" {
		t.Errorf("dashboard has no uid or title")
	}
	vars := map[string]bool{}
	for _, v := range digList(d, "templating", "list") {
		vars[digString(v, "name")] = true
	}
	ids := map[float64]bool{}
	for _, p := range digList(d, "panels") {
		id, _ := dig(p, "id").(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
		if dig(p, "gridPos", "w") == nil || dig(p, "gridPos", "h") == nil {
			t.Errorf("panel %q has no gridPos", digString(p, "title"))
		}
		if digString(p, "type") == "row" {
			continue
		}
		if uid := digString(p, "datasource", "uid"); !strings.HasPrefix(uid, "${") || !vars[strings.Trim(uid, "${}")] {
			t.Errorf("panel %q: datasource %q is not a dashboard variable", digString(p, "title"), uid)
		}
		if len(digList(p, "targets")) == 0 {
			t.Errorf("panel %q has no query", digString(p, "title"))
		}
	}
	// The panels: throughput per interface and queue, drops by
	// reason, sessions by protocol, pool utilisation, session setup rate,
	// worker busy ratio.
	for _, req := range []struct {
		what     string
		metrics  []string
		grouping []string
	}{
		{"throughput per interface and queue", []string{"xnat_rx_packets_total"}, []string{"interface", "queue"}},
		{"throughput per interface and queue", []string{"xnat_tx_packets_total"}, []string{"interface", "queue"}},
		{"drops by reason", []string{"xnat_dropped_packets_total"}, []string{"reason"}},
		{"sessions by protocol", []string{"xnat_sessions"}, []string{"protocol"}},
		{"pool utilisation", []string{"xnat_pool_utilization_ratio"}, nil},
		{"session setup rate", []string{"xnat_sessions_created_total"}, []string{"protocol"}},
		{"worker busy ratio", []string{"xnat_worker_busy_seconds_total", "xnat_worker_poll_seconds_total"}, nil},
	} {
		found := false
		for _, q := range qs {
			r, err := scanPromQL(q.expr)
			if err != nil {
				continue
			}
			ok := true
			for _, m := range req.metrics {
				if _, has := r.metrics[m]; !has {
					ok = false
				}
			}
			for _, g := range req.grouping {
				if !slices.Contains(r.grouping, g) {
					ok = false
				}
			}
			found = found || ok
		}
		if !found {
			t.Errorf("no panel shows %s (%v by %v)", req.what, req.metrics, req.grouping)
		}
	}
}

// monitoringRefs lists every expression of the alert rules and the
// dashboard with the templates that name its labels.
func monitoringRefs(t *testing.T) []dashboardQuery {
	t.Helper()
	var out []dashboardQuery
	for _, r := range loadAlerts(t) {
		out = append(out, dashboardQuery{where: alertsFile + " " + r.Alert, expr: r.Expr,
			legend: r.Annotations["summary"] + " " + r.Annotations["description"]})
	}
	_, qs := loadDashboard(t)
	for _, q := range qs {
		q.where = dashboardFile + " " + q.where
		out = append(out, q)
	}
	return out
}

// operationsMetrics lists the xnat_ metric names docs/operations.md cites.
func operationsMetrics(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`\bxnat_[a-z_]+[a-z]`)
	seen := map[string]bool{}
	for _, m := range re.FindAllString(string(readRepoFile(t, operationsDoc)), -1) {
		if m != "xnat_xdp" { // the XDP program's name, not a metric
			seen[m] = true
		}
	}
	return sortedKeys(seen)
}

func checkAgainst(t *testing.T, cat metricCatalog, source string) {
	t.Helper()
	n := 0
	for _, q := range monitoringRefs(t) {
		for _, p := range cat.check(q.expr, q.legend) {
			t.Errorf("%s: %s (against %s)", q.where, p, source)
		}
		n++
	}
	for _, m := range operationsMetrics(t) {
		if _, ok := cat[m]; !ok {
			t.Errorf("%s cites metric %s, which %s does not export", operationsDoc, m, source)
		}
	}
	t.Logf("%d expressions and %d metric names of %s checked against %d families of %s",
		n, len(operationsMetrics(t)), operationsDoc, len(cat), source)
}

// TestMonitoringNamesExistInNatd scrapes a real natd in the namespace lab
// and holds every metric and label name the alert rules, the dashboard and
// docs/operations.md use against its /metrics.
func TestMonitoringNamesExistInNatd(t *testing.T) {
	lab.Require(t)
	eventsDir := t.TempDir()
	// Both exporters configured, so that their metrics exist.
	exporters := "logging:\n  ipfix: {collector: \"198.18.0.2:4739\"}\n  syslog: {server: \"198.18.0.2:5514\"}\n"
	e := natdlab.RequireEnv(t, natdlab.Options{Natd: natdPath(t), Config: natdlab.ConfigParams{EventsFile: filepath.Join(eventsDir, "events.log"), Extra: exporters,
		// A neighbour that never answers: the xnat_bgp_* series exist
		// (XnatBGPSessionDown, docs/operations.md) with the session down.
		TopLevel: "bgp:\n  local_as: 65010\n  router_id: 198.18.0.1\n  neighbors: [{address: 198.18.0.2, as: 65002, side: outside, port: 1179}]\n"}})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	checkAgainst(t, catalogOf(mfs), "natd's /metrics in the lab")

	// XnatWorkerStalled assumes an idle adaptive worker still counts
	// polls: it must not fire on an idle natd.
	first, _ := metrics.Value(mfs, "xnat_worker_polls_total", "worker", "0")
	time.Sleep(1500 * time.Millisecond)
	again, err := e.Scrape()
	if err != nil {
		t.Fatal(err)
	}
	if second, _ := metrics.Value(again, "xnat_worker_polls_total", "worker", "0"); second <= first {
		t.Errorf("an idle worker's xnat_worker_polls_total stayed at %v for 1.5 s: XnatWorkerStalled would fire", first)
	}
}

// TestMonitoringNamesExistInCollector does the same against the metrics
// collector over the mgmttest core (a real engine on in-memory ports), so
// that machines without the lab check the names too.
func TestMonitoringNamesExistInCollector(t *testing.T) {
	core := mgmttest.Start(t, mgmttest.Options{})
	core.EnableBGP() // the xnat_bgp_* series
	// As natd with both exporters configured (docs/cgn.md).
	withExporters := func() events.Stats {
		s := core.Events.Stats()
		s.Sinks = []export.Stats{{Name: "ipfix"}, {Name: "syslog"}}
		return s
	}
	reg := metrics.NewRegistry(metrics.NewCollector(core, metrics.CollectorOptions{Events: withExporters}))
	mfs, err := metrics.Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	checkAgainst(t, catalogOf(mfs), "the metrics collector")
}
