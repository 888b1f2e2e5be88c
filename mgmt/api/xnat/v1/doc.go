// Package xnatv1 is the generated Go code of xnat's management API (proto
// package xnat.v1, xnat.proto beside it): the contract between natd's
// management server (package mgmt) and its clients (natctl, package
// mgmt/client). Regenerate with `go generate ./mgmt/`; never edit the
// .pb.go files by hand.
package xnatv1
