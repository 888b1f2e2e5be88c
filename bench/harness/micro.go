package harness

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Micro is one Go benchmark over its -count runs, parsed from `go test
// -bench -benchmem` output.
type Micro struct {
	Package string `json:"package"`
	Name    string `json:"name"` // without the -GOMAXPROCS suffix
	Runs    int    `json:"runs"`
	// NsPerOp lists every run; MedianNs is their median.
	NsPerOp  []float64 `json:"ns_per_op"`
	MedianNs float64   `json:"median_ns_per_op"`
	// BytesPerOp and AllocsPerOp are the largest of the runs (an
	// allocation in any run matters).
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	HasMem      bool    `json:"benchmem"`
	// Extra holds the median of every other reported metric (items/s,
	// MB/s, custom b.ReportMetric units).
	Extra map[string]float64 `json:"extra,omitempty"`
}

// ParseBench parses `go test -bench` output: "pkg:" lines name the
// package of the benchmark lines that follow; each benchmark line is
// "BenchmarkName-P  N  v unit  v unit ...". Runs of the same benchmark
// are merged in order of first appearance. Lines that are not benchmark
// results (goos, PASS, ok, logs) are skipped.
func ParseBench(r io.Reader) ([]Micro, error) {
	type key struct{ pkg, name string }
	var order []key
	byKey := map[key]*Micro{}
	extras := map[key]map[string][]float64{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		// Name, iterations, then value/unit pairs.
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		k := key{pkg, name}
		m := byKey[k]
		if m == nil {
			m = &Micro{Package: pkg, Name: name}
			byKey[k] = m
			extras[k] = map[string][]float64{}
			order = append(order, k)
		}
		m.Runs++
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: value %q: %w", line, f[i], err)
			}
			switch unit := f[i+1]; unit {
			case "ns/op":
				m.NsPerOp = append(m.NsPerOp, v)
			case "B/op":
				m.BytesPerOp = max(m.BytesPerOp, v)
				m.HasMem = true
			case "allocs/op":
				m.AllocsPerOp = max(m.AllocsPerOp, v)
				m.HasMem = true
			default:
				extras[k][unit] = append(extras[k][unit], v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := make([]Micro, 0, len(order))
	for _, k := range order {
		m := byKey[k]
		m.MedianNs = Median(m.NsPerOp)
		for unit, vs := range extras[k] {
			if m.Extra == nil {
				m.Extra = map[string]float64{}
			}
			m.Extra[unit] = Median(vs)
		}
		out = append(out, *m)
	}
	return out, nil
}

// Median returns the median of v (the mean of the middle two for an even
// count), 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
