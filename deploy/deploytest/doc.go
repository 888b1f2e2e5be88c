// Package deploytest checks deploy/ and docs/operations.md against the
// natd, natctl and trafficgen this repository builds. It sits outside the
// packet pipeline, at the operator's end of it: everything an operator
// installs (the systemd unit, the container image, the Kubernetes
// manifests, the example configurations) and everything that watches natd
// (alert rules, dashboard, runbooks) must name only flags, configuration
// fields and metrics that exist, and the unit's sandbox must be one natd
// really runs in.
//
// The package has no code of its own: its tests are the checks. They
// build the commands once per test process (go build), run the external
// checkers the Debian packages provide (systemd-analyze, systemd-sysusers,
// promtool, strace) and, as root, run natd in the namespace lab
// (bench/lab/natdlab). A missing checker skips its test on a developer's
// machine and fails it under CI=true, like lab.Require does for the
// privileged tests.
package deploytest
