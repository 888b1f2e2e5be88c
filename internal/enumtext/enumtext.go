// Package enumtext gives the configuration enums of the tree (NAT mapping
// and filtering behaviour, exhaustion reply, protocol, poll mode, AF_XDP
// backend) their text form from one table of names each, indexed by value,
// so that String, MarshalText and UnmarshalText agree, and every refusal
// reads the same: `"x" is not a, b or c`.
package enumtext

import (
	"fmt"
	"strings"
)

// Value is what a names table can be indexed by: an enum's integer type.
type Value interface {
	~uint8 | ~uint16 | ~uint32 | ~int
}

// Or returns v's name, or fallback when v has none: past the end of names,
// or an empty entry (a gap in a sparse table). It is the one lookup behind
// every String of an enum with a table of names, here and elsewhere (drop
// reasons, counters, trail codes).
func Or[T Value](names []string, v T, fallback string) string {
	if uint64(v) < uint64(len(names)) && names[v] != "" {
		return names[v]
	}
	return fallback
}

// String returns v's name, or kind(v) when v has none.
func String[T Value](names []string, kind string, v T) string {
	if n := Or(names, v, ""); n != "" {
		return n
	}
	return fmt.Sprintf("%s(%d)", kind, uint64(v))
}

// Marshal returns v's name, or an error when v has none.
func Marshal[T ~uint8](names []string, kind string, v T) ([]byte, error) {
	if int(v) < len(names) {
		return []byte(names[v]), nil
	}
	return nil, fmt.Errorf("%s(%d) has no name", kind, uint8(v))
}

// Unmarshal sets *v to the value named text, or returns an error that
// lists the names.
func Unmarshal[T ~uint8](names []string, text []byte, v *T) error {
	for i, n := range names {
		if n == string(text) {
			*v = T(i)
			return nil
		}
	}
	return fmt.Errorf("%q is not %s", text, Alternatives(names))
}

// Alternatives lists names as "a, b or c".
func Alternatives(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
