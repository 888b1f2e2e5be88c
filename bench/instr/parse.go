package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Profile is the self cost, in instructions (callgrind's Ir), of each
// function of one callgrind run, as callgrind_annotate prints it.
type Profile struct {
	Total uint64 // PROGRAM TOTALS
	// Self cost keyed by "file:function". callgrind attributes inlined code
	// to the file it came from, so one function may appear under several
	// files; keeping the file lets the stage grouping use it.
	Self map[string]uint64
}

// ParseAnnotate reads the output of `callgrind_annotate --auto=no
// --threshold=100` for a profile that recorded only Ir. Lines look like
//
//	1,184,268 (1.12%)  /src/flowtable/table.go:github.com/x/flowtable.(*Table).lookupHashed [/tmp/nat.test]
//
// Recursion markers ("'2") are folded into their function.
func ParseAnnotate(r io.Reader) (*Profile, error) {
	p := &Profile{Self: map[string]uint64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	sawTotal := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] < '0' || line[0] > '9' {
			continue
		}
		num, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.ReplaceAll(num, ",", ""), 10, 64)
		if err != nil {
			continue // not a cost line
		}
		rest = strings.TrimSpace(rest)
		if strings.HasPrefix(rest, "(") {
			if i := strings.Index(rest, ")"); i >= 0 {
				rest = strings.TrimSpace(rest[i+1:])
			}
		}
		if rest == "PROGRAM TOTALS" {
			p.Total, sawTotal = n, true
			continue
		}
		// The object file in brackets, when named; a generic function's
		// type arguments end in "]" too, but hold spaces.
		if i := strings.LastIndex(rest, " ["); i >= 0 && strings.HasSuffix(rest, "]") &&
			!strings.Contains(rest[i+2:], " ") {
			rest = rest[:i]
		}
		if i := strings.LastIndex(rest, "'"); i >= 0 && isDigits(rest[i+1:]) {
			rest = rest[:i]
		}
		p.Self[rest] += n
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !sawTotal {
		return nil, fmt.Errorf("no PROGRAM TOTALS line: not callgrind_annotate output")
	}
	return p, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// splitFileFunc splits "file:function"; the file never holds a colon.
func splitFileFunc(s string) (file, fn string) {
	file, fn, ok := strings.Cut(s, ":")
	if !ok {
		return "", s
	}
	return file, fn
}
