package deploytest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// promqlRefs is what a PromQL expression refers to: metric names with the
// label names their selectors match on, and the label names of its
// grouping clauses (by, without, on, ignoring, group_left, group_right).
// The scanner below is not a PromQL parser; promtool checks the syntax.
// It only has to find every name, and it errs towards reporting: an
// identifier it cannot place is taken for a metric name.
type promqlRefs struct {
	metrics  map[string][]string
	grouping []string
}

var promqlFunctions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`
		abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
		clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv exp
		floor histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
		histogram_sum holt_winters hour idelta increase irate label_join label_replace last_over_time ln log10 log2
		mad_over_time max_over_time min_over_time minute month pi predict_linear present_over_time quantile_over_time
		rad rate resets round scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt
		stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year
		sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio`) {
		promqlFunctions[f] = true
	}
}

var (
	promqlGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true}
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// scanPromQL finds the references of expr. Grafana's variables ($x, ${x},
// [[x]]) may appear wherever PromQL allows a string or a duration.
func scanPromQL(expr string) (promqlRefs, error) {
	r := promqlRefs{metrics: map[string][]string{}}
	s := expr
	lastMetric := ""
	i := 0
	skipSpace := func(j int) int {
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		return j
	}
	// labelList reads "(a, b, c)" starting at the "(".
	labelList := func(j int) ([]string, int, error) {
		end := strings.IndexByte(s[j:], ')')
		if end < 0 {
			return nil, 0, fmt.Errorf("unclosed label list at %d", j)
		}
		var labels []string
		for _, l := range strings.Split(s[j+1:j+end], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		return labels, j + end + 1, nil
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return r, fmt.Errorf("unterminated string at %d", i)
			}
			i = j + 1
			lastMetric = ""
		case c == '[':
			if strings.HasPrefix(s[i:], "[[") { // Grafana's old variable syntax
				end := strings.Index(s[i:], "]]")
				if end < 0 {
					return r, fmt.Errorf("unclosed [[ at %d", i)
				}
				i += end + 2
				continue
			}
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return r, fmt.Errorf("unclosed [ at %d", i)
			}
			i += end + 1
		case c == '{':
			// The matchers, up to the "}" that is not inside a string.
			var labels []string
			k := i + 1
			for k < len(s) && s[k] != '}' {
				switch {
				case s[k] == '"' || s[k] == '\'' || s[k] == '`':
					q := s[k]
					k++
					for k < len(s) && s[k] != q {
						if s[k] == '\\' && q != '`' {
							k++
						}
						k++
					}
					k++
				case isIdentStart(s[k]):
					st := k
					for k < len(s) && isIdent(s[k]) {
						k++
					}
					labels = append(labels, s[st:k])
				default:
					k++
				}
			}
			if k >= len(s) {
				return r, fmt.Errorf("unclosed { at %d", i)
			}
			if lastMetric != "" {
				r.metrics[lastMetric] = append(r.metrics[lastMetric], labels...)
			} else if len(labels) > 0 {
				return r, fmt.Errorf("a selector without a metric name at %d: %s", i, s[i:k+1])
			}
			i = k + 1
			lastMetric = ""
		case c == '$':
			j := i + 1
			if j < len(s) && s[j] == '{' {
				end := strings.IndexByte(s[j:], '}')
				if end < 0 {
					return r, fmt.Errorf("unclosed ${ at %d", i)
				}
				i = j + end + 1
				continue
			}
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			i = j
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
			lastMetric = ""
		case isIdentStart(c):
			st := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[st:i]
			next := skipSpace(i)
			lw := strings.ToLower(word)
			switch {
			case promqlGrouping[lw]:
				if next < len(s) && s[next] == '(' {
					labels, end, err := labelList(next)
					if err != nil {
						return r, err
					}
					r.grouping = append(r.grouping, labels...)
					i = end
				}
				lastMetric = ""
			case promqlKeywords[lw]:
				lastMetric = ""
			case promqlFunctions[word]:
				lastMetric = ""
			case next < len(s) && s[next] == '(':
				return r, fmt.Errorf("unknown function %s", word)
			default:
				if _, ok := r.metrics[word]; !ok {
					r.metrics[word] = nil
				}
				lastMetric = word
			}
		default:
			i++
			lastMetric = ""
		}
	}
	return r, nil
}

// targetLabels are the labels Prometheus and the scrape configurations in
// deploy/ add to every series.
var targetLabels = []string{"job", "instance", "node"}

// metricCatalog is what a natd /metrics page offers: each family's label
// names.
type metricCatalog map[string]map[string]bool

