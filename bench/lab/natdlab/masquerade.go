package natdlab

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/xnat/xnat/bench/lab"
)

// BoxAddr is the NAT box's own outside address (nat-out's), the pool of
// the masquerade configuration.
var BoxAddr = lab.OutsideGW.Addr()

// MasqueradePorts is the NAT's port range in the masquerade configuration:
// outside the kernel's default local ports (32768-60999), so that natd can
// reserve it from the box's own connections.
const MasqueradePorts = "61000-65535"

// MasqueradeConfig renders natd's configuration for masquerade in this lab,
// in the mode of deploy/examples/home.yaml: the pool is nat-out's own
// address, a port forward on it (ForwardPort to in2:80), MSS clamping.
// extra is appended at the top level.
func (e *Env) MasqueradeConfig(extra string) string {
	return fmt.Sprintf(`interfaces:
  inside: {name: %s, queues: [0]}
  outside: {name: %s, queues: [0]}
workers:
  - cpu: 1
poll_mode: adaptive
nat:
  inside_prefixes: [10.0.0.0/24]
  pools:
    - {name: wan, interface: %s}
  ports: {tcp: %s, udp: %s, icmp: %s}
  port_forwards:
    - {proto: tcp, outside: "0.0.0.0:%d", inside: "%s:80"}
  mss_clamp: auto
  limits: {max_sessions: 65536, max_subscribers: 1024}
management:
  socket: %s
  readonly_socket: %s
metrics:
  listen: %s
events:
  file: %s
%s`, lab.NATInside, lab.NATOutside, lab.NATOutside, MasqueradePorts, MasqueradePorts, MasqueradePorts,
		ForwardPort, In2, e.Socket, e.ROSocket, e.Metrics, e.EventsFile(), extra)
}

// EventsFile is where MasqueradeConfig has natd write its events.
func (e *Env) EventsFile() string { return filepath.Join(e.Dir, "events.log") }

// UseConfig replaces natd's configuration file; natd reads it at its next
// Start (or on SIGHUP).
func (e *Env) UseConfig(cfg string) error {
	return os.WriteFile(e.ConfigPath, []byte(cfg), 0o644)
}
