package main

import (
	"encoding"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// text sets dst from s, a value of the file, with dst's own UnmarshalText
// (the enums of the packages that own them: nat.Mapping, poller.PollMode,
// afxdp.Backend...); an empty s leaves dst's default. A refusal is
// reported at field, with its line. It reports whether s set dst.
func (c *configErrors) text(field, s string, dst encoding.TextUnmarshaler) bool {
	if s == "" {
		return false
	}
	if err := dst.UnmarshalText([]byte(s)); err != nil {
		c.add(field, "%v", err)
		return false
	}
	return true
}

// unknownFields reports every key of the YAML tree n that the Go type t
// (fileConfig and what it contains) has no field for, with its path and
// line, so that a misspelt setting is named where it stands instead of
// being ignored. Maps (ports, timeouts, limits...) take any key; their
// converters judge the keys.
func (c *configErrors) unknownFields(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, d := range n.Content {
			c.unknownFields(d, t, path)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, e := range n.Content {
			c.unknownFields(e, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			field := k.Value
			if path != "" {
				field = path + "." + k.Value
			}
			ft, ok := yamlField(t, k.Value)
			if !ok {
				c.errs = append(c.errs, &ConfigError{File: c.file, Field: field, Line: k.Line, Msg: "unknown field"})
				continue
			}
			c.unknownFields(n.Content[i+1], ft, field)
		}
	}
}

// yamlField finds the type of t's field that YAML key name decodes into.
func yamlField(t reflect.Type, name string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == name {
			return f.Type, true
		}
		if tag == "" && opts == "inline" && f.Type.Kind() == reflect.Struct {
			// An inline struct's keys are the outer mapping's.
			if ft, ok := yamlField(f.Type, name); ok {
				return ft, true
			}
		}
	}
	return nil, false
}