func catalogOf(mfs map[string]*dto.MetricFamily) metricCatalog {
	c := metricCatalog{}
	for name, mf := range mfs {
		labels := map[string]bool{}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				labels[lp.GetName()] = true
			}
		}
		c[name] = labels
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				l := map[string]bool{}
				for k := range labels {
					l[k] = true
				}
				if suffix == "_bucket" {
					l["le"] = true
				}
				c[name+suffix] = l
			}
		case dto.MetricType_SUMMARY:
			labels["quantile"] = true
			c[name+"_sum"] = labels
			c[name+"_count"] = labels
		}
	}
	// Series Prometheus itself makes for every target.
	c["up"] = map[string]bool{}
	return c
}

// check reports every name expr uses that natd does not export: metric
// names, the labels its selectors match on, and the labels its grouping
// clauses and the given templates ({{label}}, {{ $labels.label }}) name.
func (c metricCatalog) check(expr string, templates ...string) []string {
	refs, err := scanPromQL(expr)
	if err != nil {
		return []string{fmt.Sprintf("cannot read %q: %v", expr, err)}
	}
	var problems []string
	known := map[string]bool{}
	for _, l := range targetLabels {
		known[l] = true
	}
	for name, labels := range refs.metrics {
		fam, ok := c[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s does not exist", name))
			continue
		}
		for l := range fam {
			known[l] = true
		}
		for _, l := range labels {
			if !fam[l] && !slices.Contains(targetLabels, l) {
				problems = append(problems, fmt.Sprintf("metric %s has no label %s", name, l))
			}
		}
	}
	if len(refs.metrics) == 0 {
		problems = append(problems, fmt.Sprintf("%q names no metric", expr))
	}
	for _, l := range refs.grouping {
		if !known[l] {
			problems = append(problems, fmt.Sprintf("label %s (grouping) is on none of %v", l, sortedKeys(refs.metrics)))
		}
	}
	for _, tmpl := range templates {
		for _, m := range templateLabel.FindAllStringSubmatch(tmpl, -1) {
			if !known[m[1]] {
				problems = append(problems, fmt.Sprintf("label %s (in %q) is on none of %v", m[1], tmpl, sortedKeys(refs.metrics)))
			}
		}
	}
	return problems
}

func TestScanPromQL(t *testing.T) {
	for _, tc := range []struct {
		expr     string
		metrics  map[string][]string
		grouping []string
	}{
		{`up{job="xnat"} == 0`, map[string][]string{"up": {"job"}}, nil},
		{`sum by (job, instance, reason) (rate(xnat_dropped_packets_total{reason!~"no_session|a{b}"}[5m] offset 1h)) > 10
		  and on(instance) group_left(pool) xnat_pool_utilization_ratio`,
			map[string][]string{"xnat_dropped_packets_total": {"reason"}, "xnat_pool_utilization_ratio": nil},
			[]string{"job", "instance", "reason", "instance", "pool"}},
		{`topk(10, xnat_pool_ports_in_use{job="xnat", instance=~"$instance"} / xnat_pool_ports{instance=~"${instance:regex}"})`,
			map[string][]string{"xnat_pool_ports_in_use": {"job", "instance"}, "xnat_pool_ports": {"instance"}}, nil},
		{`8 * rate(xnat_rx_bytes_total[$__rate_interval]) + 1e3 - time() - xnat_start_time_seconds`,
			map[string][]string{"xnat_rx_bytes_total": nil, "xnat_start_time_seconds": nil}, nil},
		{`predict_linear(xnat_pool_utilization_ratio[1h], 4 * 3600) >= 1 unless absent(up)`,
			map[string][]string{"xnat_pool_utilization_ratio": nil, "up": nil}, nil},
	} {
		r, err := scanPromQL(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if fmt.Sprint(r.metrics) != fmt.Sprint(tc.metrics) || !slices.Equal(r.grouping, tc.grouping) {
			t.Errorf("%s:\n got %v %v\nwant %v %v", tc.expr, r.metrics, r.grouping, tc.metrics, tc.grouping)
		}
	}
	for _, bad := range []string{`rat(x[5m])`, `x{a="b"`, `{a="b"}`, `"unterminated`} {
		if _, err := scanPromQL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}

	cat := metricCatalog{"xnat_sessions": {"protocol": true}, "up": {}}
	if p := cat.check(`sum by (protocol) (xnat_sessions{protocol="tcp"}) > 0 and up`, "{{protocol}} {{ $labels.instance }}"); len(p) != 0 {
		t.Errorf("good expression: %v", p)
	}
	for _, bad := range []struct{ expr, tmpl string }{
		{`xnat_session`, ""},
		{`xnat_sessions{proto="tcp"}`, ""},
		{`sum by (pool) (xnat_sessions)`, ""},
		{`xnat_sessions`, "{{ $labels.worker }}"},
		{`1 + 1`, ""},
	} {
		if p := cat.check(bad.expr, bad.tmpl); len(p) == 0 {
			t.Errorf("%s %s: no problem found", bad.expr, bad.tmpl)
		}
	}
}
